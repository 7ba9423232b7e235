"""Benchmark approximate inference (ADVI, Pathfinder, Laplace) against NUTS, in one script.

For each dataset, fits the same spec with every method (``bayes_cart.fit(..., method=...)``,
the predictive groups left out) and prints one markdown table: wall time of the fit, the
method's own check, and per population quantity the posterior mean and SD against NUTS's
(the mean's shift in NUTS SDs, and the ratio of SDs: below 1 the approximation's intervals are
narrower than NUTS's). Results also go to ``bench/results/approximate/<dataset>_<method>.json``
(the table reads them all, so methods may be run in separate calls).

Datasets: ``example`` (the bundled example, 218 patients, ``liu2021`` with the README's
covariates ``beta ~ RESPONSE + TUMOR_TYPE``, ``alpha ~ RESPONSE``) and ``sim40`` (40 patients
simulated from known values, 10 samples each, LLOQ 5, ``liu2021`` with ``beta ~ RESPONSE``).

    python bench/bench_approximate.py --datasets sim40,example --methods nuts,advi,laplace
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

OUT = Path(__file__).parent / "results" / "approximate"
README_COVARIATES = {"beta": "RESPONSE + TUMOR_TYPE", "alpha": "RESPONSE"}
README_REFERENCE = {"RESPONSE": "PD/NR", "TUMOR_TYPE": "heme"}


def _sim40():
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.model.spec import load_spec
    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    rng = np.random.default_rng(40)
    n = 40
    cov = pd.DataFrame({"RESPONSE": rng.choice(["CR/PR", "PD/NR"], size=n).astype(object)})
    pop = PopulationParameters(
        typical={"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01},
        omega={"beta": 0.2, "T1": 0.15, "C0": 0.5, "alpha": 0.3, "rM": 0.3, "deltaM": 0.3},
        effects={"beta": {"RESPONSE": {"CR/PR": 0.3}}},
        sigma=0.25,
    )
    times = (1, 4, 7, 10, 14, 21, 28, 60, 90, 180)
    sim = simulate_patients(make_design(n, times, covariates=cov), pop, lloq=5.0, random_seed=rng)
    spec = load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE"}, reference={"RESPONSE": "PD/NR"}
    )
    return load_dataset(sim.data), spec


def _example():
    from bayes_cart.example import load_example
    from bayes_cart.model.spec import load_spec

    spec = load_spec("liu2021").with_overrides(
        covariates=README_COVARIATES, reference=README_REFERENCE
    )
    return load_example(), spec


DATASETS = {"sim40": _sim40, "example": _example}
ALL_METHODS = ("nuts", "advi", "pathfinder", "laplace")


def _fit(data, spec, method: str, seed: int, draws: int):
    from bayes_cart.analysis.summary import population_summary
    from bayes_cart.inference.sampling import fit

    t0 = time.perf_counter()
    result = fit(
        data, spec, method=method, random_seed=seed, draws=draws, prior_draws=0, predictive=False
    )
    seconds = time.perf_counter() - t0
    table = population_summary(result.idata).set_index("parameter")
    d = result.diagnostics
    check = (
        f"R-hat {d.max_rhat:.3f}, ESS {d.min_ess_bulk:.0f}, div {d.divergences}"
        if method == "nuts"
        else ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in d.approximation.items()
            if k in ("iterations", "converged", "pareto_k", "success", "hessian_positive_definite")
        )
    )
    return {
        "seconds": seconds,
        "passed": bool(d.passed),
        "check": check,
        "mean": table["mean"].to_dict(),
        "sd": table["sd"].to_dict(),
        "timings": {k: v for k, v in result.timings.items() if isinstance(v, float)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="sim40,example")
    parser.add_argument("--methods", default="nuts,advi,pathfinder,laplace")
    parser.add_argument("--draws", type=int, default=1000, help="per chain (4 chains)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    methods = args.methods.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    print(
        f"# {platform.node()} {platform.processor()} cores {os.cpu_count()}, "
        f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    for name in args.datasets.split(","):
        data, spec = DATASETS[name]()
        for method in methods:
            print(f"## {name}: {method} ...", flush=True)
            try:
                result = _fit(data, spec, method, args.seed, args.draws)
            except Exception as exc:  # a method that fails is reported, the others still run
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["load_after"] = os.getloadavg()[0]
            (OUT / f"{name}_{method}.json").write_text(json.dumps(result, indent=2, default=float))
        # the table reads every method's file, so methods may be run in separate calls
        results = {
            m: json.loads((OUT / f"{name}_{m}.json").read_text())
            for m in ALL_METHODS
            if (OUT / f"{name}_{m}.json").exists()
        }
        _print_table(name, results, list(results))


def _print_table(name: str, results: dict, methods: list[str]) -> None:
    print(f"\n### {name}\n")
    print("| method | wall s | own check | passed |")
    print("|---|---:|---|---|")
    for m in methods:
        r = results[m]
        if "error" in r:
            print(f"| {m} | - | {r['error'][:80]} | - |")
            continue
        print(f"| {m} | {r['seconds']:.0f} | {r['check']} | {r['passed']} |")
    ref = results.get("nuts")
    if not ref or "error" in ref:
        return
    others = [m for m in methods if m != "nuts" and "error" not in results[m]]
    print(
        "\n| quantity | NUTS mean (SD) | "
        + " | ".join(f"{m}: mean shift / NUTS SD, SD ratio" for m in others)
        + " |"
    )
    print("|---|---:|" + "---:|" * len(others))
    ratios = {m: [] for m in others}
    for q, mean in ref["mean"].items():
        sd = ref["sd"][q]
        cells = []
        for m in others:
            if q not in results[m]["mean"] or not sd > 0:
                cells.append("-")
                continue
            shift = (results[m]["mean"][q] - mean) / sd
            ratio = results[m]["sd"][q] / sd
            ratios[m].append(ratio)
            cells.append(f"{shift:+.2f}, {ratio:.2f}")
        print(f"| {q} | {mean:.4g} ({sd:.2g}) | " + " | ".join(cells) + " |")
    print(
        "| **median SD ratio** | | "
        + " | ".join(f"**{np.median(ratios[m]):.2f}**" for m in others)
        + " |"
    )


if __name__ == "__main__":
    main()
