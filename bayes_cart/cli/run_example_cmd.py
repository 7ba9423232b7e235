"""``bayes-cart run-example``: the main job on the bundled example, end to end.

Writes the example data, validates it, computes the NCA table, simulates virtual patients from
the example's true population, fits the hierarchical model (``models/liu2021_meta.toml``) and,
when the analysis modules are available, writes the HTML report.

The spec (``--model``) and the sampler options are checked before anything is written: a bad
one exits 1 (spec) or 2 (option) with a one-line message.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False)


def _step(title: str) -> float:
    console.rule(f"[bold]{escape(title)}")
    return time.perf_counter()


def run_example(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("example_out"),
    chains: Annotated[int, typer.Option(help="Chains.")] = 4,
    tune: Annotated[int, typer.Option(help="Tuning draws per chain.")] = 1000,
    draws: Annotated[int, typer.Option(help="Posterior draws per chain.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    sampler: Annotated[
        str,
        typer.Option(
            help="auto (nutpie with Numba for the closed form), nutpie, nutpie-jax, pymc or "
            "numpyro."
        ),
    ] = "auto",
    model: Annotated[str, typer.Option(help="Model spec.")] = "liu2021_meta",
    report: Annotated[bool, typer.Option(help="Write the HTML report at the end.")] = True,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Per-chain sampler progress: a live table in a terminal, a line a minute "
            "otherwise; --no-progress: none.",
        ),
    ] = None,
) -> None:
    """Validate, NCA, simulate, fit and report on the bundled 218-patient example."""
    import numpy as np

    from bayes_cart.cli.common import (
        StepPrinter,
        error_line,
        print_fit_outcome,
        read_spec,
        sampler_progress,
    )
    from bayes_cart.cli.fit_cmd import _option_problem
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.data.nca import nca, summarise_nca
    from bayes_cart.errors import DataWarning, SpecError
    from bayes_cart.example import example_truth, truth_by_summary_name, write_example
    from bayes_cart.inference.io import write_fit_outputs
    from bayes_cart.inference.sampling import fit, resolve_sampler
    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    # the spec and the options first: a bad one is reported before minutes of work
    problem = _option_problem(chains, tune, draws, 0.9, seed, "day", sampler=sampler)
    if problem is not None:
        console.print(f"[red]{escape(problem)}[/red]")
        raise typer.Exit(code=2)
    try:
        spec = read_spec(model)
    except SpecError as exc:
        console.print(f"[red]{escape(error_line(exc))}[/red]")
        raise typer.Exit(code=1) from None
    if out.exists() and not out.is_dir():
        console.print(f"[red]--out {escape(str(out))}: exists and is not a folder[/red]")
        raise typer.Exit(code=2)

    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    _step("1. example data")
    paths = write_example(out / "data")
    for key, path in paths.items():
        console.print(f"  {key}: {escape(str(path))}")

    _step("2. validate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # printed below, from the report
        dataset = load_dataset(paths["data"])
    console.print(
        f"  {dataset.n_patients} patients, {dataset.n_observations} samples, "
        f"{dataset.n_censored} BLQ ({100 * dataset.n_censored / dataset.n_observations:.1f}%)"
    )
    console.print(f"  covariates: {escape(', '.join(dataset.covariates))}")
    for w in dataset.report.warnings[:5]:
        console.print(f"  [yellow]warning:[/yellow] {escape(str(w))}")

    _step("3. NCA (linear-up/log-down, BLQ after the last quantifiable sample ends the profile)")
    table = nca(dataset)
    table.to_csv(out / "nca.csv", index=False)
    by_trial = summarise_nca(table, by="TRIAL")
    by_trial.to_csv(out / "nca_by_trial.csv", index=False)
    t = Table(title=escape("NCA by trial: median [min-max]"))
    for col in ("TRIAL", "n", "Cmax", "Tmax", "AUC_0_28"):
        t.add_column(col)
    for _, row in by_trial.iterrows():
        cells = [str(row.get("TRIAL")), str(row.get("n"))]
        for m in ("Cmax", "Tmax", "AUC_0_28"):
            med, lo, hi = row.get(f"{m}_median"), row.get(f"{m}_min"), row.get(f"{m}_max")
            cells.append(f"{med:.3g} [{lo:.3g}-{hi:.3g}]" if med == med else "-")
        t.add_row(*[escape(c) for c in cells])
    console.print(t)

    _step("4. virtual patients from the example's true population")
    truth = example_truth()
    pop = PopulationParameters.from_dict(truth["population"])
    design = make_design(
        100,
        [1, 4, 7, 10, 14, 21, 28, 60, 90, 180, 270, 365],
        id_prefix="VP",
        covariates=None,
    )
    design["TRIAL"] = "ALL_adult"
    design["TUMOR_TYPE"] = "heme"
    patient_no = design["ID"].str.extract(r"(\d+)$")[0].astype(int)
    design["RESPONSE"] = np.where(patient_no % 2 == 0, "CR/PR", "PD/NR")
    sim = simulate_patients(design, pop, lloq=10.0, random_seed=seed)
    sim.data.to_csv(out / "virtual_patients.csv", index=False)
    sim.truth.to_csv(out / "virtual_patients_truth.csv", index=False)
    blq = float((sim.data["CENS"] == 1).mean())
    console.print(
        f"  100 ALL_adult patients (half responders), 12 samples each, LLOQ 10: "
        f"{100 * blq:.1f}% BLQ"
        f" -> {escape(str(out / 'virtual_patients.csv'))}"
    )

    _step(f"5. fit {model} ({sampler}: {chains} chains x {tune} tune + {draws} draws)")
    display = sampler_progress(console, progress)
    with StepPrinter(console, display.active) as on_step, display:
        result = fit(
            dataset,
            spec,
            sampler=sampler,
            chains=chains,
            tune=tune,
            draws=draws,
            random_seed=seed,
            progress=display.mode == "live",
            on_step=on_step,
            on_progress=display if display.active else None,
        )
    settings = {
        "sampler": resolve_sampler(sampler),
        "chains": chains,
        "tune": tune,
        "draws": draws,
        "seed": seed,
    }
    summary = write_fit_outputs(result, out / "fit", settings)
    print_fit_outcome(console, result, chains, indent="  ")
    t = Table(title="population parameters (median [90% CrI]) vs truth")
    for col in ("parameter", "posterior", "truth"):
        t.add_column(col)
    flat = truth_by_summary_name(truth)
    for _, row in summary.iterrows():
        tv = flat.get(row["parameter"])
        t.add_row(
            escape(row["parameter"]),
            escape(f"{row['q50']:.4g} [{row['q5']:.4g}, {row['q95']:.4g}]"),
            "-" if tv is None else f"{tv:.4g}",
        )
    console.print(t)

    if report:
        _step("6. report")
        try:
            from bayes_cart.report import write_report
        except ImportError:
            console.print("  (the report module is not available in this version)")
        else:
            # the fitted data are the bundled example: show the simulation's truth beside it
            path = write_report(result, out / "report.html", truth=truth)
            console.print(f"  wrote {escape(str(path))}")
    console.rule(f"done in {time.perf_counter() - t_all:.0f} s: {escape(str(out))}")
