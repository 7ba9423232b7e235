"""Per-patient coordinates that follow the residual SD (``sampling.sigma_scaled = true``).

With a few samples per patient, the residual SD ``sigma`` and every patient's parameters move
together: where ``sigma`` is smaller, each patient's data pin its parameters more tightly, so
the width of each patient's conditional posterior scales like ``sigma^v`` with ``v`` the share
of that patient's posterior precision that comes from its own data. In the coordinates a
sampler sees, this is a funnel along ``sigma`` through hundreds of dimensions at once: on the
80-patient, 5-samples-per-patient panel dataset the log density of ``liu2021`` correlated at
-0.88 with ``log sigma`` and varied six times as much as a Gaussian of its dimension would
(``docs/benchmarks.md``, session 10), which is what a low E-BFMI reports.

The remedy is an exact location-scale change of every per-patient normal variable ``x`` (a
centred ``log p_i``, a non-centred ``z``, a partially centred ``pc``, ``log Cmax_i``, a centred
block): with ``r = (sigma / SIGMA_START)^v`` and a fixed anchor ``a`` (the variable's
data-informed starting value), the sampler moves ``u`` with

    u ~ Normal(a + (mean - a) / r, sd / r),      x = a + r (u - a),

so ``x ~ Normal(mean, sd)`` exactly (for a block, ``u ~ MvNormal(a + (mean - a) / r,
diag(1 / r) L)``), whatever ``v`` and ``a`` are, as long as they do not depend on the
parameters. The sampled variable is ``ss_<name>``; ``v`` per patient and parameter is
:data:`ELASTICITY_SHRINK` times the partial-centring weight of
:func:`bayes_cart.model.centring.partial_centring_weights` (data information / (data
information + 1 / omega^2)), so a patient the data say little about keeps ``r = 1``. Both the
weights and the anchors are taken at each patient's conditional mode given the population at
the start (:func:`bayes_cart.model.centring.conditional_modes`, a few Newton steps from the
data-informed start): the closer the anchor is to the patient's posterior, the less moving
``sigma`` moves the patient off it. Every chain starts at ``u = a``.

Variables that hold a subset of the patients (``centering = "informed"``), the ``fold``
coordinates and the distribution-phase parameters are not rescaled. A swappable model (a
study worker's compiled-model cache, :mod:`bayes_cart.model.swap`) is built without the
rescaling, the same posterior in the plain coordinates: its anchors and shares would have to
become ``pm.Data`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pymc as pm

from bayes_cart.model.model_data import ModelData
from bayes_cart.model.spec import ModelSpec

__all__ = ["ELASTICITY_SHRINK", "PREFIX", "SigmaScaling", "sigma_scaling"]

#: Prefix of a rescaled variable's name.
PREFIX = "ss_"

#: Factor on the data shares ``v``. With the anchor ``d`` posterior SDs away from a patient's
#: posterior mean, moving ``sigma`` also drags ``x`` off its posterior by about ``v d`` per unit
#: of ``log sigma``, a coupling of its own; ``v / (1 + d^2)`` balances the two. On the sparse
#: panel dataset the refined anchors were 0.6-2 posterior SDs away (``docs/benchmarks.md``,
#: session 10), and halving ``v`` gave the best ESS of ``sigma`` (290 against 223 at 1 and
#: 200 without the rescaling).
ELASTICITY_SHRINK = 0.5


@dataclass
class SigmaScaling:
    """Anchors and elasticities of the rescaled variables, and the residual SD they follow.

    Attributes
    ----------
    sigma : tensor
        The model's residual SD (the ``sigma`` random variable).
    reference : float
        Value of ``sigma`` at which ``r = 1`` (the starting residual SD).
    anchors : dict
        ``{variable name: anchor}`` (the data-informed starting values of the variables).
    elasticity : dict
        ``{parameter: v per patient}`` in [0, 1].
    scaled : dict
        Filled while building: ``{sampled name: (anchor, v)}`` of every rescaled variable,
        ``v`` with the variable's shape (what a test or a reader needs to map points).
    """

    sigma: Any
    reference: float
    anchors: dict[str, np.ndarray]
    elasticity: dict[str, np.ndarray]
    scaled: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def _inputs(self, name: str, parameters: Sequence[str], shape: tuple[int, ...]) -> Any:
        anchor = self.anchors.get(name)
        if anchor is None or any(p not in self.elasticity for p in parameters):
            return None
        anchor = np.asarray(anchor, dtype=float)
        v = np.stack([self.elasticity[p] for p in parameters], axis=-1).reshape(shape)
        if anchor.shape != v.shape or not np.all(np.isfinite(anchor)):
            return None
        return anchor, np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0)

    def normal(
        self, name: str, mean: Any, sd: Any, parameter: str | Sequence[str], **kwargs: Any
    ) -> Any:
        """``Normal(mean, sd)`` per patient, sampled in the rescaled coordinates.

        ``parameter`` names the kinetic parameter of the variable (a list, one per column, for
        the non-centred variable of a block). Returns the value of the variable ``name`` (a
        tensor); falls back to the plain ``pm.Normal(name, ...)`` where the variable has no
        anchor.
        """
        params = [parameter] if isinstance(parameter, str) else list(parameter)
        n = self.elasticity[params[0]].shape[0] if params[0] in self.elasticity else 0
        shape = (n,) if len(params) == 1 else (n, len(params))
        got = self._inputs(name, params, shape)
        if got is None:
            return pm.Normal(name, mean, sd, **kwargs)
        anchor, v = got
        r = (self.sigma / self.reference) ** v
        u = pm.Normal(PREFIX + name, anchor + (mean - anchor) / r, sd / r, **kwargs)
        self.scaled[PREFIX + name] = (anchor, v)
        return anchor + r * (u - anchor)

    def mvnormal(self, name: str, mean: Any, chol: Any, parameters: Sequence[str]) -> Any:
        """``MvNormal(mean_i, L L')`` per patient (rows), sampled in the rescaled coordinates."""
        n = self.elasticity[parameters[0]].shape[0] if parameters[0] in self.elasticity else 0
        got = self._inputs(name, list(parameters), (n, len(parameters)))
        if got is None:
            return pm.MvNormal(name, mu=mean, chol=chol, shape=(n, len(parameters)))
        anchor, v = got
        r = (self.sigma / self.reference) ** v
        u = pm.MvNormal(
            PREFIX + name,
            mu=anchor + (mean - anchor) / r,
            chol=chol[None, :, :] / r[:, :, None],
            shape=anchor.shape,
        )
        self.scaled[PREFIX + name] = (anchor, v)
        return anchor + r * (u - anchor)


def _candidate_names(spec: ModelSpec) -> list[str]:
    """Every name a per-patient variable of ``spec`` may have (a superset is harmless)."""
    names = ["log_Cmax_i"]
    params = list(spec.doc.parameters)
    for p in params:
        names += [f"{w}_{p}_i" for w in ("log", "logit", "scaled")] + [f"z_{p}", f"pc_{p}"]
    for block in spec.doc.iiv.blocks:
        label = "_".join(block)
        names += [f"{w}_{label}_i" for w in ("log", "logit", "scaled")] + [f"z_{label}"]
    return names


def sigma_scaling(
    spec: ModelSpec,
    md: ModelData,
    sigma: Any,
    masks: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
) -> SigmaScaling | None:
    """Anchors and elasticities for ``spec`` on ``md`` (None where the structure has no start).

    The anchors are the starting values of
    :func:`bayes_cart.model.initial_values.initial_values` at each patient's conditional mode
    (:func:`bayes_cart.model.centring.conditional_modes`); every chain starts at ``u = a``.
    """
    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.model.centring import (
        conditional_modes,
        natural_values,
        partial_centring_weights,
    )
    from bayes_cart.model.initial_values import SIGMA_START, initial_values, starting_point

    start = starting_point(spec, md)
    if not start["logs"]:
        return None
    omegas = start["omegas"]
    with_iiv = [p for p in start["logs"] if spec.doc.parameters[p].iiv is not None]
    logs = conditional_modes(spec, md, start["logs"], omegas, SIGMA_START, with_iiv)
    start = dict(start, logs=logs)
    elasticity = partial_centring_weights(spec, md, logs, omegas, SIGMA_START, with_iiv)
    elasticity = {p: ELASTICITY_SHRINK * w for p, w in elasticity.items() if np.all(np.isfinite(w))}
    stub = SimpleNamespace(
        free_RVs=[SimpleNamespace(name=x) for x in _candidate_names(spec)],
        bayes_cart_centring=masks,
        bayes_cart_partial_weights=weights,
    )
    anchors = {
        k: np.asarray(v, dtype=float) for k, v in initial_values(stub, spec, md, start).items()
    }
    kin = get_kinetics(spec.doc.kinetics)
    if kin.log_peak_shift is not None and "C0" in logs:  # the peak of the refined values
        natural = natural_values(spec, md, logs)
        for name in kin.distribution_parameters:  # no phase in the anchor where not estimated
            natural.setdefault(name, np.zeros(md.n_patients))
        anchors["log_Cmax_i"] = logs["C0"] + np.asarray(kin.log_peak_shift(natural, np))
    return SigmaScaling(sigma, SIGMA_START, anchors, elasticity)
