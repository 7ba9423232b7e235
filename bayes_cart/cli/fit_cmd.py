"""``bayes-cart fit``: fit a model spec; write fit.nc, summary.csv, shrinkage.csv, diagnostics.json.

Exit codes: 0 done, 1 invalid data, spec or start (or the results could not be written), 2 a
missing file, a bad option or an output folder that cannot take the results. The options, the
spec, the data and the output folder are checked, in that order, before the sampling modules
are imported and the model is compiled, so a bad input is reported within a second or two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()

#: ``bayes_cart.inference.sampling.SAMPLERS``, repeated here so that a bad ``--sampler`` is refused
#: before PyMC is imported (a test checks that the two agree).
SAMPLER_NAMES = ("auto", "nutpie", "nutpie-jax", "pymc", "numpyro")


def _method_problem(method: str, sampler: str, low_rank: bool) -> str | None:
    """Return what is wrong with ``--method`` and the NUTS-only options given with it."""
    from bayes_cart.inference.approximate import METHODS, check_method

    if method not in METHODS:
        return f"--method: unknown inference method {method!r}; choose one of {', '.join(METHODS)}"
    try:
        check_method(method, sampler=sampler, low_rank=low_rank)
    except ValueError as exc:
        return f"--method {method}: " + str(exc).split(": ", 1)[-1]
    return None


def _option_problem(
    chains: int,
    tune: int,
    draws: int,
    target_accept: float,
    seed: int,
    time_unit: str | None,
    sampler: str = "auto",
    solver: str = "closed_form",
) -> str | None:
    """Return what is wrong with the sampler options (None when they are fine)."""
    from bayes_cart.kinetics.solvers import SOLVERS
    from bayes_cart.units import to_days

    if sampler not in SAMPLER_NAMES:
        return f"--sampler: unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}"
    if solver not in SOLVERS:
        return f"--solver: unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}"

    if chains < 2:
        return (
            f"--chains must be at least 2 (R-hat compares chains), got {chains}; "
            "use --chains 2 for a quick run"
        )
    if draws < 1:
        return f"--draws must be at least 1, got {draws}"
    if tune < 0:
        return f"--tune must be >= 0, got {tune}"
    if not 0 < target_accept < 1:
        return f"--target-accept must be in (0, 1), got {target_accept:g}"
    if seed < 0:
        return f"--seed must be >= 0, got {seed}"
    try:
        to_days(time_unit or "day")
    except ValueError as exc:
        return f"--time-unit: {exc}"
    return None


def check_before_fitting(
    out: Path,
    overwrite: bool,
    chains: int,
    tune: int,
    draws: int,
    target_accept: float,
    seed: int,
    time_unit: str | None,
) -> None:
    """Exit 2 with a one-line message when an option or the output folder is unusable."""
    from bayes_cart.errors import OutputError
    from bayes_cart.inference.io import check_output_dir

    problem = _option_problem(chains, tune, draws, target_accept, seed, time_unit)
    if problem is None:
        try:
            check_output_dir(out, overwrite=overwrite)
        except OutputError as exc:
            problem = f"--out {exc}"
    if problem is not None:
        console.print(f"[red]{escape(problem)}[/red]")
        raise typer.Exit(code=2)


def check_spec_against_data(dataset: Any, spec: Any) -> None:
    """Exit 1 with the problem when the spec does not fit the data (covariates, groups...).

    :func:`bayes_cart.model.model_data.prepare_model_data` run once before the sampling modules are
    imported (it runs again inside the fit, which then prints its warnings): a formula naming
    no column, an unknown reference level or trial column is reported in about a second
    instead of after the PyMC import.
    """
    import warnings

    from bayes_cart.cli.common import error_line
    from bayes_cart.errors import BayesCartError
    from bayes_cart.model.model_data import prepare_model_data

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepare_model_data(dataset, spec)
    except BayesCartError as exc:
        console.print(f"[red]{escape(error_line(exc))}[/red]")
        raise typer.Exit(code=1) from None


def fit(
    data: Annotated[
        str, typer.Argument(help="Dataset (CSV/Parquet), or 'example' for the bundled one.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (new or empty; see --overwrite).")
    ] = Path("fit"),
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the results of a previous fit in --out (a folder holding only "
            "fit.nc, summary.csv, shrinkage.csv, diagnostics.json), once the new fit has "
            "succeeded.",
        ),
    ] = False,
    model: Annotated[
        str, typer.Option("--model", help="Spec name (liu2021...) or TOML file.")
    ] = "liu2021",
    covariates: Annotated[
        list[str] | None,
        typer.Option(
            "--covariates",
            help="Formula per parameter, e.g. 'beta ~ RESPONSE + TUMOR_TYPE'; repeatable.",
        ),
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", help="Reference level, e.g. RESPONSE=PD/NR; repeatable."),
    ] = None,
    trial: Annotated[
        str | None,
        typer.Option(
            "--trial",
            help="Trial column, 'random' (partial pooling) or 'fixed': TRIAL:random:beta,alpha.",
        ),
    ] = None,
    distribution: Annotated[
        str | None,
        typer.Option(
            "--distribution", help="Patients with a distribution phase, e.g. \"TRIAL == 'DLBCL'\"."
        ),
    ] = None,
    chains: Annotated[int, typer.Option(help="Chains.")] = 4,
    tune: Annotated[int, typer.Option(help="Tuning draws per chain.")] = 1000,
    draws: Annotated[int, typer.Option(help="Posterior draws per chain.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    sampler: Annotated[
        str,
        typer.Option(
            help="auto (nutpie with Numba for the closed form), nutpie, nutpie-jax, pymc or "
            "numpyro."
        ),
    ] = "auto",
    target_accept: Annotated[float, typer.Option(help="NUTS target acceptance.")] = 0.9,
    solver: Annotated[
        str,
        typer.Option(
            help="Kinetic solver: closed_form (the structure's analytical solution), linear "
            "(matrix exponential of its linear ODE phases) or ode (adaptive diffrax)."
        ),
    ] = "closed_form",
    time_unit: Annotated[
        str | None,
        typer.Option(
            "--time-unit",
            help="Unit of TIME in the data (default: the spec's [data] time_unit, else day).",
        ),
    ] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option(
            "--columns",
            help="Column role ROLE=NAME, e.g. DV=CONC (repeatable); over the spec's [data] "
            "columns.",
        ),
    ] = None,
    time_varying: Annotated[
        list[str] | None,
        typer.Option(
            "--time-varying",
            help="A covariate that changes over time (repeatable); a 0/1 column that switches "
            "on once can enter a formula as a step covariate, e.g. --covariates 'alpha ~ TOCI'.",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Per-chain sampler progress (draws, tuning or sampling, divergences, step "
            "size, gradients per draw): a live table in a terminal, a line a minute otherwise; "
            "--no-progress: none.",
        ),
    ] = None,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry/--no-retry",
            help="When the run has divergences, sample it again at target_accept 0.95.",
        ),
    ] = True,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend/--no-extend",
            help="When healthy chains mix too slowly for the gate (R-hat > 1.01 or ESS < 400, "
            "no divergences) and up to 4x the draws would do, sample more chains.",
        ),
    ] = True,
    low_rank: Annotated[
        bool,
        typer.Option(
            "--low-rank/--diagonal",
            help="Mass matrix adapted by nutpie: low-rank modified (follows one slow "
            "collective direction, e.g. the residual SD in sparse designs) or diagonal.",
        ),
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="Inference: nuts (MCMC, the default, judged by the diagnostics gate), or an "
            "approximation: advi (mean-field), pathfinder or laplace (MAP + Hessian): faster, "
            "intervals may be too narrow; they take chains x draws draws and ignore the NUTS "
            "options.",
        ),
    ] = "nuts",
) -> None:
    """Fit a hierarchical model; write DIR/fit.nc, summary.csv, shrinkage.csv, diagnostics.json."""
    from bayes_cart.cli.common import error_line, load_data_or_exit, read_spec
    from bayes_cart.errors import SpecError
    from bayes_cart.model.spec import parse_covariate_option

    # cheap checks first (no PyMC, no ArviZ imported yet): options, then the spec
    problem = _method_problem(method, sampler, low_rank) or _option_problem(
        chains, tune, draws, target_accept, seed, time_unit, sampler=sampler, solver=solver
    )
    if problem is not None:
        console.print(f"[red]{escape(problem)}[/red]")
        raise typer.Exit(code=2)
    try:
        spec = file_spec = read_spec(model)  # its [data] table, named by its own file
        formulas = dict(parse_covariate_option(c) for c in covariates or [])
        refs = {}
        for r in reference or []:
            if "=" not in r:
                raise SpecError("--reference", f"{r!r}: expected COLUMN=LEVEL")
            k, v = r.split("=", 1)
            refs[k.strip()] = v.strip()
        overrides = {}
        if trial:
            parts = trial.split(":")
            overrides = {
                "column": parts[0],
                "mode": parts[1] if len(parts) > 1 else "random",
                "parameters": parts[2].split(",") if len(parts) > 2 else ["beta", "alpha"],
            }
        spec = spec.with_overrides(covariates=formulas, reference=refs, group=overrides or None)
        if distribution is not None:
            spec = spec.replace(distribution_phase={"enabled_if": distribution})
    except SpecError as exc:
        console.print(f"[red]{escape(error_line(exc))}[/red]")
        raise typer.Exit(code=1) from None
    dataset = load_data_or_exit(
        data, time_unit=time_unit, columns=columns, time_varying=time_varying, spec=file_spec
    )
    check_spec_against_data(dataset, spec)
    check_before_fitting(out, overwrite, chains, tune, draws, target_accept, seed, time_unit)

    from bayes_cart.cli.common import StepPrinter, print_fit_outcome, sampler_progress
    from bayes_cart.errors import ApproximationError, OutputError
    from bayes_cart.inference.io import FIT_OUTPUTS, write_fit_outputs
    from bayes_cart.inference.sampling import fit as run_fit
    from bayes_cart.inference.sampling import resolve_sampler
    from bayes_cart.inference.shrinkage import eta_shrinkage, high_shrinkage_text

    try:
        display = sampler_progress(console, progress)
        with StepPrinter(console, display.active) as on_step, display:
            result = run_fit(
                dataset,
                spec,
                sampler=sampler,
                chains=chains,
                tune=tune,
                draws=draws,
                random_seed=seed,
                target_accept=target_accept,
                solver=solver,
                progress=display.mode == "live",
                on_step=on_step,
                on_progress=display if display.active else None,
                extend=extend,
                retry=retry,
                low_rank=low_rank,
                method=method,
            )
    except (SpecError, ValueError, ApproximationError) as exc:
        console.print(f"[red]{escape(error_line(exc))}[/red]")
        raise typer.Exit(code=1) from None
    settings = {
        "sampler": resolve_sampler(sampler, solver),
        "solver": solver,
        "chains": chains,
        "tune": tune,
        "draws": draws,
        "seed": seed,
        "low_rank": low_rank,
        "method": method,
    }
    if method != "nuts":  # an approximation: one chain of chains x draws, no NUTS settings
        settings.update(sampler=None, chains=1, tune=0, draws=chains * draws)
    try:
        summary = write_fit_outputs(result, out, settings, overwrite=overwrite)
    except (OutputError, OSError) as exc:
        console.print(f"[red]the results could not be written: {escape(str(exc))}[/red]")
        raise typer.Exit(code=1) from None
    md = result.model_data

    approximate = method != "nuts"
    title = f"{spec.name}: population parameters"
    if approximate:
        from bayes_cart.inference.approximate import METHOD_LABELS

        title += f" (APPROXIMATE: {METHOD_LABELS[method]})"
    table = Table(title=escape(title))
    # eta-shrinkage on the IIV rows (omega_<p>), as NONMEM lists ETASHRINK next to OMEGA
    shrinkage_table = eta_shrinkage(result.idata)
    shrinkage = shrinkage_table.set_index("parameter")["shrinkage"]
    columns = ("parameter", "q50", "q5", "q95") + (() if approximate else ("r_hat", "ess_bulk"))
    columns += ("eta-shrinkage",) if len(shrinkage) else ()
    for col in columns:
        table.add_column(col, justify="right" if col != "parameter" else "left")
    for _, row in summary.iterrows():
        cells = [escape(row["parameter"]), f"{row['q50']:.4g}", f"{row['q5']:.4g}"]
        cells.append(f"{row['q95']:.4g}")
        if not approximate:
            cells += [f"{row['r_hat']:.3f}", f"{row['ess_bulk']:.0f}"]
        if len(shrinkage):
            iiv = row["parameter"].removeprefix("omega_")
            shown = row["parameter"].startswith("omega_") and iiv in shrinkage.index
            cells.append(f"{shrinkage[iiv]:.0%}" if shown else "")
        table.add_row(*cells)
    console.print(table)
    for note in md.notes:
        console.print(f"[cyan]note:[/cyan] {escape(note)}")
    high = high_shrinkage_text(shrinkage_table)
    if high:
        console.print(f"[cyan]note:[/cyan] {escape(high)}")
    print_fit_outcome(console, result, chains)
    written = ", ".join(str(out / name) for name in FIT_OUTPUTS)
    console.print(f"wrote {written}", markup=False)
