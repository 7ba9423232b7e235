"""What the compiled-model cache costs and saves: logp+gradient speed and the swap time.

On replicates of ``studies/tiny_two_stage.toml`` (16 patients, BLQ samples, a covariate on
beta) with the ``bayes_m3`` method's model:

* **logp + gradient per evaluation**: the ordinary model (data as constants) and the swappable
  one (``build_model(..., swap=layout)``: data as ``pm.Data``, observations padded), each
  compiled by nutpie (Numba); the compiled PyTensor function (``compiled.logp_func``) timed on
  the same points, median of ``--repeats`` blocks of ``--evals`` calls;
* **compile** of each (nutpie, from the built model), and **prepare** on a cache hit (swap of
  another replicate's data, its start, the start check's function): what a hit costs instead.

    python bench/bench_model_cache.py --evals 2000 --repeats 7

Prints one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _time_logp(compiled, points: list[np.ndarray], evals: int, repeats: int) -> float:
    fn = compiled.logp_func
    for x in points:  # warm
        fn(x)
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(evals):
            fn(points[i % len(points)])
        blocks.append((time.perf_counter() - t0) / evals)
    return float(np.median(blocks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evals", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/model_cache.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import bayes_cart as bc
    from bayes_cart.inference.model_cache import ModelCache
    from bayes_cart.inference.sampling import compile_nutpie
    from bayes_cart.model.build import build_model
    from bayes_cart.model.model_data import prepare_model_data
    from bayes_cart.model.swap import SwapLayout, kind_counts
    from bayes_cart.study.datasets import simulate_replicate
    from bayes_cart.study.spec import load_study

    study = load_study(ROOT / "studies/tiny_two_stage.toml")
    spec = bc.load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE"}, reference={"RESPONSE": "PD/NR"}
    )
    a = bc.load_dataset(simulate_replicate(study, "effect", 0).data)
    b = bc.load_dataset(simulate_replicate(study, "null", 0).data)
    md = prepare_model_data(a, spec)
    layout = SwapLayout.for_counts(kind_counts(md))
    out: dict[str, object] = {"n_obs": md.n_obs, "padded_obs": layout.n_obs}

    models = {
        "ordinary": build_model(a, spec, model_data=md),
        "swappable": build_model(a, spec, model_data=md, swap=layout),
    }
    compiled = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        compiled[name] = compile_nutpie(model, "nutpie")
        out[f"compile_seconds_{name}"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    x0 = compiled["ordinary"].initial_point_func(0)
    points = [x0 + rng.normal(0, 0.1, x0.shape) for _ in range(16)]
    for name in models:
        out[f"logp_grad_us_{name}"] = 1e6 * _time_logp(
            compiled[name], points, args.evals, args.repeats
        )
    out["ratio_swappable_over_ordinary"] = (
        out["logp_grad_us_swappable"] / out["logp_grad_us_ordinary"]  # type: ignore[operator]
    )

    cache = ModelCache()
    first = cache.prepare(a, spec, md, solver="closed_form", sampler="nutpie")
    md_b = prepare_model_data(b, spec)
    t0 = time.perf_counter()
    hit = cache.prepare(b, spec, md_b, solver="closed_form", sampler="nutpie")
    out["prepare_seconds_hit"] = time.perf_counter() - t0
    out["hit"] = bool(hit is not None and hit.hit)
    out["compile_seconds_miss"] = first.compile_seconds if first is not None else None
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
