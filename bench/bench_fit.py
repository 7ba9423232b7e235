"""Benchmark the hierarchical fit on the bundled example: backends and parameterisations.

Prints one markdown row per variant: compile s, sampling s, max R-hat and min bulk/tail ESS
over the population quantities, divergences, mean leapfrog steps per draw and ESS/s.

    python bench/bench_fit.py --variants meta,noncentred --chains 4 --tune 1000 --draws 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import arviz as az

from bayes_cart.example import load_example
from bayes_cart.inference.diagnostics import gradients_per_ess, population_variables
from bayes_cart.inference.sampling import sample_posterior
from bayes_cart.model.build import build_model
from bayes_cart.model.spec import load_spec, spec_from_dict

warnings.filterwarnings("ignore")


def _variant(sampling: dict | None = None, no_iiv=(), no_group=False):
    raw = json.loads(load_spec("liu2021_meta").text)
    raw["sampling"] = {**raw["sampling"], **(sampling or {})}
    for p in no_iiv:
        raw["parameters"][p]["iiv"] = None
    if no_group:
        raw["group"]["mode"] = "none"
    return spec_from_dict(raw)


VARIANTS = {
    # name: (spec, sampler, low_rank, target_accept[, max_treedepth])
    "noncentred": (
        lambda: _variant({"parameterisation": "c0", "centered": []}),
        "nutpie-jax",
        False,
        0.9,
    ),
    "centred": (
        lambda: _variant({"parameterisation": "c0"}),
        "nutpie-jax",
        False,
        0.9,
    ),
    # the default spec (liu2021_meta) with the default sampler (nutpie, Numba)
    "meta": (lambda: _variant(), "nutpie", False, 0.9),
    "meta-centred-covariates": (
        lambda: _variant({"center_covariates": True}),
        "nutpie",
        False,
        0.9,
    ),
    "meta-group-centred": (lambda: _variant({"centered_group": True}), "nutpie", False, 0.9),
    # session 8: each trial's mean sampled, centred on its trial-level covariate prediction
    "meta-group-mean": (lambda: _variant({"centered_group": "mean"}), "nutpie", False, 0.9),
    "meta-group-mean-cc": (
        lambda: _variant({"centered_group": "mean", "center_covariates": True}),
        "nutpie",
        False,
        0.9,
    ),
    "meta-ta08": (lambda: _variant(), "nutpie", False, 0.8),
    "meta-ta095": (lambda: _variant(), "nutpie", False, 0.95),
    "meta-lowrank": (lambda: _variant(), "nutpie", True, 0.9),
    "meta-depth6": (lambda: _variant(), "nutpie", False, 0.9, 6),
    "meta-depth5": (lambda: _variant(), "nutpie", False, 0.9, 5),
    "meta-jax": (lambda: _variant(), "nutpie-jax", False, 0.9),
    "meta-pymc": (lambda: _variant(), "pymc", False, 0.9),
    "meta-numpyro": (lambda: _variant(), "numpyro", False, 0.9),
    "meta-nogroup": (lambda: _variant(no_group=True), "nutpie", False, 0.9),
    # session 4: Stein's fold coordinates per patient (log beta T1, log T1), exact
    "meta-fold": (lambda: _variant({"parameterisation": "fold"}), "nutpie", False, 0.9),
    "meta-alpha-centred": (
        lambda: _variant({"centered": ["C0", "beta", "T1", "alpha"]}),
        "nutpie",
        False,
        0.9,
    ),
    "meta-fold-alpha-centred": (
        lambda: _variant({"parameterisation": "fold", "centered": ["C0", "beta", "T1", "alpha"]}),
        "nutpie",
        False,
        0.9,
    ),
    "meta-fold-centred-covariates": (
        lambda: _variant({"parameterisation": "fold", "center_covariates": True}),
        "nutpie",
        False,
        0.9,
    ),
}


def run(name: str, chains: int, tune: int, draws: int, seed: int) -> dict:
    make_spec, sampler, low_rank, target_accept, *depth = VARIANTS[name]
    ds = load_example()
    model = build_model(ds, make_spec())
    idata, tm = sample_posterior(
        model,
        sampler=sampler,
        chains=chains,
        tune=tune,
        draws=draws,
        random_seed=seed,
        low_rank=low_rank,
        max_treedepth=depth[0] if depth else 10,
        target_accept=target_accept,
    )
    names = [n for n in population_variables(idata) if not n.startswith("u_")]
    s = az.summary(idata, var_names=names, kind="diagnostics")
    stats = idata.sample_stats
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    if "tree_depth" in stats and steps != steps:
        steps = float((2 ** stats["tree_depth"]).mean())
    total = (tm["compile_seconds"] if tm["compile_seconds"] == tm["compile_seconds"] else 0.0) + tm[
        "sampling_seconds"
    ]
    return {
        "variant": name,
        "sampler": f"{sampler} ({target_accept})",
        "compile_s": tm["compile_seconds"],
        "sampling_s": tm["sampling_seconds"],
        "total_s": total,
        "max_rhat": float(s["r_hat"].max()),
        "min_ess_bulk": float(s["ess_bulk"].min()),
        "min_ess_tail": float(s["ess_tail"].min()),
        "worst": str(s["ess_bulk"].idxmin()),
        "divergences": int(stats["diverging"].sum()),
        "steps_per_draw": steps,
        "ess_per_s": float(s["ess_bulk"].min()) / tm["sampling_seconds"],
        "gradients_per_ess": gradients_per_ess(idata, float(s["ess_bulk"].min())),
        "restarts": len(tm.get("restarted_chains", [])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", default="meta")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(
        f"# bench_fit on {platform.node()} ({platform.machine()}, {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d %H:%M')}; example 218 patients; "
        f"{args.chains} chains x {args.tune}+{args.draws}"
    )
    cols = [
        "variant",
        "sampler",
        "compile_s",
        "sampling_s",
        "total_s",
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "worst",
        "divergences",
        "steps_per_draw",
        "ess_per_s",
        "gradients_per_ess",
        "restarts",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for name in args.variants.split(","):
        r = run(name, args.chains, args.tune, args.draws, args.seed)
        cells = [f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
