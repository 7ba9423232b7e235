"""``bayes-cart example``: placeholder until implemented."""

from __future__ import annotations

import typer


def example() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=2)
