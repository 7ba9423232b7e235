"""Goodness of fit: population and individual predictions, residuals, individual fit curves.

Definitions (log scale, the scale of the residual error model):

* ``PRED``: the **population** prediction of an observation, i.e. the curve of the *typical*
  patient with that patient's covariates (and fitted trial effect), median over posterior
  draws (:func:`bayes_cart.predict.population_parameters` with ``iiv=False``);
* ``IPRED``: the **individual** prediction, the posterior median of the patient's own curve at
  the sample time (:func:`bayes_cart.predict.individual_parameters`);
* ``IRES = log DV - log IPRED`` and ``IWRES = IRES / sd``, with ``sd`` the posterior median of
  the residual SD (``sigma``; for the combined model ``sqrt(sigma^2 + (sigma_add/IPRED)^2)``,
  for the Student-t model the scale ``sigma``). Censored samples have no residual (NaN) and are
  flagged in ``censored``;
* ``NPD``: normalised prediction distribution errors, ``Phi^-1`` of the (randomised, for
  censored samples) PIT of the observation among simulations of *new* patients with the same
  design (:func:`bayes_cart.predict.simulate_observed_design`); not decorrelated within a patient
  (so NPD rather than NPDE). Under the model they are standard normal.

Parameters in the ``from_data`` mode (e.g. T0 set from the observed profile) keep each
patient's own value in population predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayes_cart.checks.ppc import pit_values
from bayes_cart.data.lloq import LloqInput
from bayes_cart.predict import (
    draw_index,
    fit_kinetics,
    fit_solver,
    individual_parameters,
    individual_predictions,
    population_predictions,
    predict_curves,
    residual_sd,
    simulate_observed_design,
)
from bayes_cart.predict.observations import observation_table

__all__ = ["gof_table", "individual_fits"]

_CHUNK_CELLS = 4_000_000  # draws x patients x times evaluated at once
_LOG_TINY = -700.0  # log of a level treated as 0


def gof_table(
    fit: Any,
    *,
    lloq: LloqInput = None,
    n_draws: int | None = 500,
    npd: bool = True,
    n_simulations: int = 200,
    group: str = "fitted",
    random_seed: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Goodness-of-fit table: one row per observation.

    Parameters
    ----------
    fit : Fit
        A fit.
    lloq : float, str, mapping or Series, optional
        See :func:`bayes_cart.data.lloq.lloq_per_observation` (censoring of the NPD simulations).
    n_draws : int or None
        Posterior draws used for PRED and IPRED (None: all).
    npd : bool
        Add normalised prediction distribution errors (simulates ``n_simulations`` datasets).
    n_simulations : int
        Simulated datasets for the NPD.
    group : {"fitted", "new", "none"}
        Trial effect in PRED and the NPD simulations.
    random_seed : int or Generator
        Seed (draw subsets, simulations, randomised PIT of censored samples).

    Returns
    -------
    DataFrame
        ``obs, ID, patient, TIME, DV, CENS, LLOQ, censored, log_dv, log_pred, log_ipred, PRED,
        IPRED, IRES, IWRES`` (and ``NPD``). PRED/IPRED in DV units; residuals on the log scale,
        NaN for censored samples.

    Examples
    --------
    >>> table = gof_table(fit)  # doctest: +SKIP
    >>> table[["log_dv", "log_ipred", "IWRES"]].describe()  # doctest: +SKIP
    """
    rng = np.random.default_rng(random_seed)
    table = observation_table(fit, lloq)
    table["censored"] = table["CENS"] != 0
    log_pred = np.median(
        population_predictions(fit, n_draws=n_draws, group=group, random_seed=rng), axis=0
    )
    log_ipred = np.median(individual_predictions(fit, n_draws=n_draws, random_seed=rng), axis=0)
    table["log_pred"] = log_pred
    table["log_ipred"] = log_ipred
    table["PRED"] = np.exp(log_pred)
    table["IPRED"] = np.exp(log_ipred)
    ires = np.where(table["censored"], np.nan, table["log_dv"].to_numpy() - log_ipred)
    table["IRES"] = ires
    table["IWRES"] = ires / residual_sd(fit, log_ipred)
    if npd:
        sims = simulate_observed_design(
            fit, n_replicates=n_simulations, lloq=lloq, group=group, random_seed=rng
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            log_limit = np.log(table["LIMIT"].to_numpy())
        pit = pit_values(
            sims["log_dv"],
            table["log_dv"].to_numpy(),
            table["CENS"].to_numpy(),
            log_limit=log_limit,
            random_seed=rng,
        )
        table["NPD"] = stats.norm.ppf(pit["pit"].to_numpy())
    return table


def _time_grid(t_max: float, n_grid: int) -> np.ndarray:
    """Dense early (log-spaced) and even later (linear) grid from 0 to ``t_max`` days."""
    lin = np.linspace(0.0, t_max, max(2, n_grid // 2))
    log = np.geomspace(min(0.05, t_max / 10), t_max, max(2, n_grid - len(lin)))
    return np.unique(np.concatenate([lin, log]))


def _infusions_of(fit: Any, positions: np.ndarray) -> Any:
    """Return the infusions of the patients at ``positions`` (None: one per patient)."""
    infusions = getattr(fit.model_data, "infusions", None)
    return None if infusions is None else infusions.subset(positions)


def _with_infusions(grid: np.ndarray, fit: Any, patient: int) -> np.ndarray:
    """``grid`` with each later infusion's time and a point just after it (the step up)."""
    infusions = getattr(fit.model_data, "infusions", None)
    if infusions is None:
        return grid
    starts = infusions.start[patient, 1 : infusions.count[patient]]
    starts = starts[starts < grid[-1]]
    if not len(starts):
        return grid
    return np.unique(np.concatenate([grid, starts, starts + 1e-3]))


def individual_fits(
    fit: Any,
    patients: Sequence[str] | int | None = None,
    *,
    n_grid: int = 120,
    interval: float = 0.9,
    n_draws: int | None = 500,
    t_max: float | None = None,
    random_seed: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Posterior median and credible band of each patient's total, E and M curves.

    Parameters
    ----------
    fit : Fit
        A fit.
    patients : sequence of str or int, optional
        Patient IDs (default all), or a number of patients chosen at random (``random_seed``).
    n_grid : int
        Time points per patient (log-spaced early, linear later).
    interval : float
        Credible band probability (0.9).
    n_draws : int or None
        Posterior draws used (None: all).
    t_max : float, optional
        End of the grid (days); default each patient's last sample time x 1.05.
    random_seed : int or Generator
        Seed of the draw subset.

    Returns
    -------
    DataFrame
        Tidy: ``ID, TIME, state`` (``total``, ``E``, ``M``), ``median``, ``low``, ``high``
        (DV units).
    """
    ids = list(fit.model_data.patient_ids)
    rng = np.random.default_rng(random_seed)
    if isinstance(patients, int | np.integer):
        pick = rng.choice(len(ids), size=min(int(patients), len(ids)), replace=False)
        chosen = [ids[i] for i in np.sort(pick)]
    else:
        chosen = ids if patients is None else [str(p) for p in patients]
    unknown = [p for p in chosen if p not in ids]
    if unknown:
        raise KeyError(f"unknown patient(s) {unknown[:8]}; the fit has {len(ids)} patients")
    pos = np.array([ids.index(p) for p in chosen], dtype=np.int64)
    params = individual_parameters(fit)
    sel = draw_index(next(iter(params.values())).shape[0], n_draws, rng)
    params = {k: v[sel] for k, v in params.items()}
    md = fit.model_data
    last = pd.Series(md.time).groupby(md.patient_index).max()
    tail = (1 - interval) / 2
    frames = []
    n_sample = next(iter(params.values())).shape[0]
    step = max(1, _CHUNK_CELLS // max(1, n_sample * n_grid * 3))
    for start in range(0, len(pos), step):
        block = pos[start : start + step]
        grids = [
            _with_infusions(_time_grid(t_max or 1.05 * float(last.get(i, 1.0)), n_grid), fit, i)
            for i in block
        ]
        width = max(len(g) for g in grids)
        times = np.array([np.pad(g, (0, width - len(g)), mode="edge") for g in grids])
        curves = predict_curves(
            fit_kinetics(fit),
            {k: v[:, block] for k, v in params.items()},
            times,
            solver=fit_solver(fit),
            infusions=_infusions_of(fit, block),
        )
        for state, key in (("total", "log_total"), ("E", "log_E"), ("M", "log_M")):
            if key not in curves:
                continue
            # M is exactly 0 (log -inf) before the peak: clip so quantiles stay defined
            logs = np.maximum(curves[key], _LOG_TINY)
            q = np.exp(np.quantile(logs, [0.5, tail, 1 - tail], axis=0))
            q[q <= np.exp(_LOG_TINY)] = 0.0
            for j, i in enumerate(block):
                n = len(grids[j])
                frames.append(
                    pd.DataFrame(
                        {
                            "ID": ids[i],
                            "TIME": times[j, :n],
                            "state": state,
                            "median": q[0, j, :n],
                            "low": q[1, j, :n],
                            "high": q[2, j, :n],
                        }
                    )
                )
    out = pd.concat(frames, ignore_index=True)
    order = {p: k for k, p in enumerate(chosen)}
    out["_o"] = out["ID"].map(order)
    out["_s"] = out["state"].map({"total": 0, "E": 1, "M": 2})
    out = out.sort_values(["_o", "_s", "TIME"], kind="stable").drop(columns=["_o", "_s"])
    return out.reset_index(drop=True)
