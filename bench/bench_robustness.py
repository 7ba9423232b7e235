"""Robustness panel: fit datasets the package was not tuned on, with each shipped spec that fits.

Each panel dataset is simulated like the bundled example but with another seed and design
(30-300 patients, 1-8 trials, sparse or rich sampling, BLQ 5-40%, distribution phase on or
off, missing responses, early drop-out, a Stein et al. tisagenlecleucel trial). Each is fitted
as a user would, with default settings (4 chains x (1000 tune + 1000 draws), the default
sampler and solver), by every shipped spec that applies to it. One JSON file per fit is written
under ``--out``; a rerun skips fits already done (resumable), so the panel can be spread over
several sessions.

    python bench/bench_robustness.py                    # everything, into bench/results/robustness
    python bench/bench_robustness.py --only sparse60_3trials --specs liu2021
    python bench/bench_robustness.py --table                                # print the table
    python bench/bench_robustness.py --table --table-tag s13                # one run's fits
    python bench/bench_robustness.py --only dropout150 --specs stein2019 \
        --patch '{"sampling": {"centering": "informed"}}' --tag informed     # a variant

Per fit: gate pass (R-hat <= 1.01, bulk ESS >= 400, 0 divergences), max R-hat, min bulk ESS,
divergences, mean leapfrog steps per draw, gradients per effective sample (all leapfrog steps
of all chains / min bulk ESS over population quantities), stuck chains detected and
restarted, compile and sampling seconds, and the coverage of the true covariate effects by
their 90% intervals.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bayes_cart.analysis.summary import population_summary
from bayes_cart.data.dataset import load_dataset
from bayes_cart.example import (
    DLBCL_SCHEDULE,
    EXAMPLE_POPULATION,
    EXAMPLE_TRIALS,
    HEME_SCHEDULE,
    SOLID_SCHEDULE,
    TrialDesign,
    generate_meta_analysis,
)
from bayes_cart.inference.sampling import fit
from bayes_cart.inference.shrinkage import eta_shrinkage
from bayes_cart.model.spec import load_spec, spec_from_dict
from bayes_cart.simulate import PopulationParameters, write_data_csv

warnings.filterwarnings("ignore")

SPARSE = (1, 7, 14, 28, 90)
STEIN_SCHEDULE = (1, 3, 5, 7, 9, 11, 14, 17, 21, 28, 42, 60, 90, 180, 270, 365)

#: Stein et al. 2019 Table 1; the IIV column read as variances (nlmixr2lib), so SD = sqrt.
STEIN_POPULATION = PopulationParameters(
    kinetics="stein2019",
    typical={
        "Cmax": 24000.0,
        "Tmax": 9.3,
        "foldx": 3900.0,
        "alpha": 0.16,
        "beta": 0.0032,
        "FB": 0.0079,
    },
    omega={
        "Cmax": 0.65**0.5,
        "Tmax": 0.38**0.5,
        "foldx": 2.4**0.5,
        "alpha": 0.91**0.5,
        "beta": 0.86**0.5,
        "FB": 0.8**0.5,
    },
    sigma=0.56,
)


def _trial(name: str, n: int, **kw: Any) -> TrialDesign:
    base = {t.name: t for t in EXAMPLE_TRIALS}
    template = base.get(kw.pop("like", name), EXAMPLE_TRIALS[0])
    return replace(template, name=name, id_prefix=name.replace("_", "").upper()[:8], n=n, **kw)


@dataclass(frozen=True)
class PanelDataset:
    """One simulated dataset of the panel."""

    name: str
    trials: tuple[TrialDesign, ...]
    seed: int
    population: PopulationParameters = EXAMPLE_POPULATION
    dropout: float = 0.0
    missing_response: float = 0.0
    note: str = ""
    specs: tuple[str, ...] = ("liu2021", "stein2019")
    extra: dict = field(default_factory=dict)

    def simulate(self):
        """The data (SimulationResult) of this dataset."""
        return generate_meta_analysis(
            self.trials,
            self.population,
            self.seed,
            dropout=self.dropout,
            missing_response=self.missing_response,
        )


def _resized_example(sizes: tuple[int, ...], lloqs: tuple[float, ...]) -> tuple[TrialDesign, ...]:
    return tuple(
        replace(t, n=n, lloq=lloq) for t, n, lloq in zip(EXAMPLE_TRIALS, sizes, lloqs, strict=True)
    )


PANEL: tuple[PanelDataset, ...] = (
    PanelDataset(
        "meta7_209",
        _resized_example((25, 35, 30, 36, 34, 24, 25), (10, 50, 20, 20, 20, 50, 20)),
        seed=1,
        missing_response=0.05,
        note="7 trials like the example, other sizes, LLOQs and seed (the issue's new user)",
        specs=("liu2021", "liu2021_meta", "stein2019"),
    ),
    PanelDataset(
        "sub60_3trials",
        (_trial("ALL_adult", 20), _trial("CLL", 20), _trial("MM", 20)),
        seed=2,
        note="60 patients, 3 heme trials",
    ),
    PanelDataset(
        "one30_rich",
        (_trial("ALL_adult", 30, lloq=10.0),),
        seed=3,
        note="30 patients, one trial, rich sampling",
    ),
    PanelDataset(
        "sparse80_2trials",
        (_trial("CLL", 40, schedule=SPARSE), _trial("MM", 40, schedule=SPARSE)),
        seed=4,
        note="sparse: 5 samples per patient",
    ),
    PanelDataset(
        "blq40_100",
        (_trial("CLL", 50, lloq=900.0), _trial("MM", 50, lloq=1400.0)),
        seed=5,
        note="high LLOQ: about 40% BLQ",
    ),
    PanelDataset(
        "blq5_100",
        (_trial("ALL_adult", 50, lloq=5.0), _trial("CLL", 50, lloq=5.0)),
        seed=6,
        note="low LLOQ: about 5% BLQ",
    ),
    PanelDataset(
        "dist_phase80",
        (_trial("DLBCL", 40), _trial("DLBCL2", 40, like="DLBCL")),
        seed=7,
        note="every patient has a distribution phase (liu2021 without one: misspecified)",
        specs=("liu2021", "liu2021+distribution"),
    ),
    PanelDataset(
        "missing_resp120",
        (_trial("ALL_adult", 30), _trial("CLL", 30), _trial("MM", 30), _trial("NSCLC", 30)),
        seed=8,
        missing_response=0.3,
        note="30% of responses missing",
    ),
    PanelDataset(
        "dropout150",
        (_trial("ALL_adult", 50), _trial("CLL", 50), _trial("MM", 50)),
        seed=9,
        dropout=0.4,
        note="40% of patients drop out early",
    ),
    PanelDataset(
        "large300_8trials",
        _resized_example((45, 45, 40, 45, 40, 30, 30), (20, 100, 10, 10, 50, 20, 50))
        + (_trial("CLL2", 25, like="CLL", schedule=HEME_SCHEDULE),),
        seed=10,
        note="300 patients, 8 trials",
        specs=("liu2021", "liu2021_meta"),
    ),
    PanelDataset(
        "solid40_short",
        (_trial("GBM", 20, schedule=SOLID_SCHEDULE), _trial("NSCLC", 20)),
        seed=11,
        note="solid tumours, 90-day follow-up",
    ),
    PanelDataset(
        "stein200",
        (
            _trial(
                "ELIANA",
                200,
                schedule=STEIN_SCHEDULE,
                lloq=50.0,
                responder_fraction=0.8,
            ),
        ),
        seed=12,
        population=STEIN_POPULATION,
        dropout=0.3,
        note="Stein et al. 2019 tisagenlecleucel trial (Table 1), days 1-365, drop-out",
        specs=("stein2019", "liu2021"),
    ),
    PanelDataset(
        "meta7_seed13",
        EXAMPLE_TRIALS,
        seed=13,
        note="the example's design with another seed",
        specs=("liu2021_meta", "liu2021"),
    ),
    PanelDataset(
        "dlbcl_mix90",
        (_trial("DLBCL", 45, schedule=DLBCL_SCHEDULE), _trial("ALL_adult", 45)),
        seed=14,
        note="distribution phase in one of two trials",
        specs=("liu2021_meta",),
    ),
)


def _user_spec(spec_name: str, data, population: PopulationParameters):
    """The spec as a user would write the command: covariates where the truth has them.

    ``liu2021+distribution`` is ``liu2021 --distribution "TRIAL in [...all trials...]"``.
    """
    if spec_name == "liu2021+distribution":
        spec = _user_spec("liu2021", data, population)
        raw = json.loads(spec.text)
        trials = sorted(data.patients["TRIAL"].dropna().unique())
        raw["distribution_phase"] = {"enabled_if": f"TRIAL in {trials!r}"}
        return spec_from_dict(raw)
    spec = load_spec(spec_name)
    if spec_name not in ("liu2021", "liu2021_fixed_t1") or not population.effects:
        return spec
    cols = data.patients
    terms = []
    if "RESPONSE" in cols and cols["RESPONSE"].nunique() > 1:
        terms.append("RESPONSE")
    if "TUMOR_TYPE" in cols and cols["TUMOR_TYPE"].nunique() > 1:
        terms.append("TUMOR_TYPE")
    if not terms:
        return spec
    ref = {"RESPONSE": "PD/NR"}
    types = sorted(cols["TUMOR_TYPE"].dropna().unique())
    ref["TUMOR_TYPE"] = "heme" if "heme" in types else types[0]
    rhs = " + ".join(terms)
    return spec.with_overrides(covariates={"beta": rhs, "alpha": rhs}, reference=ref)


def _truth_effects(population: PopulationParameters, reference: dict) -> dict[str, float]:
    out = {}
    for p, covs in population.effects.items():
        for cov, levels in covs.items():
            for level, value in levels.items():
                out[f"{p}:{cov}[{level}]"] = float(value)
    return out


def _stats(f) -> dict[str, Any]:
    st = f.idata.sample_stats
    steps = np.asarray(st["n_steps"])
    lp = np.asarray(st["logp"] if "logp" in st else st["lp"])
    step_size = np.asarray(st["step_size"]).mean(axis=1)
    return {
        "steps_per_draw": float(steps.mean()),
        "steps_per_draw_by_chain": [round(float(x), 1) for x in steps.mean(axis=1)],
        "mean_lp_by_chain": [round(float(x), 1) for x in lp.mean(axis=1)],
        "step_size_by_chain": [float(f"{x:.3g}") for x in step_size],
        "total_gradients": int(steps.sum()),
    }


def _patched(spec, patch: dict[str, Any]):
    """The spec with the tables of ``patch`` merged in (one level deep), for a variant run."""
    if not patch:
        return spec
    raw = json.loads(spec.text)
    for key, value in patch.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return spec_from_dict(raw)


def run_one(
    ds: PanelDataset,
    spec_name: str,
    out: Path,
    patch: dict[str, Any] | None = None,
    tag: str = "",
    **fit_kw: Any,
) -> dict[str, Any]:
    """Simulate, fit and record one (dataset, spec) pair (``patch``: a variant of the spec)."""
    sim = ds.simulate()
    csv = out / "data" / f"{ds.name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    write_data_csv(sim.data, csv)
    data = load_dataset(csv)
    spec = _patched(_user_spec(spec_name, data, ds.population), patch or {})
    t0 = time.perf_counter()
    seed = fit_kw.pop("random_seed", 1)
    f = fit(data, spec, random_seed=seed, prior_draws=0, predictive=False, **fit_kw)
    wall = time.perf_counter() - t0
    d = f.diagnostics
    summ = population_summary(f.idata).set_index("parameter")
    cover = {}
    if ds.population.kinetics == "liu2021" and spec.doc.kinetics == "liu2021":
        for name, value in _truth_effects(ds.population, {}).items():
            if name in summ.index:
                q5, q95 = summ.loc[name, "q5"], summ.loc[name, "q95"]
                cover[name] = bool(q5 <= value <= q95)
    cens = data.observations["CENS"].to_numpy() if "CENS" in data.observations else None
    return {
        "dataset": ds.name,
        "spec": spec_name + (f" [{tag}]" if tag else ""),
        "patch": patch or {},
        "target_accept": fit_kw.get("target_accept"),
        "fit_seed": seed,
        "note": ds.note,
        "n_patients": int(data.n_patients),
        "n_trials": len(ds.trials),
        "n_obs": int(len(data.observations)),
        "blq_fraction": float(np.mean(cens != 0)) if cens is not None else None,
        "passed": bool(d.passed),
        "max_rhat": d.max_rhat,
        "min_ess_bulk": d.min_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "min_bfmi": d.min_bfmi,
        "advice": list(d.advice),
        "divergences": d.divergences,
        "treedepth_saturation": d.treedepth_saturation,
        "gradients_per_ess": getattr(d, "gradients_per_ess", None),
        "stuck_chains": getattr(d, "stuck_chains", None),
        "restarts": f.timings.get("restarts", 0),
        "extended_chains": f.timings.get("extended_chains", 0),
        "retried": d.retried,
        "low_rank_retry": d.low_rank_retry,
        "lengthened": d.lengthened,
        "sigma_scaled_retry": getattr(d, "sigma_scaled_retry", {}),
        "compile_s": f.timings.get("compile_seconds"),
        "sampling_s": f.timings.get("sampling_seconds"),
        "wall_s": wall,
        "covered_90": cover,
        "eta_shrinkage": {
            str(k): float(v) for k, v in eta_shrinkage(f.idata)[["parameter", "shrinkage"]].values
        },
        "worst": d.worst,
        **_stats(f),
    }


def _low_rank_cell(r: dict[str, Any]) -> str:
    """The diagonal run's R-hat / ESS when the fit was sampled again with a low-rank matrix."""
    lr = r.get("low_rank_retry") or {}
    if not lr:
        return "-"
    g = lr["diagonal"]
    return f"{g['max_rhat']:.3f} / {g['min_ess']:.0f} / {g['divergences']} div, kept {lr['kept']}"


def _rungs(r: dict[str, Any]) -> list[str]:
    """The automatic second tries a fit's kept run went through (empty: the first run)."""
    rungs = []
    if r.get("restarts"):
        rungs.append(f"{r['restarts']} chain restart(s)")
    if (r.get("sigma_scaled_retry") or {}).get("kept") == "sigma_scaled":
        rungs.append("sigma-scaled model")
    if r.get("retried"):
        rungs.append("target_accept 0.95")
    if r.get("lengthened"):
        rungs.append(f"{r['lengthened'].get('factor', '?')}x longer chains")
    if r.get("extended_chains"):
        rungs.append(f"{r['extended_chains']} more chains")
    if (r.get("low_rank_retry") or {}).get("kept") == "low_rank":
        rungs.append("low-rank mass matrix")
    return rungs


def _summary(rows: list[dict[str, Any]]) -> str:
    """One paragraph: fits, passes, first-run passes and the second tries used."""
    passed = [r for r in rows if r["passed"]]
    first = [r for r in passed if not _rungs(r)]
    counts: dict[str, int] = {}
    for r in passed:
        for rung in _rungs(r):
            key = rung.split(" ", 1)[1] if rung[0].isdigit() else rung
            counts[key] = counts.get(key, 0) + 1
    gpe = [r["gradients_per_ess"] for r in passed if r.get("gradients_per_ess")]
    return (
        f"{len(rows)} fits, {len(passed)} pass the package's gate, {len(first)} of them on the "
        f"first run; second tries among the passes: "
        + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
        + (
            f"; gradients per ESS median {np.median(gpe):.0f} (range {min(gpe):.0f}-"
            f"{max(gpe):.0f}), at most 300 on {sum(g <= 300 for g in gpe)}"
            if gpe
            else ""
        )
    )


def _table(out: Path, tag: str | None = None) -> str:
    rows = []
    records = []
    for path in sorted(out.glob("*__*.json")):
        r = json.loads(path.read_text())
        if tag is not None and not path.stem.endswith(f"__{tag}"):
            continue
        records.append(r)
        cov = r["covered_90"]
        cov_txt = f"{sum(cov.values())}/{len(cov)}" if cov else "-"
        gpe = r["gradients_per_ess"] or r["total_gradients"] / max(r["min_ess_bulk"], 1)
        rows.append(
            f"| {r['dataset']} | {r['spec']} | {r['n_patients']} | {r['n_trials']} | "
            f"{100 * (r['blq_fraction'] or 0):.0f}% | {'yes' if r['passed'] else '**no**'} | "
            f"{r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} | {r['divergences']} | "
            f"{r['steps_per_draw']:.0f} | {gpe:.0f} | {r['restarts']} | "
            f"{r.get('extended_chains', 0)} | "
            f"{(r.get('retried') or {}).get('divergences', '-')} | {_low_rank_cell(r)} | "
            f"{cov_txt} | "
            f"{r['compile_s']:.0f} + {r['sampling_s']:.0f} | {', '.join(_rungs(r)) or '-'} |"
        )
    head = (
        "| dataset | spec | patients | trials | BLQ | pass | R-hat | min ESS | div | "
        "steps/draw | grad/ESS | restarts | extra chains | div. before retry | "
        "diagonal run (low-rank retry) | effects in 90% | compile + sampling s | "
        "second tries of the kept run |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows, "", _summary(records)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/robustness")
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    ap.add_argument("--specs", default="", help="comma-separated spec names")
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--rerun", action="store_true", help="refit pairs already done")
    ap.add_argument("--table", action="store_true", help="print the table of results and exit")
    ap.add_argument(
        "--table-tag",
        default=None,
        help="with --table: only the fits of this tag ('' for the untagged ones)",
    )
    ap.add_argument("--list", action="store_true", help="list the panel and exit")
    ap.add_argument(
        "--patch",
        default="",
        help='a variant of each spec, as JSON tables merged in, e.g. \'{"sampling": '
        '{"centering": "informed"}}\'; needs --tag',
    )
    ap.add_argument("--tag", default="", help="name of the variant (in file names and table)")
    ap.add_argument("--target-accept", type=float, default=None, help="default: fit()'s")
    ap.add_argument(
        "--fit-seed",
        type=int,
        default=None,
        help="the sampler's seed (default 1; the data keep their own seed); needs --tag",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(_table(out, args.table_tag))
        return
    patch = json.loads(args.patch) if args.patch else {}
    if (patch or args.target_accept or args.fit_seed is not None) and not args.tag:
        ap.error("--patch, --target-accept and --fit-seed need --tag")
    suffix = f"__{args.tag}" if args.tag else ""
    only = set(filter(None, args.only.split(",")))
    specs = set(filter(None, args.specs.split(",")))
    print(f"# robustness panel, {platform.processor() or platform.machine()}, {time.ctime()}")
    for ds in PANEL:
        if only and ds.name not in only:
            continue
        if args.list:
            print(f"{ds.name}: {ds.note}; specs {', '.join(ds.specs)}")
            continue
        for spec_name in ds.specs:
            if specs and spec_name not in specs:
                continue
            path = out / f"{ds.name}__{spec_name}{suffix}.json"
            if path.exists() and not args.rerun:
                print(f"{path.name}: done, skipped")
                continue
            r = run_one(
                ds,
                spec_name,
                out,
                patch,
                args.tag,
                chains=args.chains,
                tune=args.tune,
                draws=args.draws,
                **({"target_accept": args.target_accept} if args.target_accept else {}),
                **({"random_seed": args.fit_seed} if args.fit_seed is not None else {}),
            )
            path.write_text(json.dumps(r, indent=1))
            print(
                f"{ds.name} / {spec_name}: pass={r['passed']} rhat={r['max_rhat']:.3f} "
                f"ess={r['min_ess_bulk']:.0f} div={r['divergences']} "
                f"steps={r['steps_per_draw_by_chain']} lp={r['mean_lp_by_chain']} "
                f"wall={r['wall_s']:.0f}s",
                flush=True,
            )
    if not args.list:
        print(_table(out, args.table_tag))


if __name__ == "__main__":
    main()
