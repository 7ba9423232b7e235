"""Dataset-format rows around the simulated samples, and writing them.

Infusions (:func:`make_infusions`, :func:`add_infusion_rows`), NONMEM dosing rows
(:func:`add_dosing_rows`) and the CSV writer with NONMEM's ``"."`` for the missing DV of a
dosing row (:func:`write_data_csv`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import DataError, Problem


def make_infusions(
    ids: Sequence[str],
    amount: float | Mapping[str, float] = 1.0,
    *,
    reinfused: Sequence[str] = (),
    day: float | Mapping[str, float] = 60.0,
    reinfusion_amount: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Build an infusion table: one infusion at TIME 0 per patient, a re-infusion for some.

    Parameters
    ----------
    ids : sequence of str
        Patients.
    amount : float or mapping
        First infusion's AMT (one value, or per patient).
    reinfused : sequence of str
        Patients infused a second time.
    day : float or mapping
        Day of the re-infusion (one value, or per re-infused patient).
    reinfusion_amount : float or mapping, optional
        AMT of the re-infusion (default the first infusion's).

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME, AMT``, one row per infusion: the ``infusions=`` of
        :func:`simulate_patients` and of :func:`add_infusion_rows`.

    Examples
    --------
    >>> make_infusions(["a", "b"], 2.0, reinfused=["b"], day=75.0).to_dict("list")
    {'ID': ['a', 'b', 'b'], 'TIME': [0.0, 0.0, 75.0], 'AMT': [2.0, 2.0, 2.0]}
    """

    def per(value: Any, pid: str) -> float:
        return float(value[pid]) if isinstance(value, Mapping) else float(value)

    again = {str(p) for p in reinfused}
    unknown = sorted(again - {str(i) for i in ids})
    if unknown:
        raise ValueError(f"reinfused patients {unknown[:8]} are not in ids")
    rows = []
    for pid in (str(i) for i in ids):
        first = per(amount, pid)
        rows.append((pid, 0.0, first))
        if pid in again:
            second = first if reinfusion_amount is None else per(reinfusion_amount, pid)
            when = per(day, pid)
            if not when > 0 or not second > 0:
                raise ValueError(f"patient {pid}: re-infusion day and AMT must be > 0")
            rows.append((pid, when, second))
    return pd.DataFrame(rows, columns=["ID", "TIME", "AMT"])


def add_infusion_rows(data: pd.DataFrame, infusions: pd.DataFrame) -> pd.DataFrame:
    """Add one NONMEM dosing row (EVID=1, AMT, MDV=1) per infusion to dataset-format rows.

    Parameters
    ----------
    data : pandas.DataFrame
        Dataset-format rows (``ID, TIME, DV, CENS``, covariates), e.g. ``sim.data``.
    infusions : pandas.DataFrame
        ``ID, TIME, AMT`` (:func:`make_infusions`).

    Returns
    -------
    pandas.DataFrame
        Columns ``ID, TIME, EVID, AMT, MDV, DV, CENS`` and the covariates; each dosing row
        comes before the samples at or after its TIME (a sample at the TIME of a later
        infusion is a pre-infusion sample either way).
    """
    obs = data.copy()
    obs["ID"] = obs["ID"].astype(str)
    inf = infusions.copy()
    inf["ID"] = inf["ID"].astype(str)
    covs = [c for c in obs.columns if c not in ("ID", "TIME", "DV", "CENS")]
    first = obs.groupby("ID", sort=False)[covs].first() if covs else None
    dosing = pd.DataFrame(
        {
            "ID": inf["ID"].to_numpy(),
            "TIME": inf["TIME"].to_numpy(float),
            "EVID": 1,
            "AMT": inf["AMT"].to_numpy(float),
            "MDV": 1,
            "DV": np.nan,
            "CENS": 0,
        }
    )
    if first is not None:
        dosing = dosing.join(first, on="ID")
    obs["EVID"], obs["AMT"], obs["MDV"] = 0, np.nan, 0
    columns = ["ID", "TIME", "EVID", "AMT", "MDV", "DV", "CENS", *covs]
    dosing["_order"], obs["_order"] = 0, 1
    order = {p: i for i, p in enumerate(pd.unique(obs["ID"]))}
    out = pd.concat([dosing[[*columns, "_order"]], obs[[*columns, "_order"]]], ignore_index=True)
    out["_p"] = out["ID"].map(order)
    out = out[out["_p"].notna()].sort_values(["_p", "TIME", "_order"], kind="stable")
    return out.drop(columns=["_p", "_order"]).reset_index(drop=True)


def add_dosing_rows(
    data: pd.DataFrame,
    amount: pd.Series | Mapping[str, float] | str,
    *,
    time: float = 0.0,
) -> pd.DataFrame:
    """Add NONMEM-style dosing rows (EVID=1, AMT, MDV=1) before each patient's samples.

    Parameters
    ----------
    data : pandas.DataFrame
        Dataset-format rows (``ID, TIME, DV, CENS``, covariates).
    amount : Series, dict or str
        Dose per patient (indexed by ID), or the name of a data column holding it (that column
        is then removed, since the dose is carried by AMT).
    time : float
        Time of the dose (days).

    Returns
    -------
    pandas.DataFrame
        Columns ``ID, TIME, EVID, AMT, MDV, DV, CENS`` and the covariates. Dosing rows have DV
        missing and CENS 0; observation rows have AMT missing (both written as "." by
        :func:`write_data_csv`).
    """
    obs = data.copy()
    if isinstance(amount, str):
        doses = obs.groupby("ID", sort=False)[amount].first()
        obs = obs.drop(columns=[amount])
    else:
        doses = pd.Series(dict(amount))
    doses.index = doses.index.astype(str)
    ids = pd.unique(obs["ID"].astype(str))
    absent = [p for p in ids if p not in doses.index]
    if absent:
        raise DataError("doses", Problem(f"no dose for patient(s) {absent[:8]}", column="AMT"))
    covs = [c for c in obs.columns if c not in ("ID", "TIME", "DV", "CENS")]
    dosing = obs.groupby("ID", sort=False)[covs].first().reset_index() if covs else None
    if dosing is None:
        dosing = pd.DataFrame({"ID": ids})
    dosing["TIME"] = float(time)
    dosing["EVID"] = 1
    dosing["AMT"] = doses.reindex(dosing["ID"].astype(str)).to_numpy(float)
    dosing["MDV"] = 1
    dosing["DV"] = np.nan
    dosing["CENS"] = 0
    obs["EVID"] = 0
    obs["AMT"] = np.nan
    obs["MDV"] = 0
    dosing["_order"], obs["_order"] = 0, 1
    columns = ["ID", "TIME", "EVID", "AMT", "MDV", "DV", "CENS", *covs]
    order = {p: i for i, p in enumerate(ids)}
    out = pd.concat([dosing[[*columns, "_order"]], obs[[*columns, "_order"]]], ignore_index=True)
    out["_p"] = out["ID"].astype(str).map(order)
    out = out.sort_values(["_p", "_order", "TIME"], kind="stable")
    return out.drop(columns=["_p", "_order"]).reset_index(drop=True)


def write_data_csv(data: pd.DataFrame, path: str | Path) -> Path:
    """Write a dataset-format frame to CSV, with NONMEM conventions for dosing rows.

    When the frame has an ``EVID`` column, missing ``DV`` (dosing rows) and missing ``AMT``
    (observation rows) are written as ``"."``. Other missing values are written empty.

    Parameters
    ----------
    data : pandas.DataFrame
        Rows to write.
    path : str or Path
        Output file.

    Returns
    -------
    Path
        The path written.
    """
    out = data.copy()
    if "EVID" in out.columns:
        for col in ("DV", "AMT"):
            if col in out.columns:
                values = pd.to_numeric(out[col])
                out[col] = ["." if pd.isna(v) else repr(float(v)) for v in values]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(p, index=False, lineterminator="\n")
    return p
