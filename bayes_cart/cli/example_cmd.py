"""``bayes-cart example``: write the bundled example dataset and its truth to a folder.

Exit codes: 0 done, 2 the folder cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bayes_cart.example import EXAMPLE_SEED, EXAMPLE_TRIALS, write_example

DESCRIPTIONS = {
    "data": "dataset: one row per sample + NONMEM dosing rows (EVID=1, AMT = CAR+ cells)",
    "truth_population": "true population values, covariate effects, trial deviations, design",
    "truth_individual": "true kinetic parameters, response status and etas of each patient",
    "readme": "how the example was generated",
}


def example(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the files to.")],
    regenerate: Annotated[
        bool, typer.Option(help="Simulate again instead of copying the shipped files.")
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed when regenerating (the default gives the shipped files).")
    ] = EXAMPLE_SEED,
) -> None:
    """Write the virtual 7-trial CAR-T meta-analysis (218 patients) and its truth."""
    console = Console(highlight=False)
    if out.exists() and not out.is_dir():
        console.print(f"[bold red]error:[/] {escape(str(out))} exists and is not a folder")
        raise typer.Exit(code=2)
    try:
        paths = write_example(out, regenerate=regenerate, random_seed=seed)
    except OSError as exc:
        console.print("[bold red]error:[/]", escape(str(exc)))
        raise typer.Exit(code=2) from None
    n = sum(t.n for t in EXAMPLE_TRIALS)
    trials = ", ".join(f"{t.name} ({t.n})" for t in EXAMPLE_TRIALS)
    how = f"regenerated with seed {seed}" if regenerate else "shipped files copied"
    console.print(f"Virtual CAR-T meta-analysis: {n} patients in {len(EXAMPLE_TRIALS)} trials")
    console.print(f"  {trials}", markup=False)
    console.print(f"  ({how}; times in days, DV in transgene copies/ug DNA)")
    for key, path in paths.items():
        console.print(f"  {path}: {DESCRIPTIONS.get(key, key)}", markup=False)
    console.print(f"Next: bayes-cart validate {paths['data']}", markup=False)
