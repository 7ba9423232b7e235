"""bayes_cart (nutpie) and Stan (pystan) side by side on the same model and the same data.

The model is the shipped ``liu2021`` spec as a user fits it to a robustness-panel dataset (no
distribution phase; covariates on beta and alpha as the panel's user writes them): log-normal
IIV on C0, beta, T1, alpha, rM, deltaM with an LKJ-correlated (beta, T1) block, deltaE fixed,
the spec's priors, proportional log-normal error, M3 censoring of BLQ samples. The Stan
program below writes the same closed form (Liu et al. equations 1-6), the same priors and the
same likelihood, in Stan's usual non-centred form; bayes_cart samples in its own default
coordinates (``cmax``, centred C0, beta, T1, alpha). Both run 4 chains x (1000 tune + 1000
draws) in the same script on the same machine.

Printed per sampler: compile s, sampling s, min bulk ESS over the population quantities, ESS/s,
leapfrog steps per draw, gradients per ESS, divergences, max R-hat; the ratio bayes_cart /
Stan; and, per population quantity, the two posterior means with their difference in units
of the combined Monte Carlo standard error (the same posterior within Monte Carlo error
reads |z| < 4 everywhere).

    pip install -e ".[bench]"          # pystan, a bench-only dependency bayes_cart never imports
    python bench/bench_vs_stan.py                         # sub60_3trials
    python bench/bench_vs_stan.py --dataset meta7_209 --json bench/results/vs_stan_meta7.json

pystan compiles the Stan program with the machine's C++ compiler (about a minute the first
time; httpstan caches the build).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_robustness import PANEL, _user_spec  # noqa: E402

from bayes_cart.dataset import load_dataset  # noqa: E402
from bayes_cart.model_data import prepare_model_data  # noqa: E402
from bayes_cart.sampling import fit  # noqa: E402
from bayes_cart.simulate import write_data_csv  # noqa: E402

warnings.filterwarnings("ignore")

STAN_PROGRAM = r"""
functions {
  real log_add(real a, real b) {
    if (a == negative_infinity()) return b;
    if (b == negative_infinity()) return a;
    return fmax(a, b) + log1p(exp(-abs(a - b)));
  }
  // log of (exp(-a tau) - exp(-b tau)) / (b - a), stable for a == b
  real log_biexp(real a, real b, real tau) {
    real lo = fmin(a, b);
    real x = abs(b - a) * tau;
    real g = x < 1e-8 ? -0.5 * x : log(-expm1(-x)) - log(x);
    return log(tau) - lo * tau + g;
  }
  // Liu et al. closed form without a distribution phase: log(E + M) at time t
  real liu_log_total(real t, real log_c0, real beta, real t1, real alpha, real rm, real dm,
                     real de) {
    real s = fmin(t, t1);
    real log_e_pre = log_c0 + beta * s;
    real lam = alpha + de + rm;
    real tau = fmax(t - t1, 0);
    real log_e = log_e_pre - lam * tau;
    if (tau <= 0) return log_e;
    return log_add(log_e, log_e_pre + log(rm) + log_biexp(lam, dm, tau));
  }
}
data {
  int<lower=1> N;                       // observations
  int<lower=1> P;                       // patients
  array[N] int<lower=1, upper=P> pid;
  vector[N] time;
  vector[N] y;                          // log DV (log LLOQ where censored)
  array[N] int<lower=0, upper=1> cens;  // 1: below the LLOQ (M3)
  int<lower=0> Kb;
  matrix[P, Kb] Xb;                     // covariates on beta
  int<lower=0> Ka;
  matrix[P, Ka] Xa;                     // covariates on alpha
  real delta_e;
  vector[6] prior_median;               // C0 beta T1 alpha rM deltaM
  vector[6] prior_sigma;
  vector[6] iiv_sigma;
  real lkj_eta;
  real effect_sigma;
  real sigma_sigma;
}
parameters {
  vector[6] log_typ;
  vector<lower=0>[4] omega;             // C0 alpha rM deltaM
  vector<lower=0>[2] omega_bt;          // beta T1
  cholesky_factor_corr[2] L_bt;
  matrix[P, 4] z;
  matrix[2, P] z_bt;
  vector[Kb] b_beta;
  vector[Ka] b_alpha;
  real<lower=0> sigma;
}
transformed parameters {
  vector[P] log_c0 = log_typ[1] + omega[1] * z[, 1];
  matrix[P, 2] eta_bt = (diag_pre_multiply(omega_bt, L_bt) * z_bt)';
  vector[P] log_beta = log_typ[2] + Xb * b_beta + eta_bt[, 1];
  vector[P] log_t1 = log_typ[3] + eta_bt[, 2];
  vector[P] log_alpha = log_typ[4] + Xa * b_alpha + omega[2] * z[, 2];
  vector[P] log_rm = log_typ[5] + omega[3] * z[, 3];
  vector[P] log_dm = log_typ[6] + omega[4] * z[, 4];
}
model {
  log_typ ~ normal(log(prior_median), prior_sigma);
  omega[1] ~ normal(0, iiv_sigma[1]);
  omega[2] ~ normal(0, iiv_sigma[4]);
  omega[3] ~ normal(0, iiv_sigma[5]);
  omega[4] ~ normal(0, iiv_sigma[6]);
  omega_bt[1] ~ normal(0, iiv_sigma[2]);
  omega_bt[2] ~ normal(0, iiv_sigma[3]);
  L_bt ~ lkj_corr_cholesky(lkj_eta);
  to_vector(z) ~ std_normal();
  to_vector(z_bt) ~ std_normal();
  b_beta ~ normal(0, effect_sigma);
  b_alpha ~ normal(0, effect_sigma);
  sigma ~ normal(0, sigma_sigma);
  for (n in 1:N) {
    int i = pid[n];
    real mu = liu_log_total(time[n], log_c0[i], exp(log_beta[i]), exp(log_t1[i]),
                            exp(log_alpha[i]), exp(log_rm[i]), exp(log_dm[i]), delta_e);
    if (cens[n] == 1)
      target += normal_lcdf(y[n] | mu, sigma);
    else
      target += normal_lpdf(y[n] | mu, sigma);
  }
}
generated quantities {
  real C0 = exp(log_typ[1]);
  real beta = exp(log_typ[2]);
  real T1 = exp(log_typ[3]);
  real alpha = exp(log_typ[4]);
  real rM = exp(log_typ[5]);
  real deltaM = exp(log_typ[6]);
  real omega_C0 = omega[1];
  real omega_beta = omega_bt[1];
  real omega_T1 = omega_bt[2];
  real omega_alpha = omega[2];
  real omega_rM = omega[3];
  real omega_deltaM = omega[4];
  real corr_beta_T1 = L_bt[2, 1];
}
"""

NAMES = ("C0", "beta", "T1", "alpha", "rM", "deltaM")


def stan_data(spec, md) -> dict[str, Any]:
    """The Stan data block from bayes_cart's own model data and spec (nothing re-derived)."""
    doc = spec.doc
    if doc.distribution_phase.enabled_if or doc.group.mode != "none":
        raise SystemExit("the Stan program covers liu2021 without distribution phase or groups")
    if set(doc.covariates.formulas) - {"beta", "alpha"}:
        raise SystemExit("the Stan program has covariates on beta and alpha only")
    if np.any((md.cens != 0) & (md.cens != 1)):
        raise SystemExit("the Stan program has left censoring (M3) only")
    pars = doc.parameters
    xb = md.design.matrices.get("beta")
    xa = md.design.matrices.get("alpha")
    n = md.n_patients
    xb = np.zeros((n, 0)) if xb is None else xb.to_numpy(float)
    xa = np.zeros((n, 0)) if xa is None else xa.to_numpy(float)
    return {
        "N": int(md.n_obs),
        "P": int(n),
        "pid": (md.patient_index + 1).astype(int).tolist(),
        "time": md.time.astype(float).tolist(),
        "y": md.log_dv.astype(float).tolist(),
        "cens": md.cens.astype(int).tolist(),
        "Kb": int(xb.shape[1]),
        "Xb": xb.tolist(),
        "Ka": int(xa.shape[1]),
        "Xa": xa.tolist(),
        "delta_e": float(pars["deltaE"].fixed),
        "prior_median": [float(pars[p].typical.median) for p in NAMES],
        "prior_sigma": [float(pars[p].typical.sigma) for p in NAMES],
        "iiv_sigma": [float(pars[p].iiv.sigma) for p in NAMES],
        "lkj_eta": float(doc.iiv.lkj_eta),
        "effect_sigma": float(doc.covariates.prior.sigma),
        "sigma_sigma": float(doc.error.sigma.sigma),
    }


def stan_inits(data: dict[str, Any], chains: int, seed: int) -> list[dict[str, Any]]:
    """Starting values as a careful Stan user writes them: typical values at the prior
    medians (jittered by up to +-0.2 on the log scale per chain), IIV SDs 0.5, etas 0.

    Stan's default (uniform(-2, 2) on the unconstrained scale) left the chains stuck in the
    first run of this script: R-hat 3.17, min ESS 4, 639 steps per draw (docs/benchmarks.md).
    """
    rng = np.random.default_rng(seed)
    p = data["P"]
    out = []
    for _ in range(chains):
        out.append(
            {
                "log_typ": (np.log(data["prior_median"]) + rng.uniform(-0.2, 0.2, 6)).tolist(),
                "omega": [0.5] * 4,
                "omega_bt": [0.3, 0.3],
                "L_bt": np.eye(2).tolist(),
                "z": np.zeros((p, 4)).tolist(),
                "z_bt": np.zeros((2, p)).tolist(),
                "b_beta": [0.0] * data["Kb"],
                "b_alpha": [0.0] * data["Ka"],
                "sigma": 0.5,
            }
        )
    return out


def run_stan(data: dict[str, Any], chains: int, tune: int, draws: int, seed: int) -> dict:
    """Compile and sample with pystan; returns the InferenceData and timings."""
    import stan  # bench-only dependency

    t0 = time.perf_counter()
    posterior = stan.build(STAN_PROGRAM, data=data, random_seed=seed)
    t1 = time.perf_counter()
    samples = posterior.sample(
        num_chains=chains,
        num_warmup=tune,
        num_samples=draws,
        delta=0.9,
        max_depth=10,
        init=stan_inits(data, chains, seed),
    )
    t2 = time.perf_counter()
    keep = [*NAMES, *(f"omega_{p}" for p in NAMES), "corr_beta_T1", "sigma", "b_beta", "b_alpha"]
    posterior_vars = {}
    for name in keep:
        arr = np.asarray(samples[name])  # (..., draws * chains), chains interleaved last
        arr = arr.reshape(*arr.shape[:-1], draws, chains)
        arr = np.moveaxis(arr, (-1, -2), (0, 1))
        if arr.ndim == 3 and arr.shape[-1] == 0:
            continue
        posterior_vars[name] = arr
    stats = {
        "n_steps": np.asarray(samples["n_leapfrog__"]).reshape(draws, chains).T,
        "diverging": np.asarray(samples["divergent__"]).reshape(draws, chains).T.astype(bool),
    }
    idata = az.from_dict(posterior=posterior_vars, sample_stats=stats)
    return {"idata": idata, "compile_s": t1 - t0, "sampling_s": t2 - t1}


def _figures(idata, names: list[str], compile_s: float, sampling_s: float) -> dict[str, Any]:
    ess = az.ess(idata, var_names=names)
    rhat = az.rhat(idata, var_names=names)
    min_ess = float(min(float(ess[v].min()) for v in names))
    steps = np.asarray(idata.sample_stats["n_steps"])
    return {
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "min_ess_bulk": min_ess,
        "ess_per_s": min_ess / sampling_s,
        "steps_per_draw": float(steps.mean()),
        "gradients_per_ess": float(steps.sum()) / min_ess,
        "divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
        "max_rhat": float(max(float(rhat[v].max()) for v in names)),
    }


def _compare(a, b, names: list[str]) -> list[dict[str, Any]]:
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
            rows.append({"quantity": label, "bayes_cart": m1, "stan": m2, "z": float(z)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="sub60_3trials")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="", help="write the figures to this file")
    args = ap.parse_args()
    ds = {d.name: d for d in PANEL}[args.dataset]
    csv = Path("bench/results/robustness/data") / f"{ds.name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    write_data_csv(ds.simulate().data, csv)
    data = load_dataset(csv)
    spec = _user_spec("liu2021", data, ds.population)
    md = prepare_model_data(data, spec)
    print(f"# bayes_cart vs Stan, {platform.processor() or platform.machine()}, {time.ctime()}")
    print(f"# {ds.name}: {md.n_patients} patients, {md.n_obs} observations, spec liu2021")

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
    )
    wall_bc = time.perf_counter() - t0
    stan_run = run_stan(stan_data(spec, md), args.chains, args.tune, args.draws, args.seed)

    names = [*NAMES, *(f"omega_{p}" for p in NAMES), "corr_beta_T1", "sigma"]
    names += [v for v in ("b_beta", "b_alpha") if v in stan_run["idata"].posterior]
    bc = _figures(f.idata, names, f.timings["compile_seconds"], f.timings["sampling_seconds"])
    st = _figures(stan_run["idata"], names, stan_run["compile_s"], stan_run["sampling_s"])
    bc["wall_s"] = wall_bc
    st["wall_s"] = stan_run["compile_s"] + stan_run["sampling_s"]
    print(
        "\n| sampler | compile s | sampling s | min ESS | ESS/s | steps/draw | grad/ESS | "
        "div | max R-hat |\n|---|---|---|---|---|---|---|---|---|"
    )
    for label, r in (("bayes_cart (nutpie)", bc), ("Stan (pystan)", st)):
        print(
            f"| {label} | {r['compile_s']:.0f} | {r['sampling_s']:.0f} | "
            f"{r['min_ess_bulk']:.0f} | {r['ess_per_s']:.1f} | {r['steps_per_draw']:.0f} | "
            f"{r['gradients_per_ess']:.0f} | {r['divergences']} | {r['max_rhat']:.3f} |"
        )
    ratio = bc["ess_per_s"] / st["ess_per_s"]
    print(
        f"\nESS/s ratio bayes_cart / Stan: {ratio:.2f}; gradients per ESS ratio "
        f"{bc['gradients_per_ess'] / st['gradients_per_ess']:.2f}"
    )
    rows = _compare(f.idata, stan_run["idata"], names)
    worst = max(abs(r["z"]) for r in rows)
    print(f"posterior means: max |difference| / combined MCSE = {worst:.2f} over {len(rows)}")
    for r in rows:
        print(f"  {r['quantity']:22s} {r['bayes_cart']:12.5g} {r['stan']:12.5g}  z={r['z']:+.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "dataset": ds.name,
                    "bayes_cart": bc,
                    "stan": st,
                    "ess_per_s_ratio": ratio,
                    "means": rows,
                    "date": time.ctime(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
