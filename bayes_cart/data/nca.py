"""Non-compartmental analysis (NCA) of observed CAR-T transgene levels.

Per patient: the peak (Cmax, Tmax), the exposure over a window (by default AUC0-28d) and the
persistence (Tlast, Clast), as reported in CAR-T trials (e.g. Wang et al. 2025, Table 3).
Summaries per group give the median and range.

Rules, in one place (see :func:`nca_profile` for the details):

* **AUC**: linear trapezoid while the level rises or stays flat, log trapezoid while it
  declines ("linear-up / log-down"). Times are in days, so the AUC is in DV units x day.
* **Start of the profile**: the first sample. There is no extrapolation back to t = 0; a
  sample at t = 0 is used when it exists.
* **BLQ samples before the first quantifiable sample** count as 0 for the AUC.
* **BLQ samples between quantifiable samples** count as LLOQ/2 (``intermediate_blq=
  "half_lloq"``, default) or are dropped (``"exclude"``). LLOQ/2 keeps a documented dip in
  the profile instead of bridging it with a straight line between two quantifiable values.
* **BLQ samples after the last quantifiable sample** end the profile: the AUC stops at Tlast.
  With ``blq_rule="stop_after_two_consecutive_blq"`` the profile also ends at the first run
  of two consecutive BLQ samples (the monitoring rule of Wang et al. 2025: LLOQ 100
  copies/ug, monitoring stopped after two consecutive BLQ results); later samples are ignored.
* **End of the AUC window**: when a profile point lies at or after the window end, the level
  at the window end is interpolated (log-linear if declining, linear otherwise) and the AUC is
  complete. Otherwise the AUC runs to Tlast only and ``AUC_<a>_<b>_complete`` is False.
* **All-BLQ patients** get NaN Cmax, Tmax, AUC, Tlast and Clast and a ``reason``.
* **Right-censored samples** (CENS = -1, above the upper limit) are used at their DV value,
  which is then a lower bound of the true level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

BLQRule = Literal["stop_after_last_quantifiable", "stop_after_two_consecutive_blq"]
IntermediateBLQ = Literal["half_lloq", "exclude"]

BLQ_RULES: tuple[str, ...] = ("stop_after_last_quantifiable", "stop_after_two_consecutive_blq")
INTERMEDIATE_BLQ: tuple[str, ...] = ("half_lloq", "exclude")
NCA_METRICS: tuple[str, ...] = ("Cmax", "Tmax", "AUC", "Tlast")

__all__ = [
    "BLQ_RULES",
    "auc_column",
    "auc_linear_up_log_down",
    "nca",
    "nca_profile",
    "summarise_nca",
]


def auc_column(auc_window: tuple[float, float]) -> str:
    """Name of the AUC column for a window, e.g. ``AUC_0_28`` for ``(0, 28)``.

    Examples
    --------
    >>> auc_column((0.0, 28.0))
    'AUC_0_28'
    >>> auc_column((7, 14.5))
    'AUC_7_14.5'
    """
    a, b = auc_window
    return f"AUC_{float(a):g}_{float(b):g}"


def _declining(c1: float, c2: float) -> bool:
    """Tell whether a segment uses the log rule (strictly declining, both levels > 0)."""
    return c2 < c1 and c2 > 0.0


def _interpolate(t1: float, c1: float, t2: float, c2: float, t: float) -> float:
    """Level at ``t`` in [t1, t2]: log-linear if declining, linear otherwise."""
    if t2 == t1:
        return c1
    w = (t - t1) / (t2 - t1)
    if _declining(c1, c2):
        return float(np.exp(np.log(c1) + w * (np.log(c2) - np.log(c1))))
    return c1 + w * (c2 - c1)


def _segment_area(t1: float, c1: float, t2: float, c2: float) -> float:
    """Area of one segment: linear trapezoid up/flat, log trapezoid down."""
    dt = t2 - t1
    if dt <= 0.0:
        return 0.0
    if _declining(c1, c2):
        return (c1 - c2) * dt / np.log(c1 / c2)
    return 0.5 * (c1 + c2) * dt


def auc_linear_up_log_down(
    time: Sequence[float] | np.ndarray,
    conc: Sequence[float] | np.ndarray,
    start: float = -np.inf,
    end: float = np.inf,
) -> float:
    """Area under a profile between ``start`` and ``end`` (linear-up / log-down).

    The profile is taken as given: it begins at its first point and ends at its last one
    (nothing is extrapolated). Window limits falling inside a segment are interpolated with
    the segment's own rule (log-linear when it declines, linear otherwise).

    Parameters
    ----------
    time : array
        Sample times, increasing (days).
    conc : array
        Levels (>= 0) at those times.
    start, end : float
        Integration window.

    Returns
    -------
    float
        The area, in conc units x time units.

    Examples
    --------
    Rise 0 -> 10 over 2 days (linear, 10) then fall 10 -> 5 over 1 day (log, 5/ln 2):

    >>> round(auc_linear_up_log_down([0, 2, 3], [0, 10, 5]), 4)
    17.2135
    """
    t = np.asarray(time, dtype=float)
    c = np.asarray(conc, dtype=float)
    total = 0.0
    for i in range(len(t) - 1):
        lo, hi = max(t[i], start), min(t[i + 1], end)
        if hi <= lo:
            continue
        c_lo = _interpolate(t[i], c[i], t[i + 1], c[i + 1], lo)
        c_hi = _interpolate(t[i], c[i], t[i + 1], c[i + 1], hi)
        total += _segment_area(lo, c_lo, hi, c_hi)
    return float(total)


def nca_profile(
    time: Sequence[float] | np.ndarray,
    dv: Sequence[float] | np.ndarray,
    cens: Sequence[int] | np.ndarray,
    *,
    auc_window: tuple[float, float] = (0.0, 28.0),
    blq_rule: BLQRule = "stop_after_last_quantifiable",
    intermediate_blq: IntermediateBLQ = "half_lloq",
) -> dict[str, Any]:
    """NCA of one patient's profile.

    Parameters
    ----------
    time : array
        Sample times (days); sorted here (stable, so ties keep their order).
    dv : array
        Levels; for BLQ samples (``cens == 1``) the LLOQ.
    cens : array
        0 quantified, 1 below the LLOQ (left-censored), -1 above the upper limit (used at DV).
    auc_window : (float, float)
        AUC window in days; default 0-28 d.
    blq_rule : {"stop_after_last_quantifiable", "stop_after_two_consecutive_blq"}
        Where the profile ends. ``"stop_after_last_quantifiable"``: at the last quantifiable
        sample. ``"stop_after_two_consecutive_blq"``: additionally, at the first run of two
        consecutive BLQ samples after the first quantifiable one (later samples ignored).
    intermediate_blq : {"half_lloq", "exclude"}
        BLQ samples between quantifiable ones: used at LLOQ/2 (default) or dropped.

    Returns
    -------
    dict
        ``Cmax, Tmax, AUC, AUC_complete, Tlast, Clast, n_obs, n_blq, reason``. Tmax is the first
        time the maximum occurs. ``reason`` is None unless the metrics are NaN.

    Examples
    --------
    >>> r = nca_profile([1, 7, 14, 28], [100, 1000, 500, 20], [0, 0, 0, 0])
    >>> r["Cmax"], r["Tmax"], round(r["AUC"], 1), r["AUC_complete"]
    (1000.0, 7.0, 10437.1, True)
    """
    if blq_rule not in BLQ_RULES:
        raise ValueError(f"blq_rule must be one of {BLQ_RULES}, got {blq_rule!r}")
    if intermediate_blq not in INTERMEDIATE_BLQ:
        raise ValueError(
            f"intermediate_blq must be one of {INTERMEDIATE_BLQ}, got {intermediate_blq!r}"
        )
    a, b = (float(x) for x in auc_window)
    if not b > a:
        raise ValueError(f"auc_window must be (start, end) with end > start, got {auc_window}")
    t = np.asarray(time, dtype=float)
    c = np.asarray(dv, dtype=float)
    blq = np.asarray(cens, dtype=int) == 1
    order = np.argsort(t, kind="stable")
    t, c, blq = t[order], c[order], blq[order]
    out: dict[str, Any] = {
        "Cmax": np.nan,
        "Tmax": np.nan,
        "AUC": np.nan,
        "AUC_complete": False,
        "Tlast": np.nan,
        "Clast": np.nan,
        "n_obs": int(len(t)),
        "n_blq": int(blq.sum()),
        "reason": None,
    }
    if len(t) == 0:
        out["reason"] = "no samples"
        return out
    quant_idx = np.flatnonzero(~blq)
    if len(quant_idx) == 0:
        out["reason"] = "all samples BLQ"
        return out
    first_q = int(quant_idx[0])
    end = len(t)
    if blq_rule == "stop_after_two_consecutive_blq":
        runs = np.flatnonzero(blq[first_q:-1] & blq[first_q + 1 :])
        if len(runs):
            end = first_q + int(runs[0])
    last_q = int(np.flatnonzero(~blq[:end])[-1])

    keep = np.ones(last_q + 1, dtype=bool)
    prof_t = t[: last_q + 1].copy()
    prof_c = c[: last_q + 1].copy()
    prof_c[:first_q] = 0.0
    inner_blq = np.flatnonzero(blq[: last_q + 1])
    inner_blq = inner_blq[inner_blq > first_q]
    if intermediate_blq == "half_lloq":
        prof_c[inner_blq] = c[inner_blq] / 2.0
    else:
        keep[inner_blq] = False
    prof_t, prof_c = prof_t[keep], prof_c[keep]

    quant_t, quant_c = t[: last_q + 1][~blq[: last_q + 1]], c[: last_q + 1][~blq[: last_q + 1]]
    i_max = int(np.argmax(quant_c))
    out.update(
        Cmax=float(quant_c[i_max]),
        Tmax=float(quant_t[i_max]),
        Tlast=float(t[last_q]),
        Clast=float(c[last_q]),
        AUC=auc_linear_up_log_down(prof_t, prof_c, a, b),
        AUC_complete=bool(t[last_q] >= b and t[0] <= b),
    )
    return out


def _observations_and_patients(data: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observations and patient table of a Dataset (or of anything load_dataset reads)."""
    if not (hasattr(data, "observations") and hasattr(data, "patients")):
        from bayes_cart.data.dataset import load_dataset

        data = load_dataset(data)
    return data.observations, data.patients


def nca(
    dataset: Any,
    auc_window: tuple[float, float] = (0.0, 28.0),
    blq_rule: BLQRule = "stop_after_last_quantifiable",
    *,
    intermediate_blq: IntermediateBLQ = "half_lloq",
) -> pd.DataFrame:
    """Non-compartmental analysis, one row per patient.

    AUC by the linear-up / log-down trapezoid rule from the first sample (no extrapolation to
    t = 0 unless a sample at 0 exists). BLQ samples before the first quantifiable one count as
    0; BLQ samples between quantifiable ones count as LLOQ/2 (or are dropped with
    ``intermediate_blq="exclude"``); BLQ samples after the last quantifiable one end the profile
    (with ``blq_rule="stop_after_two_consecutive_blq"`` the first two consecutive BLQ samples
    end it). The AUC up to the window end is complete when a profile point lies at or after
    the window end (the level there is interpolated, log-linear if declining); otherwise it
    runs to Tlast and ``AUC_<a>_<b>_complete`` is False. See the module docstring.

    Parameters
    ----------
    dataset : Dataset, DataFrame or path
        A :class:`bayes_cart.data.dataset.Dataset`, or anything
        :func:`bayes_cart.data.dataset.load_dataset` reads.
    auc_window : (float, float)
        AUC window in days; the column is named ``AUC_<a>_<b>`` (``AUC_0_28`` by default).
    blq_rule : {"stop_after_last_quantifiable", "stop_after_two_consecutive_blq"}
        Where a profile ends (see :func:`nca_profile`).
    intermediate_blq : {"half_lloq", "exclude"}
        Handling of BLQ samples between quantifiable ones.

    Returns
    -------
    pandas.DataFrame
        ``ID, Cmax, Tmax, AUC_<a>_<b>, AUC_<a>_<b>_complete, Tlast, Clast, n_obs, n_blq,
        reason`` and the patient covariates. Times in days, AUC in DV units x day.

    Examples
    --------
    >>> from bayes_cart.example import load_example  # doctest: +SKIP
    >>> table = nca(load_example())  # doctest: +SKIP
    >>> summarise_nca(table, by="TRIAL")  # doctest: +SKIP
    """
    obs, patients = _observations_and_patients(dataset)
    auc_name = auc_column(auc_window)
    rows = []
    for pid, grp in obs.groupby("ID", sort=False):
        r = nca_profile(
            grp["TIME"].to_numpy(float),
            grp["DV"].to_numpy(float),
            grp["CENS"].to_numpy(int),
            auc_window=auc_window,
            blq_rule=blq_rule,
            intermediate_blq=intermediate_blq,
        )
        rows.append({"ID": str(pid), **r})
    columns = ["ID", "Cmax", "Tmax", "AUC", "AUC_complete", "Tlast", "Clast"]
    columns += ["n_obs", "n_blq", "reason"]
    table = pd.DataFrame(rows, columns=columns)
    # patients with no observation rows at all (e.g. a dosing row only)
    missing = [str(p) for p in patients.index if str(p) not in set(table["ID"])]
    if missing:
        extra = pd.DataFrame(
            [
                {"ID": p, **nca_profile([], [], [], auc_window=auc_window, blq_rule=blq_rule)}
                for p in missing
            ]
        )
        table = pd.concat([table, extra[columns]], ignore_index=True)
    table = table.rename(columns={"AUC": auc_name, "AUC_complete": f"{auc_name}_complete"})
    table["reason"] = table["reason"].astype("string")
    covs = patients.copy()
    covs.index = covs.index.astype(str)
    covs = covs.drop(columns=[c for c in covs.columns if c in table.columns])
    table = table.merge(covs, left_on="ID", right_index=True, how="left")
    order = {str(p): i for i, p in enumerate(patients.index)}
    table = table.sort_values("ID", key=lambda s: s.map(order).fillna(len(order)), kind="stable")
    return table.reset_index(drop=True)


def _auc_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("AUC_") and not c.endswith("_complete")]


def summarise_nca(
    table: pd.DataFrame,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Median and range of the NCA metrics per group (like Table 3 of Wang et al. 2025).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`nca`.
    by : str or list of str, optional
        Grouping column(s), e.g. ``"TRIAL"`` or ``["TRIAL", "RESPONSE"]``. Missing group values
        form their own group, labelled ``"(missing)"``. None: one row for all patients.

    Returns
    -------
    pandas.DataFrame
        One row per group: the group columns, ``n`` (patients), ``percent`` (of all
        patients), ``n_quantifiable`` (patients with at least one quantifiable sample), and
        ``<metric>_median``, ``<metric>_min``, ``<metric>_max`` for Cmax, Tmax, the AUC column(s)
        and Tlast (NaN metrics of all-BLQ patients are left out).

    Examples
    --------
    >>> t = pd.DataFrame({"ID": ["a", "b", "c"], "Cmax": [1.0, 3.0, 10.0],
    ...                   "Tmax": [7.0, 14.0, 10.0], "Tlast": [28.0, 90.0, 60.0],
    ...                   "AUC_0_28": [5.0, 9.0, 40.0], "ARM": ["x", "x", "y"]})
    >>> summarise_nca(t, by="ARM")[["ARM", "n", "Cmax_median", "Cmax_min", "Cmax_max"]]
      ARM  n  Cmax_median  Cmax_min  Cmax_max
    0   x  2          2.0       1.0       3.0
    1   y  1         10.0      10.0      10.0
    """
    metrics = ["Cmax", "Tmax", *_auc_columns(table), "Tlast"]
    absent = [m for m in metrics if m not in table.columns]
    if absent:
        raise ValueError(f"NCA table lacks column(s) {absent}; pass the output of nca()")
    keys: list[str] = [by] if isinstance(by, str) else list(by or [])
    unknown = [k for k in keys if k not in table.columns]
    if unknown:
        raise KeyError(
            f"cannot group by {unknown}: not a column of the NCA table "
            f"(columns: {list(table.columns)})"
        )
    work = table.copy()
    for k in keys:
        if not pd.api.types.is_numeric_dtype(work[k]):
            work[k] = work[k].astype("string").fillna("(missing)")
    total = len(work)
    groups = work.groupby(keys, sort=True, dropna=False) if keys else [((), work)]
    rows = []
    for key, grp in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = len(grp)
        row["percent"] = 100.0 * len(grp) / total if total else np.nan
        row["n_quantifiable"] = int(grp["Cmax"].notna().sum())
        for m in metrics:
            values = grp[m].astype(float)
            row[f"{m}_median"] = values.median()
            row[f"{m}_min"] = values.min()
            row[f"{m}_max"] = values.max()
        rows.append(row)
    return pd.DataFrame(rows)
