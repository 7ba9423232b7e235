"""``bayes-cart nca``: placeholder until implemented."""

from __future__ import annotations

import typer


def nca() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=2)
