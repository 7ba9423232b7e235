"""Helpers shared by the CLI commands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def load_data_or_exit(data: str, time_unit: str = "day"):
    """Load ``data`` (a path, or ``example`` for the bundled dataset); exit 1 on a DataError."""
    from bayes_cart.errors import DataError

    try:
        if data == "example":
            from bayes_cart.example import load_example

            return load_example()
        from bayes_cart.dataset import load_dataset

        return load_dataset(data, time_unit=time_unit)
    except FileNotFoundError:
        console.print(f"[red]{escape(data)}: no such file[/red]")
        raise typer.Exit(code=2) from None
    except DataError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(code=1) from None


def show_sampler_progress(progress: bool | None) -> bool:
    """Whether to show nutpie's per-chain progress bars (``None``: when stderr is a terminal).

    The bars give, per chain, the draws done, divergences, step size, gradient evaluations
    per draw and the time left, so a stuck chain (tiny step size, many gradients per draw)
    is visible while it runs.
    """
    import sys

    return sys.stderr.isatty() if progress is None else progress


class StepPrinter:
    """The ``on_step`` callback of :func:`bayes_cart.sampling.fit` for the CLI.

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
