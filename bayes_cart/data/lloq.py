"""The LLOQ of the observed data: the rules in one place.

A left-censored sample (``CENS = 1``) carries its LLOQ in DV. The other samples' LLOQ is read or
inferred by one of two rules, each for its own use:

* :func:`lloq_per_observation`, per **observation**, for the model checks (PPC, VPC, GOF, the
  replicate datasets): the limit below which that sample would have been reported BLQ. Given
  (a number, a column, a per-patient mapping), else a ``LLOQ`` column, else the *smallest*
  censored DV of the patient, its group (e.g. ``TRIAL``), then the whole dataset.
* :func:`patient_lloq`, per **patient**, for the persistence metric of the CK metrics: the
  *largest* censored DV of the patient, else its group's median, else the dataset's median.

Column names are looked up case-insensitively (:func:`bayes_cart.data.column_roles.find_column`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.data.column_roles import find_column
from bayes_cart.errors import DataError, Problem

__all__ = ["LloqInput", "lloq_per_observation", "patient_lloq"]

LloqInput = float | str | Mapping[str, float] | pd.Series | None


def _per_group_min(values: pd.Series, keys: pd.Series) -> pd.Series:
    """Minimum of ``values`` per key (NaN ignored), mapped back onto every row of ``keys``."""
    mins = values.groupby(keys, dropna=True).min()
    return keys.map(mins).astype(float)


def lloq_per_observation(
    dataset: Any,
    lloq: LloqInput = None,
    *,
    by: str | None = None,
) -> np.ndarray:
    """Return the lower limit of quantification of every observation of a dataset.

    A censored sample (``CENS = 1``) carries its LLOQ in DV, so its own DV is used. For
    quantified samples (and right-censored ones) the LLOQ is, in order of precedence:

    1. ``lloq`` when given: a number, a column name (time-varying or patient-level), or a
       mapping / Series from patient ID to LLOQ;
    2. a column named ``LLOQ`` (any case) in the data;
    3. inferred: the smallest censored DV of the same patient; else of the same group (column
       ``by``, default ``TRIAL`` when the data have one); else the smallest censored DV of the
       whole dataset; NaN when nothing is censored (no censoring applied).

    Parameters
    ----------
    dataset : bayes_cart.data.dataset.Dataset
        Validated data.
    lloq : float, str, mapping or Series, optional
        User LLOQ (see above).
    by : str, optional
        Patient-level column grouping patients that share an assay (default ``TRIAL`` if
        present).

    Returns
    -------
    ndarray
        One LLOQ per row of ``dataset.observations`` (DV units), NaN when unknown.

    Raises
    ------
    DataError
        When ``lloq`` names a column that does not exist, misses patients, or is not > 0.

    Examples
    --------
    >>> import pandas as pd
    >>> from bayes_cart.data.dataset import load_dataset
    >>> data = load_dataset(pd.DataFrame({"ID": [1, 1, 2, 2], "TIME": [1, 9, 1, 9],
    ...                                   "DV": [80, 20, 60, 30], "CENS": [0, 1, 0, 0]}))
    >>> lloq_per_observation(data).tolist()
    [20.0, 20.0, 20.0, 20.0]
    """
    obs = dataset.observations
    patients = dataset.patients
    source = str(getattr(dataset, "source", "<data>"))
    ids = obs["ID"].astype(str)
    cens = obs["CENS"].to_numpy()
    dv = obs["DV"].to_numpy(dtype=float)
    out = pd.Series(np.nan, index=obs.index, dtype=float)

    def patient_column(col: str) -> pd.Series:
        values = pd.to_numeric(patients[col], errors="coerce")
        values.index = values.index.astype(str)
        return ids.map(values).astype(float)

    if lloq is None:
        for frame in (obs, patients):
            col = find_column(frame.columns, "LLOQ")
            if col is not None:
                lloq = col
                break
    if isinstance(lloq, str):
        col_obs, col_pat = find_column(obs.columns, lloq), find_column(patients.columns, lloq)
        if col_obs is not None:
            out = pd.to_numeric(obs[col_obs], errors="coerce").astype(float)
        elif col_pat is not None:
            out = patient_column(col_pat)
        else:
            raise DataError(
                source,
                Problem(
                    "LLOQ column not found; columns: "
                    f"{', '.join(map(str, [*obs.columns, *patients.columns]))}",
                    column=lloq,
                ),
            )
    elif isinstance(lloq, Mapping | pd.Series):
        mapping = {str(k): float(v) for k, v in dict(lloq).items()}
        absent = sorted(set(ids) - set(mapping))
        if absent:
            raise DataError(
                source, Problem(f"no LLOQ given for patient(s) {absent[:8]}", column="LLOQ")
            )
        out = ids.map(mapping).astype(float)
    elif lloq is not None:
        out = pd.Series(float(lloq), index=obs.index, dtype=float)
    else:
        blq = pd.Series(np.where(cens == 1, dv, np.nan), index=obs.index)
        out = _per_group_min(blq, ids)
        group = by
        if group is None and find_column(patients.columns, "TRIAL") is not None:
            group = find_column(patients.columns, "TRIAL")
        if group is not None:
            col = find_column(patients.columns, group)
            if col is None:
                raise DataError(source, Problem("grouping column not found", column=group))
            g = patients[col].astype(str)
            g.index = g.index.astype(str)
            keys = ids.map(g)
            out = out.fillna(_per_group_min(blq, keys))
        if np.isfinite(blq).any():
            out = out.fillna(float(np.nanmin(blq)))
    values = out.to_numpy(dtype=float)
    bad = np.isfinite(values) & (values <= 0) & (cens != 1)
    if bad.any():
        rows = tuple(int(r) for r in obs["ROW"].to_numpy()[bad])
        raise DataError(source, Problem("LLOQ must be > 0", row=rows, column="LLOQ"))
    # a censored sample states its own limit
    return np.where(cens == 1, dv, values)


def patient_lloq(dataset: Any, group_column: str | None = None) -> pd.Series:
    """LLOQ per patient: its own when known, else its group's median, else the dataset's.

    A patient's LLOQ is known when it has left-censored samples (``CENS = 1``, where DV holds
    the LLOQ); with several, the largest is used.

    Parameters
    ----------
    dataset : Dataset
        The fitted data.
    group_column : str, optional
        Patient covariate whose median LLOQ fills unknown patients first (e.g. ``TRIAL``).

    Returns
    -------
    pandas.Series
        Indexed by patient ID; NaN when no LLOQ is known anywhere.
    """
    obs = dataset.observations
    blq = obs[obs["CENS"] == 1]
    own = blq.groupby("ID")["DV"].max()
    ids = pd.Index([str(i) for i in dataset.patient_ids])
    lloq = pd.Series(own.reindex(ids).to_numpy(dtype=float), index=ids, name="LLOQ")
    if group_column is not None and group_column in dataset.patients:
        groups = dataset.patients[group_column].astype(object).reindex(ids)
        by_group = lloq.groupby(groups.to_numpy()).median()
        fill = groups.map(by_group).astype(float)
        lloq = lloq.fillna(fill)
    if lloq.notna().any():
        lloq = lloq.fillna(float(np.nanmedian(own.to_numpy(dtype=float))))
    return lloq
