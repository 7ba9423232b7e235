"""``bayes-cart simulate``: virtual patients from population values.

Writes a dataset (``--out``) and the per-patient truth next to it (``<out stem>_truth.csv``).
Exit codes: 0 done, 1 invalid design or population file, 2 missing file or bad option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from bayes_cart.errors import DataError, Problem, SpecError
from bayes_cart.simulate import (
    PopulationParameters,
    make_design,
    simulate_patients,
    write_data_csv,
)


def _parse_times(text: str) -> list[float]:
    try:
        times = [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"--times must be numbers separated by commas, got {text!r}"
        ) from None
    if not times or min(times) < 0:
        raise typer.BadParameter("--times needs at least one time >= 0 (days)")
    return times


def _parse_lloq(text: str | None) -> float | str | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # a design column


def _read_design(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(str(path), Problem(f"cannot read the design: {exc}")) from None


def truth_path(out: Path) -> Path:
    """Where the truth of a simulated dataset is written: ``<stem>_truth.csv`` next to it."""
    return out.with_name(f"{out.stem}_truth.csv")


def simulate(
    population: Annotated[
        Path, typer.Option("--population", "-p", help="Population values (.json or .toml).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset to write (CSV).")],
    design: Annotated[
        Path | None,
        typer.Option(help="Design CSV: one row per planned sample (ID, TIME, covariates)."),
    ] = None,
    n_patients: Annotated[
        int | None, typer.Option("--n-patients", help="Without --design: number of patients.")
    ] = None,
    times: Annotated[
        str | None, typer.Option(help="Without --design: sampling days, e.g. 1,4,7,14,28.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    lloq: Annotated[
        str | None,
        typer.Option(help="LLOQ: a number or a design column (default: the LLOQ column)."),
    ] = None,
    stop_after_blq: Annotated[
        int | None,
        typer.Option(help="Stop sampling a patient after this many consecutive BLQ samples."),
    ] = None,
) -> None:
    """Simulate virtual patients; write the dataset and the truth (``*_truth.csv``)."""
    console = Console(highlight=False)
    for path in (population, design):
        if path is not None and not path.exists():
            console.print(f"[bold red]error:[/] file not found: {escape(str(path))}")
            raise typer.Exit(code=2)
    if design is None and (n_patients is None or times is None):
        console.print("[bold red]error:[/] give --design, or both --n-patients and --times")
        raise typer.Exit(code=2)
    if design is not None and (n_patients is not None or times is not None):
        console.print("[bold red]error:[/] --design excludes --n-patients and --times")
        raise typer.Exit(code=2)
    try:
        pop = PopulationParameters.from_file(population)
        if design is not None:
            plan = _read_design(design)
        else:
            assert n_patients is not None and times is not None
            if n_patients < 1:
                raise typer.BadParameter("--n-patients must be >= 1")
            plan = make_design(n_patients, _parse_times(times))
        sim = simulate_patients(
            plan,
            pop,
            lloq=_parse_lloq(lloq),
            stop_after_consecutive_blq=stop_after_blq,
            random_seed=seed,
        )
    except (SpecError, DataError) as exc:
        if isinstance(exc, DataError) and exc.source == "design" and design is not None:
            exc = DataError(str(design), exc.problems)
        console.print("[bold red]invalid input[/]:")
        console.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None
    except (ValueError, typer.BadParameter) as exc:
        console.print("[bold red]error:[/]", escape(str(exc)))
        raise typer.Exit(code=2) from None
    data_file = write_data_csv(sim.data, out)
    truth_file = truth_path(out)
    sim.truth.to_csv(truth_file, index=False)
    n_obs = len(sim.data)
    n_blq = int((sim.data["CENS"] == 1).sum())
    skipped = int((~sim.states["sampled"]).sum())
    console.print(
        f"simulated {len(sim.truth)} patients, {n_obs} samples ({n_blq} BLQ"
        + (f", {skipped} not taken after consecutive BLQ" if skipped else "")
        + f"), seed {seed}"
    )
    console.print(f"data:  {data_file}", markup=False)
    console.print(f"truth: {truth_file}", markup=False)
