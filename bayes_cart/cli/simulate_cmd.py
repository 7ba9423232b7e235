"""``bayes-cart simulate``: placeholder until implemented."""

from __future__ import annotations

import typer


def simulate() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=2)
