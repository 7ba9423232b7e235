"""The scale on which a parameter's variability acts: log-normal or logit-normal.

Most kinetic parameters are positive and vary log-normally between patients (NONMEM's
``P = TVP * EXP(ETA)``, Monolix's ``logNormal``): the typical value, the covariate effects
and the random effects add up on the log scale. A *fraction* such as Stein's ``FB`` (the
share of the decline that follows the slow phase) lives in (0, 1); a log-normal fraction can
cross 1, where the model is undefined and the sampler diverges. Such a parameter is declared
with a ``LogitNormal`` typical prior and then varies logit-normally (Monolix's
``logitNormal``): ``logit(P_i) = logit(TVP) + covariate effects + eta_i``, covariate effects
being log odds ratios.

The model's variables carry the scale in their names: ``log_<p>``, ``log_<p>_i`` for a
log-normal parameter and ``logit_<p>``, ``logit_<p>_i`` for a logit-normal one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np
from scipy.special import expit, logit

Scale = Literal["log", "logit"]

__all__ = ["Scale", "from_scale", "parameter_scale", "scaled_name", "to_scale"]


def parameter_scale(parameter: Any) -> Scale:
    """Return the scale of a :class:`~bayes_cart.model.spec.ParameterSpec`'s variability.

    ``"logit"`` for a ``LogitNormal`` typical prior, ``"log"`` otherwise (log-normal,
    fixed, or set from the data).
    """
    typical = getattr(parameter, "typical", None)
    return "logit" if typical is not None and typical.dist == "LogitNormal" else "log"


def scaled_name(scale: Scale, name: str) -> str:
    """Name of a model variable on ``scale``: ``log_<name>`` or ``logit_<name>``."""
    return f"{scale}_{name}"


def to_scale(value: Any, scale: Scale, xp: ModuleType = np) -> Any:
    """Map natural-scale values onto the parameter's scale (``log`` or ``logit``)."""
    if scale == "logit":
        return logit(value) if xp is np else xp.log(value) - xp.log1p(-value)
    return xp.log(value)


def from_scale(value: Any, scale: Scale, xp: ModuleType = np) -> Any:
    """Map values on the parameter's scale back to the natural scale (``exp`` or ``expit``).

    ``xp`` is ``numpy`` or ``pytensor.tensor`` (whose ``sigmoid`` is the inverse logit).
    """
    if scale == "logit":
        return expit(value) if xp is np else xp.sigmoid(value)
    return xp.exp(value)
