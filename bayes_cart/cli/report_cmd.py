"""``bayes-cart report``: the self-contained HTML report of a saved fit.

Exit codes: 0 written (even when a section could not be computed: it says so in the page and
the command lists it), 1 the fit (or a comparison fit, or the truth file) is missing or cannot be
read, 2 a bad option.
"""

from __future__ import annotations

import json
import time
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


def _name(path: Path) -> str:
    """Label of a comparison fit: its folder for ``.../NAME/fit.nc``, else the file stem."""
    return path.parent.name if path.name == "fit.nc" and path.parent.name else path.stem


def _load_truth(text: str | None) -> dict | None:
    if text is None:
        return None
    if text == "example":
        from bayes_cart.example import example_truth

        return example_truth()
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"truth file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON truth file ({exc})") from None


def _sampler_settings(fit: object, fit_path: Path) -> None:
    """Add the sampler settings ``bayes-cart fit`` wrote beside the fit (diagnostics.json).

    The fit file does not store them; they are copied into the posterior attributes the
    report reads (in memory only) when the file belongs to the same model.
    """
    side = fit_path.parent / "diagnostics.json"
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(info, dict) or info.get("spec_hash") not in (None, fit.spec.hash):
        return
    attrs = fit.idata.posterior.attrs
    for key in ("sampler", "tune", "seed"):
        if key in info and key not in attrs:
            attrs[key] = info[key]


def report(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="Saved fit (fit.nc).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HTML file.")] = Path(
        "report.html"
    ),
    compare: Annotated[
        list[Path] | None,
        typer.Option("--compare", help="Another fit of the same data for the LOO comparison."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Grouping covariate of contrasts and metrics (repeatable)."),
    ] = None,
    truth: Annotated[
        str | None,
        typer.Option(
            "--truth", help="True values: 'example' or a JSON file like truth_population.json."
        ),
    ] = None,
    replicates: Annotated[
        int, typer.Option("--replicates", help="Simulated datasets of the VPC and NPD.")
    ] = 200,
    draws: Annotated[
        int, typer.Option("--draws", help="Posterior draws for simulations (0 = all).")
    ] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Write one self-contained HTML report of a fit (data, model, diagnostics, checks...)."""
    console = Console(highlight=False, stderr=True)
    if replicates < 2 or draws < 0:
        console.print("[bold red]error:[/] --replicates must be >= 2 and --draws >= 0")
        raise typer.Exit(code=2)
    paths = [fit_path, *(compare or [])]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        console.print(f"[bold red]error:[/] fit file not found: {escape(', '.join(missing))}")
        raise typer.Exit(code=1)

    import warnings

    from bayes_cart.errors import BayesCartError, DataWarning
    from bayes_cart.io import load_fit
    from bayes_cart.report import build_report

    t0 = time.perf_counter()
    try:
        true_values = _load_truth(truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            fit = load_fit(fit_path)
            _sampler_settings(fit, fit_path)
            others = {}
            for p in compare or []:
                name = _name(p)
                others[name if name not in others else str(p)] = load_fit(p)
    except (BayesCartError, FileNotFoundError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from None

    with console.status("computing the report sections..."):
        built = build_report(
            fit,
            other_fits=others,
            by=_split(by) or None,
            truth=true_values,
            n_vpc_replicates=replicates,
            n_draws=draws or None,
            random_seed=seed,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(built.to_html(), encoding="utf-8")
    size = out.stat().st_size / 1024
    verdict = "[green]PASS[/green]" if built.passed else "[red]FAIL[/red]"
    console.print(
        f"wrote {escape(str(out))} ({size:.0f} KB) in {time.perf_counter() - t0:.0f} s; "
        f"diagnostics {verdict}"
    )
    for failure in built.failures:
        console.print(f"[yellow]warning:[/] could not compute {escape(failure)}")
