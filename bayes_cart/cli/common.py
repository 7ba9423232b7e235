"""Helpers shared by the CLI commands."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


COLUMNS_HELP = (
    "Column role ROLE=NAME for a header not recognised by name, e.g. DV=CONC, ID=SUBJECT, "
    "IGNORE=NOTE, CAT=SITE (repeatable); over the --model spec's [data] columns."
)

TIME_UNIT_HELP = (
    "Unit of TIME in the file: day, hour, week, month (default: the --model spec's "
    "[data] time_unit, else day)."
)

MODEL_DATA_HELP = (
    "Model spec (name or TOML file) whose [data] table gives the column roles and the unit "
    "of TIME of the file."
)


def load_data_or_exit(
    data: str,
    time_unit: str | None = None,
    columns: list[str] | None = None,
    time_varying: list[str] | None = None,
    spec: Any = None,
):
    """Load ``data`` (a path, or ``example`` for the bundled dataset); exit 1 on a DataError.

    ``columns`` are ``--columns ROLE=NAME`` options; a malformed one exits 2.
    ``time_varying`` are the ``--time-varying`` covariates. ``spec`` (a ``ModelSpec``) adds
    its ``[data]`` table's column roles and unit of TIME, under ``--columns`` and
    ``--time-unit`` (day when neither says).
    """
    from bayes_cart.data.column_roles import parse_column_options
    from bayes_cart.errors import DataError

    try:
        declared = parse_column_options(columns)
        mapped = spec is not None and (spec.data.columns or spec.data.time_unit)
        if data == "example" and not declared and not time_varying and not mapped:
            from bayes_cart.example import load_example

            return load_example()
        from bayes_cart.data.dataset import load_dataset

        if data == "example":
            from bayes_cart.example import example_data_path

            data = str(example_data_path())
        return load_dataset(
            data,
            time_unit=time_unit,
            columns=declared,
            time_varying=tuple(time_varying or ()),
            spec=spec,
        )
    except FileNotFoundError:
        console.print(f"[red]{escape(data)}: no such file[/red]")
        raise typer.Exit(code=2) from None
    except DataError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(code=1) from None
    except ValueError as exc:  # a malformed --columns option
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(code=2) from None


def read_spec(model: str):
    """Load the spec ``model`` (a shipped name or a TOML file) for a command.

    :func:`bayes_cart.model.spec.load_spec` with what it does not catch turned into a SpecError of
    one problem: a path that is a folder, a file without the ``.toml`` suffix, a file that is
    not UTF-8 text or cannot be read.

    Raises
    ------
    SpecError
        Print it with :func:`error_line`.
    """
    from pathlib import Path

    from bayes_cart.errors import SpecError
    from bayes_cart.model.spec import load_spec

    path = Path(model)
    if path.is_dir():
        raise SpecError(model, "is a folder, not a TOML file")
    if not path.exists() and (path.suffix == ".toml" or len(path.parts) > 1):
        raise SpecError(model, "no such file")
    if path.is_file() and path.suffix != ".toml":
        raise SpecError(model, f"a spec file must end in .toml (got {path.suffix or 'none'!r})")
    try:
        return load_spec(model)
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()[: exc.start] if path.is_file() else b""
        line = raw.count(b"\n") + 1
        raise SpecError(
            model,
            f"not UTF-8 text (line {line}, byte {exc.start + 1}: {exc.reason}); save the file "
            "as UTF-8",
        ) from None
    except OSError as exc:
        raise SpecError(model, f"cannot be read ({exc.strerror or exc})") from None


def spec_or_exit(model: str | None, out: Console) -> Any:
    """Read the ``--model`` spec of a data command (None without one); exit 1 if invalid."""
    if model is None:
        return None
    from bayes_cart.errors import SpecError

    try:
        return read_spec(model)
    except SpecError as exc:
        out.print(f"[bold red]error:[/] {escape(error_line(exc))}")
        raise typer.Exit(code=1) from None


def error_line(exc: Exception) -> str:
    """Return an error's text, on one line when it holds a single problem."""
    from bayes_cart.errors import DataError, SpecError

    if isinstance(exc, SpecError | DataError) and len(exc.problems) == 1:
        kind = "model spec " if isinstance(exc, SpecError) else ""
        return f"{kind}{exc.source}: {exc.problems[0]}"
    return str(exc)


def sampler_progress(console: Console, progress: bool | None) -> Any:
    """Return the per-chain sampler display of a fitting command (``--progress``).

    Per chain: draws done, tuning or sampling, divergences, step size and gradients per draw,
    so a stuck chain (tiny step size, many gradients per draw) is visible while it runs.
    ``False`` shows nothing; otherwise a live table when ``console`` is a terminal, and
    elsewhere (CI logs, a file) one line per run when it starts, every minute and when it
    ends.

    Returns
    -------
    bayes_cart.inference.progress.ProgressDisplay
        A context manager, passed to :func:`bayes_cart.inference.sampling.fit` as ``on_progress``.
    """
    from bayes_cart.inference.progress import ProgressDisplay

    if progress is False:
        return ProgressDisplay(console, mode="off")
    return ProgressDisplay(console, mode="live" if console.is_terminal else "lines")


class StepPrinter:
    """The ``on_step`` callback of :func:`bayes_cart.inference.sampling.fit` for the CLI.

    With sampler progress bars, each step is printed on its own line (a spinner would fight
    the bars for the terminal); without them a rich spinner shows the current step.
    """

    def __init__(self, console: Console, progress: bool) -> None:
        self.console = console
        self.progress = progress
        self._status = None

    def __enter__(self) -> StepPrinter:
        if not self.progress:
            self._status = self.console.status("fitting...")
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def __call__(self, message: str) -> None:
        """Show ``message`` (escaped: it may hold data text)."""
        if self._status is not None:
            self._status.update(escape(message))
        else:
            self.console.print(f"[cyan]{escape(message)}[/cyan]")


def print_fit_outcome(console: Console, result: Any, chains: int, indent: str = "") -> None:
    """Print a fit's gate verdict, its second tries (restarts, retry, extra chains) and advice.

    Parameters
    ----------
    console : rich.console.Console
        Where to print.
    result : bayes_cart.inference.sampling.Fit
        The fit.
    chains : int
        The number of chains asked for (the extra ones are reported beyond it).
    indent : str
        Prefix of every line (the step layout of ``run-example``).
    """
    from bayes_cart.inference.diagnostics import lengthened_text

    d = result.diagnostics
    verdict = "[green]PASSED[/green]" if d.passed else "[red]FAILED[/red]"
    timings = result.timings
    if getattr(d, "method", "nuts") != "nuts":  # an approximation: its own check, no MCMC gate
        from bayes_cart.inference.approximate import METHOD_LABELS

        label = METHOD_LABELS.get(d.method, d.method)
        console.print(
            f"{indent}[bold yellow]APPROXIMATE inference ({label}): no MCMC gate, intervals "
            f"may be too narrow[/bold yellow]; {timings.get('sampling_seconds', float('nan')):.1f}"
            f" s; its own check {verdict}"
        )
        for a in d.advice:
            console.print(f"{indent}  [yellow]- {escape(a)}[/yellow]")
        return
    console.print(
        f"{indent}compile {timings.get('compile_seconds', float('nan')):.1f} s, sampling "
        f"{timings.get('sampling_seconds', float('nan')):.1f} s; diagnostics {verdict}: max "
        f"R-hat {d.max_rhat:.3f}, min ESS bulk {d.min_ess_bulk:.0f} / tail "
        f"{d.min_ess_tail:.0f}, divergences {d.divergences}, {d.gradients_per_ess:.0f} "
        "gradients per effective sample"
    )
    for r in d.restarted_chains:
        console.print(
            f"{indent}  [yellow]- chain {r['chain']} was stuck ({escape(str(r['reason']))}) and "
            "was sampled again from a fresh start[/yellow]"
        )
    if d.retried:
        console.print(
            f"{indent}  [yellow]- the first run had {d.retried['divergences']} divergences; all "
            f"chains were sampled again at target_accept {d.retried['target_accept']:g} "
            f"({d.retried['divergences_after']} divergences)[/yellow]"
        )
    if d.extended_chains:
        console.print(
            f"{indent}  [yellow]- the first {chains} chains mixed too slowly for the gate; "
            f"{d.extended_chains} more chains were sampled and kept[/yellow]"
        )
    if d.lengthened:
        console.print(f"{indent}  [yellow]- {lengthened_text(d.lengthened)}[/yellow]")
    if d.low_rank_retry:
        from bayes_cart.inference.diagnostics import low_rank_retry_text

        console.print(f"{indent}  [yellow]- {low_rank_retry_text(d.low_rank_retry)}[/yellow]")
    if getattr(d, "sigma_scaled_retry", None):
        from bayes_cart.inference.diagnostics import sigma_scaled_retry_text

        text = sigma_scaled_retry_text(d.sigma_scaled_retry)
        console.print(f"{indent}  [yellow]- {text}[/yellow]")
    for a in d.advice:
        console.print(f"{indent}  [yellow]- {escape(a)}[/yellow]")
