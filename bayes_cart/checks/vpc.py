"""Visual predictive checks: censoring-aware, prediction-corrected, stratified.

What is simulated
    ``n_replicates`` datasets with the **observed design**: every fitted patient's sample times,
    covariates, trial and LLOQ. Each replicate uses one posterior draw (typical values,
    covariate effects, trial effects, IIV, residual SD) and **new patients** drawn from the
    population (new random effects with the fitted correlations; the fitted patients' etas are
    not used), :func:`bayes_cart.predict.simulate_observed_design`. The residual error of that
    draw is added and values below the LLOQ are censored, as in the data.

What is compared, per stratum and time bin
    The 5th, 50th and 95th percentiles of the observed values against the central 90%
    interval (over replicates) of the same percentiles of the simulated values; and the
    fraction of BLQ samples, observed against the 90% interval of the simulated fraction.

Censoring
    Percentiles are computed on the *censored scale*: a BLQ value counts as its LLOQ. A
    percentile at or below the LLOQ of the bin (the highest LLOQ of its samples) is reported
    as censored (NaN), for the observed and the simulated percentiles alike, as in PsN's
    censored VPC. ``inside`` compares the values clipped at the LLOQ, so a censored observed
    percentile is inside when the lower bound of its interval is censored too. A percentile
    whose observed value and whole interval are censored carries no information
    (``informative`` False) and is left out of :func:`vpc_coverage`.

Prediction correction (pcVPC, Bergstrand et al. 2011)
    On the log scale every observed and simulated value (and its LLOQ) is shifted by
    ``median(PRED in the bin) - PRED_ij``, where ``PRED_ij`` is the typical-patient
    prediction of that sample (:func:`bayes_cart.checks.gof.population_predictions`). This removes
    the spread due to covariates and sample-time differences within a bin.

Bins
    By default per stratum from the observed sample times: one bin per distinct time when
    there are at most ``n_bins`` of them, otherwise ``n_bins`` clusters of log(1 + time)
    (k-means initialised at quantiles, so deterministic), with edges midway between clusters.
    Or pass edges (days).

Caveat: samples not taken (e.g. "stop after two consecutive BLQ") are absent from both
observed and simulated data; a data-driven sampling rule can make the late bins look
slightly off even under the right model.

Examples
--------
>>> from bayes_cart.inference.io import load_fit  # doctest: +SKIP
>>> result = vpc(load_fit("fit.nc"), by="TRIAL", random_seed=1)  # doctest: +SKIP
>>> vpc_coverage(result.table)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.vq import kmeans2

from bayes_cart.data.lloq import LloqInput
from bayes_cart.errors import DataError, Problem
from bayes_cart.predict import population_predictions, simulate_observed_design
from bayes_cart.predict.observations import observation_table

__all__ = [
    "QUANTILES",
    "VPCResult",
    "assign_bins",
    "bin_statistics",
    "prediction_correct",
    "vpc",
    "vpc_bins",
    "vpc_coverage",
]

QUANTILES = (0.05, 0.5, 0.95)
_TOL = 1e-9


def quantile_label(q: float) -> str:
    """Column prefix of a quantile: 0.05 -> ``q5``, 0.5 -> ``q50``."""
    return f"q{100 * q:g}"


def vpc_bins(times: Sequence[float] | np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin edges (days) from observed sample times.

    At most ``n_bins`` distinct times: one bin per time. Otherwise the times are clustered in
    ``n_bins`` groups on the log(1 + t) scale (k-means started at equally spaced quantiles, so
    the result is deterministic) and edges are put midway between neighbouring clusters.

    Parameters
    ----------
    times : array
        Observed sample times (days), one per sample.
    n_bins : int
        Maximum number of bins.

    Returns
    -------
    ndarray
        Increasing edges; the first is the earliest time, the last the latest.

    Examples
    --------
    >>> vpc_bins([1, 1, 7, 7, 28, 28]).tolist()
    [1.0, 4.0, 17.5, 28.0]
    >>> vpc_bins([1, 1.1, 0.9, 7, 7.5, 6.8], n_bins=2).tolist()
    [0.9, 3.95, 7.5]
    """
    t = np.sort(np.asarray(times, dtype=float))
    t = t[np.isfinite(t)]
    if len(t) == 0:
        raise ValueError("no sample times to bin")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    distinct = np.unique(t)
    if len(distinct) <= n_bins:
        centres = distinct
        inner = (centres[:-1] + centres[1:]) / 2
        return np.concatenate([[t[0]], inner, [t[-1]]])
    x = np.log1p(np.maximum(t, 0.0))
    init = np.unique(np.quantile(x, (np.arange(n_bins) + 0.5) / n_bins))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty cluster is dropped below
        _, labels = kmeans2(x, init.copy(), minit="matrix", iter=50)
    groups = [t[labels == k] for k in np.unique(labels)]
    groups.sort(key=lambda g: g.min())
    inner = [(a.max() + b.min()) / 2 for a, b in zip(groups[:-1], groups[1:], strict=True)]
    return np.concatenate([[t[0]], inner, [t[-1]]])


def assign_bins(times: Sequence[float] | np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin of each time: bins are ``[e_k, e_k+1)``, the last one closed; -1 outside.

    Examples
    --------
    >>> assign_bins([0, 1, 4, 28, 30], [1, 4, 28]).tolist()
    [-1, 0, 1, 1, -1]
    """
    t = np.asarray(times, dtype=float)
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"bin edges must be at least two increasing numbers, got {e.tolist()}")
    idx = np.searchsorted(e, t, side="right") - 1
    idx[t == e[-1]] = len(e) - 2
    idx[(t < e[0]) | (t > e[-1]) | ~np.isfinite(t)] = -1
    return idx


def prediction_correct(
    log_values: np.ndarray, log_pred: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """Prediction-correct log values: ``y + median(PRED in the bin) - PRED``.

    Parameters
    ----------
    log_values : ndarray (..., obs)
        Observed or simulated log values (or log LLOQs).
    log_pred : ndarray (obs,)
        Typical-patient log predictions.
    groups : ndarray (obs,)
        Bin (and stratum) label of each observation; negative labels are left unchanged.

    Returns
    -------
    ndarray
        Corrected values, same shape.

    Examples
    --------
    >>> prediction_correct(np.array([1.0, 2.0, 5.0]), np.array([0.0, 1.0, 3.0]),
    ...                    np.array([0, 0, 1])).tolist()
    [1.5, 1.5, 5.0]
    """
    pred = np.asarray(log_pred, dtype=float)
    g = np.asarray(groups)
    shift = np.zeros_like(pred)
    for label in np.unique(g[g >= 0]):
        m = g == label
        shift[m] = np.median(pred[m]) - pred[m]
    return np.asarray(log_values, dtype=float) + shift


def bin_statistics(
    observed: np.ndarray,
    observed_blq: np.ndarray,
    simulated: np.ndarray,
    simulated_blq: np.ndarray,
    log_lloq: np.ndarray,
    *,
    quantiles: Sequence[float] = QUANTILES,
    interval: float = 0.9,
) -> dict[str, Any]:
    """VPC statistics of one bin (log scale in, DV units out).

    Parameters
    ----------
    observed : ndarray (n,)
        Observed log values (a BLQ sample at its log LLOQ).
    observed_blq : ndarray (n,) of bool
        Which observed samples are BLQ.
    simulated : ndarray (replicate, n)
        Simulated log values (uncensored; censored here).
    simulated_blq : ndarray (replicate, n) of bool
        Which simulated samples are BLQ.
    log_lloq : ndarray (n,)
        Log LLOQ of each sample (NaN: none).
    quantiles : sequence of float
        Percentiles to compare.
    interval : float
        Probability of the prediction interval.

    Returns
    -------
    dict
        ``n_obs, n_blq, lloq`` and per quantile ``<q>_observed, <q>_pi_low, <q>_pi_mid,
        <q>_pi_high, <q>_inside, <q>_informative`` (``<q>`` = ``q5``, ``q50``...), and
        ``blq_observed, blq_pi_low, blq_pi_mid, blq_pi_high, blq_inside``.
    """
    tail = (1 - interval) / 2
    lloq = np.asarray(log_lloq, dtype=float)
    has_lloq = bool(np.isfinite(lloq).any())
    thr = float(np.nanmax(lloq)) if has_lloq else -np.inf
    obs = np.where(observed_blq, lloq, observed)
    sim = np.where(simulated_blq, lloq[None, :], simulated)
    q = np.asarray(quantiles, dtype=float)
    obs_q = np.maximum(np.quantile(obs, q), thr)
    sim_q = np.maximum(np.quantile(sim, q, axis=1), thr)  # (quantile, replicate)
    pi = np.quantile(sim_q, [tail, 0.5, 1 - tail], axis=1)  # (3, quantile)

    def shown(v: np.ndarray) -> np.ndarray:
        return np.where(v <= thr + _TOL, np.nan, np.exp(v))

    out: dict[str, Any] = {
        "n_obs": int(len(obs)),
        "n_blq": int(np.sum(observed_blq)),
        "lloq": float(np.exp(thr)) if has_lloq else np.nan,
    }
    for k, qq in enumerate(q):
        lab = quantile_label(qq)
        inside = pi[0, k] - _TOL <= obs_q[k] <= pi[2, k] + _TOL
        censored_all = obs_q[k] <= thr + _TOL and pi[2, k] <= thr + _TOL
        out[f"{lab}_observed"] = float(shown(obs_q[k]))
        out[f"{lab}_pi_low"] = float(shown(pi[0, k]))
        out[f"{lab}_pi_mid"] = float(shown(pi[1, k]))
        out[f"{lab}_pi_high"] = float(shown(pi[2, k]))
        out[f"{lab}_inside"] = bool(inside)
        out[f"{lab}_informative"] = not censored_all
    frac = np.mean(simulated_blq, axis=1)
    lo, mid, hi = np.quantile(frac, [tail, 0.5, 1 - tail])
    blq_obs = float(np.mean(observed_blq))
    out.update(
        blq_observed=blq_obs if has_lloq else np.nan,
        blq_pi_low=float(lo) if has_lloq else np.nan,
        blq_pi_mid=float(mid) if has_lloq else np.nan,
        blq_pi_high=float(hi) if has_lloq else np.nan,
        blq_inside=bool(lo - _TOL <= blq_obs <= hi + _TOL) if has_lloq else True,
    )
    return out


@dataclass(frozen=True)
class VPCResult:
    """A visual predictive check: statistics first, pictures from them.

    Attributes
    ----------
    table : DataFrame
        One row per stratum and bin: the stratum columns, ``stratum``, ``bin``, ``t_low``,
        ``t_high``, ``t_mid`` (median sample time), ``n_obs``, ``n_blq``, ``lloq`` and the
        columns of :func:`bin_statistics`.
    observations : DataFrame
        The observed samples as plotted: ``ID, TIME, DV, CENS, LLOQ, stratum, bin`` and
        ``value`` (DV, prediction-corrected for a pcVPC; BLQ samples at their (corrected)
        LLOQ), ``PRED`` (typical prediction) for a pcVPC.
    by : tuple of str
        Stratification columns.
    prediction_corrected : bool
        Whether this is a pcVPC.
    quantiles : tuple of float
        Percentiles compared.
    interval : float
        Prediction-interval probability.
    n_replicates : int
        Simulated datasets.
    """

    table: pd.DataFrame
    observations: pd.DataFrame
    by: tuple[str, ...]
    prediction_corrected: bool
    quantiles: tuple[float, ...]
    interval: float
    n_replicates: int


def _strata(fit: Any, obs: pd.DataFrame, by: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Stratum columns per observation (patient-level or time-varying covariates)."""
    dataset = fit.dataset
    patients = dataset.patients
    source_obs = dataset.observations.set_index("ROW")
    cols: dict[str, np.ndarray] = {}
    names: list[str] = []
    problems = []
    for name in by:
        lower_p = {str(c).lower(): str(c) for c in patients.columns}
        lower_o = {str(c).lower(): str(c) for c in source_obs.columns}
        if name.lower() in lower_p:
            col = lower_p[name.lower()]
            values = patients[col].copy()
            values.index = values.index.astype(str)
            cols[col] = obs["ID"].map(values).to_numpy(dtype=object)
        elif name.lower() in lower_o and name.lower() not in ("id", "time", "dv", "cens"):
            col = lower_o[name.lower()]
            cols[col] = source_obs.loc[obs["obs"].to_numpy(), col].to_numpy(dtype=object)
        else:
            available = ", ".join(map(str, patients.columns)) or "(none)"
            problems.append(
                Problem(f"no covariate to stratify by; available: {available}", column=name)
            )
            continue
        names.append(col)
    if problems:
        raise DataError(str(getattr(dataset, "source", "<data>")), problems)
    frame = pd.DataFrame(
        {
            c: pd.Series(v, dtype=object).where(pd.notna(v), "missing").astype(str)
            for c, v in cols.items()
        }
    )
    return frame, names


def vpc(
    fit: Any,
    *,
    by: str | Sequence[str] | None = None,
    bins: Sequence[float] | None = None,
    n_bins: int = 10,
    prediction_corrected: bool = False,
    n_replicates: int = 200,
    quantiles: Sequence[float] = QUANTILES,
    interval: float = 0.9,
    lloq: LloqInput = None,
    group: str = "fitted",
    n_pred_draws: int | None = 500,
    random_seed: int | np.random.Generator | None = 0,
) -> VPCResult:
    """Censoring-aware (prediction-corrected, stratified) visual predictive check.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str or sequence of str, optional
        Covariate(s) to stratify by (e.g. ``"TRIAL"``, ``["RESPONSE", "TUMOR_TYPE"]``).
    bins : sequence of float, optional
        Bin edges (days) for every stratum; default :func:`vpc_bins` per stratum. Samples
        outside the edges are left out (with a warning).
    n_bins : int
        Maximum number of automatic bins per stratum.
    prediction_corrected : bool
        pcVPC (Bergstrand et al. 2011).
    n_replicates : int
        Simulated datasets.
    quantiles : sequence of float
        Percentiles compared (default 5th, 50th, 95th).
    interval : float
        Prediction-interval probability (0.9).
    lloq : float, str, mapping or Series, optional
        See :func:`bayes_cart.data.lloq.lloq_per_observation`.
    group : {"fitted", "new", "none"}
        Trial effect in the simulations (and in PRED).
    n_pred_draws : int or None
        Posterior draws for the typical predictions of the pcVPC.
    random_seed : int or Generator
        Seed.

    Returns
    -------
    VPCResult
        ``table`` (per stratum and bin), ``observations`` and the settings.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}")
    q = tuple(float(x) for x in quantiles)
    if not q or any(not 0 < x < 1 for x in q):
        raise ValueError(f"quantiles must be in (0, 1), got {q}")
    rng = np.random.default_rng(random_seed)
    by_list = [by] if isinstance(by, str) else list(by or [])
    obs = observation_table(fit, lloq)
    strata, by_cols = _strata(fit, obs, by_list)
    labels = (
        strata.apply(lambda r: " / ".join(f"{c}={r[c]}" for c in by_cols), axis=1)
        if by_cols
        else pd.Series("all", index=obs.index)
    )
    obs["stratum"] = labels.to_numpy()
    for c in by_cols:
        obs[c] = strata[c].to_numpy()

    time = obs["TIME"].to_numpy()
    bin_index = np.full(len(obs), -1, dtype=np.int64)
    edges_of: dict[str, np.ndarray] = {}
    for s in pd.unique(obs["stratum"]):
        m = (obs["stratum"] == s).to_numpy()
        edges = np.asarray(bins, dtype=float) if bins is not None else vpc_bins(time[m], n_bins)
        if len(edges) < 2:  # a single sample time
            edges = np.array([edges[0], edges[0] + 1e-9])
        edges_of[s] = edges
        bin_index[m] = assign_bins(time[m], edges)
    dropped = int((bin_index < 0).sum())
    if dropped:
        warnings.warn(
            f"{dropped} sample(s) outside the bin edges left out of the VPC",
            UserWarning,
            stacklevel=2,
        )
    obs["bin"] = bin_index

    sims = simulate_observed_design(
        fit, n_replicates=n_replicates, lloq=lloq, group=group, random_seed=rng
    )
    y_obs = obs["log_dv"].to_numpy().copy()
    cens = obs["CENS"].to_numpy()
    obs_blq = cens == 1
    y_obs[obs_blq] = obs["log_lloq"].to_numpy()[obs_blq]
    y_sim = sims["log_dv"]
    log_lloq = obs["log_lloq"].to_numpy()
    cells = pd.Series(list(zip(obs["stratum"], bin_index, strict=True)))
    cell_id = np.where(bin_index >= 0, pd.factorize(cells)[0], -1)
    if prediction_corrected:
        log_pred = np.median(
            population_predictions(fit, n_draws=n_pred_draws, group=group, random_seed=rng),
            axis=0,
        )
        y_obs = prediction_correct(y_obs, log_pred, cell_id)
        y_sim = prediction_correct(y_sim, log_pred, cell_id)
        log_lloq = prediction_correct(log_lloq, log_pred, cell_id)
        obs["PRED"] = np.exp(log_pred)
    obs["value"] = np.exp(y_obs)

    rows = []
    for s in pd.unique(obs["stratum"]):
        edges = edges_of[s]
        for b in range(len(edges) - 1):
            m = ((obs["stratum"] == s).to_numpy()) & (bin_index == b)
            if not m.any():
                continue
            stats_ = bin_statistics(
                y_obs[m],
                obs_blq[m],
                y_sim[:, m],
                sims["blq"][:, m],
                log_lloq[m],
                quantiles=q,
                interval=interval,
            )
            first = obs.loc[m].iloc[0]
            row = {c: first[c] for c in by_cols}
            row.update(
                stratum=s,
                bin=b,
                t_low=float(edges[b]),
                t_high=float(edges[b + 1]),
                t_mid=float(np.median(time[m])),
                n_patients=int(obs.loc[m, "ID"].nunique()),
            )
            row.update(stats_)
            rows.append(row)
    table = pd.DataFrame(rows)
    keep = ["ID", "TIME", "DV", "CENS", "LLOQ", "stratum", *by_cols, "bin", "value"]
    keep += ["PRED"] if prediction_corrected else []
    return VPCResult(
        table=table,
        observations=obs.loc[obs["bin"] >= 0, keep].reset_index(drop=True),
        by=tuple(by_cols),
        prediction_corrected=prediction_corrected,
        quantiles=q,
        interval=float(interval),
        n_replicates=int(n_replicates),
    )


def vpc_coverage(table: pd.DataFrame | VPCResult) -> dict[str, float]:
    """Fraction of observed statistics inside their prediction intervals.

    Parameters
    ----------
    table : DataFrame or VPCResult
        The VPC table.

    Returns
    -------
    dict
        ``percentiles`` (over every informative percentile of every bin), ``n_percentiles``,
        one entry per quantile (``q5``, ``q50``, ``q95``), ``blq`` (over bins with an LLOQ) and
        ``n_blq``. With a 90% interval, about 0.9 is expected under the model (bins are
        correlated, so expect scatter).
    """
    t = table.table if isinstance(table, VPCResult) else table
    labels = sorted(
        {c[: -len("_inside")] for c in t.columns if c.startswith("q") and c.endswith("_inside")},
        key=lambda s: float(s[1:]),
    )
    inside, total = 0, 0
    out: dict[str, float] = {}
    for lab in labels:
        m = t[f"{lab}_informative"].to_numpy(dtype=bool)
        k = int(t.loc[m, f"{lab}_inside"].sum())
        out[lab] = k / m.sum() if m.sum() else np.nan
        inside += k
        total += int(m.sum())
    out["percentiles"] = inside / total if total else np.nan
    out["n_percentiles"] = float(total)
    has = t["lloq"].notna().to_numpy() if "lloq" in t else np.zeros(len(t), dtype=bool)
    out["blq"] = float(t.loc[has, "blq_inside"].mean()) if has.any() else np.nan
    out["n_blq"] = float(has.sum())
    return out
