"""bayes_cart (nutpie) and Stan (pystan) side by side: the same model, data, coordinates and start.

The model is the shipped ``liu2021`` spec as ``bayes-cart fit DATA --model liu2021`` fits it
(issue 9, target 5): the Liu et al. closed form without a distribution phase, log-normal IIV
on C0, beta, T1, alpha, rM and deltaM with an LKJ-correlated (beta, T1) block, deltaE fixed,
the spec's priors, proportional (log-normal) error, M3 censoring of BLQ samples. The Stan
program below writes the same density in the **same coordinates** bayes_cart samples
(``sampling.parameterisation = "cmax"``, ``centered = [C0, beta, T1, alpha]``): the log typical
values; the (beta, T1) covariance Cholesky factor with PyMC's ``LKJCholeskyCov`` density
(Stan's ``cholesky_factor_cov`` has the same unconstraining transform, log on the diagonal);
the (log beta_i, log T1_i) pairs and log alpha_i centred; rM and deltaM non-centred; the log
peak level ``log Cmax_i ~ Normal(log C0 + beta_i T1_i, omega_C0)``; the IIV SDs and sigma on
the log scale. So the two samplers see one posterior in one parameterisation, and the
comparison measures the samplers (adaptation, trajectory length, cost per gradient), not the
coordinates. Both start from bayes_cart's data-informed point with nutpie's jitter (uniform
+-1 on the unconstrained scale of the population variables, per chain).

Before sampling, the script checks that the Stan log density equals bayes_cart's (PyMC's) up
to a constant, at the start and at random points around it, on the unconstrained scale with
the Jacobians (and on the constrained scale without them); it stops if they differ.

Per sampler: compile s, sampling s, wall s, min bulk ESS over the population quantities,
ESS/s, leapfrog steps per draw, gradients per ESS (all leapfrog steps after warm-up / min
bulk ESS), divergences, max R-hat; the ratios bayes_cart / Stan from the same run; and, per
population quantity, both posterior means with their difference in units of the combined
Monte Carlo standard error (z). Results go to ``bench/results/vs_stan/<dataset>.json``.

    pip install -e ".[bench]"       # pystan: a bench-only dependency bayes_cart never imports
    python bench/bench_vs_stan.py                            # the bundled 218-patient example
    python bench/bench_vs_stan.py --dataset sim30 --draws 300 --tune 300     # development
    python bench/bench_vs_stan.py --dataset sim30 --check-only   # the log-density check only
    python bench/bench_vs_stan.py --cold --no-second-tries   # cold Stan build; one plain run

``--dataset``: ``example`` (default), ``sim<N>`` (N virtual patients simulated from the
example's true population with :mod:`bayes_cart.simulate`), or a CSV path. bayes_cart is
fitted with :func:`bayes_cart.inference.sampling.fit` at its defaults (a divergent run is sampled
again at target_accept 0.95, slow chains get company: reported when it happens); Stan with ``delta =
0.9`` and ``max_depth = 10``, bayes_cart's target_accept and tree depth. pystan compiles the program
with the machine's C++ compiler (about 1-2 minutes; httpstan caches the build, so a second run
reports a compile time near 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).parent / "results" / "vs_stan"

STAN_PROGRAM = r"""
functions {
  // log of (exp(-a tau) - exp(-b tau)) / (b - a) for tau > 0, stable for a == b
  // (bayes_cart.kinetics.closed_form.log_biexp_kernel)
  real log_biexp(real a, real b, real tau) {
    real lo = fmin(a, b);
    real x = abs(b - a) * tau;
    real g = x < 1e-8 ? -0.5 * x : log1m_exp(-x) - log(x);
    return log(tau) - lo * tau + g;
  }
  // Liu et al. closed form without a distribution phase: log(E + M) at time t
  // (bayes_cart.kinetics.closed_form.liu_log_states with k = T0 = 0)
  real liu_log_total(real t, real log_c0, real beta, real t1, real alpha, real rm, real dm,
                     real de) {
    real log_e_pre = log_c0 + beta * fmin(t, t1);
    real tau = fmax(t - t1, 0);
    if (tau <= 0) return log_e_pre;
    real lam = alpha + de + rm;
    return log_sum_exp(log_e_pre - lam * tau, log_e_pre + log(rm) + log_biexp(lam, dm, tau));
  }
  // PyMC's LKJCholeskyCov(n, eta, sd_dist = HalfNormal(s)): the density of the covariance
  // Cholesky factor L (sd_j = norm of row j), without the LKJ normalising constant
  real lkj_chol_cov_lpdf(matrix L, real eta, vector s) {
    int n = rows(L);
    real lp = 0;
    for (j in 1:n) {
      real sd = sqrt(dot_self(L[j, 1:j]));
      real log_cd = log(L[j, j] / sd);
      lp += (2 * eta - 3 + n - (j - 1)) * log_cd;   // LKJ on the correlation
      lp += log_cd - (j - 1) * log(sd);              // Jacobian (sd, corr) -> L
      lp += normal_lpdf(sd | 0, s[j]) + log2();      // HalfNormal on the SD
    }
    return lp;
  }
}
data {
  int<lower=1> N;                       // observations
  int<lower=1> P;                       // patients
  array[N] int<lower=1, upper=P> pid;
  vector[N] time;
  vector[N] y;                          // log DV (log LLOQ where censored)
  int<lower=0> Nq;
  array[Nq] int<lower=1, upper=N> qi;   // quantified
  int<lower=0> Nc;
  array[Nc] int<lower=1, upper=N> ci;   // below the LLOQ (M3)
  int<lower=0> Kb;
  matrix[P, Kb] Xb;                     // covariates on beta (treatment coding)
  int<lower=0> Ka;
  matrix[P, Ka] Xa;                     // covariates on alpha
  real delta_e;
  vector[6] prior_median;               // C0 beta T1 alpha rM deltaM
  vector[6] prior_sigma;
  vector[6] iiv_sigma;
  real lkj_eta;
  real effect_mu;
  real effect_sigma;
  real sigma_sigma;
}
parameters {
  real log_C0;
  real log_beta;
  real log_T1;
  real log_alpha;
  real log_rM;
  real log_deltaM;
  cholesky_factor_cov[2] chol_beta_T1;
  array[P] vector[2] log_beta_T1_i;     // centred (log beta_i, log T1_i)
  real<lower=0> omega_alpha;
  vector[P] log_alpha_i;                // centred
  real<lower=0> omega_rM;
  vector[P] z_rM;                       // non-centred
  real<lower=0> omega_deltaM;
  vector[P] z_deltaM;                   // non-centred
  real<lower=0> omega_C0;
  vector[P] log_Cmax_i;                 // C0's random effect on the log peak level
  vector[Kb] b_beta;
  vector[Ka] b_alpha;
  real<lower=0> sigma;
}
model {
  // the kinetics in the model block (not transformed parameters): nothing per observation is
  // written out with the draws
  vector[N] mu;
  {
    vector[P] beta_i;
    vector[P] t1_i;
    for (i in 1:P) {
      beta_i[i] = exp(log_beta_T1_i[i][1]);
      t1_i[i] = exp(log_beta_T1_i[i][2]);
    }
    vector[P] log_c0_i = log_Cmax_i - beta_i .* t1_i;
    vector[P] alpha_i = exp(log_alpha_i);
    vector[P] rm_i = exp(log_rM + omega_rM * z_rM);
    vector[P] dm_i = exp(log_deltaM + omega_deltaM * z_deltaM);
    for (n in 1:N) {
      int i = pid[n];
      mu[n] = liu_log_total(time[n], log_c0_i[i], beta_i[i], t1_i[i], alpha_i[i], rm_i[i],
                            dm_i[i], delta_e);
    }
  }
  target += normal_lpdf(log_C0 | log(prior_median[1]), prior_sigma[1]);
  target += normal_lpdf(log_beta | log(prior_median[2]), prior_sigma[2]);
  target += normal_lpdf(log_T1 | log(prior_median[3]), prior_sigma[3]);
  target += normal_lpdf(log_alpha | log(prior_median[4]), prior_sigma[4]);
  target += normal_lpdf(log_rM | log(prior_median[5]), prior_sigma[5]);
  target += normal_lpdf(log_deltaM | log(prior_median[6]), prior_sigma[6]);
  target += lkj_chol_cov_lpdf(chol_beta_T1 | lkj_eta, iiv_sigma[2:3]);
  {
    vector[P] mean_beta = log_beta + Xb * b_beta;
    array[P] vector[2] mean_bt;
    for (i in 1:P) mean_bt[i] = [mean_beta[i], log_T1]';
    target += multi_normal_cholesky_lpdf(log_beta_T1_i | mean_bt, chol_beta_T1);
    vector[P] shift;
    for (i in 1:P) shift[i] = exp(log_beta_T1_i[i][1] + log_beta_T1_i[i][2]);
    target += normal_lpdf(log_Cmax_i | log_C0 + shift, omega_C0);
  }
  target += normal_lpdf(omega_C0 | 0, iiv_sigma[1]) + log2();
  target += normal_lpdf(omega_alpha | 0, iiv_sigma[4]) + log2();
  target += normal_lpdf(log_alpha_i | log_alpha + Xa * b_alpha, omega_alpha);
  target += normal_lpdf(omega_rM | 0, iiv_sigma[5]) + log2();
  target += std_normal_lpdf(z_rM);
  target += normal_lpdf(omega_deltaM | 0, iiv_sigma[6]) + log2();
  target += std_normal_lpdf(z_deltaM);
  target += normal_lpdf(b_beta | effect_mu, effect_sigma);
  target += normal_lpdf(b_alpha | effect_mu, effect_sigma);
  target += normal_lpdf(sigma | 0, sigma_sigma) + log2();
  target += normal_lpdf(y[qi] | mu[qi], sigma);
  target += normal_lcdf(y[ci] | mu[ci], sigma);
}
generated quantities {
  real C0 = exp(log_C0);
  real beta = exp(log_beta);
  real T1 = exp(log_T1);
  real alpha = exp(log_alpha);
  real rM = exp(log_rM);
  real deltaM = exp(log_deltaM);
  real omega_beta = chol_beta_T1[1, 1];
  real omega_T1 = sqrt(dot_self(chol_beta_T1[2, 1:2]));
  real corr_beta_T1 = chol_beta_T1[2, 1] / omega_T1;
}
"""

NAMES = ("C0", "beta", "T1", "alpha", "rM", "deltaM")
#: the population quantities: ESS, R-hat and the comparison of means are over these
POPULATION = (*NAMES, *(f"omega_{p}" for p in NAMES), "corr_beta_T1", "sigma")
#: bayes_cart's free variables that are per patient (not jittered at the start)
PER_PATIENT = ("log_beta_T1_i", "log_alpha_i", "z_rM", "z_deltaM", "log_Cmax_i")


# ---------------------------------------------------------------------------------- data


def load_data(name: str, seed: int) -> tuple[Any, str]:
    """Return the dataset ``name`` (``example``, ``sim<N>`` or a CSV path) and a label.

    ``sim<N>``: N patients on the example's heme schedule, simulated from its true
    population (:func:`bayes_cart.example.example_truth`), half responders, LLOQ 10.
    """
    from bayes_cart.data.dataset import load_dataset

    if name == "example":
        from bayes_cart.example import load_example

        return load_example(), "example"
    if name.startswith("sim") and name[3:].isdigit():
        from bayes_cart.example import example_truth
        from bayes_cart.simulate import (
            PopulationParameters,
            make_design,
            simulate_patients,
            write_data_csv,
        )

        n = int(name[3:])
        pop = PopulationParameters.from_dict(example_truth()["population"])
        design = make_design(n, [1, 4, 7, 10, 14, 21, 28, 60, 90, 180, 270, 365], id_prefix="S")
        design["TRIAL"] = "ALL_adult"
        design["TUMOR_TYPE"] = "heme"
        number = design["ID"].str.extract(r"(\d+)$")[0].astype(int)
        design["RESPONSE"] = np.where(number % 2 == 0, "CR/PR", "PD/NR")
        sim = simulate_patients(design, pop, lloq=10.0, random_seed=seed)
        path = RESULTS / "data" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_data_csv(sim.data, path)
        return load_dataset(path), name
    return load_dataset(name), Path(name).stem


def check_spec(spec: Any, md: Any) -> None:
    """Stop unless ``spec`` is the model the Stan program writes (the shipped liu2021)."""
    doc = spec.doc
    s = doc.sampling
    problems = []
    if doc.kinetics != "liu2021" or doc.distribution_phase.enabled_if:
        problems.append("the Liu closed form without a distribution phase")
    if doc.group.mode != "none":
        problems.append("no trial effects")
    if set(doc.covariates.formulas) - {"beta", "alpha"} or s.center_covariates:
        problems.append("covariates on beta and alpha only, not centred")
    if md.marginal is not None:
        problems.append("no marginalised covariates")
    if [list(b) for b in doc.iiv.blocks if len(b) > 1] != [["beta", "T1"]]:
        problems.append("one IIV block (beta, T1)")
    if s.parameterisation != "cmax" or set(s.centered) != {"C0", "beta", "T1", "alpha"}:
        problems.append("cmax coordinates, C0 beta T1 alpha centred")
    if s.centering != "all" or doc.error.model != "proportional":
        problems.append("centering 'all', proportional error")
    if np.any((md.cens != 0) & (md.cens != 1)) or np.isfinite(md.log_limit).any():
        problems.append("left censoring (M3) only")
    if problems:
        raise SystemExit("the Stan program covers: " + "; ".join(problems))


def stan_data(spec: Any, md: Any) -> dict[str, Any]:
    """The Stan data block from bayes_cart's own model data and spec (nothing re-derived)."""
    doc = spec.doc
    pars = doc.parameters
    n = md.n_patients
    xb = md.design.matrices.get("beta")
    xa = md.design.matrices.get("alpha")
    xb = np.zeros((n, 0)) if xb is None else xb.to_numpy(float)
    xa = np.zeros((n, 0)) if xa is None else xa.to_numpy(float)
    cens = md.cens.astype(int)
    prior = doc.covariates.prior
    return {
        "N": int(md.n_obs),
        "P": int(n),
        "pid": (md.patient_index + 1).astype(int).tolist(),
        "time": md.time.astype(float).tolist(),
        "y": md.log_dv.astype(float).tolist(),
        "Nq": int((cens == 0).sum()),
        "qi": (np.flatnonzero(cens == 0) + 1).tolist(),
        "Nc": int((cens == 1).sum()),
        "ci": (np.flatnonzero(cens == 1) + 1).tolist(),
        "Kb": int(xb.shape[1]),
        "Xb": xb.tolist(),
        "Ka": int(xa.shape[1]),
        "Xa": xa.tolist(),
        "delta_e": float(pars["deltaE"].fixed),
        "prior_median": [float(pars[p].typical.median) for p in NAMES],
        "prior_sigma": [float(pars[p].typical.sigma) for p in NAMES],
        "iiv_sigma": [float(pars[p].iiv.sigma) for p in NAMES],
        "lkj_eta": float(doc.iiv.lkj_eta),
        "effect_mu": float(getattr(prior, "mu", 0.0) or 0.0),
        "effect_sigma": float(prior.sigma),
        "sigma_sigma": float(doc.error.sigma.sigma),
    }


# ------------------------------------------------------------------------ points and starts


def constrained(point: dict[str, np.ndarray]) -> dict[str, Any]:
    """A PyMC point on the unconstrained scale -> Stan's constrained values (same names).

    ``<v>_log__`` is exponentiated; the packed Cholesky factor ``[L00, L10, L11]`` (log on the
    diagonal) becomes the 2 x 2 lower-triangular matrix.
    """
    out: dict[str, Any] = {}
    for key, value in point.items():
        value = np.asarray(value, dtype=float)
        if key.endswith("_log__"):
            out[key[: -len("_log__")]] = float(np.exp(value))
        elif key.startswith("chol_beta_T1"):
            l00, l10, l11 = np.exp(value[0]), value[1], np.exp(value[2])
            out["chol_beta_T1"] = [[float(l00), 0.0], [float(l10), float(l11)]]
        elif value.ndim == 0:
            out[key] = float(value)
        else:
            out[key] = value.tolist()
    return out


def starting_points(model: Any, chains: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per-chain starts as nutpie gets them from bayes_cart (unconstrained PyMC points).

    bayes_cart's data-informed initial values with uniform(-1, 1) jitter on the unconstrained
    scale of the population variables only (:func:`bayes_cart.inference.sampling._compile_nutpie`).
    """
    from pymc.initial_point import make_initial_point_fn

    jitter = {rv for rv in model.free_RVs if rv.name not in PER_PATIENT}
    fn = make_initial_point_fn(
        model=model,
        overrides=model.bayes_cart_initvals,
        jitter_rvs=jitter,
        return_transformed=True,
    )
    ss = np.random.SeedSequence([seed, 17]).generate_state(chains)
    return [fn(int(s)) for s in ss]


# ------------------------------------------------------------------- log-density check


def check_log_density(
    model: Any, posterior: Any, n_points: int = 6, seed: int = 3, scale: float = 0.3
) -> dict[str, Any]:
    """Compare Stan's and PyMC's log densities at the start and at random points around it.

    Points: bayes_cart's initial point, then that point with uniform(-scale, scale) added to
    every unconstrained coordinate. At each, PyMC's ``logp`` (unconstrained scale, with the
    Jacobian) against pystan's ``log_prob(..., adjust_transform=True)``, and the same without
    the Jacobians. Two log densities of one model differ by a constant; the spread of the
    differences over the points says whether they do.

    Returns
    -------
    dict
        ``differences`` and ``spread`` (max - min of the differences) per scale, ``points``.
    """
    import pytensor

    from bayes_cart.jax_setup import configure_jax

    configure_jax()
    with pytensor.config.change_flags(mode="JAX"):
        logp_jac = model.compile_logp(jacobian=True)
        logp_raw = model.compile_logp(jacobian=False)
    from pymc.initial_point import make_initial_point_fn

    rng = np.random.default_rng(seed)
    base = make_initial_point_fn(  # the data-informed start, no jitter
        model=model, overrides=model.bayes_cart_initvals, jitter_rvs=set(), return_transformed=True
    )(0)
    points = [base]
    for _ in range(n_points - 1):
        points.append(
            {k: np.asarray(v) + rng.uniform(-scale, scale, np.shape(v)) for k, v in base.items()}
        )
    rows = {"with_jacobian": [], "without_jacobian": []}
    for p in points:
        unc = posterior.unconstrain_pars(constrained(p))
        stan_jac = posterior.log_prob(unc, adjust_transform=True)
        stan_raw = posterior.log_prob(unc, adjust_transform=False)
        rows["with_jacobian"].append(
            {"pymc": float(logp_jac(p)), "stan": float(stan_jac)},
        )
        rows["without_jacobian"].append({"pymc": float(logp_raw(p)), "stan": float(stan_raw)})
    out: dict[str, Any] = {"points": len(points), "perturbation": scale}
    for key, vals in rows.items():
        diff = np.array([r["pymc"] - r["stan"] for r in vals])
        out[key] = {
            "pymc": [r["pymc"] for r in vals],
            "stan": [r["stan"] for r in vals],
            "difference": diff.tolist(),
            "spread": float(diff.max() - diff.min()),
            "relative_spread": float(
                (diff.max() - diff.min()) / max(1.0, np.abs([r["pymc"] for r in vals]).max())
            ),
        }
    return out


# ---------------------------------------------------------------------------------- runs


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and its children (Linux).

    nutpie's chains are threads of this process; pystan's run in httpstan's worker
    processes, children of this one that live on between calls (read from /proc) or have
    been reaped (``os.times``). CPU over wall time is the number of cores a run actually got
    on a shared machine.
    """
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:  # ppid; utime and stime are fields 14 and 15
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_bayes_cart(data: Any, spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Fit with :func:`bayes_cart.inference.sampling.fit` at its defaults (no predictive groups)."""
    from bayes_cart.inference.sampling import fit

    load0 = os.getloadavg()[0]
    mark: list[float] = []  # CPU seconds when the first draw is reported: compile excluded

    def first_report(progress: Any) -> None:
        if not mark:
            mark.append(cpu_seconds())

    t0 = time.perf_counter()
    f = fit(
        data,
        spec,
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        random_seed=args.seed,
        prior_draws=0,
        predictive=False,
        extend=not args.no_second_tries,
        retry=not args.no_second_tries,
        on_progress=first_report,
    )
    d = f.diagnostics
    return {
        "sampling_cpu_s": cpu_seconds() - mark[0],
        "load_1min": [load0, os.getloadavg()[0]],
        "idata": f.idata,
        "compile_s": f.timings["compile_seconds"],
        "sampling_s": f.timings["sampling_seconds"],
        "wall_s": time.perf_counter() - t0,
        "second_tries": {
            "restarted_chains": d.restarted_chains,
            "retried": d.retried,
            "extended_chains": d.extended_chains,
        },
        "gate_passed": bool(d.passed),
        "gradients_per_ess_gate": float(d.gradients_per_ess),
    }


def build_stan(data: dict[str, Any], seed: int, cold: bool = False) -> tuple[Any, float]:
    """Compile (or fetch from httpstan's cache) and instantiate the Stan program.

    ``cold``: delete httpstan's cached build of this program first, so that the compile time
    is the cold one.
    """
    import stan  # bench-only dependency

    if cold:
        from httpstan.cache import delete_model_directory
        from httpstan.models import calculate_model_name

        delete_model_directory(calculate_model_name(STAN_PROGRAM))
    t0 = time.perf_counter()
    posterior = stan.build(STAN_PROGRAM, data=data, random_seed=seed)
    return posterior, time.perf_counter() - t0


def run_stan(
    posterior: Any, starts: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """Sample with pystan from ``starts``; return the InferenceData and the timings."""
    chains, draws = args.chains, args.draws
    load0, c0 = os.getloadavg()[0], cpu_seconds()
    t0 = time.perf_counter()
    samples = posterior.sample(
        num_chains=chains,
        num_warmup=args.tune,
        num_samples=draws,
        delta=0.9,
        max_depth=10,
        init=starts,
    )
    sampling_s = time.perf_counter() - t0
    cpu_s = cpu_seconds() - c0
    load = [load0, os.getloadavg()[0]]
    posterior_vars = {}
    for name in (*POPULATION, "b_beta", "b_alpha"):
        arr = np.asarray(samples[name])  # (..., draws * chains), chains interleaved last
        arr = arr.reshape(*arr.shape[:-1], draws, chains)
        arr = np.moveaxis(arr, (-1, -2), (0, 1))
        if arr.ndim == 3 and arr.shape[-1] == 0:
            continue
        if arr.ndim == 3 and arr.shape[-1] == 1 and name in POPULATION:
            arr = arr[..., 0]
        posterior_vars[name] = arr
    stats = {
        "n_steps": np.asarray(samples["n_leapfrog__"]).reshape(draws, chains).T,
        "diverging": np.asarray(samples["divergent__"]).reshape(draws, chains).T.astype(bool),
        "step_size": np.asarray(samples["stepsize__"]).reshape(draws, chains).T,
    }
    idata = az.from_dict(posterior=posterior_vars, sample_stats=stats)
    return {"idata": idata, "sampling_s": sampling_s, "cpu_s": cpu_s, "load_1min": load}


def figures(idata: Any, names: list[str], compile_s: float, sampling_s: float) -> dict[str, Any]:
    """The table's figures of one run."""
    ess = az.ess(idata, var_names=names)
    rhat = az.rhat(idata, var_names=names)
    worst = min(names, key=lambda v: float(ess[v].min()))
    min_ess = float(ess[worst].min())
    steps = np.asarray(idata.sample_stats["n_steps"])
    return {
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "chains": int(steps.shape[0]),
        "min_ess_bulk": min_ess,
        "min_ess_quantity": worst,
        "ess_per_s": min_ess / sampling_s,
        "steps_per_draw": float(steps.mean()),
        "steps_per_draw_per_chain": steps.mean(axis=1).round(1).tolist(),
        "leapfrog_steps": int(steps.sum()),
        "gradients_per_ess": float(steps.sum()) / min_ess,
        "ms_per_gradient": 1000.0 * sampling_s / float(steps.sum()),
        "divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
        "max_rhat": float(max(float(rhat[v].max()) for v in names)),
    }


def compare_means(a: Any, b: Any, names: list[str]) -> list[dict[str, Any]]:
    """Posterior means of both runs and their difference in combined MCSE units."""
    rows = []
    for v in names:
        xa, xb = np.asarray(a.posterior[v]), np.asarray(b.posterior[v])
        ma = xa.reshape(-1, *xa.shape[2:]).mean(axis=0)
        mb = xb.reshape(-1, *xb.shape[2:]).mean(axis=0)
        sa = np.atleast_1d(np.asarray(az.mcse(a, var_names=[v])[v]))
        sb = np.atleast_1d(np.asarray(az.mcse(b, var_names=[v])[v]))
        for j, (m1, m2, s1, s2) in enumerate(
            zip(np.atleast_1d(ma), np.atleast_1d(mb), sa, sb, strict=True)
        ):
            label = v if np.ndim(ma) == 0 else f"{v}[{j}]"
            z = (m1 - m2) / np.hypot(s1, s2)
            rows.append(
                {
                    "quantity": label,
                    "bayes_cart": float(m1),
                    "stan": float(m2),
                    "mcse_bayes_cart": float(s1),
                    "mcse_stan": float(s2),
                    "z": float(z),
                }
            )
    return rows


def versions() -> dict[str, str]:
    """Versions of what was compared."""
    import subprocess
    from importlib.metadata import version

    import bayes_cart

    out = {"python": platform.python_version()}
    try:  # the commit of the bayes_cart that was imported (a worktree via PYTHONPATH or not)
        out["bayes_cart_commit"] = subprocess.run(
            ["git", "-C", str(Path(bayes_cart.__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["bayes_cart_commit"] = "?"
    for pkg in ("bayes_cart", "pymc", "nutpie", "pystan", "httpstan"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "?"
    return out


def print_table(bc: dict[str, Any], st: dict[str, Any]) -> None:
    """The side-by-side table (markdown)."""
    print(
        "\n| sampler | compile s | sampling s | wall s | min ESS bulk | ESS/s | steps/draw | "
        "grad/ESS | ms/grad | div | max R-hat | cores used | ESS/CPU-s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for label, r in (("bayes_cart (nutpie)", bc), ("Stan (pystan)", st)):
        print(
            f"| {label} | {r['compile_s']:.1f} | {r['sampling_s']:.0f} | {r['wall_s']:.0f} | "
            f"{r['min_ess_bulk']:.0f} ({r['min_ess_quantity']}) | {r['ess_per_s']:.2f} | "
            f"{r['steps_per_draw']:.0f} | {r['gradients_per_ess']:.0f} | "
            f"{r['ms_per_gradient']:.3f} | {r['divergences']} | {r['max_rhat']:.3f} | "
            f"{r['cores_used']:.2f} | {r['ess_per_cpu_s']:.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="example", help="example, sim<N> or a CSV path")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check-only", action="store_true", help="the log-density check only")
    ap.add_argument(
        "--no-second-tries",
        action="store_true",
        help="bayes_cart without its retry at target_accept 0.95 and added chains",
    )
    ap.add_argument(
        "--cold", action="store_true", help="delete httpstan's cached build first (cold compile)"
    )
    ap.add_argument("--json", default="", help="results file (default vs_stan/<dataset>.json)")
    args = ap.parse_args()

    from bayes_cart.model.build import build_model
    from bayes_cart.model.model_data import prepare_model_data
    from bayes_cart.model.spec import load_spec

    data, label = load_data(args.dataset, args.seed)
    spec = load_spec("liu2021")
    md = prepare_model_data(data, spec)
    check_spec(spec, md)
    model = build_model(data, spec, model_data=md)
    print(f"# bayes_cart vs Stan: {platform.machine()}, {os.cpu_count()} cores, {time.ctime()}")
    print(f"# load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# versions: {versions()}")
    print(
        f"# {label}: {md.n_patients} patients, {md.n_obs} observations "
        f"({int((md.cens == 1).sum())} BLQ), spec liu2021, {args.chains} x "
        f"({args.tune} + {args.draws})"
    )

    sdata = stan_data(spec, md)
    posterior, compile_s = build_stan(sdata, args.seed, cold=args.cold)
    print(
        f"# Stan program built in {compile_s:.1f} s "
        f"({'cold' if args.cold else 'httpstan caches the compiled program'})"
    )
    check = check_log_density(model, posterior)
    jac, raw = check["with_jacobian"], check["without_jacobian"]
    ok = jac["relative_spread"] < 1e-8 and raw["relative_spread"] < 1e-8
    eps = check["perturbation"]
    verdict = "EQUAL up to a constant" if ok else "DIFFERENT"
    print(
        f"# log density check at {check['points']} points (the start, then U(-{eps}, {eps}) "
        "added to every unconstrained coordinate): PyMC - Stan = "
        f"{np.mean(jac['difference']):.6f}, spread {jac['spread']:.2e} with the Jacobians; "
        f"{np.mean(raw['difference']):.6f}, spread {raw['spread']:.2e} without (log densities "
        f"{min(jac['pymc']):.1f} to {max(jac['pymc']):.1f}): {verdict}"
    )
    out_path = Path(args.json) if args.json else RESULTS / f"{label}.json"
    result: dict[str, Any] = {
        "dataset": label,
        "patients": int(md.n_patients),
        "observations": int(md.n_obs),
        "blq": int((md.cens == 1).sum()),
        "settings": {
            "chains": args.chains,
            "tune": args.tune,
            "draws": args.draws,
            "seed": args.seed,
            "bayes_cart_second_tries": not args.no_second_tries,
            "stan_compile": "cold" if args.cold else "cached if built before",
        },
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_at_start": list(os.getloadavg()),
        },
        "versions": versions(),
        "date": time.ctime(),
        "log_density_check": {**check, "equal_up_to_constant": bool(ok)},
    }
    if not ok:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.with_name(out_path.stem + "_check.json").write_text(json.dumps(result, indent=1))
        raise SystemExit("the Stan and bayes_cart log densities differ: not sampling")
    if args.check_only:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        path = out_path.with_name(out_path.stem + "_check.json")
        path.write_text(json.dumps(result, indent=1))
        print(f"# wrote {path}")
        return

    bc_run = run_bayes_cart(data, spec, args)
    print(f"# bayes_cart done: second tries {bc_run['second_tries']}", flush=True)
    starts = [constrained(p) for p in starting_points(model, args.chains, args.seed)]
    st_run = run_stan(posterior, starts, args)
    st_run["compile_s"] = compile_s

    names = list(POPULATION) + [v for v in ("b_beta", "b_alpha") if v in st_run["idata"].posterior]
    bc = figures(bc_run["idata"], names, bc_run["compile_s"], bc_run["sampling_s"])
    st = figures(st_run["idata"], names, st_run["compile_s"], st_run["sampling_s"])
    bc["wall_s"] = bc_run["wall_s"]
    st["wall_s"] = compile_s + st_run["sampling_s"]
    # CPU seconds of the sampling: Stan's around posterior.sample, bayes_cart's from its first
    # progress report (after the compile) to the end of the fit
    bc["sampling_cpu_s"] = bc_run["sampling_cpu_s"]
    st["sampling_cpu_s"] = st_run["cpu_s"]
    for r, run in ((bc, bc_run), (st, st_run)):
        r["load_1min_start_end"] = run["load_1min"]
        r["cores_used"] = r["sampling_cpu_s"] / r["sampling_s"]
        r["ess_per_cpu_s"] = r["min_ess_bulk"] / r["sampling_cpu_s"]
    bc["second_tries"] = bc_run["second_tries"]
    bc["gate_passed"] = bc_run["gate_passed"]
    print_table(bc, st)
    ratios = {
        "ess_per_s": bc["ess_per_s"] / st["ess_per_s"],
        "gradients_per_ess": bc["gradients_per_ess"] / st["gradients_per_ess"],
        "ms_per_gradient": bc["ms_per_gradient"] / st["ms_per_gradient"],
        "wall": bc["wall_s"] / st["wall_s"],
        "ess_per_cpu_s": bc["ess_per_cpu_s"] / st["ess_per_cpu_s"],
        "ess_per_wall_s": (bc["min_ess_bulk"] / bc["wall_s"]) / (st["min_ess_bulk"] / st["wall_s"]),
    }
    print(
        f"\nratios bayes_cart / Stan: ESS/s {ratios['ess_per_s']:.2f} (goal >= 5), gradients "
        f"per ESS {ratios['gradients_per_ess']:.2f}, ms per gradient "
        f"{ratios['ms_per_gradient']:.2f}, wall {ratios['wall']:.2f}, ESS per wall second "
        f"(compile included) {ratios['ess_per_wall_s']:.2f}, ESS per CPU second "
        f"{ratios['ess_per_cpu_s']:.2f} (cores used: bayes_cart {bc['cores_used']:.2f}, Stan "
        f"{st['cores_used']:.2f}; 1-min load at start/end {bc['load_1min_start_end']} / "
        f"{st['load_1min_start_end']})"
    )
    rows = compare_means(bc_run["idata"], st_run["idata"], names)
    worst = max(abs(r["z"]) for r in rows)
    print(
        f"posterior means: max |difference| / combined MCSE = {worst:.2f} over {len(rows)} "
        "population quantities"
    )
    for r in rows:
        print(f"  {r['quantity']:22s} {r['bayes_cart']:12.5g} {r['stan']:12.5g}  z={r['z']:+.2f}")
    result.update(
        {
            "bayes_cart": bc,
            "stan": st,
            "ratios": ratios,
            "max_abs_z": worst,
            "means": rows,
            "load_at_end": list(os.getloadavg()),
        }
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    print(f"# wrote {out_path}")


if __name__ == "__main__":
    main()
