"""Starting values of the sampler: data-informed per patient, consistent at every level.

Every chain starts from the same data-informed point (the structure's per-patient estimates
of :mod:`bayes_cart.kinetics.initial_estimates`, mapped onto the model's free variables);
only the population-level variables get the sampler's random jitter, so chains still start
apart where R-hat needs it, while no chain starts with patient-level values the data exclude.

What is set, for each estimated parameter ``p`` with per-patient estimates ``x_i`` (``log``
below is the parameter's scale: logit for a logit-normal fraction, :mod:`bayes_cart.model.scales`):

* the log typical value (``log_<p>`` or ``log_<p>_avg``): the median of ``log x_i``;
* the IIV SD ``omega_<p>``: the spread of ``log x_i`` (clipped to 0.1-1.5);
* centred individual values ``log_<p>_i`` (and centred blocks): ``log x_i``;
* non-centred ``z_<p>``: ``(log x_i - median) / omega``, clipped to +-3;
* a group's mean ``m_<group>_<p>`` (``centered_group = "mean"``): the median of its
  patients' ``log x_i``;
* partially centred ``pc_<p>`` (weights ``w_i``): ``w_i median + omega^(w_i - 1) (log x_i -
  median)``;
* ``log_Cmax_i`` (the ``cmax`` coordinates): the observed peak;
* ``log_<block>_fold_i`` (the ``fold`` coordinates): ``log(beta_i T1_i)`` and ``log T1_i``;
* the residual SD ``sigma``: 0.5 (log scale).

Estimates outside the prior's plausible range (typical +- 3 combined prior SDs on the log
scale) are clipped to it; NaN estimates are filled with the median over patients, then with
the prior median.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.initial_estimates import read_profiles
from bayes_cart.model.model_data import ModelData
from bayes_cart.model.scales import parameter_scale, scaled_name, to_scale
from bayes_cart.model.spec import ModelSpec, iiv_prior_scale

#: Starting residual SD (log scale): a typical qPCR assay's.
SIGMA_START = 0.5

#: Offset (in IIV SDs) of a start exactly at the typical value; see :func:`initial_values`.
NUDGE = 1e-3

__all__ = ["NUDGE", "SIGMA_START", "initial_values", "patient_level_variables", "starting_point"]


def _plausible(spec: ModelSpec, name: str, values: np.ndarray) -> np.ndarray | None:
    """Return estimates on the parameter's scale (log or logit), filled and clipped.

    They are clipped to the prior's plausible range; None for a parameter without a prior.
    """
    p = spec.doc.parameters.get(name)
    if p is None or p.typical is None or p.typical.dist not in ("LogNormal", "LogitNormal"):
        return None
    scale = parameter_scale(p)
    mid, sd = to_scale(p.typical.median, scale), p.typical.sigma
    iiv = iiv_prior_scale(p.iiv)
    half = 3.0 * np.hypot(sd, iiv)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = to_scale(np.asarray(values, dtype=float), scale)
    logs = np.where(np.isfinite(logs), logs, np.nan)
    fill = np.nanmedian(logs) if np.isfinite(logs).any() else mid
    logs = np.where(np.isfinite(logs), logs, fill)
    return np.clip(logs, mid - half, mid + half)


def patient_level_variables(model: pm.Model, n_patients: int) -> set[str]:
    """Names of free variables with one value per patient (or per patient and parameter).

    Includes the centred and non-centred parts of parameters centred for some patients only
    (``model.bayes_cart_patient_subsets``).
    """
    out = set(getattr(model, "bayes_cart_patient_subsets", ()))
    static = {rv.name: rv.type.shape for rv in model.free_RVs}
    if any(None in shape for shape in static.values()):  # one compiled function for all
        static = {k: tuple(int(s) for s in v) for k, v in model.eval_rv_shapes().items()}
    for rv in model.free_RVs:
        dims = model.named_vars_to_dims.get(rv.name) or ()
        shape = tuple(static[rv.name])
        if {"patient", "patient_dp"} & set(dims) or (len(shape) == 2 and shape[0] == n_patients):
            out.add(rv.name)
    return out


def starting_point(spec: ModelSpec, md: ModelData) -> dict[str, Any]:
    """Per-patient log estimates and IIV SDs at the data-informed start (no model needed).

    Returns
    -------
    dict
        ``logs`` (``{parameter: log estimate per patient}``, filled and clipped), ``omegas``
        (``{parameter: starting IIV SD}``) and ``profiles`` (the
        :class:`~bayes_cart.kinetics.initial_estimates.ProfileSummary`); empty ``logs`` for a
        structure without estimates.
    """
    kin = get_kinetics(spec.doc.kinetics)
    cens = md.cens
    infusions = getattr(md, "infusions", None)
    if infusions is not None:  # read the first infusion's profile: samples before the second
        second = infusions.start[md.patient_index, 1]
        cens = np.where(md.time > second, 1, cens)
    prof = read_profiles(md.time, md.log_dv, cens, md.patient_index, md.n_patients)
    logs: dict[str, np.ndarray] = {}
    if kin.initial_estimates is not None:
        for name, values in kin.initial_estimates(prof).items():
            clipped = _plausible(spec, name, values)
            if clipped is not None:
                logs[name] = clipped
    omegas = {name: float(np.clip(np.std(x), 0.1, 1.5)) for name, x in logs.items()}
    return {"logs": logs, "omegas": omegas, "profiles": prof}


def initial_values(
    model: pm.Model, spec: ModelSpec, md: ModelData, start: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Data-informed starting values on the natural scale of each free variable.

    Parameters
    ----------
    model : pymc.Model
        The built model (its free variable names decide what is set; its
        ``bayes_cart_centring`` masks say which patients are centred where only some are).
    spec : ModelSpec
        The spec (priors bound the estimates).
    md : ModelData
        The observations.
    start : dict, optional
        A :func:`starting_point` to use instead of the data-informed one (refined values).

    Returns
    -------
    dict
        ``{free variable name: value}``; variables not listed start at PyMC's default.
    """
    start = starting_point(spec, md) if start is None else start
    start = dict(start, logs={k: np.array(v, dtype=float) for k, v in start["logs"].items()})
    logs, omegas, prof = start["logs"], start["omegas"], start["profiles"]
    if not logs:
        return {}
    masks = getattr(model, "bayes_cart_centring", None) or {}
    weights = getattr(model, "bayes_cart_partial_weights", None) or {}
    free = {rv.name for rv in model.free_RVs}
    init: dict[str, Any] = {}
    for name, x in logs.items():
        typical = float(np.median(x))
        centred = scaled_name(parameter_scale(spec.doc.parameters[name]), name)
        for var in (centred, f"{centred}_avg"):
            if var in free:
                init[var] = np.asarray(typical)
        omega = omegas[name]
        if f"omega_{name}" in free:
            init[f"omega_{name}"] = np.asarray(omega)
        # A patient whose estimate is missing starts at the typical value; where the data do
        # not inform the parameter either (no sample after the peak, say) its gradient would
        # then be exactly 0, a start nutpie refuses ("bad initial gradient"): nudge it.
        x = np.where(x == typical, typical + NUDGE * omega, x)
        logs[name] = x
        mask = masks.get(name)
        if f"{centred}_i" in free:
            init[f"{centred}_i"] = x if mask is None else x[mask]
        if f"z_{name}" in free:
            z = np.clip((x - typical) / omega, -3.0, 3.0)
            init[f"z_{name}"] = z if mask is None else z[~mask]
        group_mean = f"m_{(md.group_column or 'group').lower()}_{name}"
        if group_mean in free:  # centered_group = "mean": each group's median estimate
            groups = np.arange(len(md.group_levels))
            init[group_mean] = np.array([np.median(x[md.group_index == g]) for g in groups])
        w = weights.get(name)
        if f"pc_{name}" in free and w is not None:  # partially centred: see model/build.py
            init[f"pc_{name}"] = w * typical + omega ** (w - 1.0) * (x - typical)
    if "log_Cmax_i" in free and np.isfinite(prof.log_peak).any():
        peak = np.where(np.isfinite(prof.log_peak), prof.log_peak, np.nanmedian(prof.log_peak))
        init["log_Cmax_i"] = peak
    blocks = [list(b) for b in spec.doc.iiv.blocks]
    if "log_beta_T1_fold_i" in free and ["beta", "T1"] not in blocks:
        blocks.append(["beta", "T1"])  # the diagonal fold block of independent beta, T1
    for block in blocks:
        label = "_".join(block)
        if not all(b in logs for b in block):
            continue
        scales = {parameter_scale(spec.doc.parameters[b]) for b in block}
        centred = scaled_name(scales.pop() if len(scales) == 1 else "scaled", label)
        mask = masks.get(block[0])
        if f"log_{label}_fold_i" in free:
            init[f"log_{label}_fold_i"] = np.stack(
                [logs[b] + (logs["T1"] if b == "beta" else 0.0) for b in block], axis=1
            )
        if f"chol_{label}" in free:
            # packed lower triangle, row by row, of diag(omegas): independent start; setting it
            # also keeps PyMC from drawing the LKJ's SD prior for its support point (that draw
            # fails inside nutpie's initialisation with some sets of overrides)
            k = len(block)
            packed = np.diag([omegas[b] for b in block])[np.tril_indices(k)]
            init[f"chol_{label}"] = packed
        if f"{centred}_i" in free:
            values = np.stack([logs[b] for b in block], axis=1)
            init[f"{centred}_i"] = values if mask is None else values[mask]
        if f"z_{label}" in free:
            z = np.stack(
                [np.clip((logs[b] - np.median(logs[b])) / omegas[b], -3, 3) for b in block],
                axis=1,
            )
            init[f"z_{label}"] = z if mask is None else z[~mask]
    if "sigma" in free:
        init["sigma"] = np.asarray(SIGMA_START)
    return init
