"""The result of a fit, as a plain record: importing it (and reading a fit file) needs no PyMC.

:class:`Fit` is what :func:`bayes_cart.inference.sampling.fit` returns and
:func:`bayes_cart.inference.io.load_fit` reads back; every analysis takes one. It lives apart from
the sampler so that loading a fit and analysing it imports neither PyMC nor PyTensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import arviz as az

from bayes_cart.inference.diagnostics import Diagnostics
from bayes_cart.model.model_data import ModelData
from bayes_cart.model.spec import ModelSpec

__all__ = ["Fit"]


@dataclass
class Fit:
    """A fitted model: the InferenceData and everything needed to read it.

    Attributes
    ----------
    idata : arviz.InferenceData
        posterior, sample_stats, prior, prior_predictive, posterior_predictive,
        log_likelihood, observed_data, constant_data and ``fitted_data`` groups.
    spec : ModelSpec
        The spec that was fitted.
    dataset : bayes_cart.data.dataset.Dataset
        The data that were fitted.
    model_data : ModelData
        What the model saw (covariate design, notes on imputation...).
    diagnostics : Diagnostics
        The gate's results.
    timings : dict
        ``compile_seconds``, ``sampling_seconds``, ``predictive_seconds``.
    settings : dict
        How it was sampled: ``solver`` (the kinetic route every prediction from the fit
        uses), ``kinetics`` (the structure solved: the spec's, or it with a step change for
        a time-varying covariate), ``sampler``, ``chains``, ``tune``, ``draws``,
        ``target_accept``, ``random_seed``, ``extend``, ``retry``. Stored in ``fit.nc``.
    """

    idata: az.InferenceData
    spec: ModelSpec
    dataset: Any
    model_data: ModelData
    diagnostics: Diagnostics
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
