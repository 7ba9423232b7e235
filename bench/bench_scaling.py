"""Scaling with the number of patients: cost per gradient, steps per draw, fit-file size.

For each size the bundled example's design (its 7 trials, schedules, LLOQs and population
values, trial sizes scaled in proportion) is simulated with another seed and fitted with the
bundled example's spec (``liu2021_meta``), as ``bayes-cart run-example`` does:

* **cost per gradient**: nutpie's own benchmark of one log-density + gradient evaluation of
  the compiled model (median of repeated evaluations, one thread), and its ratio to the
  smallest size per patient (linear scaling reads 1.0);
* **steps per draw**: a short fit (``--chains`` x (``--tune`` + ``--draws``), default
  2 x (400 + 200)) reports the mean leapfrog steps per draw after warm-up;
* **fit file**: the size of ``save_fit`` of that fit, and that size extrapolated to the
  default 4 x 1000 draws (every group of the file grows linearly in draws).

One JSON per size under ``--out`` (resumable: sizes already done are skipped).

    python bench/bench_scaling.py                            # 50, 218, 1000 patients
    python bench/bench_scaling.py --sizes 10000 --tune 200 --draws 100 --first-run-only
    python bench/bench_scaling.py --table
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bayes_cart.data.dataset import load_dataset
from bayes_cart.example import EXAMPLE_POPULATION, EXAMPLE_TRIALS, generate_meta_analysis
from bayes_cart.inference.io import save_fit
from bayes_cart.inference.sampling import _compile_nutpie, fit
from bayes_cart.model.build import build_model
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.simulate import write_data_csv

warnings.filterwarnings("ignore")


def _trials(n: int):
    base = np.array([t.n for t in EXAMPLE_TRIALS], dtype=float)
    sizes = np.maximum(3, np.round(base / base.sum() * n)).astype(int)
    sizes[0] += n - sizes.sum()
    return tuple(replace(t, n=int(k)) for t, k in zip(EXAMPLE_TRIALS, sizes, strict=True))


def gradient_cost(model, evals: int, points: int = 5) -> float:
    """Seconds of one log density + gradient of the nutpie-compiled model (1 thread).

    Calls the Numba function nutpie's sampler calls (``logp_func.vm.jit_fn``); the PyTensor
    ``Function`` wrapper around it adds call overhead (measured about 45 ms against 0.28 ms on
    the bundled example) that the sampler never pays. Timed at ``points`` jittered starting
    points (median of ``evals`` calls each) and the smallest median kept: some jittered
    starts put the closed form into subnormal numbers, which cost 100x and are not where the
    sampler spends its time.
    """
    compiled = _compile_nutpie(model, "nutpie")
    fn = compiled.logp_func.vm.jit_fn
    shared = [s.get_value() for s in compiled.logp_func.get_shared()]
    medians = []
    for seed in range(1, points + 1):
        point = np.asarray(compiled.initial_point_func(seed), dtype=float)
        fn(point, *shared)  # first call: Numba dispatch
        times = []
        for _ in range(evals):
            t0 = time.perf_counter()
            fn(point, *shared)
            times.append(time.perf_counter() - t0)
        medians.append(float(np.median(times)))
    return min(medians)


def run_size(n: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Simulate, benchmark and fit one size."""
    sim = generate_meta_analysis(_trials(n), EXAMPLE_POPULATION, random_seed=1000 + n)
    csv = out / "data" / f"scaling_{n}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    write_data_csv(sim.data, csv)
    data = load_dataset(csv)
    spec = load_spec("liu2021_meta")
    md = prepare_model_data(data, spec)
    model = build_model(data, spec, model_data=md)
    evals = int(max(20, min(2000, 200_000 // max(md.n_obs, 1))))
    t0 = time.perf_counter()
    per_grad = gradient_cost(model, evals)
    bench_s = time.perf_counter() - t0
    # printed at once: at 10,000 patients the short fit that follows takes most of an hour
    print(
        f"{md.n_patients} patients, {md.n_obs} observations: {1e3 * per_grad:.3f} ms per "
        f"gradient ({bench_s:.0f} s to compile and time it)",
        flush=True,
    )
    f = fit(
        data,
        spec,
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        random_seed=1,
        prior_draws=0,
        predictive=True,
        retry=not args.first_run_only,
        extend=not args.first_run_only,
    )
    steps = np.asarray(f.idata.sample_stats["n_steps"])
    with tempfile.TemporaryDirectory() as tmp:
        path = save_fit(f, Path(tmp) / "fit.nc")
        size = path.stat().st_size
    drawn = args.chains * args.draws
    return {
        "patients": int(md.n_patients),
        "observations": int(md.n_obs),
        "seconds_per_gradient": per_grad,
        "gradient_evals": evals,
        "benchmark_and_compile_s": bench_s,
        "compile_s": f.timings.get("compile_seconds"),
        "sampling_s": f.timings.get("sampling_seconds"),
        "chains": args.chains,
        "tune": args.tune,
        "draws": args.draws,
        "steps_per_draw": float(steps.mean()),
        "steps_per_draw_by_chain": [round(float(x), 1) for x in steps.mean(axis=1)],
        "divergences": int(f.diagnostics.divergences),
        "second_tries": not args.first_run_only,
        "retried": f.diagnostics.retried,
        "extended_chains": f.diagnostics.extended_chains,
        "passed": bool(f.diagnostics.passed),
        "fit_file_bytes": int(size),
        "fit_file_bytes_4000_draws": int(size * 4000 / drawn),
        "date": time.ctime(),
        "machine": platform.processor() or platform.machine(),
    }


def _table(out: Path) -> str:
    rows = sorted(
        (json.loads(p.read_text()) for p in out.glob("scaling_*.json")),
        key=lambda r: r["patients"],
    )
    if not rows:
        return "(no results)"
    base = rows[0]["seconds_per_gradient"] / rows[0]["observations"]
    lines = [
        "| patients | observations | ms per gradient | x per observation vs smallest | "
        "steps/draw | divergences | fit run | fit file MB | MB at 4 x 1000 draws |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["seconds_per_gradient"] / r["observations"] / base
        lines.append(
            f"| {r['patients']} | {r['observations']} | {1e3 * r['seconds_per_gradient']:.3f} | "
            f"{ratio:.2f} | {r['steps_per_draw']:.0f} | {r['divergences']} | "
            f"{r['chains']} x ({r['tune']} + {r['draws']}) | {r['fit_file_bytes'] / 1e6:.1f} | "
            f"{r['fit_file_bytes_4000_draws'] / 1e6:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,218,1000")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--out", default="bench/results/scaling")
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument(
        "--first-run-only",
        action="store_true",
        help="no automatic second tries (retry, longer or more chains): the first run's steps",
    )
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for n in (int(s) for s in args.sizes.split(",") if s):
            path = out / f"scaling_{n}.json"
            if path.exists() and not args.rerun:
                print(f"{path.name}: done, skipped")
                continue
            r = run_size(n, args, out)
            path.write_text(json.dumps(r, indent=1))
            print(
                f"{n} patients: {1e3 * r['seconds_per_gradient']:.3f} ms/gradient, "
                f"{r['steps_per_draw']:.0f} steps/draw, file {r['fit_file_bytes'] / 1e6:.1f} MB",
                flush=True,
            )
    print(_table(out))


if __name__ == "__main__":
    main()
