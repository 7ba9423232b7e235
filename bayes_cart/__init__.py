"""bayes_cart: Bayesian population analysis of CAR-T cellular kinetics.

One import gives the main steps of an analysis script::

    import bayes_cart as bc

    data = bc.load_dataset("study.csv")                   # validate (DataError names the row)
    spec = bc.load_spec("liu2021").with_overrides(covariates={"beta": "RESPONSE"})
    result = bc.fit(data, spec, random_seed=1)            # NUTS, diagnostics, the gate
    bc.save_fit(result, "out/fit.nc")
    fitted = bc.load_fit("out/fit.nc")
    bc.population_summary(fitted.idata)                   # typical values, IIV, effects
    bc.eta_shrinkage(fitted.idata)                        # how much data inform each eta
    bc.contrast(fitted, by="RESPONSE")                    # posterior contrasts
    bc.vpc.vpc(fitted)                                    # visual predictive check
    bc.write_report(fitted, "out/report.html")

The names are loaded on first use (PEP 562), so ``import bayes_cart`` stays light and
``bc.load_fit`` does not import PyMC before it needs to; every submodule stays importable for
advanced use (``bayes_cart.model.build.build_model``,
``bayes_cart.inference.sampling.sample_posterior``...).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("bayes_cart")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from bayes_cart.errors import ConvergenceWarning, DataError, DataWarning, SpecError
from bayes_cart.kinetics import KineticModel, get_kinetics, list_kinetics, register_kinetics

#: public name -> module that defines it (imported on first access)
_LAZY = {
    # data
    "load_dataset": "bayes_cart.data.dataset",
    "summarise_nca": "bayes_cart.data.nca",
    # model specs
    "load_spec": "bayes_cart.model.spec",
    "list_specs": "bayes_cart.model.spec",
    "spec_from_dict": "bayes_cart.model.spec",
    "formula_variables": "bayes_cart.model.expressions",
    # inference
    "fit": "bayes_cart.inference.sampling",
    "Fit": "bayes_cart.inference.sampling",
    "build_model": "bayes_cart.model.build",
    "sample_posterior": "bayes_cart.inference.sampling",
    "save_fit": "bayes_cart.inference.io",
    "load_fit": "bayes_cart.inference.io",
    "write_fit_outputs": "bayes_cart.inference.io",
    # analysis
    "population_summary": "bayes_cart.analysis.summary",
    "eta_shrinkage": "bayes_cart.inference.shrinkage",
    "contrast": "bayes_cart.analysis.contrasts",
    "summarise_contrast": "bayes_cart.analysis.contrasts",
    "typical_metrics": "bayes_cart.analysis.ck_metrics",
    "individual_metrics": "bayes_cart.analysis.ck_metrics",
    "simulate_virtual_population": "bayes_cart.analysis.virtual_population",
    "compare_fits": "bayes_cart.analysis.loo",
    "patient_loo": "bayes_cart.analysis.loo",
    # checks
    "posterior_predictive_check": "bayes_cart.checks.ppc",
    "vpc_coverage": "bayes_cart.checks.vpc",
    "gof_table": "bayes_cart.checks.gof",
    "write_report": "bayes_cart.report",
    # simulation
    "make_design": "bayes_cart.simulate",
    "simulate_patients": "bayes_cart.simulate",
    "PopulationParameters": "bayes_cart.simulate",
    "write_data_csv": "bayes_cart.simulate",
    # the bundled example
    "example_data_path": "bayes_cart.example",
    "load_example": "bayes_cart.example",
    # method-comparison studies (more in bayes_cart.study)
    "load_study": "bayes_cart.study.spec",
    "run_study": "bayes_cart.study.runner",
    "write_study_report": "bayes_cart.report.study_report",
    # errors raised by the functions above (the common ones are imported eagerly)
    "OutputError": "bayes_cart.errors",
}

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "KineticModel",
    "SpecError",
    "__version__",
    "get_kinetics",
    "list_kinetics",
    "register_kinetics",
    *sorted(_LAZY),
]


#: modules reached from the top, several named like their function (``bc.nca.nca(...)``,
#: ``bc.vpc.vpc(...)``): top-level name -> the module, wherever it lives in the subpackages
_SUBMODULES = {
    "nca": "bayes_cart.data.nca",
    "vpc": "bayes_cart.checks.vpc",
    "gof": "bayes_cart.checks.gof",
    "ppc": "bayes_cart.checks.ppc",
    "loo": "bayes_cart.analysis.loo",
    "contrasts": "bayes_cart.analysis.contrasts",
    "simulate": "bayes_cart.simulate",
    "report": "bayes_cart.report",
    "study": "bayes_cart.study",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562)."""
    if name in _SUBMODULES:
        return import_module(_SUBMODULES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayes_cart' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
