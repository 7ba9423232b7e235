"""Kinetic parameters from a fit: fitted patients, typical patients, new patients, new trials.

These mirror :mod:`bayes_cart.model.build` in numpy, so that every analysis draws from a saved fit
without rebuilding the PyMC model:

* :func:`individual_parameters`: the posterior of every fitted patient's parameters;
* :func:`population_parameters`: patients with given covariates drawn from the population
  (``iiv=True``: new patients; ``iiv=False``: the typical patient of each covariate
  combination), in a fitted trial, a new trial or none (``group``);
* :func:`design_population_parameters`: the same for the fitted patients' own covariates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.step_change import AFTER, CHANGE_TIME
from bayes_cart.model.covariates import UNKNOWN_LEVEL
from bayes_cart.model.expressions import evaluate_subset
from bayes_cart.model.marginal import component_tables, enumerate_components
from bayes_cart.model.scales import from_scale, parameter_scale, scaled_name
from bayes_cart.predict.draws import draw_index, stacked, subset_draws
from bayes_cart.predict.route import fit_kinetics

__all__ = ["design_population_parameters", "individual_parameters", "population_parameters"]


def _stacked_da(da: xr.DataArray) -> xr.DataArray:
    return da.stack(sample=("chain", "draw")).transpose("sample", ...)


def individual_parameters(fit: Any) -> dict[str, np.ndarray]:
    """Posterior draws of every kinetic parameter of every fitted patient.

    Parameters
    ----------
    fit : Fit
        A fit (:func:`bayes_cart.inference.sampling.fit` or
        :func:`bayes_cart.inference.io.load_fit`).

    Returns
    -------
    dict
        ``{parameter: array (sample, patient)}`` for every parameter of the kinetic structure
        (fixed ones broadcast), ``sample`` = chains x draws.
    """
    post = fit.idata.posterior
    kin = get_kinetics(fit_kinetics(fit))
    n_sample = post.sizes["chain"] * post.sizes["draw"]
    n = fit.model_data.n_patients
    step = getattr(fit.model_data, "step", None)
    out: dict[str, np.ndarray] = {}
    for name in kin.parameters:
        var = f"{name}_i"
        if name == CHANGE_TIME and step is not None:
            out[name] = np.broadcast_to(step.change_time, (n_sample, n)).copy()
        elif var in post:
            out[name] = np.asarray(_stacked_da(post[var]))
        else:
            p = fit.spec.parameters.get(name)
            if p is not None and p.fixed is not None:
                value = p.fixed
            elif p is not None and p.from_data is not None:
                out[name] = np.broadcast_to(fit.model_data.from_data[name], (n_sample, n)).copy()
                continue
            else:
                value = kin.defaults.get(name, 0.0)
            out[name] = np.full((n_sample, n), float(value))
    return out


def _omega_matrix(post: xr.Dataset, names: list[str], labels: dict[str, str]) -> np.ndarray:
    """Per-draw covariance of the random effects (sample, p, p), from omegas and correlations."""
    n_sample = post.sizes["chain"] * post.sizes["draw"]
    k = len(names)
    sd = np.zeros((n_sample, k))
    for j, name in enumerate(names):
        var = f"omega_{labels[name]}"
        if var in post:
            sd[:, j] = np.asarray(_stacked_da(post[var]))
    corr = np.broadcast_to(np.eye(k), (n_sample, k, k)).copy()
    for var in post.data_vars:
        if not str(var).startswith("corr_"):
            continue
        members = str(var)[5:].split("_")
        inverse = {labels[n]: n for n in names}
        idx = [names.index(inverse[m]) for m in members if m in inverse]
        if len(idx) != len(members):
            continue
        values = np.asarray(_stacked_da(post[var]))
        if values.ndim == 1:  # a 2x2 block stores the single correlation
            corr[:, idx[0], idx[1]] = corr[:, idx[1], idx[0]] = values
        elif values.ndim == 2:  # larger blocks: upper-triangle correlations, row by row
            rows, cols = np.triu_indices(len(idx), 1)
            for j, (a, b) in enumerate(zip(rows, cols, strict=True)):
                corr[:, idx[a], idx[b]] = corr[:, idx[b], idx[a]] = values[:, j]
        else:
            for a, ia in enumerate(idx):
                for b, ib in enumerate(idx):
                    corr[:, ia, ib] = values[:, a, b]
    return corr * sd[:, :, None] * sd[:, None, :]


def population_parameters(
    fit: Any,
    patients: pd.DataFrame,
    *,
    n_draws: int | None = 500,
    iiv: bool = True,
    group: str = "fitted",
    random_seed: int | np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Parameters of new patients with the given covariates, drawn from the population.

    For each retained posterior draw the typical values, covariate effects and (optionally) new
    random effects ``eta ~ Normal(0, Omega)`` (with the fitted correlations) are combined as in
    the model; ``iiv=False`` gives the typical patient of each covariate combination. A patient
    missing a covariate the fit marginalised (``covariates.missing = "marginalize"``) gets, in
    each draw, a level drawn from that draw's ``prevalence_<column>`` (the same level for every
    parameter): the population predictive of a patient whose value is unknown.

    Parameters
    ----------
    fit : Fit
        A fit.
    patients : DataFrame
        One row per new patient with the covariate columns the model uses.
    n_draws : int, optional
        Posterior draws to use (random subset), all if None.
    iiv : bool
        Draw new random effects (prediction for new patients) or not (typical patient).
    group : {"fitted", "new", "none"}
        For a trial random effect: use the fitted trial effect for known trials ("fitted"),
        draw a new trial ("new"), or set it to zero ("none").
    random_seed : int or Generator
        Seed.

    Returns
    -------
    dict
        ``{parameter: array (sample, patient)}``.
    """
    rng = np.random.default_rng(random_seed)
    post = fit.idata.posterior
    doc = fit.spec.doc
    kin = get_kinetics(doc.kinetics)
    n_total = post.sizes["chain"] * post.sizes["draw"]
    sel = draw_index(n_total, n_draws, rng)
    s, n = len(sel), len(patients)
    estimated = list(fit.spec.estimated_parameters)
    labels = {p: p for p in estimated}

    design = fit.model_data.design
    # coded with the fit data's constants (center/scale means and SDs, medians, levels)
    new_design = design.evaluate(patients)

    mixture = _level_mixture(fit, patients, sel, rng)

    log_values: dict[str, np.ndarray] = {}
    for p in estimated:
        lab = labels[p]
        scale = parameter_scale(doc.parameters[p])
        typical = np.asarray(_stacked_da(post[scaled_name(scale, lab)]))[sel]
        log_mu = np.repeat(typical[:, None], n, axis=1)
        cols = design.effect_names(p)
        if cols:
            b = np.asarray(_stacked_da(post[f"b_{lab}"]))[sel]  # (s, effects)
            log_mu = log_mu + b @ new_design[p][cols].to_numpy().T
            if mixture is not None and p in mixture[1]:
                rows, drawn = mixture[0], mixture[1][p]  # drawn: (s, rows, effects)
                log_mu[:, rows] = typical[:, None] + np.einsum("se,sre->sr", b, drawn)
        if doc.group.mode == "random" and p in doc.group.parameters and group != "none":
            gdim = (fit.model_data.group_column or "group").lower()
            u = np.asarray(_stacked_da(post[f"u_{gdim}_{lab}"]))[sel]  # (s, levels)
            omega_g = np.asarray(_stacked_da(post[f"omega_{gdim}_{lab}"]))[sel]
            levels = list(fit.model_data.group_levels)
            col = fit.model_data.group_column
            gvals = patients[col].astype(str).tolist() if col in patients else [None] * n
            for j, g in enumerate(gvals):
                if group == "fitted" and g in levels:
                    log_mu[:, j] += u[:, levels.index(g)]
                else:
                    log_mu[:, j] += rng.normal(0.0, omega_g)
        log_values[p] = log_mu

    if iiv:
        names = [p for p in estimated if doc.parameters[p].iiv is not None]
        cov = _omega_matrix(post, names, labels)[sel]
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(names)))
        z = rng.standard_normal((s, n, len(names)))
        eta = np.einsum("sij,snj->sni", chol, z)
        for j, p in enumerate(names):
            log_values[p] = log_values[p] + eta[:, :, j]

    values = {p: from_scale(v, parameter_scale(doc.parameters[p])) for p, v in log_values.items()}
    # distribution phase
    mask = np.zeros(n, dtype=bool)
    if doc.distribution_phase.enabled_if:
        mask = evaluate_subset(doc.distribution_phase.enabled_if, patients).to_numpy()
    for p in kin.distribution_parameters:
        spec_p = doc.parameters.get(p)
        if spec_p is None:
            continue
        if spec_p.typical is not None and f"log_{p}" in post:
            log_v = np.repeat(np.asarray(_stacked_da(post[f"log_{p}"]))[sel][:, None], n, axis=1)
            if iiv and f"omega_{p}" in post:
                om = np.asarray(_stacked_da(post[f"omega_{p}"]))[sel]
                log_v = log_v + om[:, None] * rng.standard_normal((s, n))
            values[p] = np.where(mask[None, :], np.exp(log_v), 0.0)
        elif spec_p.fixed is not None:
            values[p] = np.full((s, n), spec_p.fixed)
    for p in kin.parameters:
        if p in values:
            continue
        spec_p = doc.parameters.get(p)
        if spec_p is not None and spec_p.fixed is not None:
            values[p] = np.full((s, n), spec_p.fixed)
        elif spec_p is not None and spec_p.from_data is not None:
            # not defined for new patients: use the median over the fitted patients
            values[p] = np.full((s, n), float(np.median(fit.model_data.from_data[p])))
        else:
            values[p] = np.full((s, n), float(kin.defaults.get(p, 0.0)))
    return values


def _level_mixture(
    fit: Any, patients: pd.DataFrame, sel: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Design rows, per draw, of new patients missing a marginalised covariate.

    For every patient missing one or more covariates with a fitted ``prevalence_<column>``
    (a missing value, or the text ``unknown``, which is not one of its levels), one combination
    of levels is drawn per posterior draw with probability ``prod_c prevalence_c[level]`` and
    the patient is coded with it (by the fit's design, so interactions and transforms are coded
    as in the fit).

    Returns
    -------
    tuple or None
        ``(rows, {parameter: array (sample, rows, effects)})``; None when no patient misses such
        a covariate.
    """
    design = fit.model_data.design
    post = fit.idata.posterior
    lower = {c.lower(): c for c in patients.columns}
    columns = [
        c
        for c in design.levels
        if design.missing == "marginalize" and f"prevalence_{c}" in post and c.lower() in lower
    ]
    source = [lower[c.lower()] for c in columns]
    patients = patients.copy()
    for s in source:  # "unknown" (e.g. a contrast's group of missing values) is missing too
        values = patients[s].astype(object)
        patients[s] = values.where(values.notna() & (values != UNKNOWN_LEVEL), None)
    codes = np.column_stack(
        [np.where(patients[s].isna().to_numpy(), -1, 0) for s in source]
        or [np.zeros(len(patients), dtype=np.int64)]
    )
    rows = np.flatnonzero((codes < 0).any(axis=1)) if columns else np.array([], dtype=np.int64)
    if len(rows) == 0:
        return None
    levels = {s: design.levels[c] for s, c in zip(source, columns, strict=True)}
    components, valid = enumerate_components(codes[rows], [len(levels[s]) for s in source])
    tables = component_tables(patients, rows, source, levels, components)
    coded = [design.evaluate(t) for t in tables]
    weight = np.broadcast_to(valid.astype(float), (len(sel), *valid.shape)).copy()
    for c, col in enumerate(columns):
        prevalence = np.asarray(_stacked_da(post[f"prevalence_{col}"]))[sel]  # (s, levels)
        missing = codes[rows, c] < 0
        weight[:, missing] *= prevalence[:, components[missing, :, c]]
    cumulative = np.cumsum(weight / weight.sum(axis=2, keepdims=True), axis=2)
    u = rng.uniform(size=(len(sel), len(rows), 1))
    choice = np.minimum((cumulative < u).sum(axis=2), components.shape[1] - 1)  # (s, rows)
    drawn = {}
    for p in design.matrices:
        stacked = np.stack([coded[k][p].to_numpy(dtype=float)[rows] for k in range(len(coded))])
        drawn[p] = stacked[choice, np.arange(len(rows))[None, :]]
    return rows, drawn


def design_population_parameters(
    fit: Any,
    *,
    n_draws: int | None = 500,
    iiv: bool = True,
    group: str = "fitted",
    random_seed: int | np.random.Generator | None = 0,
) -> dict[str, np.ndarray]:
    """Draw population parameters for patients with the fitted patients' covariates.

    A thin layer over :func:`population_parameters` for the fitted
    design: parameters set from the data (``from_data``) keep each patient's own value.

    Parameters
    ----------
    fit : Fit
        A fit.
    n_draws : int or None
        Posterior draws (see :func:`bayes_cart.predict.draws.subset_draws`).
    iiv : bool
        New random effects (True) or the typical patient (False).
    group : {"fitted", "new", "none"}
        Trial effect (see :func:`population_parameters`).
    random_seed : int or Generator
        Seed.

    Returns
    -------
    dict
        ``{parameter: array (sample, patient)}`` in the fit's patient order.
    """
    rng = np.random.default_rng(random_seed)
    sub, _ = subset_draws(fit, n_draws, rng)
    params = population_parameters(
        sub, fit.dataset.patients, n_draws=None, iiv=iiv, group=group, random_seed=rng
    )
    for name, values in (fit.model_data.from_data or {}).items():
        if name in params:
            params[name] = np.broadcast_to(values, params[name].shape).copy()
    step = getattr(fit.model_data, "step", None)
    if step is not None:  # the fitted patients' own change times, the draws' effects
        shape = next(iter(params.values())).shape
        params[CHANGE_TIME] = np.broadcast_to(step.change_time, shape).copy()
        post = sub.idata.posterior
        for name in step.parameters:
            b = stacked(post, step.effect_name(name))[:, None]
            params[f"{name}{AFTER}"] = params[name] * np.exp(b)
    return params
