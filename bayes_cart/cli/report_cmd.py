"""``bayes-cart report``: the self-contained HTML report of a saved fit.

Exit codes: 0 written (even when a section could not be computed: it says so in the page and
the command lists it, one line each; ``--debug`` prints each failure's traceback), 1 the fit
(or a comparison fit, or the truth file) is missing or cannot be read, or the report cannot be
written, 2 a bad option (``--by`` naming no covariate of the fit, ``--out`` a folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bayes_cart.data.column_roles import find_column


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
        truth = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON truth file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a JSON truth file (not UTF-8 text: {exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"{path}: the truth file cannot be read ({exc.strerror or exc})") from None
    if not isinstance(truth, dict):
        raise ValueError(
            f"{path}: a truth file is a JSON object like truth_population.json "
            f"(got a {type(truth).__name__})"
        )
    return truth


def _unknown_by(fit: object, by: list[str]) -> list[str]:
    """Return the ``--by`` names that are no patient covariate of ``fit`` (case-insensitive)."""
    known = fit.dataset.patients.columns
    return [name for name in by if find_column(known, name) is None]


@contextlib.contextmanager
def _section_failures(console: Console, debug: bool) -> Iterator[None]:
    """Keep the report's per-section failure log off the console, or print it with --debug.

    The failures are listed in one line each after the report is written; the logger of
    :mod:`bayes_cart.report` records them with their traceback, which only ``--debug`` shows.
    """
    log = logging.getLogger("bayes_cart.report")
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
    else:
        handler = logging.NullHandler()
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    # matplotlib's "findfont: ... Falling back to DejaVu Sans" says nothing about the report
    fonts = logging.getLogger("matplotlib.font_manager")
    font_level = fonts.level
    fonts.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
        fonts.setLevel(font_level)


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
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Print the traceback of each section that failed."),
    ] = False,
) -> None:
    """Write one self-contained HTML report of a fit (data, model, diagnostics, checks...)."""
    console = Console(highlight=False, stderr=True)
    if replicates < 2 or draws < 0:
        console.print("[bold red]error:[/] --replicates must be >= 2 and --draws >= 0")
        raise typer.Exit(code=2)
    if out.is_dir():
        console.print(
            f"[bold red]error:[/] --out {escape(str(out))} is a folder; name an HTML file"
        )
        raise typer.Exit(code=2)
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        console.print(
            f"[bold red]error:[/] --out {escape(str(out))}: {escape(str(blocking))} is a file, "
            "not a folder"
        )
        raise typer.Exit(code=2)
    paths = [fit_path, *(compare or [])]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        console.print(f"[bold red]error:[/] fit file not found: {escape(', '.join(missing))}")
        raise typer.Exit(code=1)

    import warnings

    from bayes_cart.errors import BayesCartError, DataWarning
    from bayes_cart.inference.io import load_fit
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
    unknown = _unknown_by(fit, _split(by))
    if unknown:
        covariates = ", ".join(str(c) for c in fit.dataset.patients.columns) or "none"
        console.print(
            f"[bold red]error:[/] --by {escape(', '.join(unknown))}: no such patient covariate "
            f"in the fit (covariates: {escape(covariates)})"
        )
        raise typer.Exit(code=2)

    with console.status("computing the report sections..."), _section_failures(console, debug):
        built = build_report(
            fit,
            other_fits=others,
            by=_split(by) or None,
            truth=true_values,
            n_vpc_replicates=replicates,
            n_draws=draws or None,
            random_seed=seed,
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(built.to_html(), encoding="utf-8")
    except OSError as exc:
        console.print(
            f"[bold red]error:[/] the report could not be written to {escape(str(out))} "
            f"({escape(exc.strerror or str(exc))})"
        )
        raise typer.Exit(code=1) from None
    size = out.stat().st_size / 1024
    verdict = "[green]PASS[/green]" if built.passed else "[red]FAIL[/red]"
    console.print(
        f"wrote {escape(str(out))} ({size:.0f} KB) in {time.perf_counter() - t0:.0f} s; "
        f"diagnostics {verdict}"
    )
    for failure in built.failures:
        console.print(f"[yellow]warning:[/] could not compute {escape(failure)}")
