"""A study's simulation-based calibration table (``DIR/sbc.csv``) and ECDF figure.

For every ``from_prior`` scenario x method x quantity: the ranks of the truths among their
thinned posterior draws (the ``sbc_rank`` and ``sbc_draws`` columns of ``fits.parquet``) and
two tests of their uniformity (:func:`bayes_cart.analysis.sbc.uniformity_test`): the ECDF
``gamma`` statistic of Säilynoja et al. (2022) with its Monte Carlo p-value (the main test;
it is what the simultaneous ECDF bands of the figure draw), and Pearson's chi-square on
``chi2_bins`` bins. Every finished fit's rank is used, whatever the convergence gate said:
keeping only the fits that pass the gate conditions on the data and biases SBC; the counts of
failed, degenerate and gate-failing fits sit beside the tests so a reader sees how many ranks
are missing and why.

Columns of ``sbc.csv`` (:data:`SBC_COLUMNS`): ``scenario, method, quantity, n_tasks, n_fits``
(ranks used), ``n_failed`` (tasks that raised, timed out or were skipped as degenerate: no
rank), ``n_degenerate`` (degenerate datasets, fitted or not), ``n_gate_failed``,
``sbc_draws`` (the median ``L``), ``min_sbc_draws``, ``mean_rank`` (normalised, 0.5 when
calibrated), ``gamma``, ``gamma_p``, ``chi2``, ``chi2_bins``, ``chi2_p``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.analysis.sbc import normalised_ranks, uniformity_test

__all__ = ["SBC_COLUMNS", "plot_study_sbc", "sbc_table", "write_sbc"]

#: Columns of :func:`sbc_table` (``DIR/sbc.csv``).
SBC_COLUMNS = [
    "scenario",
    "method",
    "quantity",
    "n_tasks",
    "n_fits",
    "n_failed",
    "n_degenerate",
    "n_gate_failed",
    "sbc_draws",
    "min_sbc_draws",
    "mean_rank",
    "gamma",
    "gamma_p",
    "chi2",
    "chi2_bins",
    "chi2_p",
]


def sbc_table(
    fits: pd.DataFrame,
    scenarios: Iterable[str],
    quantities: Iterable[str] = (),
    *,
    bins: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Uniformity of the SBC ranks per (scenario, method, quantity).

    Parameters
    ----------
    fits : DataFrame
        :func:`bayes_cart.study.summary.fits_table`.
    scenarios : iterable of str
        The ``from_prior`` scenarios.
    quantities : iterable of str
        The study's quantities: a cell whose tasks all failed (or were skipped as degenerate)
        gets a row per quantity with ``n_fits = 0``, so its failures are seen.
    bins : int
        Chi-square bins.
    seed : int
        Seed of the gamma test's null simulations.

    Returns
    -------
    DataFrame
        :data:`SBC_COLUMNS`; a method without posterior draws (the two-stage test) has no row.
    """
    wanted = set(scenarios)
    part = fits[fits["scenario"].isin(wanted)] if len(fits) else fits
    rows = []
    if part is None or part.empty:
        return pd.DataFrame(columns=SBC_COLUMNS)
    per_task = part.drop_duplicates(["scenario", "method", "replicate"])
    for (scenario, method), tasks in per_task.groupby(["scenario", "method"], sort=True):
        common = {
            "scenario": scenario,
            "method": method,
            "n_tasks": len(tasks),
            "n_failed": int((tasks["status"] != "ok").sum()),
            "n_degenerate": int((tasks["degenerate"] == True).sum()),  # noqa: E712
            "n_gate_failed": int(
                ((tasks["status"] == "ok") & (tasks["gate_passed"] == False)).sum()  # noqa: E712
            ),
        }
        cell = part[(part["scenario"] == scenario) & (part["method"] == method)]
        cell = cell[cell["quantity"].notna() & (cell["status"] == "ok")]
        ranked = cell[pd.to_numeric(cell["sbc_rank"], errors="coerce").notna()]
        if ranked.empty and common["n_failed"]:
            rows += [{**common, "quantity": q, "n_fits": 0} for q in quantities]
        for quantity, q in ranked.groupby("quantity", sort=False):
            r = q["sbc_rank"].to_numpy(float)
            L = q["sbc_draws"].to_numpy(float)
            test = uniformity_test(r, L, bins=bins, seed=seed)
            u, _ = normalised_ranks(r, L, seed)
            rows.append(
                {
                    **common,
                    "quantity": quantity,
                    "n_fits": test.n,
                    "sbc_draws": float(np.median(L)),
                    "min_sbc_draws": float(L.min()),
                    "mean_rank": float(u.mean()),
                    "gamma": test.gamma,
                    "gamma_p": test.gamma_p,
                    "chi2": test.chi2,
                    "chi2_bins": test.bins,
                    "chi2_p": test.chi2_p,
                }
            )
    table = pd.DataFrame(rows)
    for c in SBC_COLUMNS:
        if c not in table:
            table[c] = np.nan
    return table[SBC_COLUMNS]


def write_sbc(directory: Any, fits: pd.DataFrame, study: Any) -> pd.DataFrame | None:
    """Write ``DIR/sbc.csv`` for a study with ``from_prior`` scenarios; None for one without."""
    from bayes_cart.study.store import write_atomic

    scenarios = [name for name, s in study.scenarios.items() if s.from_prior]
    if not scenarios:
        return None
    table = sbc_table(fits, scenarios, study.quantities)
    write_atomic(Path(directory) / "sbc.csv", table.to_csv(index=False, lineterminator="\n"))
    return table


def plot_study_sbc(fits: pd.DataFrame, scenario: str, method: str, **kwargs: Any) -> Any:
    """ECDF-difference plot of one SBC cell's ranks (:func:`bayes_cart.plots.sbc.plot_sbc_ecdf`)."""
    from bayes_cart.plots.sbc import plot_sbc_ecdf

    cell = fits[(fits["scenario"] == scenario) & (fits["method"] == method)]
    title = kwargs.pop("title", f"SBC: {scenario} / {method}")
    return plot_sbc_ecdf(cell, title=title, **kwargs)
