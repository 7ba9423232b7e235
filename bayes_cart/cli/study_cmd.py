"""``bayes-cart study``: method-comparison studies (run, status, summary, report).

Exit codes: 0 done, 1 invalid study spec (every problem listed, with its key), 2 a missing
file, a bad option or a directory that cannot take the study (another spec's results, a
non-study folder), 3 the run ended with tasks still unfinished (rerun the same command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="study",
    help="Method-comparison studies: replicate simulation-estimation on Dask, resumable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: Width of the tables when the output is not a terminal (a log, a pipe, a file): rich's
#: default of 80 columns cut the 13-column metrics table to one letter per header.
LOG_WIDTH = 200


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console


def _load_or_exit(study: str, out: Console):
    import bayes_cart as bc

    try:
        return bc.load_study(study)
    except bc.SpecError as exc:
        out.print("[bold red]invalid study[/]:")
        out.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None


def _store_or_exit(directory: Path, out: Console):
    import bayes_cart as bc
    from bayes_cart.study import StudyStore

    try:
        return StudyStore.existing(directory)
    except bc.OutputError as exc:
        out.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None


def _table(frame, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for c in frame.columns:
        table.add_column(str(c), justify="left" if frame[c].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.3g}"
    return escape(str(v))


@app.command("run")
def run(
    study: Annotated[str, typer.Argument(help="Study spec: a TOML file or a shipped name.")],
    directory: Annotated[Path, typer.Argument(help="Study directory (created, or resumed).")],
    workers: Annotated[
        int | None,
        typer.Option(help="Local worker processes (default: one per core; 0: in this process)."),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler (tcp://host:8786).")
    ] = None,
    replicates: Annotated[
        int | None, typer.Option(help="Replicates per scenario, instead of the spec's.")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run the tasks recorded as failed again.")
    ] = False,
    max_tasks: Annotated[
        int | None, typer.Option(help="Run at most this many pending tasks, then stop.")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: in a terminal)."),
    ] = None,
) -> None:
    """Run a study's pending tasks; write one record per task, then fits.parquet, metrics.csv."""
    import bayes_cart as bc
    from bayes_cart.study.progress import StudyProgressBar, format_seconds
    from bayes_cart.study.summary import write_summary

    out = _console()
    for name, value in (("--workers", workers), ("--replicates", replicates)):
        if value is not None and value < (0 if name == "--workers" else 1):
            out.print(f"[bold red]error:[/] {name} must be >= {0 if name == '--workers' else 1}")
            raise typer.Exit(code=2)
    if max_tasks is not None and max_tasks < 1:
        out.print("[bold red]error:[/] --max-tasks must be >= 1")
        raise typer.Exit(code=2)
    spec = _load_or_exit(study, out)
    if replicates is not None:
        spec = spec.with_replicates(replicates)
    mode = "off" if progress is False else ("live" if out.is_terminal else "lines")
    try:
        with StudyProgressBar(out, mode) as bar:
            result = bc.run_study(
                spec,
                directory,
                workers=workers,
                scheduler=scheduler,
                retry_failed=retry_failed,
                max_tasks=max_tasks,
                on_progress=bar,
            )
    except bc.OutputError as exc:
        out.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    except OSError as exc:  # a scheduler that cannot be reached
        out.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    _, metrics = write_summary(directory)
    out.print(
        f"{escape(spec.name)}: ran {result.ran} task(s) in {format_seconds(result.seconds)}, "
        f"{result.skipped} already done, {result.failed} failed in all, "
        f"{result.unfinished} unfinished; {escape(str(directory))}/metrics.csv "
        f"({len(metrics)} rows)"
    )
    if result.unfinished:
        out.print("[yellow]unfinished tasks remain: run the same command again[/yellow]")
        raise typer.Exit(code=3)


@app.command("status")
def status(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
) -> None:
    """Tasks done, failed and pending per scenario and method; the first failures' messages."""
    from bayes_cart.study.summary import status_table

    out = _console()
    store = _store_or_exit(directory, out)
    spec = store.study()
    records = store.records()
    table = status_table(spec, records)
    out.print(_table(table, f"{spec.name} ({store.meta().get('hash')})"))
    done, total = int(table["done"].sum()), int(table["tasks"].sum())
    out.print(f"{done} of {total} tasks done, {int(table['failed'].sum())} failed")
    hits, compiled = int(table["cache_hits"].sum()), int(table["compiled"].sum())
    if hits or compiled:
        out.print(f"models compiled: {compiled}, taken from a worker's cache: {hits}")
    for r in [r for r in records if r["status"] != "ok"][:5]:
        out.print(f"  - {escape(r['key'])}: {r['status']}: {escape(str(r['error']))}")
    for path in store.unreadable:
        out.print(f"  - [yellow]{escape(str(path))}: unreadable, will be run again[/yellow]")


@app.command("summary")
def summary(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    fits: Annotated[
        str, typer.Option(help="Metrics over 'all' finished fits or those that 'passed' the gate.")
    ] = "all",
) -> None:
    """Write fits.parquet and metrics.csv (and sbc.csv) from the records; print the metrics."""
    from bayes_cart.study.summary import write_summary

    out = _console()
    if fits not in ("all", "passed"):
        out.print("[bold red]error:[/] --fits must be 'all' or 'passed'")
        raise typer.Exit(code=2)
    store = _store_or_exit(directory, out)
    _, metrics = write_summary(store.root)
    shown = metrics[metrics["fits"] == fits][
        [
            "scenario",
            "method",
            "quantity",
            "truth",
            "n",
            "n_failed",
            "n_gate_failed",
            "bias",
            "rmse",
            "coverage_90",
            "coverage_90_mcse",
            "rejection_rate",
            "median_sampling_seconds",
        ]
    ]
    out.print(_table(shown, f"metrics ({fits} fits); all columns in {store.root}/metrics.csv"))
    sbc_file = store.root / "sbc.csv"
    if sbc_file.is_file():  # a study with from_prior scenarios: the ranks' uniformity
        import pandas as pd

        sbc = pd.read_csv(sbc_file)
        columns = ["scenario", "method", "quantity", "n_fits", "n_degenerate", "gamma_p", "chi2_p"]
        out.print(_table(sbc[columns], f"SBC rank uniformity; all columns in {sbc_file}"))


@app.command("report")
def report(
    directory: Annotated[Path, typer.Argument(help="Study directory (partly finished is fine).")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output HTML file (default: DIR/report.html)."),
    ] = None,
    fits: Annotated[
        str, typer.Option(help="Metrics over 'all' finished fits or those that 'passed' the gate.")
    ] = "all",
) -> None:
    """Write the study's self-contained HTML report (coverage, bias, power, SBC, time, failures)."""
    from bayes_cart.report.study_report import write_study_report

    out = _console()
    if fits not in ("all", "passed"):
        out.print("[bold red]error:[/] --fits must be 'all' or 'passed'")
        raise typer.Exit(code=2)
    store = _store_or_exit(directory, out)
    import bayes_cart as bc

    try:
        path = write_study_report(store.root, out_file, fits=fits)
    except (bc.OutputError, OSError) as exc:
        out.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    out.print(f"study report written to {escape(str(path))}")
