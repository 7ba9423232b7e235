"""Compilation time of every shipped spec: cold, warm cache, and warm cache on new data.

Each measurement runs in a fresh Python process (so nothing is reused in memory) that
builds the model of one spec on one dataset and compiles it for the sampler, then takes one
draw (``nutpie.sample`` with 1 chain x (1 tune + 1 draw)): JAX compiles its XLA program at
the first call, so the first draw belongs to the compile bill. Three runs per spec and
backend:

* **cold**: an empty PyTensor compile directory (``base_compiledir``) and, for JAX, an empty
  persistent XLA cache;
* **warm**: the same dataset again, with the caches the cold run left;
* **new data**: another simulated dataset (other seed, other number of patients) with the
  same caches: what a second fit of the same spec costs a user.

Phases per run: imports, model build (data preparation + ``build_model``), PyTensor graph
compilation (nutpie's ``_make_functions``: rewrites + the PyTensor backend's code
generation, cached on disk by PyTensor's Numba cache), the rest of nutpie's compile (Numba
``cfunc`` wrappers, or the JAX ``jit``), the first draw, and the number of nodes of the
compiled log density + gradient graph.

    python bench/bench_compile.py                          # all shipped specs, Numba
    python bench/bench_compile.py --backends nutpie nutpie-jax --specs liu2021_meta
    python bench/bench_compile.py --table
    python bench/bench_compile.py --throughput                 # Numba vs JAX per gradient

``--throughput`` compares what each build costs while sampling: the Numba and the JAX build
of each spec, in one process, each sampled with nutpie (seed 1, ``--tune`` + ``--draws``
per chain, warm-up kept) with 1 chain and with 2 chains on 2 cores; the figure is wall
milliseconds per leapfrog step per chain (sampling seconds / (all leapfrog steps / chains)),
so sampler overhead and, for JAX, the Python call per gradient are included. Ratio JAX /
Numba.

Results: one JSON per (spec, backend) under ``--out`` (resumable: done pairs are skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPECS = ("liu2021", "liu2021_meta", "liu2021_fixed_t1", "stein2019")


def _datasets(tmp: Path) -> dict[str, Path]:
    """The bundled example, a 120-patient re-simulation of it, and a Stein-like trial."""
    from dataclasses import replace

    import numpy as np

    from bayes_cart.example import EXAMPLE_TRIALS, example_data_path, generate_meta_analysis
    from bayes_cart.simulate import write_data_csv

    out = {"example": example_data_path()}
    base = np.array([t.n for t in EXAMPLE_TRIALS], dtype=float)
    sizes = np.maximum(3, np.round(base / base.sum() * 120)).astype(int)
    trials = tuple(replace(t, n=int(k)) for t, k in zip(EXAMPLE_TRIALS, sizes, strict=True))
    sim = generate_meta_analysis(trials=trials, random_seed=4242)
    path = tmp / "new120.csv"
    write_data_csv(sim.data, path)
    out["new120"] = path
    sys.path.insert(0, str(HERE))
    from bench_robustness import PANEL  # noqa: PLC0415  (the bench's own Stein trials)

    for name in ("stein200", "blq5_100"):
        case = next(c for c in PANEL if c.name == name)
        path = tmp / f"{name}.csv"
        write_data_csv(case.simulate().data, path)
        out[name] = path
    return out


def child(spec_name: str, data: str, backend: str, solver: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process; prints nothing, returns the phases."""
    t0 = time.perf_counter()
    warnings.filterwarnings("ignore")
    import nutpie
    import nutpie.compile_pymc as ncp

    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.inference.sampling import _compile_nutpie
    from bayes_cart.model.build import build_model
    from bayes_cart.model.model_data import prepare_model_data
    from bayes_cart.model.spec import load_spec

    t1 = time.perf_counter()
    dataset = load_dataset(data)
    spec = load_spec(spec_name)
    md = prepare_model_data(dataset, spec)
    model = build_model(dataset, spec, model_data=md, solver=solver)
    t2 = time.perf_counter()

    phases = {"make_functions": 0.0}
    nodes: list[int] = []
    original = ncp._make_functions

    def timed(*args, **kwargs):
        s = time.perf_counter()
        result = original(*args, **kwargs)
        phases["make_functions"] += time.perf_counter() - s
        nodes.append(len(result[2].maker.fgraph.apply_nodes))
        return result

    ncp._make_functions = timed
    compiled = _compile_nutpie(model, backend)
    t3 = time.perf_counter()
    nutpie.sample(compiled, chains=1, tune=1, draws=1, seed=1, progress_bar=False)
    t4 = time.perf_counter()
    return {
        "imports_s": t1 - t0,
        "build_s": t2 - t1,
        "pytensor_s": phases["make_functions"],
        "backend_s": (t3 - t2) - phases["make_functions"],
        "compile_s": t3 - t2,
        "first_draw_s": t4 - t3,
        "total_s": t4 - t2,
        "logp_nodes": nodes[0] if nodes else None,
        "n_patients": md.n_patients,
        "n_free": int(compiled.n_dim),
    }


def _spawn(
    spec: str, data: Path, backend: str, solver: str, cache: Path, jax_cache: bool
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache / 'pytensor'}"
    # bayes_cart's persistent JAX cache (bayes_cart.jax_setup), in the run's own directory
    env["BAYES_CART_JAX_CACHE"] = str(cache / "jax") if jax_cache else "off"
    cmd = [sys.executable, __file__, "--child", spec, str(data), backend, solver]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(
    spec: str, backend: str, solver: str, data: dict[str, Path], jax_cache: bool = True
) -> dict[str, Any]:
    first, second = ("stein200", "blq5_100") if spec.startswith("stein") else ("example", "new120")
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        runs = {
            "cold": _spawn(spec, data[first], backend, solver, cache, jax_cache),
            "warm": _spawn(spec, data[first], backend, solver, cache, jax_cache),
            "new_data": _spawn(spec, data[second], backend, solver, cache, jax_cache),
        }
    return {
        "spec": spec,
        "backend": backend,
        "solver": solver,
        "jax_cache": jax_cache,
        "datasets": [first, second],
        "runs": runs,
        "machine": f"{platform.node()} {os.cpu_count()} cpu",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def throughput(spec_name: str, data: Path, tune: int, draws: int) -> dict[str, Any]:
    """Wall milliseconds per leapfrog step of the Numba and JAX builds, 1 and 2 chains."""
    import nutpie

    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.inference.sampling import _compile_nutpie
    from bayes_cart.model.build import build_model
    from bayes_cart.model.model_data import prepare_model_data
    from bayes_cart.model.spec import load_spec

    dataset = load_dataset(data)
    spec = load_spec(spec_name)
    md = prepare_model_data(dataset, spec)
    model = build_model(dataset, spec, model_data=md)
    out: dict[str, Any] = {"spec": spec_name, "n_patients": md.n_patients}
    for backend in ("nutpie", "nutpie-jax"):
        compiled = _compile_nutpie(model, backend)
        for cores in (1, 2):
            t0 = time.perf_counter()
            idata = nutpie.sample(
                compiled,
                chains=cores,
                tune=tune,
                draws=draws,
                seed=1,
                cores=cores,
                progress_bar=False,
                save_warmup=True,
            )
            seconds = time.perf_counter() - t0
            steps = int(idata.warmup_sample_stats["n_steps"].sum())
            steps += int(idata.sample_stats["n_steps"].sum())
            out[f"{backend}_{cores}core_ms"] = 1e3 * seconds / (steps / cores)
            out[f"{backend}_{cores}core_steps"] = steps
    for cores in (1, 2):
        out[f"jax_over_numba_{cores}core"] = (
            out[f"nutpie-jax_{cores}core_ms"] / out[f"nutpie_{cores}core_ms"]
        )
    return out


def throughput_table(out: Path) -> str:
    rows = [
        "| spec | patients | Numba ms/step (1 chain) | JAX ms/step (1 chain) | JAX / Numba | "
        "Numba ms/step (2 chains) | JAX ms/step (2 chains) | JAX / Numba |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(out.glob("throughput_*.json")):
        r = json.loads(path.read_text())
        rows.append(
            f"| {r['spec']} | {r['n_patients']} | {r['nutpie_1core_ms']:.3f} | "
            f"{r['nutpie-jax_1core_ms']:.3f} | {r['jax_over_numba_1core']:.2f} | "
            f"{r['nutpie_2core_ms']:.3f} | {r['nutpie-jax_2core_ms']:.3f} | "
            f"{r['jax_over_numba_2core']:.2f} |"
        )
    return "\n".join(rows)


def table(out: Path) -> str:
    rows = [
        "| spec | backend | run | patients | free params | logp+grad nodes | build s | "
        "PyTensor s | backend s | first draw s | total s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(out.glob("*.json")):
        if path.name.startswith("throughput_"):
            continue
        r = json.loads(path.read_text())
        backend = (
            r["backend"]
            + ("" if r.get("jax_cache", True) else ", no JAX cache")
            + ("" if r.get("solver", "closed_form") == "closed_form" else f" ({r['solver']})")
        )
        for run, v in r["runs"].items():
            rows.append(
                f"| {r['spec']} | {backend} | {run} | {v['n_patients']} | {v['n_free']} | "
                f"{v['logp_nodes']} | {v['build_s']:.1f} | {v['pytensor_s']:.1f} | "
                f"{v['backend_s']:.1f} | {v['first_draw_s']:.1f} | {v['total_s']:.1f} |"
            )
    return "\n".join(rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:6])))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--specs", nargs="+", default=list(SPECS))
    p.add_argument("--backends", nargs="+", default=["nutpie"])
    p.add_argument(
        "--solver", default="closed_form", help="closed_form, linear or ode (JAX solvers)."
    )
    p.add_argument("--no-jax-cache", action="store_true", help="Turn the persistent JAX cache off.")
    p.add_argument("--out", type=Path, default=HERE / "results" / "compile")
    p.add_argument("--tag", default="", help="Suffix of the result files (a variant).")
    p.add_argument("--table", action="store_true")
    p.add_argument("--throughput", action="store_true", help="Numba vs JAX per gradient.")
    p.add_argument("--tune", type=int, default=150)
    p.add_argument("--draws", type=int, default=100)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(args.out))
        print()
        print(throughput_table(args.out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = _datasets(Path(tmp))
        if args.throughput:
            for spec in args.specs:
                path = args.out / f"throughput_{spec}{'_' + args.tag if args.tag else ''}.json"
                first = "stein200" if spec.startswith("stein") else "example"
                result = throughput(spec, data[first], args.tune, args.draws)
                result["date"] = time.strftime("%Y-%m-%d %H:%M")
                path.write_text(json.dumps(result, indent=1))
                print(throughput_table(args.out), flush=True)
            return
        for backend in args.backends:
            for spec in args.specs:
                solver = "" if args.solver == "closed_form" else f"_{args.solver}"
                tag = ("_nojaxcache" if args.no_jax_cache else "") + (
                    f"_{args.tag}" if args.tag else ""
                )
                path = args.out / f"{spec}_{backend}{solver}{tag}.json"
                if path.exists():
                    continue
                result = measure(spec, backend, args.solver, data, not args.no_jax_cache)
                path.write_text(json.dumps(result, indent=1))
                print(table(args.out), flush=True)


if __name__ == "__main__":
    main()
