"""Sampling designs: who is sampled when, and with which covariates.

:func:`make_design` builds the same times for every patient; the private helpers turn a design
(a DataFrame, dataset-format rows with NONMEM dosing rows, or a loaded
:class:`~bayes_cart.data.dataset.Dataset`) into its planned samples and infusions, and check it
against the population (every problem in one :class:`~bayes_cart.errors.DataError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import DataError, Problem
from bayes_cart.simulate.population import PopulationParameters


def make_design(
    n_patients: int,
    times: Sequence[float],
    *,
    covariates: pd.DataFrame | None = None,
    id_prefix: str = "P",
) -> pd.DataFrame:
    """Build a design with the same sampling times for every patient.

    Parameters
    ----------
    n_patients : int
        Number of patients; IDs are ``<id_prefix>001``, ``<id_prefix>002``, ...
    times : sequence of float
        Sampling times (days).
    covariates : pandas.DataFrame, optional
        ``n_patients`` rows of patient covariates (in patient order).
    id_prefix : str
        Prefix of the generated IDs.

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME`` (+ covariates), one row per planned sample.

    Examples
    --------
    >>> make_design(2, [1, 7]).to_dict("list")
    {'ID': ['P001', 'P001', 'P002', 'P002'], 'TIME': [1.0, 7.0, 1.0, 7.0]}
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    t = sorted(float(x) for x in times)
    if not t:
        raise ValueError("times must not be empty")
    width = max(3, len(str(n_patients)))
    ids = [f"{id_prefix}{i + 1:0{width}d}" for i in range(n_patients)]
    design = pd.DataFrame({"ID": np.repeat(ids, len(t)), "TIME": np.tile(t, n_patients)})
    if covariates is not None:
        if len(covariates) != n_patients:
            raise ValueError(f"covariates has {len(covariates)} rows, expected {n_patients}")
        cov = covariates.reset_index(drop=True)
        cov = cov.loc[np.repeat(np.arange(n_patients), len(t))].reset_index(drop=True)
        design = pd.concat([design, cov.drop(columns=["ID", "TIME"], errors="ignore")], axis=1)
    return design


_DATASET_COLUMNS = ("DV", "CENS", "LIMIT", "MDV", "EVID", "AMT", "ROW")


def _design_frame(design: Any) -> pd.DataFrame:
    """Turn a Dataset into its sample times with the patient covariates (incl. DOSE)."""
    if hasattr(design, "observations") and hasattr(design, "patients"):
        covs = design.patients.reset_index()
        return design.observations[["ID", "TIME"]].merge(covs, on="ID", how="left")
    if not isinstance(design, pd.DataFrame):
        raise TypeError(f"design must be a DataFrame or a Dataset, got {type(design).__name__}")
    return design


def _sample_rows(design: pd.DataFrame) -> pd.DataFrame:
    """Return the planned samples of a design (dataset-format frames lose dosing rows, DV).

    NONMEM dosing rows (``EVID=1``) give the covariate ``DOSE`` (the first infusion's ``AMT``,
    as the loader does) unless there is one; the columns ``DV, CENS, LIMIT, MDV, EVID, AMT,
    ROW`` are dropped. The 1-based row number of each kept row in the input is in column
    ``_row``.
    """
    d = design.reset_index(drop=True).copy()
    d["_row"] = np.arange(1, len(d) + 1)
    if "EVID" in d.columns:
        evid = pd.to_numeric(d["EVID"], errors="coerce").fillna(0).to_numpy()
        if "AMT" in d.columns and "DOSE" not in d.columns and (evid == 1).any():
            first = _design_infusions(d)
            first = first[first["INFUSION"] == 1].set_index("ID")["AMT"]
            d["DOSE"] = d["ID"].astype(str).map(first).to_numpy(float)
        d = d[evid == 0]
    return d.drop(columns=[c for c in _DATASET_COLUMNS if c in d.columns]).reset_index(drop=True)


def _design_infusions(design: Any) -> pd.DataFrame:
    """Return the infusions of a design: ``ID, INFUSION, TIME, AMT`` (empty without doses)."""
    from bayes_cart.data.checks import infusion_table

    if hasattr(design, "infusions") and hasattr(design, "patients"):
        return design.infusions
    d = design
    if not isinstance(d, pd.DataFrame) or "EVID" not in d.columns or "AMT" not in d.columns:
        return infusion_table(pd.DataFrame())
    evid = pd.to_numeric(d["EVID"], errors="coerce").fillna(0).to_numpy()
    rows = d[evid == 1]
    doses = pd.DataFrame(
        {
            "ID": rows["ID"].astype(str).to_numpy(),
            "TIME": pd.to_numeric(rows["TIME"], errors="coerce").to_numpy(float),
            "AMT": pd.to_numeric(rows["AMT"], errors="coerce").to_numpy(float),
            "ROW": np.arange(1, len(d) + 1)[evid == 1],
        }
    )
    order = {p: i for i, p in enumerate(pd.unique(d["ID"].astype(str)))}
    doses = doses.assign(_p=doses["ID"].map(order)).sort_values(["_p", "TIME"], kind="stable")
    return infusion_table(doses.drop(columns="_p").reset_index(drop=True))


def _check_design(
    design: pd.DataFrame, population: PopulationParameters, lloq_column: str | None
) -> pd.DataFrame:
    problems: list[Problem] = []
    for col in ("ID", "TIME"):
        if col not in design.columns:
            problems.append(Problem("required column missing", column=col))
    if problems:
        raise DataError("design", problems)
    d = _sample_rows(design)
    d["ID"] = d["ID"].astype("string")
    row_numbers = d.pop("_row").to_numpy()

    def rows(mask: Any) -> tuple[int, ...]:
        return tuple(int(r) for r in row_numbers[np.asarray(mask, dtype=bool)])

    if d["ID"].isna().any():
        problems.append(Problem("missing patient ID", row=rows(d["ID"].isna()), column="ID"))
    time = pd.to_numeric(d["TIME"], errors="coerce")
    bad = time.isna() | ~np.isfinite(time.fillna(0.0)) | (time < 0)
    if bad.any():
        problems.append(Problem("TIME must be a number >= 0 (days)", row=rows(bad), column="TIME"))
    d["TIME"] = time
    used = {c for covs in population.effects.values() for c in covs} | set(population.group_effects)
    if lloq_column is not None:
        used.add(lloq_column)
        if lloq_column not in d.columns:
            problems.append(Problem("LLOQ column not in the design", column=lloq_column))
    for cov in sorted(used - {lloq_column}):
        if cov not in d.columns:
            problems.append(Problem("covariate used by the population is missing", column=cov))
            continue
        if d[cov].isna().any():
            problems.append(Problem("missing value", row=rows(d[cov].isna()), column=cov))
            continue
        varying = d.groupby("ID", sort=False)[cov].nunique() > 1
        for pid in varying[varying].index:
            problems.append(
                Problem("covariate changes within the patient", column=cov, patient=str(pid))
            )
    for p, covs in population.effects.items():
        for cov, spec in covs.items():
            if cov in d.columns and set(spec) & {"slope", "power"}:
                x = pd.to_numeric(d[cov], errors="coerce")
                if x.isna().any():
                    problems.append(
                        Problem(f"continuous covariate of {p} must be numeric", column=cov)
                    )
                elif "power" in spec and (x <= 0).any():
                    problems.append(
                        Problem(
                            f"power effect on {p} needs values > 0", row=rows(x <= 0), column=cov
                        )
                    )
    if problems:
        raise DataError("design", problems)
    return d
