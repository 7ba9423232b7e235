"""Which patients to sample centred: where the data inform a parameter more than the IIV prior.

Centring a random effect (sampling ``log p_i ~ Normal(mu_i, omega)``) suits patients whose
data pin ``p_i`` down; non-centring (``log p_i = mu_i + omega z_i``) suits patients whose data
say little, where the centred form becomes a funnel. A spec lists the parameters it centres
(``sampling.centered``); with ``sampling.centering = "informed"`` only the patients whose data
inform the parameter are centred, the others sampled non-centred (the same model either way).

"Inform" is measured, not guessed: at the data-informed starting point
(:mod:`bayes_cart.model.initial_values`), the Fisher information of each patient's own
log-likelihood about ``log p_i`` is estimated by a central second difference of the closed-form
likelihood (separable by patient, so one evaluation per step moves every patient at once). A patient
is centred for ``p`` when that information exceeds the prior's, ``1 / omega_p^2``, i.e. when the
data determine ``log p_i`` better than the population does. For a correlated block, a patient is
centred when the data inform every parameter of the block.

``sampling.centering = "partial"`` goes one step further, after Papaspiliopoulos, Roberts and
Skold (2007) and Gorinova, Moore and Hoffman (2020): each independent random effect is sampled
*partially* centred, ``log p~_i ~ Normal(w_i mu_i, omega^w_i)`` with
``log p_i = mu_i + omega^(1 - w_i) (log p~_i - w_i mu_i)`` (exactly the model's
``Normal(mu_i, omega)``), with a weight per patient ``w_i = I_i / (I_i + 1 / omega^2)``: the
share of the patient's posterior precision that comes from its own data. ``w = 1`` is the
centred form, ``w = 0`` the non-centred one; for a normal likelihood this weight makes the
sampled coordinate independent of the population mean a priori and a posteriori.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
from bayes_cart.model.model_data import ModelData
from bayes_cart.model.scales import from_scale, parameter_scale, to_scale
from bayes_cart.model.spec import ModelSpec

#: Step of the second difference on the log scale.
STEP = 0.05

__all__ = [
    "STEP",
    "conditional_modes",
    "natural_values",
    "informed_patients",
    "partial_centring_weights",
    "patient_information",
]


def _patient_sum(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(index, weights=values, minlength=n)


def patient_information(
    spec: ModelSpec,
    md: ModelData,
    log_values: Mapping[str, np.ndarray],
    sigma: float,
    names: list[str],
) -> dict[str, np.ndarray]:
    """Per-patient information of the data about each parameter in ``names``, on its scale.

    The scale is log (logit for a logit-normal fraction, :mod:`bayes_cart.model.scales`).

    Parameters
    ----------
    spec : ModelSpec
        Gives the kinetics and the fixed values.
    md : ModelData
        Observations.
    log_values : mapping
        Per-patient log values of every estimated kinetic parameter (the starting point).
    sigma : float
        Residual SD (log scale) at the starting point.
    names : list of str
        Parameters to measure.

    Returns
    -------
    dict
        ``{name: information per patient}`` (minus the second derivative of the patient's
        log-likelihood in ``log p_i``; 0 where the data are flat, NaN where the closed form is
        not available).
    """
    kin = get_kinetics(spec.doc.kinetics)
    n = md.n_patients
    if kin.closed_form is None:
        return {name: np.full(n, np.nan) for name in names}
    base = natural_values(spec, md, log_values)
    loglik = _patient_loglik(spec, md, sigma)
    centre = loglik(base)
    out = {}
    for name in names:
        if name not in base:
            out[name] = np.full(n, np.nan)
            continue
        scale = parameter_scale(spec.doc.parameters[name])
        on_scale = to_scale(base[name], scale)
        up = dict(base, **{name: from_scale(on_scale + STEP, scale)})
        down = dict(base, **{name: from_scale(on_scale - STEP, scale)})
        info = -(loglik(up) - 2 * centre + loglik(down)) / STEP**2
        out[name] = np.where(np.isfinite(info), np.maximum(info, 0.0), 0.0)
    return out


def natural_values(
    spec: ModelSpec, md: ModelData, log_values: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every kinetic parameter per patient on its natural scale (fixed, from data, estimated)."""
    kin = get_kinetics(spec.doc.kinetics)
    n = md.n_patients
    base: dict[str, np.ndarray] = {}
    for name, p in spec.doc.parameters.items():
        if name not in kin.parameters:
            continue
        if p.fixed is not None:
            base[name] = np.full(n, float(p.fixed))
        elif p.from_data is not None and name in md.from_data:
            base[name] = np.asarray(md.from_data[name], dtype=float)
        elif name in log_values:
            base[name] = from_scale(np.asarray(log_values[name], dtype=float), parameter_scale(p))
    for name in kin.distribution_parameters:  # that phase only where it applies
        if name in base:
            base[name] = np.where(md.distribution_mask, base[name], 0.0)
    return base


def _patient_loglik(spec: ModelSpec, md: ModelData, sigma: float) -> Any:
    """``loglik(natural values) -> log-likelihood per patient`` (closed form, M3 censoring)."""
    kin = get_kinetics(spec.doc.kinetics)
    n = md.n_patients
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    lim = np.nan_to_num(md.log_limit, nan=0.0)
    idx = md.patient_index
    infusions = getattr(md, "infusions", None)

    def loglik(params: dict[str, np.ndarray]) -> np.ndarray:
        obs = {k: v[idx] for k, v in params.items()}
        with np.errstate(all="ignore"):
            if infusions is not None:  # one cohort per infusion, as in the model
                from bayes_cart.kinetics.superposition import superposed_solve

                mu = superposed_solve(kin, md.time, idx, params, infusions)["log_total"]
            else:
                mu = kin.solve(md.time, obs)["log_total"]
            ll = censored_loglik(md.log_dv, mu, sigma, index, lim, xp=np)
        return _patient_sum(np.where(np.isfinite(ll), ll, -1e10), idx, n)

    return loglik


def conditional_modes(
    spec: ModelSpec,
    md: ModelData,
    log_values: Mapping[str, np.ndarray],
    omegas: Mapping[str, float],
    sigma: float,
    names: list[str],
    iterations: int = 12,
    max_step: float = 0.5,
) -> dict[str, np.ndarray]:
    """Each patient's values moved towards the mode of its data x the population at the start.

    Coordinate-wise Newton steps on ``log L_i(p_i) - (log p_i - m_p)^2 / (2 omega_p^2)`` (the
    patient's log-likelihood and a normal IIV prior centred on the median start ``m_p``),
    every patient at once (the likelihood is separable by patient); a step that does not
    raise a patient's objective is halved once and otherwise not taken. Returns the values of
    ``names`` on their scales (others as given); where the closed form is missing, the input.
    """
    kin = get_kinetics(spec.doc.kinetics)
    out = {k: np.asarray(v, dtype=float).copy() for k, v in log_values.items()}
    if kin.closed_form is None:
        return out
    loglik = _patient_loglik(spec, md, sigma)
    names = [p for p in names if p in out]
    centres = {p: float(np.median(out[p])) for p in names}

    def objective(values: dict[str, np.ndarray]) -> np.ndarray:
        f = loglik(natural_values(spec, md, values))
        for p in names:
            f = f - 0.5 * ((values[p] - centres[p]) / omegas[p]) ** 2
        return f

    current = objective(out)
    for _ in range(iterations):
        for p in names:
            x = out[p]
            up = objective(dict(out, **{p: x + STEP}))
            down = objective(dict(out, **{p: x - STEP}))
            grad = (up - down) / (2 * STEP)
            curv = -(up - 2 * current + down) / STEP**2
            step = np.clip(grad / np.maximum(curv, 1.0 / omegas[p] ** 2), -max_step, max_step)
            step = np.where(np.isfinite(step), step, 0.0)
            for shrink in (1.0, 0.5):
                trial = dict(out, **{p: x + shrink * step})
                f = objective(trial)
                better = f > current
                out[p] = np.where(better, trial[p], out[p])
                current = np.where(better, f, current)
                step = np.where(better, 0.0, step)
    return out


def informed_patients(
    spec: ModelSpec,
    md: ModelData,
    log_values: Mapping[str, np.ndarray],
    omegas: Mapping[str, float],
    sigma: float,
) -> dict[str, np.ndarray]:
    """``{parameter: bool per patient}``: patients to centre, for each parameter to centre.

    A patient is centred for ``p`` when the information of its data about ``log p_i`` exceeds
    ``1 / omega_p^2`` (``omegas`` at the starting point); for a block, when it does for every
    parameter of the block. Parameters not in ``sampling.centered`` are absent.
    """
    centred = [p for p in spec.doc.sampling.centered if p in omegas]
    info = patient_information(spec, md, log_values, sigma, centred)
    masks = {p: info[p] * omegas[p] ** 2 > 1.0 for p in centred}
    for block in spec.doc.iiv.blocks:
        if all(b in masks for b in block):
            both = np.logical_and.reduce([masks[b] for b in block])
            for b in block:
                masks[b] = both
    return masks


def partial_centring_weights(
    spec: ModelSpec,
    md: ModelData,
    log_values: Mapping[str, np.ndarray],
    omegas: Mapping[str, float],
    sigma: float,
    names: list[str],
) -> dict[str, np.ndarray]:
    """``{parameter: weight per patient in [0, 1]}`` of the partially centred coordinates.

    ``w_i = I_i omega^2 / (1 + I_i omega^2)`` with ``I_i`` the information of patient i's data
    about ``log p_i`` (:func:`patient_information`) and ``omega`` the starting IIV SD.
    """
    info = patient_information(spec, md, log_values, sigma, names)
    out = {}
    for p in names:
        x = np.nan_to_num(info[p], nan=0.0) * omegas[p] ** 2
        out[p] = np.clip(x / (1.0 + x), 0.0, 1.0)
    return out
