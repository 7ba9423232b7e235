"""``bayes-cart validate``: placeholder until implemented."""

from __future__ import annotations

import typer


def validate() -> None:
    """Not implemented yet."""
    raise typer.Exit(code=2)
