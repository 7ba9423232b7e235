"""Kinetic curves of parameter draws: on time grids, at the observations, PRED and IPRED.

Every solve outside the PyMC model goes through here, and through
:meth:`bayes_cart.kinetics.KineticModel.solve` /
:func:`bayes_cart.kinetics.solvers.batched_log_total` with the fit's own solver
(:func:`fit_solver`): a structure without a closed form is predicted with the ``linear`` or
``ode`` route it was fitted with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.solvers import batched_log_total, output_names
from bayes_cart.kinetics.superposition import (
    Infusions,
    cohort_parameters,
    combine_cohorts,
    dose_parameter,
    infusion_pairs,
)
from bayes_cart.predict.draws import draw_index
from bayes_cart.predict.parameters import design_population_parameters, individual_parameters
from bayes_cart.predict.route import fit_kinetics, fit_solver

Array = Any

__all__ = [
    "curve_states",
    "fit_kinetics",
    "fit_solver",
    "individual_predictions",
    "population_predictions",
    "predict_at_observations",
    "predict_curves",
    "predict_fit_observations",
]

_CHUNK_CELLS = 4_000_000  # draws x patients x times evaluated at once (closed form)


def curve_states(kinetics: str) -> tuple[str, ...]:
    """Names of the curves a structure gives (``log_total``, and ``log_E``, ``log_M`` if any).

    Examples
    --------
    >>> curve_states("liu2021"), curve_states("stein2019")
    (('log_E', 'log_M', 'log_total'), ('log_total',))
    """
    return output_names(get_kinetics(kinetics))


def _solve_jax_route(
    kinetics: str, params: dict[str, np.ndarray], grid: np.ndarray, solver: str
) -> dict[str, np.ndarray]:
    """Curves (sample, patient, time) with a JAX route: one batched solve per draw."""
    kin = get_kinetics(kinetics)
    n_sample, n_patient = np.shape(next(iter(params.values())))
    n_time = grid.shape[1]
    pidx = np.repeat(np.arange(n_patient), n_time)
    t_obs = grid.reshape(-1)
    out: dict[str, np.ndarray] = {}
    for state in curve_states(kinetics):
        f = batched_log_total(kin, solver, state=state)
        values = np.empty((n_sample, n_patient * n_time))
        for s in range(n_sample):
            values[s] = np.asarray(f(t_obs, pidx, {k: v[s] for k, v in params.items()}))
        out[state] = values.reshape(n_sample, n_patient, n_time)
    return out


def predict_curves(
    kinetics: str,
    params: dict[str, np.ndarray],
    times: Array,
    solver: str = "closed_form",
    infusions: Infusions | None = None,
) -> dict[str, np.ndarray]:
    """Evaluate the kinetic curves for parameter draws on a time grid.

    Parameters
    ----------
    kinetics : str
        Registry name.
    params : dict
        ``{parameter: array (sample, patient)}``.
    times : array
        Time grid (days), shape (time,) or (patient, time) per patient.
    solver : {"closed_form", "linear", "ode"}
        The route, normally the fit's (:func:`fit_solver`).
    infusions : Infusions, optional
        The patients' infusions (:meth:`ModelData.infusion_schedule
        <bayes_cart.model.model_data.ModelData.infusion_schedule>`, subset to these patients): with
        several, each curve is the sum of one cohort per infusion
        (:mod:`bayes_cart.kinetics.superposition`). None: one infusion at TIME 0.

    Returns
    -------
    dict
        ``log_total`` (and ``log_E``, ``log_M`` where defined), shape (sample, patient, time).

    Examples
    --------
    >>> p = {"C0": np.array([[10.0]]), "beta": np.array([[0.5]]), "T1": np.array([[10.0]]),
    ...      "alpha": np.array([[0.1]]), "rM": np.array([[0.01]]), "deltaM": np.array([[1e-3]])}
    >>> t = np.array([0.0, 10.0, 40.0])
    >>> closed = predict_curves("liu2021", p, t)["log_total"]
    >>> linear = predict_curves("liu2021", p, t, solver="linear")["log_total"]
    >>> closed.shape, bool(np.allclose(closed, linear, rtol=1e-10))
    ((1, 1, 3), True)
    """
    kin = get_kinetics(kinetics)
    t = np.asarray(times, dtype=float)
    params = {k: np.asarray(v) for k, v in params.items() if k in kin.parameters}
    if infusions is not None and infusions.several:
        n_patient = np.shape(next(iter(params.values())))[1]
        grid = np.broadcast_to(t if t.ndim == 2 else t[None, :], (n_patient, t.shape[-1]))
        pidx = np.repeat(np.arange(n_patient), grid.shape[1])
        out = {}
        for state in curve_states(kinetics):
            flat = predict_at_observations(
                kinetics, params, pidx, grid.reshape(-1), state, solver, infusions
            )
            out[state] = flat.reshape(flat.shape[0], n_patient, grid.shape[1])
        return out
    if solver != "closed_form":
        n_patient = np.shape(next(iter(params.values())))[1]
        grid = np.broadcast_to(t if t.ndim == 2 else t[None, :], (n_patient, t.shape[-1]))
        return _solve_jax_route(kinetics, params, np.ascontiguousarray(grid), solver)
    t3 = t[None, None, :] if t.ndim == 1 else t[None, :, :]
    p3 = {k: v[:, :, None] for k, v in params.items()}
    return {k: np.asarray(v) for k, v in kin.solve(t3, p3).items()}


def predict_at_observations(
    kinetics: str,
    params: dict[str, np.ndarray],
    patient_index: np.ndarray,
    time: np.ndarray,
    state: str = "log_total",
    solver: str = "closed_form",
    infusions: Infusions | None = None,
) -> np.ndarray:
    """Evaluate the kinetic curves of parameter draws at each observation's time.

    Parameters
    ----------
    kinetics : str
        Registry name.
    params : dict
        ``{parameter: array (sample, patient)}``.
    patient_index : ndarray (obs,)
        Position of each observation's patient.
    time : ndarray (obs,)
        Sample times (days).
    state : str
        ``log_total``, ``log_E`` or ``log_M``.
    solver : {"closed_form", "linear", "ode"}
        The route, normally the fit's (:func:`fit_solver`).
    infusions : Infusions, optional
        The patients' infusions (normally ``fit.model_data.infusions``): with several, each
        observation is the sum of the cohorts present (solved per cohort with the same route).

    Returns
    -------
    ndarray (sample, obs)
        Log predictions.

    Examples
    --------
    >>> p = {"C0": np.array([[10.0]]), "beta": np.array([[0.5]]), "T1": np.array([[10.0]]),
    ...      "alpha": np.array([[0.1]]), "rM": np.array([[0.001]]), "deltaM": np.array([[0.01]])}
    >>> out = predict_at_observations("liu2021", p, np.array([0, 0]), np.array([0.0, 4.0]))
    >>> bool(np.allclose(out, np.log(10.0) + 0.5 * np.array([0.0, 4.0])))
    True
    """
    pidx = np.asarray(patient_index, dtype=np.int64)
    time = np.asarray(time, dtype=float)
    n_sample, n_patient = np.shape(next(iter(params.values())))
    if infusions is not None and infusions.several:
        kin = get_kinetics(kinetics)
        pairs = infusion_pairs(infusions, pidx, time)
        used = {
            k: np.broadcast_to(np.asarray(v, dtype=float), (n_sample, n_patient))
            for k, v in params.items()
            if k in kin.parameters
        }
        cohort = cohort_parameters(used, pairs, dose_parameter(kin))
        per_pair = predict_at_observations(
            kinetics, cohort, pairs.cohort, pairs.since, state, solver
        )
        return combine_cohorts(per_pair, pairs)
    if solver != "closed_form":
        kin = get_kinetics(kinetics)
        f = batched_log_total(kin, solver, state=state)
        used = {k: np.asarray(v) for k, v in params.items() if k in kin.parameters}
        out = np.empty((n_sample, len(pidx)))
        for s in range(n_sample):
            out[s] = np.asarray(f(time, pidx, {k: v[s] for k, v in used.items()}))
        return out
    slot = pd.Series(pidx).groupby(pidx).cumcount().to_numpy()
    width = int(slot.max()) + 1 if len(slot) else 1
    grid = np.zeros((n_patient, width))
    grid[pidx, slot] = time
    out = np.empty((n_sample, len(pidx)))
    step = max(1, _CHUNK_CELLS // max(1, n_patient * width))
    for start in range(0, n_sample, step):
        part = {k: np.asarray(v)[start : start + step] for k, v in params.items()}
        curves = predict_curves(kinetics, part, grid)[state]
        out[start : start + step] = curves[:, pidx, slot]
    return out


def population_predictions(
    fit: Any,
    *,
    n_draws: int | None = 500,
    group: str = "fitted",
    random_seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Typical-patient log predictions of every observation, per posterior draw.

    Returns
    -------
    ndarray (sample, obs)
        ``log PRED`` draws; the PRED of :func:`bayes_cart.checks.gof.gof_table` is their median.
    """
    params = design_population_parameters(
        fit, n_draws=n_draws, iiv=False, group=group, random_seed=random_seed
    )
    return predict_fit_observations(fit, params)


def predict_fit_observations(fit: Any, params: dict[str, np.ndarray]) -> np.ndarray:
    """Log predictions of the fitted observations for parameter draws of the fitted patients.

    The fit's own structure, solver, observation times and infusions; ``params`` holds
    ``(sample, patient)`` arrays (:func:`bayes_cart.predict.parameters.individual_parameters`
    or :func:`~bayes_cart.predict.parameters.design_population_parameters`).

    Returns
    -------
    ndarray (sample, obs)
    """
    md = fit.model_data
    return predict_at_observations(
        fit_kinetics(fit),
        params,
        md.patient_index,
        md.time,
        solver=fit_solver(fit),
        infusions=getattr(md, "infusions", None),
    )


def individual_predictions(
    fit: Any,
    *,
    n_draws: int | None = None,
    random_seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Individual log predictions of every observation, per posterior draw.

    Returns
    -------
    ndarray (sample, obs)
        ``log IPRED`` draws; the IPRED of :func:`bayes_cart.checks.gof.gof_table` is their median.
    """
    params = individual_parameters(fit)
    n_total = next(iter(params.values())).shape[0]
    sel = draw_index(n_total, n_draws, np.random.default_rng(random_seed))
    params = {k: v[sel] for k, v in params.items()}
    return predict_fit_observations(fit, params)
