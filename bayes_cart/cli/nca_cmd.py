"""``bayes-cart nca``: non-compartmental analysis of a dataset, summarised per group.

Exit codes: 0 done, 1 invalid data or --model spec, 2 missing file or bad option.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bayes_cart.cli.common import COLUMNS_HELP, MODEL_DATA_HELP, TIME_UNIT_HELP, spec_or_exit
from bayes_cart.data.column_roles import parse_column_options
from bayes_cart.data.dataset import load_dataset
from bayes_cart.data.nca import BLQ_RULES, INTERMEDIATE_BLQ, auc_column, summarise_nca
from bayes_cart.data.nca import nca as nca_table
from bayes_cart.errors import DataError, DataWarning


def _number(x: float) -> str:
    """Compact number for the console: thousands separators, scientific when large."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 1e5:
        return f"{x:.3g}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def nca(
    data: Annotated[Path, typer.Argument(help="Dataset file (CSV or Parquet).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the per-patient table (CSV).")
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Group the summary by a covariate (repeatable or a,b)."),
    ] = None,
    auc_start: Annotated[float, typer.Option(help="Start of the AUC window (days).")] = 0.0,
    auc_end: Annotated[float, typer.Option(help="End of the AUC window (days).")] = 28.0,
    blq_rule: Annotated[
        str, typer.Option(help=f"Where a profile ends: {', '.join(BLQ_RULES)}.")
    ] = "stop_after_last_quantifiable",
    intermediate_blq: Annotated[
        str,
        typer.Option(help=f"BLQ between quantifiable samples: {', '.join(INTERMEDIATE_BLQ)}."),
    ] = "half_lloq",
    time_unit: Annotated[str | None, typer.Option("--time-unit", help=TIME_UNIT_HELP)] = None,
    columns: Annotated[list[str] | None, typer.Option("--columns", help=COLUMNS_HELP)] = None,
    model: Annotated[str | None, typer.Option("--model", help=MODEL_DATA_HELP)] = None,
) -> None:
    """Cmax, Tmax, AUC and Tlast per patient (linear-up/log-down), median (range) per group."""
    console = Console(highlight=False)
    if not data.exists():
        console.print(f"[bold red]error:[/] data file not found: {escape(str(data))}")
        raise typer.Exit(code=2)
    spec = spec_or_exit(model, console)
    if blq_rule not in BLQ_RULES or intermediate_blq not in INTERMEDIATE_BLQ:
        console.print(
            f"[bold red]error:[/] --blq-rule must be one of {', '.join(BLQ_RULES)}; "
            f"--intermediate-blq one of {', '.join(INTERMEDIATE_BLQ)}"
        )
        raise typer.Exit(code=2)
    if not auc_end > auc_start:
        console.print("[bold red]error:[/] --auc-end must be greater than --auc-start")
        raise typer.Exit(code=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            dataset = load_dataset(
                data, time_unit=time_unit, columns=parse_column_options(columns), spec=spec
            )
    except DataError as exc:
        console.print(
            f"[bold red]invalid data[/]: {escape(exc.source)}: {len(exc.problems)} problem(s)"
        )
        for problem in exc.problems:
            console.print(f"  • {problem}", markup=False, highlight=False)
        raise typer.Exit(code=1) from None
    except ValueError as exc:
        console.print("[bold red]error:[/]", escape(str(exc)))
        raise typer.Exit(code=2) from None

    window = (auc_start, auc_end)
    table = nca_table(
        dataset, auc_window=window, blq_rule=blq_rule, intermediate_blq=intermediate_blq
    )
    groups = _split(by)
    try:
        summary = summarise_nca(table, by=groups or None)
    except KeyError as exc:
        console.print("[bold red]error:[/]", escape(str(exc.args[0])))
        raise typer.Exit(code=2) from None
    print_summary(summary, groups, auc_column(window), console)
    auc = auc_column(window)
    incomplete = int((~table[f"{auc}_complete"] & table["Cmax"].notna()).sum())
    no_quant = int(table["Cmax"].isna().sum())
    console.print(
        f"AUC by linear-up/log-down trapezoids from the first sample; "
        f"{incomplete} patient(s) with {auc} up to Tlast only (not complete); "
        f"{no_quant} patient(s) without a quantifiable sample."
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        console.print(f"per-patient table written to {escape(str(out))} ({len(table)} patients)")


def print_summary(summary: pd.DataFrame, groups: list[str], auc: str, console: Console) -> None:
    """Print the grouped NCA summary as a rich table: median (min-max)."""
    title = "NCA summary: median (range)" + (f" by {', '.join(groups)}" if groups else "")
    table = Table(title=escape(title))
    for g in groups:
        table.add_column(escape(g))
    table.add_column("N (%)", justify="right")
    labels = {"Cmax": "Cmax", "Tmax": "Tmax (d)", auc: f"{auc} (DV x d)", "Tlast": "Tlast (d)"}
    for label in labels.values():
        table.add_column(label, justify="right")
    for r in summary.to_dict("records"):
        cells = [escape(str(r[g])) for g in groups]
        cells.append(f"{r['n']} ({r['percent']:.0f}%)")
        for metric in labels:
            cells.append(
                f"{_number(r[f'{metric}_median'])}\n"
                f"({_number(r[f'{metric}_min'])} to {_number(r[f'{metric}_max'])})"
            )
        table.add_row(*cells)
    console.print(table)
