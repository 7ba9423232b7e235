"""Goodness of fit: population and individual predictions, residuals, individual fit curves.

Definitions (log scale, the scale of the residual error model):

* ``PRED``: the **population** prediction of an observation, i.e. the curve of the *typical*
  patient with that patient's covariates (and fitted trial effect), median over posterior
  draws (:func:`bayes_cart.posterior.population_parameters` with ``iiv=False``);
* ``IPRED``: the **individual** prediction, the posterior median of the patient's own curve at
  the sample time (:func:`bayes_cart.posterior.individual_parameters`);
* ``IRES = log DV - log IPRED`` and ``IWRES = IRES / sd``, with ``sd`` the posterior median of
  the residual SD (``sigma``; for the combined model ``sqrt(sigma^2 + (sigma_add/IPRED)^2)``,
  for the Student-t model the scale ``sigma``). Censored samples have no residual (NaN) and are
  flagged in ``censored``;
* ``NPD``: normalised prediction distribution errors, ``Phi^-1`` of the (randomised, for
  censored samples) PIT of the observation among simulations of *new* patients with the same
  design (:func:`bayes_cart.vpc.simulate_observed_design`); not decorrelated within a patient
  (so NPD rather than NPDE). Under the model they are standard normal.

Parameters in the ``from_data`` mode (e.g. T0 set from the observed profile) keep each
patient's own value in population predictions.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from bayes_cart.posterior import individual_parameters, population_parameters, predict_curves
from bayes_cart.ppc import LloqInput, observation_table, pit_values

__all__ = [
    "design_population_parameters",
    "gof_table",
    "individual_fits",
    "individual_predictions",
    "population_predictions",
    "predict_at_observations",
    "residual_sd",
    "subset_draws",
]

_CHUNK_CELLS = 4_000_000  # draws x patients x times evaluated at once
_LOG_TINY = -700.0  # log of a level treated as 0


def _stacked(post: xr.Dataset, var: str) -> np.ndarray:
    return np.asarray(post[var].stack(sample=("chain", "draw")).transpose("sample", ...))


def subset_draws(
    fit: Any, n_draws: int | None, random_seed: int | np.random.Generator | None = 0
) -> tuple[Any, np.ndarray]:
    """Return a shallow copy of ``fit`` whose posterior holds the chosen draws only.

    Draws are chosen at random without replacement when ``n_draws`` is at most the number of
    draws, with replacement when it is larger; ``None`` keeps every draw.

    Parameters
    ----------
    fit : Fit
        A fit.
    n_draws : int or None
        Number of draws.
    random_seed : int or Generator
        Seed.

    Returns
    -------
    fit, index
        The copy (posterior with one chain of ``n_draws`` draws) and the positions of the
        chosen draws among the stacked (chain, draw) samples.
    """
    post = fit.idata.posterior
    n_total = post.sizes["chain"] * post.sizes["draw"]
    if n_draws is None:
        return fit, np.arange(n_total)
    rng = np.random.default_rng(random_seed)
    replace = n_draws > n_total
    sel = rng.choice(n_total, size=n_draws, replace=replace)
    if not replace:
        sel = np.sort(sel)
    stacked = post.stack(sample=("chain", "draw")).isel(sample=sel)
    stacked = stacked.drop_vars(["sample", "chain", "draw"]).rename({"sample": "draw"})
    sub = stacked.assign_coords(draw=np.arange(len(sel))).expand_dims(chain=[0])
    sub = sub.transpose("chain", "draw", ...)
    out = copy.copy(fit)
    out.idata = _Posterior(sub)
    return out, sel


class _Posterior:
    """Minimal stand-in for an InferenceData holding a posterior only."""

    def __init__(self, posterior: xr.Dataset) -> None:
        self.posterior = posterior

    def groups(self) -> list[str]:
        return ["posterior"]


def predict_at_observations(
    kinetics: str,
    params: dict[str, np.ndarray],
    patient_index: np.ndarray,
    time: np.ndarray,
    state: str = "log_total",
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
    first = next(iter(params.values()))
    n_sample, n_patient = np.shape(first)
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


def design_population_parameters(
    fit: Any,
    *,
    n_draws: int | None = 500,
    iiv: bool = True,
    group: str = "fitted",
    random_seed: int | np.random.Generator | None = 0,
) -> dict[str, np.ndarray]:
    """Draw population parameters for patients with the fitted patients' covariates.

    A thin layer over :func:`bayes_cart.posterior.population_parameters` for the fitted
    design: parameters set from the data (``from_data``) keep each patient's own value.

    Parameters
    ----------
    fit : Fit
        A fit.
    n_draws : int or None
        Posterior draws (see :func:`subset_draws`).
    iiv : bool
        New random effects (True) or the typical patient (False).
    group : {"fitted", "new", "none"}
        Trial effect (see :func:`bayes_cart.posterior.population_parameters`).
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
    return params


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
        ``log PRED`` draws; the PRED of :func:`gof_table` is their median.
    """
    md = fit.model_data
    params = design_population_parameters(
        fit, n_draws=n_draws, iiv=False, group=group, random_seed=random_seed
    )
    return predict_at_observations(fit.spec.kinetics, params, md.patient_index, md.time)


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
        ``log IPRED`` draws; the IPRED of :func:`gof_table` is their median.
    """
    md = fit.model_data
    params = individual_parameters(fit)
    if n_draws is not None:
        rng = np.random.default_rng(random_seed)
        n_total = next(iter(params.values())).shape[0]
        sel = rng.choice(n_total, size=min(n_draws, n_total), replace=False)
        params = {k: v[np.sort(sel)] for k, v in params.items()}
    return predict_at_observations(fit.spec.kinetics, params, md.patient_index, md.time)


def residual_sd(fit: Any, log_pred: np.ndarray, sigma: Any = None) -> np.ndarray:
    """Residual SD on the log scale under the fit's error model.

    Parameters
    ----------
    fit : Fit
        A fit (its spec gives the error model).
    log_pred : ndarray
        Log predictions (for the combined model).
    sigma : dict, optional
        ``{"sigma": ..., "sigma_add": ...}`` values broadcastable with ``log_pred``; default
        the posterior medians.

    Returns
    -------
    ndarray
        Same shape as ``log_pred``.
    """
    post = fit.idata.posterior
    if sigma is None:
        sigma = {
            v: float(np.median(_stacked(post, v))) for v in ("sigma", "sigma_add") if v in post
        }
    sd = np.asarray(sigma["sigma"]) * np.ones_like(log_pred)
    if fit.spec.doc.error.model == "combined":
        add = np.asarray(sigma.get("sigma_add", 0.0))
        sd = np.sqrt(sd**2 + (add / np.exp(log_pred)) ** 2)
    return sd


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
        See :func:`bayes_cart.ppc.lloq_per_observation` (censoring of the NPD simulations).
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
        from bayes_cart.vpc import simulate_observed_design

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
    if n_draws is not None:
        n_total = next(iter(params.values())).shape[0]
        sel = np.sort(rng.choice(n_total, size=min(n_draws, n_total), replace=False))
        params = {k: v[sel] for k, v in params.items()}
    md = fit.model_data
    last = pd.Series(md.time).groupby(md.patient_index).max()
    tail = (1 - interval) / 2
    frames = []
    n_sample = next(iter(params.values())).shape[0]
    step = max(1, _CHUNK_CELLS // max(1, n_sample * n_grid * 3))
    for start in range(0, len(pos), step):
        block = pos[start : start + step]
        grids = [_time_grid(t_max or 1.05 * float(last.get(i, 1.0)), n_grid) for i in block]
        width = max(len(g) for g in grids)
        times = np.array([np.pad(g, (0, width - len(g)), mode="edge") for g in grids])
        curves = predict_curves(
            fit.spec.kinetics, {k: v[:, block] for k, v in params.items()}, times
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
