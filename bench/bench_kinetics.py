"""Accuracy and speed of the kinetic solvers.

Prints
1. max relative errors of the closed form vs SciPy (DOP853, rtol 1e-12) and of the matrix-
   exponential route (``solver="linear"``) and diffrax vs the closed form on a parameter grid
   spanning the paper's ranges;
2. max relative errors of gradients of log(E+M) (jax closed form, pytensor closed form,
   linear, diffrax) vs central finite differences;
3. timing of one log-density (+ gradient) over a population (default 218 patients x ~12
   observations): closed form numpy (value only), pytensor (compiled value+grad), jax jit
   (value+grad) and diffrax batched (value+grad), with ratios.

Run:  .venv/bin/python bench/bench_kinetics.py [--patients 218] [--obs 12] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.engines.diffrax_ode import make_batched_log_total
from bayes_cart.kinetics.engines.linear import make_linear_log_total
from bayes_cart.kinetics.reference import paper_range_grid, scipy_liu_states
from bayes_cart.units import DAYS_PER_MONTH

LIU = get_kinetics("liu2021")
NAMES = ("C0", "k", "T0", "beta", "T1", "alpha", "rM", "deltaM", "deltaE")


def grid() -> list[dict[str, float]]:
    """The paper-range grid with three levels of alpha, rM and deltaM (114 sets)."""
    return paper_range_grid(
        alpha=(0.5, 3.0, 10.0), r_m=(0.001, 0.03, 1.0), delta_m=(0.001, 0.03, 1.0)
    )


scipy_states = scipy_liu_states


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a), np.asarray(b)
    ok = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return np.inf
    return float(np.abs(np.expm1(a[ok] - b[ok])).max()) if ok.any() else 0.0


def accuracy() -> None:
    cases = grid()
    t = np.linspace(0.0, 365.0, 60)
    err = {
        "scipy total": 0.0,
        "scipy E": 0.0,
        "scipy M": 0.0,
        "linear total": 0.0,
        "linear E": 0.0,
        "linear M": 0.0,
        "diffrax total": 0.0,
        "diffrax E": 0.0,
        "diffrax M": 0.0,
    }
    for p in cases:
        tt = np.unique(np.r_[t, p["T1"] + 1e-3, p["T0"] + 0.3])[:62]
        cf = LIU.solve(tt, p)
        e, m = scipy_states(tt, p)
        after = tt > p["T1"]
        err["scipy total"] = max(err["scipy total"], rel(cf["log_total"], np.log(e + m)))
        err["scipy E"] = max(err["scipy E"], rel(cf["log_E"], np.log(e)))
        err["scipy M"] = max(err["scipy M"], rel(cf["log_M"][after], np.log(m[after])))
        for route, solver in (("linear", "linear"), ("diffrax", "ode")):
            out = {key: np.asarray(val) for key, val in LIU.solve(tt, p, solver=solver).items()}
            err[f"{route} total"] = max(
                err[f"{route} total"], rel(out["log_total"], cf["log_total"])
            )
            err[f"{route} E"] = max(err[f"{route} E"], rel(out["log_E"], cf["log_E"]))
            err[f"{route} M"] = max(err[f"{route} M"], rel(out["log_M"][after], cf["log_M"][after]))
    print(f"accuracy on {len(cases)} parameter sets x {t.size}+ times (0-365 d), max rel. error")
    for key, val in err.items():
        print(f"  {key:15s} {val:.2e}")


def gradients() -> None:
    cases = grid()[::5]
    sym = {name: pt.scalar(name) for name in NAMES}
    tv = pt.vector("t")
    out = LIU.solve(tv, sym, xp=pt)["log_total"]
    grads = pytensor.grad(out.sum(), [sym[n] for n in NAMES])
    pt_grad = pytensor.function([tv, *sym.values()], pt.stack(grads))

    def jax_obj(x, t):
        return LIU.solve(t, dict(zip(NAMES, x, strict=True)), xp=jnp)["log_total"].sum()

    jax_grad = jax.jit(jax.grad(jax_obj))
    batched = make_batched_log_total(LIU)
    linear = make_linear_log_total(LIU)
    worst = {"jax closed form": 0.0, "pytensor closed form": 0.0, "linear": 0.0, "diffrax": 0.0}
    for p in cases:
        t = np.array([p["T0"] + 0.4, p["T1"] - 0.3, p["T1"] + 0.5, p["T1"] + 7, 90.0, 300.0])
        x = np.array([p[n] for n in NAMES])

        def f(xx, t=t):
            return float(LIU.solve(t, dict(zip(NAMES, xx, strict=True)))["log_total"].sum())

        fd = np.zeros(len(NAMES))
        for j in range(len(NAMES)):
            h = 1e-6 * max(abs(x[j]), 1e-2)
            up, down = x.copy(), x.copy()
            up[j] += h
            down[j] -= h
            fd[j] = (f(up) - f(down)) / (2 * h)
        scale = np.abs(fd).max()
        params = {n: np.array([p[n]]) for n in NAMES}
        g_ode = jax.grad(lambda q, t=t: batched(t, np.zeros(t.size, int), q).sum())(params)
        g_lin = jax.grad(lambda q, t=t: linear(t, np.zeros(t.size, int), q).sum())(params)
        got = {
            "jax closed form": np.asarray(jax_grad(jnp.asarray(x), t)),
            "pytensor closed form": pt_grad(t, *x),
            "linear": np.array([float(g_lin[n][0]) for n in NAMES]),
            "diffrax": np.array([float(g_ode[n][0]) for n in NAMES]),
        }
        for key, g in got.items():
            e = np.abs(g - fd) / np.maximum(np.abs(fd), 1e-3 * scale)
            worst[key] = max(worst[key], float(e.max()))
    print(
        f"gradient of sum log(E+M) vs central FD on {len(cases)} sets (incl. T0, T1), "
        "max rel. error"
    )
    for key, val in worst.items():
        print(f"  {key:22s} {val:.2e}")


def population(n_patients: int, n_obs: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    counts = rng.integers(max(n_obs - 4, 1), n_obs + 5, n_patients)
    pid = np.repeat(np.arange(n_patients), counts)
    t = np.concatenate([np.sort(rng.uniform(0.0, 365.0, c)) for c in counts])
    p = dict(
        C0=10 ** rng.uniform(0, 3, n_patients),
        beta=rng.uniform(3, 30, n_patients) / DAYS_PER_MONTH,
        T1=rng.uniform(5, 30, n_patients),
        alpha=rng.uniform(0.5, 10, n_patients) / DAYS_PER_MONTH,
        rM=10 ** rng.uniform(-3, 0, n_patients) / DAYS_PER_MONTH,
        deltaM=10 ** rng.uniform(-3, 0, n_patients) / DAYS_PER_MONTH,
    )
    y = LIU.solve(t, {k: v[pid] for k, v in p.items()})["log_total"] + rng.normal(0, 0.5, t.size)
    return t, pid, p, y


def timeit(fn, repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return first, (time.perf_counter() - start) / repeats


def timing(n_patients: int, n_obs: int, repeats: int) -> None:
    t, pid, p, y = population(n_patients, n_obs)
    sigma = 0.5
    print(f"\nlog-density (+ gradient) over {n_patients} patients, {t.size} observations")

    def numpy_logp():
        lt = LIU.solve(t, {k: v[pid] for k, v in p.items()})["log_total"]
        return -0.5 * np.sum((y - lt) ** 2) / sigma**2

    sym = {k: pt.vector(k) for k in p}
    lt = LIU.solve(t, {k: v[pid] for k, v in sym.items()}, xp=pt)["log_total"]
    logp = -0.5 * pt.sum((y - lt) ** 2) / sigma**2
    start = time.perf_counter()
    pt_fn = pytensor.function(list(sym.values()), [logp, *pytensor.grad(logp, list(sym.values()))])
    pt_compile = time.perf_counter() - start

    def jax_logp(q):
        lt = LIU.solve(t, {k: v[pid] for k, v in q.items()}, xp=jnp)["log_total"]
        return -0.5 * jnp.sum((y - lt) ** 2) / sigma**2

    jax_vg = jax.jit(jax.value_and_grad(jax_logp))
    batched = make_batched_log_total(LIU)
    ode_vg = jax.jit(
        jax.value_and_grad(lambda q: -0.5 * jnp.sum((y - batched(t, pid, q)) ** 2) / sigma**2)
    )
    pj = {k: jnp.asarray(v) for k, v in p.items()}

    rows = []
    _, per = timeit(numpy_logp, repeats * 10)
    rows.append(("closed form numpy (value only)", 0.0, per))
    _, per = timeit(lambda: pt_fn(*p.values()), repeats * 10)
    rows.append(("closed form pytensor C (value+grad)", pt_compile, per))
    first, per = timeit(lambda: jax_vg(pj), repeats * 10)
    rows.append(("closed form jax jit (value+grad)", first, per))
    jax_per = per
    first, per = timeit(lambda: ode_vg(pj), repeats)
    rows.append(("diffrax batched (value+grad)", first, per))
    print(f"  {'route':38s} {'compile s':>10s} {'per call ms':>12s} {'vs jax cf':>10s}")
    for name, comp, per in rows:
        print(f"  {name:38s} {comp:10.2f} {per * 1e3:12.3f} {per / jax_per:10.1f}")
    v1, g1 = jax_vg(pj)
    v2, g2 = ode_vg(pj)
    gerr = max(
        float(
            jnp.max(
                jnp.abs(g1[k] - g2[k]) / jnp.maximum(jnp.abs(g1[k]), 1e-3 * jnp.abs(g1[k]).max())
            )
        )
        for k in g1
    )
    print(
        f"  diffrax vs closed form: |dlogp| = {abs(float(v1 - v2)):.2e}, "
        f"max rel. grad diff = {gerr:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=218)
    parser.add_argument("--obs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; pytensor {pytensor.__version__}")
    if not args.skip_accuracy:
        accuracy()
        gradients()
    timing(args.patients, args.obs, args.repeats)


if __name__ == "__main__":
    main()
