"""What a fit was solved with: its kinetic structure and solver (every prediction reuses them)."""

from __future__ import annotations

from typing import Any

__all__ = ["fit_kinetics", "fit_solver"]


def fit_solver(fit: Any) -> str:
    """Return the kinetic solver a fit was sampled with (``"closed_form"`` for older files)."""
    settings = getattr(fit, "settings", None) or {}
    return str(settings.get("solver", "closed_form"))


def fit_kinetics(fit: Any) -> str:
    """Return the name of the structure a fit solved (registered again if needed).

    The spec's structure, or that structure with a step change when a time-varying step
    covariate is in the formulas (:mod:`bayes_cart.model.step_covariates`), e.g.
    ``"liu2021+step(alpha)"``.
    """
    from bayes_cart.model.step_covariates import step_structure, structure_by_name

    settings = getattr(fit, "settings", None) or {}
    name = settings.get("kinetics")
    if name:
        return structure_by_name(str(name)).name
    step = getattr(getattr(fit, "model_data", None), "step", None)
    return step_structure(fit.spec.kinetics, step.parameters if step else ()).name
