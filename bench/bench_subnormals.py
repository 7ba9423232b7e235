"""Cost per leapfrog step with and without flushing subnormal numbers to zero.

``sample_posterior`` runs nutpie's chains with the FTZ/DAZ bits of the SSE control register
set (:mod:`bayes_cart.inference.floating_point`). This script measures what that buys: for each case
(a shipped spec on a dataset), one compiled Numba model is sampled with one chain
(``--tune`` + ``--draws``, warm-up included, since that is where subnormals occur) with the
flag off and on, alternating which goes first, for several seeds. Per run: wall milliseconds
per leapfrog step; per pair: the ratio off / on, whether both runs took the same number of
steps and the largest difference of their per-draw log densities (the same trajectory up to
the flushed digits). Medians over seeds.

    python bench/bench_subnormals.py                       # default cases, seeds 1-3
    python bench/bench_subnormals.py --cases liu2021_meta:example --seeds 1 2 3 4 5
    python bench/bench_subnormals.py --table
    python bench/bench_subnormals.py --micro               # the mechanism alone

``--micro`` times the mechanism on its own: a Numba loop of ``log1p(exp(x))`` (the core of
``log_add_exp``) over 200,000 values in [-10, -5] (normal results) and in [-740, -709]
(subnormal results), flushed and not, best of 7.

Timing on a shared 2-vCPU virtual machine: when other processes keep both CPUs busy, single
calls of the log density were measured at a constant ~28 ms instead of 0.26 ms for seconds at
a time, whatever the point or the flag. Run this script on an otherwise idle machine.

Results: one JSON per (case, seed) under ``--out`` (resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = (
    "liu2021_meta:example",
    "liu2021:example",
    "liu2021:sparse80_2trials",
    "stein2019:stein200",
)

warnings.filterwarnings("ignore")


def _dataset(name: str, tmp: Path) -> Path:
    from bayes_cart.example import example_data_path
    from bayes_cart.simulate import write_data_csv

    if name == "example":
        return example_data_path()
    sys.path.insert(0, str(HERE))
    from bench_robustness import PANEL  # noqa: PLC0415  (the robustness panel's designs)

    case = next(c for c in PANEL if c.name == name)
    path = tmp / f"{name}.csv"
    write_data_csv(case.simulate().data, path)
    return path


def _run(compiled: Any, seed: int, flush: bool, tune: int, draws: int) -> dict[str, Any]:
    import nutpie

    from bayes_cart.inference.floating_point import flush_subnormals

    with flush_subnormals(flush):
        t0 = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            chains=1,
            tune=tune,
            draws=draws,
            seed=seed,
            cores=1,
            progress_bar=False,
            save_warmup=True,
        )
        seconds = time.perf_counter() - t0
    steps = int(idata.warmup_sample_stats["n_steps"].sum() + idata.sample_stats["n_steps"].sum())
    logp = np.concatenate(
        [
            np.asarray(idata.warmup_sample_stats["logp"]).ravel(),
            np.asarray(idata.sample_stats["logp"]).ravel(),
        ]
    )
    return {"seconds": seconds, "steps": steps, "ms_per_step": 1e3 * seconds / steps, "logp": logp}


def measure(case: str, seed: int, tune: int, draws: int, tmp: Path) -> dict[str, Any]:
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.inference.sampling import _compile_nutpie
    from bayes_cart.model.build import build_model
    from bayes_cart.model.model_data import prepare_model_data
    from bayes_cart.model.spec import load_spec

    spec_name, data_name = case.split(":")
    dataset = load_dataset(_dataset(data_name, tmp))
    spec = load_spec(spec_name)
    md = prepare_model_data(dataset, spec)
    compiled = _compile_nutpie(build_model(dataset, spec, model_data=md), "nutpie")
    order = (False, True) if seed % 2 else (True, False)
    runs = {flush: _run(compiled, seed, flush, tune, draws) for flush in order}
    off, on = runs[False], runs[True]
    same_length = off["logp"].shape == on["logp"].shape
    return {
        "case": case,
        "seed": seed,
        "n_patients": md.n_patients,
        "tune": tune,
        "draws": draws,
        "ms_per_step_off": off["ms_per_step"],
        "ms_per_step_on": on["ms_per_step"],
        "ratio_off_over_on": off["ms_per_step"] / on["ms_per_step"],
        "steps_off": off["steps"],
        "steps_on": on["steps"],
        "max_abs_logp_diff": (
            float(np.max(np.abs(off["logp"] - on["logp"]))) if same_length else float("nan")
        ),
        "machine": f"{platform.node()} {os.cpu_count()} cpu",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def micro(n: int = 200_000) -> list[str]:
    """Milliseconds of a ``log1p(exp(x))`` loop, normal vs subnormal results, flag off / on."""
    import numba

    from bayes_cart.inference.floating_point import flush_subnormals

    @numba.njit
    def chain(x: np.ndarray) -> float:
        total = 0.0
        for v in x:
            total += np.log1p(np.exp(v)) * 1.0000001
        return total

    def best(x: np.ndarray) -> float:
        chain(x)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            chain(x)
            times.append(time.perf_counter() - t0)
        return 1e3 * min(times)

    rng = np.random.default_rng(0)
    lines = ["| x range | results | ms unflushed | ms flushed | ratio |", "|---|---|---|---|---|"]
    for label, lo, hi in (("normal", -10.0, -5.0), ("subnormal", -740.0, -709.0)):
        x = rng.uniform(lo, hi, n)
        off = best(x)
        with flush_subnormals():
            on = best(x)
        lines.append(f"| [{lo:g}, {hi:g}] | {label} | {off:.2f} | {on:.2f} | {off / on:.1f} |")
    return lines


def table(out: Path) -> str:
    rows = [
        "| case | seed | ms/step unflushed | ms/step flushed | ratio | same steps | "
        "max abs logp diff |",
        "|---|---|---|---|---|---|---|",
    ]
    by_case: dict[str, list[float]] = {}
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        by_case.setdefault(r["case"], []).append(r["ratio_off_over_on"])
        rows.append(
            f"| {r['case']} | {r['seed']} | {r['ms_per_step_off']:.3f} | "
            f"{r['ms_per_step_on']:.3f} | {r['ratio_off_over_on']:.2f} | "
            f"{r['steps_off'] == r['steps_on']} | {r['max_abs_logp_diff']:.2g} |"
        )
    rows.append("")
    rows.append("| case | runs | median ratio | min | max |")
    rows.append("|---|---|---|---|---|")
    for case, ratios in by_case.items():
        rows.append(
            f"| {case} | {len(ratios)} | {np.median(ratios):.2f} | {min(ratios):.2f} | "
            f"{max(ratios):.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), help="SPEC:DATASET pairs.")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--tune", type=int, default=200)
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--out", type=Path, default=HERE / "results" / "subnormals")
    p.add_argument("--table", action="store_true")
    p.add_argument("--micro", action="store_true", help="Time the mechanism alone.")
    args = p.parse_args()
    if args.micro:
        print("\n".join(micro()))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(args.out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            for seed in args.seeds:
                path = args.out / f"{case.replace(':', '__')}_seed{seed}.json"
                if path.exists():
                    continue
                result = measure(case, seed, args.tune, args.draws, Path(tmp))
                path.write_text(json.dumps(result, indent=1))
                print(table(args.out), flush=True)


if __name__ == "__main__":
    main()
