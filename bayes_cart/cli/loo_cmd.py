"""``bayes-cart loo``: compare saved fits of the same data by patient-grouped PSIS-LOO.

Exit codes: 0 done, 1 the fits cannot be compared (different data, no log-likelihood) or read,
2 missing file or bad option.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def loo(
    fits: Annotated[list[Path], typer.Argument(help="Two or more saved fits (fit.nc).")],
    names: Annotated[
        str | None, typer.Option("--names", help="Model names, comma-separated, in order.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table (CSV).")] = None,
) -> None:
    """Leave-one-patient-out comparison: elpd_loo, differences, weights, Pareto k."""
    from bayes_cart.analysis.loo import PARETO_K_THRESHOLD, compare_fits
    from bayes_cart.errors import BayesCartError
    from bayes_cart.inference.io import load_fit

    console = Console(highlight=False)
    if len(fits) < 2:
        console.print("[bold red]error:[/] give at least two fits to compare")
        raise typer.Exit(code=2)
    missing = [str(f) for f in fits if not f.exists()]
    if missing:
        console.print(f"[bold red]error:[/] fit file(s) not found: {escape(', '.join(missing))}")
        raise typer.Exit(code=2)
    labels = [s.strip() for s in names.split(",")] if names else None
    if labels is not None and len(labels) != len(fits):
        console.print(f"[bold red]error:[/] --names has {len(labels)} names for {len(fits)} fits")
        raise typer.Exit(code=2)
    try:
        loaded = [load_fit(f) for f in fits]
        if labels is None:
            labels = [
                f"{r.spec.name} ({f.parent.name or f.stem})"
                for r, f in zip(loaded, fits, strict=True)
            ]
        table, bad = compare_fits(loaded, names=labels)
    except BayesCartError as exc:
        console.print("[bold red]error:[/]", escape(str(exc)))
        raise typer.Exit(code=1) from None
    except ValueError as exc:
        console.print("[bold red]error:[/]", escape(str(exc)))
        raise typer.Exit(code=2) from None

    rich_table = Table(title="Leave-one-patient-out (PSIS-LOO), best first")
    for col in ("model", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight", "bad k"):
        rich_table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in table.iterrows():
        rich_table.add_row(
            escape(str(name)),
            _fmt(r["elpd_loo"]),
            _fmt(r["se"]),
            _fmt(r["elpd_diff"]),
            _fmt(r["dse"]),
            _fmt(r["p_loo"]),
            _fmt(r["weight"], 2),
            str(int(r["n_bad_pareto_k"])),
        )
    console.print(rich_table)
    for name, patients in bad.items():
        if len(patients):
            shown = ", ".join(
                f"{p} ({k:.2f})"
                for p, k in zip(patients["patient"], patients["pareto_k"], strict=True)
            )
            console.print(
                f"[yellow]warning:[/] {escape(name)}: Pareto k > {PARETO_K_THRESHOLD} for "
                f"{len(patients)} patient(s): {escape(shown)}; their LOO estimates are unreliable"
            )
    console.print(
        "elpd_diff is the difference to the best model; a difference smaller than about 2 dse "
        "is not clear evidence."
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out)
        console.print(f"table written to {out}", markup=False)
