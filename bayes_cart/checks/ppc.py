"""Posterior predictive checks of the observed data: PIT, LOO-PIT and predictive intervals.

The ``posterior_predictive`` group of a fit holds draws of log DV for every observation that
are **not censored** (the model's residual distribution). Checks are made on the *censored
scale*, i.e. the scale of what was observed: a sample below the LLOQ is only known to be below
it. The probability integral transform (PIT) of an observation is

* quantified, ``log DV = y``: ``F(y)``, the fraction of predictive draws at or below ``y``;
* left-censored at the LLOQ ``L``: uniform on ``[0, F(L)]`` (the observation could be anywhere
  below ``L``);
* interval-censored ``[A, L]``: uniform on ``[F(A), F(L)]``; right-censored at ``U``: uniform on
  ``[F(U), 1]``.

The uniform draw is the *randomised PIT* (Smith 1985; Czado, Gneiting and Held 2009), made
reproducible with ``random_seed``. With ``S`` draws, the rank of the observation among them is
used (``F = (#{draws < y} + u (1 + #{draws = y})) / (S + 1)``), which is exactly uniform under
the model. If the model is right, PIT values are uniform on [0, 1].

The **LOO-PIT** replaces the posterior predictive by the leave-one-out predictive: the draws
are weighted by Pareto-smoothed importance weights (:func:`arviz.psislw` on the pointwise
log-likelihood, which includes the M3 terms of censored samples). LOO leaves out one
*observation*, not one patient, so the patient's other samples still inform its curve.

An observation is *outside* the central ``interval`` (default 90%) predictive interval when its
PIT interval lies entirely below ``(1 - interval) / 2`` or above ``1 - (1 - interval) / 2``; for a
BLQ sample that means the model gave it less than 5% probability of being BLQ.

Examples
--------
>>> from bayes_cart.inference.io import load_fit  # doctest: +SKIP
>>> check = posterior_predictive_check(load_fit("fit.nc"), random_seed=1)  # doctest: +SKIP
>>> check.summary["pit_ks"], check.patients.head()  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayes_cart.data.lloq import LloqInput
from bayes_cart.predict.observations import observation_table

__all__ = [
    "PPCResult",
    "pit_table",
    "pit_values",
    "posterior_predictive_check",
    "ppc_by_patient",
    "ppc_summary",
]


def _fractions(
    draws: np.ndarray, x: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounds of the PIT of ``x`` per observation.

    Returns ``(below, at, above)``: the PIT interval of a value equal to ``x`` is
    ``[below, at]`` and that of a value known to be above ``x`` starts at ``above``. Unweighted,
    the rank of the value among the ``S`` draws is uniform on ``0..S``, so the bounds are
    ``#{Y < x} / (S+1)``, ``(#{Y <= x} + 1) / (S+1)`` and ``#{Y <= x} / (S+1)``; weighted,
    ``F(x-)``, ``F(x)`` and ``F(x)``.
    """
    below = draws < x[None, :]
    at = draws <= x[None, :]
    if weights is None:
        s1 = draws.shape[0] + 1
        n_at = at.sum(0)
        return below.sum(0) / s1, (n_at + 1) / s1, n_at / s1
    f_at = (weights * at).sum(0)
    return (weights * below).sum(0), f_at, f_at


def pit_values(
    draws: np.ndarray,
    observed: np.ndarray,
    cens: np.ndarray,
    *,
    log_limit: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    random_seed: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Randomised PIT of (possibly censored) observations against predictive draws.

    Parameters
    ----------
    draws : ndarray (sample, obs)
        Uncensored predictive draws (log scale).
    observed : ndarray (obs,)
        Observed log DV; for a left-censored row its log LLOQ, for a right-censored row the
        log of the upper limit.
    cens : ndarray (obs,)
        0 quantified, 1 left-censored, -1 right-censored.
    log_limit : ndarray (obs,), optional
        Lower end of an interval-censored row (NaN when none).
    weights : ndarray (sample, obs), optional
        Normalised importance weights (LOO-PIT); None: equal weights with the rank-based
        ``(S + 1)`` correction.
    random_seed : int or Generator
        Seed of the uniform draws.

    Returns
    -------
    DataFrame
        ``pit`` (randomised), ``lower`` and ``upper`` (the interval the PIT is uniform on).

    Examples
    --------
    >>> draws = np.arange(1.0, 100.0)[:, None] * np.ones((1, 2))  # 99 draws 1..99
    >>> out = pit_values(draws, np.array([49.5, 20.0]), np.array([0, 1]), random_seed=0)
    >>> out["lower"].round(2).tolist(), out["upper"].round(2).tolist()
    ([0.49, 0.0], [0.5, 0.21])
    """
    rng = np.random.default_rng(random_seed)
    draws = np.asarray(draws, dtype=float)
    y = np.asarray(observed, dtype=float)
    cens = np.asarray(cens)
    below, at, above = _fractions(draws, y, weights)
    lower = np.asarray(below, dtype=float).copy()
    upper = np.asarray(at, dtype=float).copy()
    left = cens == 1
    lower[left] = 0.0
    if log_limit is not None:
        lim = np.asarray(log_limit, dtype=float)
        interval = left & np.isfinite(lim)
        if interval.any():
            _, _, start = _fractions(draws[:, interval], lim[interval], _cols(weights, interval))
            lower[interval] = start
    right = cens == -1
    lower[right] = np.asarray(above, dtype=float)[right]
    upper[right] = 1.0
    pit = lower + rng.uniform(size=len(y)) * (upper - lower)
    return pd.DataFrame({"pit": pit, "lower": lower, "upper": upper})


def _cols(weights: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if weights is None else weights[:, mask]


def _stack_draws(da: Any) -> np.ndarray:
    return np.asarray(da.stack(sample=("chain", "draw")).transpose("sample", ...))


def loo_weights(fit: Any) -> tuple[np.ndarray, np.ndarray]:
    """Normalised PSIS leave-one-out weights of every observation.

    Parameters
    ----------
    fit : Fit
        A fit with a ``log_likelihood`` group (variable ``log_dv``).

    Returns
    -------
    weights : ndarray (sample, obs)
        Importance weights, each column sums to 1.
    pareto_k : ndarray (obs,)
        Pareto shape estimates (> 0.7: the weights of that observation are unreliable).
    """
    import arviz as az

    loglik = _stack_draws(fit.idata.log_likelihood["log_dv"])  # (sample, obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        lw, k = az.psislw(-loglik.T.copy(), reff=1.0)
    w = np.exp(np.asarray(lw).T)
    w = w / w.sum(0, keepdims=True)
    return w, np.asarray(k, dtype=float)


def pit_table(
    fit: Any,
    *,
    lloq: LloqInput = None,
    loo: bool = True,
    interval: float = 0.9,
    random_seed: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """PIT and LOO-PIT of every observation, with its predictive interval on the censored scale.

    Parameters
    ----------
    fit : Fit
        A fit with a ``posterior_predictive`` group (and ``log_likelihood`` for LOO-PIT).
    lloq : float, str, mapping or Series, optional
        See :func:`lloq_per_observation` (used to censor the predictive draws for the interval).
    loo : bool
        Also compute the LOO-PIT (needs ``log_likelihood``).
    interval : float
        Central predictive interval probability (0.9: 5th-95th percentiles).
    random_seed : int or Generator
        Seed of the randomised PIT.

    Returns
    -------
    DataFrame
        The columns of :func:`observation_table` plus ``pit``, ``pit_lower``, ``pit_upper``,
        ``loo_pit`` and ``pareto_k`` (when ``loo``), ``pred_low``, ``pred_median``,
        ``pred_high`` (predictive percentiles of DV on the censored scale, DV units; values at
        the LLOQ mean "BLQ"), ``p_blq`` (predictive probability of BLQ) and ``outside``.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}")
    if "posterior_predictive" not in fit.idata.groups():
        raise ValueError("the fit has no posterior_predictive group (fit with predictive=True)")
    rng = np.random.default_rng(random_seed)
    table = observation_table(fit, lloq)
    draws = _stack_draws(fit.idata.posterior_predictive["log_dv"])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lim = np.log(table["LIMIT"].to_numpy())
    observed = table["log_dv"].to_numpy()
    cens = table["CENS"].to_numpy()
    pit = pit_values(draws, observed, cens, log_limit=log_lim, random_seed=rng)
    table["pit"] = pit["pit"].to_numpy()
    table["pit_lower"] = pit["lower"].to_numpy()
    table["pit_upper"] = pit["upper"].to_numpy()
    if loo:
        weights, k = loo_weights(fit)
        lp = pit_values(draws, observed, cens, log_limit=log_lim, weights=weights, random_seed=rng)
        table["loo_pit"] = lp["pit"].to_numpy()
        table["pareto_k"] = k
    log_lloq = table["log_lloq"].to_numpy()
    censored = np.where(np.isfinite(log_lloq), np.maximum(draws, log_lloq), draws)
    tail = (1 - interval) / 2
    q = np.quantile(censored, [tail, 0.5, 1 - tail], axis=0)
    table["pred_low"], table["pred_median"], table["pred_high"] = np.exp(q)
    table["p_blq"] = np.where(np.isfinite(log_lloq), (draws < log_lloq).mean(0), 0.0)
    table["outside"] = (table["pit_upper"] < tail) | (table["pit_lower"] > 1 - tail)
    table.attrs["interval"] = interval
    return table


def ppc_by_patient(table: pd.DataFrame) -> pd.DataFrame:
    """Per patient: number of samples, of BLQ samples, outside the interval, mean PIT.

    Parameters
    ----------
    table : DataFrame
        From :func:`pit_table`.

    Returns
    -------
    DataFrame
        ``ID, n_obs, n_blq, n_outside, fraction_outside, mean_pit`` (and ``mean_loo_pit``),
        sorted by decreasing ``fraction_outside``.
    """
    agg: dict[str, Any] = {
        "n_obs": ("pit", "size"),
        "n_blq": ("CENS", lambda c: int((c == 1).sum())),
        "n_outside": ("outside", "sum"),
        "mean_pit": ("pit", "mean"),
    }
    if "loo_pit" in table:
        agg["mean_loo_pit"] = ("loo_pit", "mean")
    out = table.groupby("ID", sort=False).agg(**agg).reset_index()
    out["n_outside"] = out["n_outside"].astype(int)
    out["fraction_outside"] = out["n_outside"] / out["n_obs"]
    cols = ["ID", "n_obs", "n_blq", "n_outside", "fraction_outside", "mean_pit"]
    cols += ["mean_loo_pit"] if "mean_loo_pit" in out else []
    return out[cols].sort_values("fraction_outside", ascending=False, kind="stable")


def ppc_summary(table: pd.DataFrame, blq_draws: np.ndarray | None = None) -> dict[str, float]:
    """Overall numbers of a posterior predictive check.

    Parameters
    ----------
    table : DataFrame
        From :func:`pit_table`.
    blq_draws : ndarray (sample,), optional
        Predicted fraction of BLQ samples per draw (adds the BLQ check).

    Returns
    -------
    dict
        ``n_obs``, ``n_blq``, ``pit_ks`` (Kolmogorov-Smirnov distance of the PIT from the
        uniform) and ``pit_ks_pvalue``, the same for ``loo_pit``, ``fraction_outside`` and
        ``expected_outside`` (1 - interval), ``max_pareto_k``, and with ``blq_draws``:
        ``blq_observed``, ``blq_predicted`` (mean), ``blq_pi_low``, ``blq_pi_high`` (90%).
    """
    out: dict[str, float] = {
        "n_obs": float(len(table)),
        "n_blq": float((table["CENS"] == 1).sum()),
    }
    ks = stats.kstest(table["pit"].to_numpy(), "uniform")
    out["pit_ks"], out["pit_ks_pvalue"] = float(ks.statistic), float(ks.pvalue)
    if "loo_pit" in table:
        ks = stats.kstest(table["loo_pit"].to_numpy(), "uniform")
        out["loo_pit_ks"], out["loo_pit_ks_pvalue"] = float(ks.statistic), float(ks.pvalue)
        out["max_pareto_k"] = float(np.nanmax(table["pareto_k"]))
    out["fraction_outside"] = float(table["outside"].mean())
    out["expected_outside"] = float(1 - table.attrs.get("interval", 0.9))
    if blq_draws is not None:
        out["blq_observed"] = float((table["CENS"] == 1).mean())
        out["blq_predicted"] = float(np.mean(blq_draws))
        lo, hi = np.quantile(blq_draws, [0.05, 0.95])
        out["blq_pi_low"], out["blq_pi_high"] = float(lo), float(hi)
    return out


@dataclass(frozen=True)
class PPCResult:
    """A posterior predictive check.

    Attributes
    ----------
    observations : DataFrame
        Per observation (:func:`pit_table`).
    patients : DataFrame
        Per patient (:func:`ppc_by_patient`).
    summary : dict
        Overall (:func:`ppc_summary`).
    """

    observations: pd.DataFrame
    patients: pd.DataFrame
    summary: dict[str, float]


def posterior_predictive_check(
    fit: Any,
    *,
    lloq: LloqInput = None,
    loo: bool = True,
    interval: float = 0.9,
    random_seed: int | np.random.Generator | None = 0,
) -> PPCResult:
    """Run the posterior predictive check of a fit: per observation, per patient, overall.

    Parameters
    ----------
    fit : Fit
        A fit with ``posterior_predictive`` (and ``log_likelihood`` for LOO-PIT).
    lloq : float, str, mapping or Series, optional
        See :func:`lloq_per_observation`.
    loo : bool
        Compute the LOO-PIT.
    interval : float
        Central predictive interval (0.9).
    random_seed : int or Generator
        Seed of the randomised PIT.

    Returns
    -------
    PPCResult
        ``observations``, ``patients``, ``summary``.
    """
    table = pit_table(fit, lloq=lloq, loo=loo, interval=interval, random_seed=random_seed)
    draws = _stack_draws(fit.idata.posterior_predictive["log_dv"])
    log_lloq = table["log_lloq"].to_numpy()
    blq = np.where(np.isfinite(log_lloq), draws < log_lloq, False).mean(1)
    return PPCResult(
        observations=table,
        patients=ppc_by_patient(table),
        summary=ppc_summary(table, blq_draws=blq),
    )
