"""``bayes-cart validate``: check a dataset and print what was found.

Exit codes: 0 valid data, 1 invalid data (every problem listed) or --model spec, 2 missing file or
bad option.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bayes_cart.cli.common import COLUMNS_HELP, MODEL_DATA_HELP, TIME_UNIT_HELP, spec_or_exit
from bayes_cart.data.column_roles import parse_column_options
from bayes_cart.data.dataset import Dataset, load_dataset
from bayes_cart.errors import DataError, DataWarning

MAX_EXCLUDED_SHOWN = 20


def validate(
    data: Annotated[
        Path, typer.Argument(help="Dataset file: CSV (.csv, .tsv, .csv.gz) or Parquet.")
    ],
    time_unit: Annotated[str | None, typer.Option("--time-unit", help=TIME_UNIT_HELP)] = None,
    time_varying: Annotated[
        list[str] | None,
        typer.Option("--time-varying", help="A covariate that may change over time (repeatable)."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="Field separator (',', ';', 'tab'); detected by default."),
    ] = None,
    columns: Annotated[list[str] | None, typer.Option("--columns", help=COLUMNS_HELP)] = None,
    model: Annotated[str | None, typer.Option("--model", help=MODEL_DATA_HELP)] = None,
) -> None:
    """Validate a dataset and print a summary (patients, samples, BLQ, covariates, warnings)."""
    console = Console(highlight=False)
    if not data.exists():
        console.print(f"[bold red]error:[/] data file not found: {escape(str(data))}")
        raise typer.Exit(code=2)
    spec = spec_or_exit(model, console)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # printed below from the report
            dataset = load_dataset(
                data,
                time_unit=time_unit,
                time_varying=time_varying or (),
                delimiter=delimiter,
                columns=parse_column_options(columns),
                spec=spec,
            )
    except DataError as exc:
        console.print(
            f"[bold red]invalid data[/]: {escape(exc.source)}: {len(exc.problems)} problem(s)"
        )
        for problem in exc.problems:
            console.print(f"  • {problem}", markup=False, highlight=False)
        raise typer.Exit(code=1) from None
    except ValueError as exc:  # unknown time unit, bad delimiter or --columns option
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    print_summary(dataset, console)


def print_summary(dataset: Dataset, console: Console) -> None:
    """Print the summary of a valid dataset with rich."""
    info = dataset.summary()
    cens = info["censored"]
    spp = info["samples_per_patient"]
    lo, hi = info["time_range"]
    console.print(f"[bold green]valid[/]: {escape(str(info['source']))}")
    overview = Table(show_header=False, box=None, padding=(0, 2))
    overview.add_row("patients", str(info["patients"]))
    overview.add_row(
        "samples",
        f"{info['observations']} ({spp['min']}-{spp['max']} per patient, median {spp['median']:g})",
    )
    overview.add_row(
        "BLQ / censored",
        f"{cens['n']} ({cens['fraction']:.1%}; {cens['left']} below LLOQ, {cens['right']} above)",
    )
    overview.add_row("time range", f"{lo:g} to {hi:g} days (file unit: {info['time_unit']})")
    overview.add_row("dosing rows", str(info["doses"]))
    if info["baseline"]:
        overview.add_row("baseline samples", f"{info['baseline']} (TIME < 0, not fitted)")
    console.print(overview)
    rows = [(n, "patient", d) for n, d in info["covariates"].items()]
    rows += [(n, "time-varying", d) for n, d in info["time_varying"].items()]
    if rows:
        table = Table(title="covariates", title_justify="left")
        for col in ("name", "level", "type", "values", "missing"):
            table.add_column(col)
        for name, level, desc in rows:
            cells = (name, level, desc["type"], _values(desc), str(desc["missing"]))
            table.add_row(*(escape(str(c)) for c in cells))
        console.print(table)
    else:
        console.print("covariates: none")
    if info["warnings"]:
        console.print("[bold yellow]warnings[/]")
        for message in info["warnings"]:
            console.print(f"  • {message}", markup=False)
    excluded = dataset.report.excluded
    if len(excluded):
        table = Table(title=f"excluded rows ({len(excluded)})", title_justify="left")
        for col in ("row", "ID", "reason"):
            table.add_column(col)
        for rec in excluded.head(MAX_EXCLUDED_SHOWN).itertuples(index=False):
            table.add_row(*(escape(str(c)) for c in (rec.ROW, rec.ID, rec.reason)))
        console.print(table)
        if len(excluded) > MAX_EXCLUDED_SHOWN:
            console.print(f"  ... and {len(excluded) - MAX_EXCLUDED_SHOWN} more")


def _values(desc: dict) -> str:
    if desc["type"] == "categorical":
        return ", ".join(f"{level} ({n})" for level, n in desc["levels"].items())
    if desc["min"] is None:
        return "(all missing)"
    return f"{desc['min']:g} to {desc['max']:g} (median {desc['median']:g})"
