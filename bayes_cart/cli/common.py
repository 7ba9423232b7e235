"""Helpers shared by the CLI commands."""

from __future__ import annotations

import typer
from rich.console import Console

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
        console.print(f"[red]{data}: no such file[/red]")
        raise typer.Exit(code=2) from None
    except DataError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=1) from None
