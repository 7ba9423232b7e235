"""The model: spec -> model data -> PyMC model.

``spec`` reads and validates a model specification (``ModelSpec``); ``covariates``,
``step_covariates`` and ``marginal`` turn the dataset's covariates into design matrices;
``model_data`` is the one place the dataset is read for model building; ``scales``,
``likelihood``, ``centring``, ``initial_values`` and ``marginal_model`` are the pieces that
``build`` puts together into the hierarchical PyMC model (:func:`build_model`).

Importing this package does not import PyMC: ``build_model`` is loaded on first access, so that
reading a spec or a fit file stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model"]


def __getattr__(name: str) -> Any:
    """Import ``build_model`` from :mod:`bayes_cart.model.build` on first access."""
    if name == "build_model":
        from bayes_cart.model.build import build_model

        return build_model
    raise AttributeError(f"module 'bayes_cart.model' has no attribute {name!r}")
