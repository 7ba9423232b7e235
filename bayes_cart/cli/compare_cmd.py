"""``bayes-cart compare``: posterior contrasts between covariate groups of a saved fit.

Exit codes: 0 done, 1 the fit cannot be read, 2 missing file or bad option.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def _plot_path(plot: Path, column: str, several: bool) -> Path:
    return plot.with_name(f"{plot.stem}_{column}{plot.suffix}") if several else plot


def compare(
    fit: Annotated[Path, typer.Argument(help="A saved fit (fit.nc).")],
    by: Annotated[
        list[str],
        typer.Option("--by", help="Covariate to compare (repeatable or a,b), e.g. RESPONSE."),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Kinetic parameters to compare (default: all estimated)."),
    ] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Reference level (default: the fit's).")
    ] = None,
    rope: Annotated[
        float, typer.Option("--rope", help="ROPE half-width: ratios in [1/(1+r), 1+r].")
    ] = 0.1,
    ci: Annotated[float, typer.Option("--ci", help="Interval probability.")] = 0.9,
    lloq: Annotated[
        float | None, typer.Option("--lloq", help="LLOQ (data units) for a persistence contrast.")
    ] = None,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="Also compare Cmax, AUC, half-lives...")
    ] = True,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table (CSV).")] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a forest plot (PNG/PDF; one per --by, suffixed)."),
    ] = None,
) -> None:
    """Ratios of typical values between groups: median, interval, P(direction), P(ROPE)."""
    from bayes_cart.analysis.contrasts import contrast, summarise_contrast
    from bayes_cart.errors import BayesCartError, DataError
    from bayes_cart.inference.io import load_fit

    console = Console(highlight=False)
    if not fit.exists():
        console.print(f"[bold red]error:[/] fit file not found: {escape(str(fit))}")
        raise typer.Exit(code=2)
    if rope < 0 or not 0 < ci < 1:
        console.print("[bold red]error:[/] --rope must be >= 0 and --ci in (0, 1)")
        raise typer.Exit(code=2)
    columns = _split(by)
    try:
        result = load_fit(fit)
    except BayesCartError as exc:
        console.print("[bold red]error:[/]", escape(str(exc)))
        raise typer.Exit(code=1) from None
    tables = []
    for column in columns:
        try:
            table = contrast(
                result,
                column,
                parameters=_split(param) or None,
                metrics=metrics,
                reference=reference,
                rope=rope,
                ci=ci,
                lloq=lloq,
            )
        except DataError as exc:
            for problem in exc.problems:
                console.print("[bold red]error:[/]", escape(str(problem)))
            raise typer.Exit(code=2) from None
        except (KeyError, ValueError) as exc:
            console.print("[bold red]error:[/]", escape(str(exc.args[0] if exc.args else exc)))
            raise typer.Exit(code=2) from None
        tables.append(table)
        shown = summarise_contrast(table)
        rich_table = Table(
            title=escape(
                f"{column}: ratio to {table['reference'].iloc[0]} "
                f"(median, {ci:.0%} interval), ROPE ±{rope:g}"
            )
        )
        for name in ("quantity", "group", "ratio", "p_direction", "p_rope", "in_model"):
            rich_table.add_column(
                name, justify="left" if name in ("quantity", "group") else "right"
            )
        for r in shown.to_dict("records"):
            rich_table.add_row(
                escape(str(r["quantity"])),
                escape(str(r["group"])),
                escape(str(r["ratio"])),
                _fmt(r["p_direction"]),
                _fmt(r["p_rope"]),
                "yes" if r["in_model"] else "no (ratio 1)",
            )
        console.print(rich_table)
        if plot is not None:
            from bayes_cart.plots.contrasts import plot_forest

            path = _plot_path(plot, column, len(columns) > 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            plot_forest(table).savefig(path, dpi=150, bbox_inches="tight")
            console.print(f"forest plot written to {path}", markup=False)
    console.print(
        "Typical patients: the covariate at each level, other covariates at their reference, "
        "no random effects. Covariates observed after infusion (response) give associations."
    )
    if out is not None:
        import pandas as pd

        out.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(tables, ignore_index=True).to_csv(out, index=False)
        console.print(f"table written to {out}", markup=False)
