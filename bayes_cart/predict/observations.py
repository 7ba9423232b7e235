"""The fitted observations as a table: what every prediction is compared with.

:func:`observation_table` lists the observations of a fit in the model's ``obs`` order, with
their censoring and LLOQ (:func:`bayes_cart.data.lloq.lloq_per_observation`); the checks
(PPC, VPC, GOF) and the replicate datasets read the observed side from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.data.lloq import LloqInput, lloq_per_observation

__all__ = ["observation_table"]


def observation_table(fit: Any, lloq: LloqInput = None) -> pd.DataFrame:
    """Return the observations of a fit (``obs`` dimension order) with their LLOQ.

    Parameters
    ----------
    fit : Fit
        A fit.
    lloq : float, str, mapping or Series, optional
        See :func:`bayes_cart.data.lloq.lloq_per_observation`.

    Returns
    -------
    DataFrame
        ``obs`` (source row), ``ID``, ``patient`` (position), ``TIME`` (days), ``DV``,
        ``log_dv``, ``CENS``, ``LIMIT``, ``LLOQ`` and ``log_lloq`` (NaN when unknown).
    """
    dataset = fit.dataset
    md = fit.model_data
    obs = dataset.observations.reset_index(drop=True)
    limits = lloq_per_observation(dataset, lloq)
    pos = pd.Index(obs["ROW"].to_numpy()).get_indexer(md.obs_rows)
    sub = obs.iloc[pos].reset_index(drop=True)
    table = pd.DataFrame(
        {
            "obs": np.asarray(md.obs_rows, dtype=np.int64),
            "ID": sub["ID"].astype(str).to_numpy(dtype=object),
            "patient": np.asarray(md.patient_index, dtype=np.int64),
            "TIME": np.asarray(md.time, dtype=float),
            "DV": sub["DV"].to_numpy(dtype=float),
            "log_dv": np.asarray(md.log_dv, dtype=float),
            "CENS": np.asarray(md.cens, dtype=np.int64),
            "LIMIT": sub["LIMIT"].to_numpy(dtype=float),
            "LLOQ": limits[pos],
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        table["log_lloq"] = np.log(table["LLOQ"].to_numpy())
    return table
