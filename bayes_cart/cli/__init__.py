"""The ``bayes-cart`` command line: a thin layer over the library functions.

Each sub-command lives in its own module of this package and only calls library functions.
"""

from __future__ import annotations

import warnings

import typer

# Library noise that says nothing about the user's analysis: keep the terminal readable.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
warnings.filterwarnings(
    "ignore", message=".*ArviZ is undergoing a major refactor", category=FutureWarning
)
warnings.filterwarnings("ignore", message="The RandomType SharedVariables")

app = typer.Typer(
    name="bayes-cart",
    help="Bayesian population analysis of CAR-T cellular kinetics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from bayes_cart.cli import (
        example_cmd,
        fit_cmd,
        nca_cmd,
        run_example_cmd,
        simulate_cmd,
        validate_cmd,
    )

    app.command("validate")(validate_cmd.validate)
    app.command("nca")(nca_cmd.nca)
    app.command("simulate")(simulate_cmd.simulate)
    app.command("example")(example_cmd.example)
    app.command("fit")(fit_cmd.fit)
    app.command("run-example")(run_example_cmd.run_example)
    from bayes_cart.cli import vpc_cmd

    app.command("vpc")(vpc_cmd.vpc)
    from bayes_cart.cli import compare_cmd, loo_cmd

    app.command("compare")(compare_cmd.compare)
    app.command("loo")(loo_cmd.loo)
    from bayes_cart.cli import report_cmd

    app.command("report")(report_cmd.report)
    from bayes_cart.cli import study_cmd

    app.add_typer(study_cmd.app, name="study")


_register()

__all__ = ["app"]
