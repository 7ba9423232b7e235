"""The JAX solver routes against the closed form: cost per gradient, accuracy, full fits.

Routes: the closed form; ``linear`` (matrix exponentials of the ODE phases,
:mod:`bayes_cart.kinetics.engines.linear`); ``ode`` (adaptive diffrax,
:mod:`bayes_cart.kinetics.engines.diffrax_ode`).

Prints markdown tables:

1. one log-density + gradient over the bundled example (218 patients, 2240 observations),
   jitted JAX, for (a) the kinetic log-likelihood alone (true individual parameters) and (b)
   the whole hierarchical model ``liu2021_meta`` (what nutpie-jax evaluates); closed form,
   linear, ODE with the sampling settings
   (:data:`bayes_cart.kinetics.engines.pytensor_op.MCMC_OPTIONS`) and, for (a), the ODE with
   the accuracy settings of :class:`~bayes_cart.kinetics.phases.PhasedODE` (rtol 1e-8,
   stepping to every observation, every phase in two stages);
2. the largest |log(E+M)| difference route - closed form at the true parameters and at random
   perturbations of them (compare with the residual SD, ~0.5 on the log scale);
3. a full fit of ``--fit-patients`` patients with each of ``--fit-solvers`` (``fit(...,
   sampler="nutpie-jax", solver=...)``): wall times, diagnostics, and the posterior means of
   every population quantity against the closed-form fit, within 4 x the combined Monte Carlo
   standard error.

Timings are the median of interleaved repeats. Run on a shared machine they carry the load of
other processes (printed at the start): compare ratios rather than absolute times.

Run:  .venv/bin/python bench/bench_ode.py [--fit-patients 50] [--chains 4] [--tune 1000]
      [--draws 1000] [--fit-solvers closed_form,linear,ode] [--repeats 30] [--skip-fit]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from dataclasses import replace

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from bayes_cart.example import example_truth, load_example
from bayes_cart.inference.diagnostics import population_variables
from bayes_cart.inference.sampling import fit
from bayes_cart.kinetics import LIU_PHASES, get_kinetics
from bayes_cart.kinetics.engines.diffrax_ode import make_batched_log_total
from bayes_cart.kinetics.engines.linear import make_linear_log_total
from bayes_cart.kinetics.engines.pytensor_op import MCMC_OPTIONS
from bayes_cart.model.build import build_model
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec

warnings.filterwarnings("ignore")
LIU = get_kinetics("liu2021")
SIGMA = 0.5

ACCURACY_OPTIONS = {
    "phases": tuple(replace(p, two_stage=True) for p in LIU_PHASES),
    "rtol": 1e-8,
    "atol": 1e-14,
    "step_to_obs": True,
    "max_steps": 4096,
}


def _interleaved(functions: dict, args: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved to share the load."""
    times: dict[str, list[float]] = {k: [] for k in functions}
    for _ in range(repeats):
        for key, fn in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(args[key]))
            times[key].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def _compile(fn, arg) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(arg))
    return time.perf_counter() - start


def kinetic_likelihood(repeats: int) -> tuple[list[tuple], dict]:
    """Per-call cost of the kinetic log-likelihood (value + gradient) and ODE accuracy."""
    ds = load_example()
    md = prepare_model_data(ds, load_spec("liu2021_meta"))
    truth = example_truth()["individual"].set_index("ID").loc[list(md.patient_ids)]
    params = {n: jnp.asarray(truth[n].to_numpy(float)) for n in LIU.parameters}
    t, pid, y = md.time, md.patient_index, md.log_dv

    def closed_form(q):
        return LIU.solve(t, {k: v[pid] for k, v in q.items()}, xp=jnp)["log_total"]

    routes = {
        "closed form": closed_form,
        "linear (matrix exponential)": lambda q, f=make_linear_log_total(LIU): f(t, pid, q),
        "ODE, sampling settings": lambda q, f=make_batched_log_total(LIU, **MCMC_OPTIONS): f(
            t, pid, q
        ),
        "ODE, accuracy settings": lambda q, f=make_batched_log_total(LIU, **ACCURACY_OPTIONS): f(
            t, pid, q
        ),
    }
    vg = {
        k: jax.jit(jax.value_and_grad(lambda q, f=f: -0.5 * jnp.sum(((y - f(q)) / SIGMA) ** 2)))
        for k, f in routes.items()
    }
    compile_s = {k: _compile(f, params) for k, f in vg.items()}
    per_call = _interleaved(vg, dict.fromkeys(vg, params), repeats)
    # accuracy: truth and 10 perturbed parameter sets (each parameter x lognormal(0, 0.5))
    rng = np.random.default_rng(1)
    sets = [params] + [
        {
            k: v * (np.exp(rng.normal(0, 0.5, v.shape)) if k not in ("deltaE",) else 1.0)
            for k, v in params.items()
        }
        for _ in range(10)
    ]
    values = {k: jax.jit(f) for k, f in routes.items()}
    err = {k: 0.0 for k in routes}
    err_truth = {k: 0.0 for k in routes}
    for j, q in enumerate(sets):
        ref = np.asarray(values["closed form"](q))
        for k, f in values.items():
            d = float(np.max(np.abs(np.asarray(f(q)) - ref)))
            err[k] = max(err[k], d)
            if j == 0:
                err_truth[k] = d
    cf = per_call["closed form"]
    rows = [
        (k, compile_s[k], per_call[k] * 1e3, per_call[k] / cf, err_truth[k], err[k]) for k in routes
    ]
    info = {"patients": md.n_patients, "observations": t.size}
    return rows, info


def model_density(repeats: int) -> list[tuple]:
    """Per-call cost of the whole model's log density + gradient (liu2021_meta, JAX)."""
    from pymc.initial_point import make_initial_point_fn
    from pymc.sampling.jax import get_jaxified_logp

    ds = load_example()
    spec = load_spec("liu2021_meta")
    models = {
        "closed form": build_model(ds, spec),
        "linear (matrix exponential)": build_model(ds, spec, solver="linear"),
        "ODE, sampling settings": build_model(ds, spec, solver="ode"),
    }
    fns, points = {}, {}
    for key, model in models.items():
        logp = get_jaxified_logp(model)
        fns[key] = jax.jit(jax.value_and_grad(lambda xs, lp=logp: lp(xs)))
        ip_fn = make_initial_point_fn(
            model=model, overrides=getattr(model, "bayes_cart_initvals", None) or None
        )
        point = ip_fn(0)
        points[key] = [jnp.asarray(point[v.name]) for v in model.value_vars]
    compile_s = {k: _compile(f, points[k]) for k, f in fns.items()}
    per_call = _interleaved(fns, points, repeats)
    values = {k: float(f(points[k])[0]) for k, f in fns.items()}
    cf = per_call["closed form"]
    return [
        (
            k,
            compile_s[k],
            per_call[k] * 1e3,
            per_call[k] / cf,
            abs(values[k] - values["closed form"]),
        )
        for k in fns
    ]


def compare_fits(
    n_patients: int, chains: int, tune: int, draws: int, seed: int, solvers: list[str]
) -> None:
    ds = load_example()
    rng = np.random.default_rng(seed)
    ids = sorted(rng.choice(np.asarray(ds.patient_ids), n_patients, replace=False).tolist())
    sub = ds.subset(ids)
    spec = load_spec("liu2021_meta")
    fits, wall = {}, {}
    for solver in solvers:
        start = time.perf_counter()
        fits[solver] = fit(
            sub,
            spec,
            sampler="nutpie-jax",
            solver=solver,
            chains=chains,
            tune=tune,
            draws=draws,
            random_seed=seed,
        )
        wall[solver] = time.perf_counter() - start
    print(
        f"\n### Full fit: {n_patients} patients ({sub.n_observations} observations), "
        f"liu2021_meta, nutpie-jax, {chains} chains x ({tune} tune + {draws} draws)\n"
    )
    print(
        "| solver | wall s | compile s | sampling s | predictive s | divergences | max R-hat "
        "| min ESS bulk | leapfrog steps / draw |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for solver, f in fits.items():
        d, tm = f.diagnostics, f.timings
        steps = float(f.idata.sample_stats["n_steps"].mean())
        print(
            f"| {solver} | {wall[solver]:.0f} | {tm['compile_seconds']:.0f} | "
            f"{tm['sampling_seconds']:.0f} | {tm['predictive_seconds']:.0f} | {d.divergences} "
            f"| {d.max_rhat:.3f} | {d.min_ess_bulk:.0f} | {steps:.0f} |"
        )
    per_step = {
        s: f.timings["sampling_seconds"] / float(f.idata.sample_stats["n_steps"].sum()) * 1e3
        for s, f in fits.items()
    }
    print(
        "\nsampling time per leapfrog step and chain (ms): "
        + ", ".join(
            f"{s} {ms:.2f} ({ms / per_step[solvers[0]]:.1f}x)" for s, ms in per_step.items()
        )
    )
    names = population_variables(fits[solvers[0]].idata)
    sums = {
        s: az.summary(f.idata, var_names=names, kind="all", round_to="none")
        for s, f in fits.items()
    }
    a = sums[solvers[0]]
    for other in solvers[1:]:
        b = sums[other]
        combined = np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
        diff = (b["mean"] - a["mean"]).abs()
        ok = diff < 4 * combined
        print(f"\n### Posterior means of the population quantities, {solvers[0]} vs {other}\n")
        print(
            f"| quantity | mean {solvers[0]} | mean {other} | abs diff | 4 x combined MCSE "
            "| agree |"
        )
        print("|---|---:|---:|---:|---:|:---:|")
        for name in a.index:
            print(
                f"| {name} | {a.loc[name, 'mean']:.4g} | {b.loc[name, 'mean']:.4g} | "
                f"{diff[name]:.3g} | {4 * combined[name]:.3g} | {'yes' if ok[name] else 'NO'} |"
            )
        print(
            f"\n{int(ok.sum())} of {len(ok)} population quantities agree within 4 x combined "
            "MCSE (expected: all, or about 1 in 16000 by chance per quantity)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fit-patients", type=int, default=50)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fit-solvers", default="closed_form,linear,ode")
    parser.add_argument("--skip-fit", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"jax {jax.__version__} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at start (shared machine)\n"
    )
    rows, info = kinetic_likelihood(args.repeats)
    print(
        f"### Kinetic log-likelihood + gradient, {info['patients']} patients, "
        f"{info['observations']} observations (jitted JAX)\n"
    )
    print(
        "| route | compile s | ms per call | x closed form | max abs err log(E+M), truth "
        "| same, 11 parameter sets |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, comp, ms, ratio, e_truth, e_all in rows:
        print(f"| {name} | {comp:.1f} | {ms:.2f} | {ratio:.1f} | {e_truth:.1e} | {e_all:.1e} |")
    print("\n### Whole-model log density + gradient (liu2021_meta, 218 patients, jitted JAX)\n")
    print("| route | compile s | ms per call | x closed form | abs diff logp at start |")
    print("|---|---:|---:|---:|---:|")
    for name, comp, ms, ratio, dlogp in model_density(args.repeats):
        print(f"| {name} | {comp:.1f} | {ms:.2f} | {ratio:.1f} | {dlogp:.1e} |")
    if not args.skip_fit:
        compare_fits(
            args.fit_patients,
            args.chains,
            args.tune,
            args.draws,
            args.seed,
            args.fit_solvers.split(","),
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
