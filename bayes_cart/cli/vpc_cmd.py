"""``bayes-cart vpc``: visual predictive check of a saved fit (bin table CSV + PNG).

Exit codes: 0 done, 1 the fit or data cannot be used, 2 missing file or bad option.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def _edges(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        edges = [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--bins: {text!r} is not a list of numbers (days)") from None
    if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):
        raise typer.BadParameter(f"--bins: need at least two increasing edges, got {text!r}")
    return edges


def vpc(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="Saved fit (fit.nc).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Stratify by a covariate (repeatable or a,b)."),
    ] = None,
    bins: Annotated[
        str | None,
        typer.Option("--bins", help="Bin edges in days, e.g. 0,3,7,14,28,90,365."),
    ] = None,
    n_bins: Annotated[int, typer.Option("--n-bins", help="Automatic bins per stratum.")] = 10,
    pc: Annotated[bool, typer.Option("--pc", help="Prediction-corrected VPC.")] = False,
    replicates: Annotated[int, typer.Option("--replicates", help="Simulated datasets.")] = 200,
    lloq: Annotated[
        float | None,
        typer.Option("--lloq", help="LLOQ for every sample (default: inferred from BLQ rows)."),
    ] = None,
    group: Annotated[
        str,
        typer.Option("--group", help="Trial effect in simulations: fitted, new or none."),
    ] = "fitted",
    log_x: Annotated[bool, typer.Option("--log-x", help="Log-scaled time axis.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Censoring-aware VPC: bin table (CSV) and figure (PNG) in --out."""
    console = Console(highlight=False)
    if not fit_path.exists():
        console.print(f"[bold red]error:[/] fit file not found: {escape(str(fit_path))}")
        raise typer.Exit(code=2)
    if group not in ("fitted", "new", "none"):
        console.print("[bold red]error:[/] --group must be fitted, new or none")
        raise typer.Exit(code=2)
    if replicates < 2 or n_bins < 1:
        console.print("[bold red]error:[/] --replicates must be >= 2 and --n-bins >= 1")
        raise typer.Exit(code=2)
    try:
        edges = _edges(bins)
    except typer.BadParameter as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None

    import warnings

    from bayes_cart.checks.vpc import vpc as run_vpc
    from bayes_cart.checks.vpc import vpc_coverage
    from bayes_cart.errors import BayesCartError, DataWarning
    from bayes_cart.inference.io import load_fit
    from bayes_cart.plots.checks import plot_vpc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            fit = load_fit(fit_path)
        result = run_vpc(
            fit,
            by=_split(by) or None,
            bins=edges,
            n_bins=n_bins,
            prediction_corrected=pc,
            n_replicates=replicates,
            lloq=lloq,
            group=group,
            random_seed=seed,
        )
    except BayesCartError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from None

    out.mkdir(parents=True, exist_ok=True)
    stem = "pcvpc" if pc else "vpc"
    table_path = out / f"{stem}_table.csv"
    result.table.to_csv(table_path, index=False)
    obs_path = out / f"{stem}_observations.csv"
    result.observations.to_csv(obs_path, index=False)
    fig_path = out / f"{stem}.png"
    plot_vpc(result, log_x=log_x, infusions=fit.dataset.infusions).savefig(fig_path, dpi=130)
    cov = vpc_coverage(result)

    def pct(x: float) -> str:
        return "-" if x is None or math.isnan(x) else f"{100 * x:.0f}%"

    kind = "pcVPC" if pc else "VPC"
    strata = result.table["stratum"].nunique()
    console.print(
        f"{kind}: {len(result.table)} bins in {strata} stratum/strata, {replicates} replicates"
    )
    console.print(
        f"observed percentiles inside their {100 * result.interval:g}% PI: "
        f"{pct(cov['percentiles'])} of {int(cov['n_percentiles'])}; "
        f"BLQ fraction inside: {pct(cov['blq'])} of {int(cov['n_blq'])} bins"
    )
    console.print(f"written: {table_path}, {obs_path}, {fig_path}", markup=False)
