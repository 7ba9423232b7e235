"""ECDF-difference plots of simulation-based calibration ranks, with simultaneous bands.

One panel per quantity: the ECDF of the normalised ranks
(:func:`bayes_cart.analysis.sbc.normalised_ranks`) minus the uniform CDF, drawn by
:func:`arviz.plot_ecdf` (``difference=True``) with its simultaneous confidence band
(``confidence_bands="simulated"``: the band holds the whole ECDF of uniform ranks with
probability ``prob``, Säilynoja et al. 2022). A curve leaving the band is a calibration
failure: above it throughout, the ranks are low (the truth tends to sit below the posterior,
which overestimates it); up at low ranks and down at high ranks, the ranks pile up at both
ends (a posterior too narrow); down then up, they pile up in the middle (too wide).

The figure is built without :mod:`matplotlib.pyplot` (like :mod:`bayes_cart.plots.checks`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from bayes_cart.analysis.sbc import ecdf_eval_points, normalised_ranks

__all__ = ["plot_sbc_ecdf"]


def plot_sbc_ecdf(
    ranks: pd.DataFrame,
    *,
    prob: float = 0.95,
    seed: int = 0,
    columns: int = 3,
    title: str | None = None,
) -> Figure:
    """ECDF-difference plot of SBC ranks with simultaneous ``prob`` bands, one panel per quantity.

    Parameters
    ----------
    ranks : DataFrame
        Columns ``quantity``, ``sbc_rank`` and ``sbc_draws`` (``L``), e.g. the rows of one
        scenario and method of a study's ``fits.parquet``; rows without a rank are left out.
    prob : float
        Probability of the simultaneous band under calibration.
    seed : int
        Seed of the band's simulations (and of the randomised ranks of mixed ``L``).
    columns : int
        Panels per row.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"quantity": ["beta"] * 50, "sbc_rank": rng.integers(0, 100, 50),
    ...                       "sbc_draws": 99})
    >>> fig = plot_sbc_ecdf(table)
    >>> [ax.get_title() for ax in fig.axes if ax.get_visible()]
    ['beta (50 ranks, L = 99)']
    """
    import arviz as az

    table = ranks[pd.to_numeric(ranks["sbc_rank"], errors="coerce").notna()]
    quantities = list(dict.fromkeys(table["quantity"]))
    n_panels = max(1, len(quantities))
    ncols = min(columns, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(quantities) :]:
        ax.set_visible(False)
    if not quantities:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no SBC ranks", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, quantity in zip(axes, quantities, strict=False):
        rows = table[table["quantity"] == quantity]
        r = rows["sbc_rank"].to_numpy(float)
        L = rows["sbc_draws"].to_numpy(float)
        u, points = normalised_ranks(r, L, seed)
        z = ecdf_eval_points(u.size, points)
        if points is not None:
            common = int(L[0])

            def rvs(n: int, random_state: Any = None, _L: int = common) -> np.ndarray:
                rng = np.random.default_rng(random_state)
                return (rng.integers(0, _L + 1, size=n) + 1) / (_L + 1)

            label = f"L = {common}"
        else:

            def rvs(n: int, random_state: Any = None) -> np.ndarray:
                return np.random.default_rng(random_state).uniform(size=n)

            label = f"L = {int(L.min())}-{int(L.max())}"
        az.plot_ecdf(
            u,
            eval_points=z,
            cdf=stats.uniform(0, 1).cdf,
            difference=True,
            confidence_bands="simulated",
            ci_prob=prob,
            rvs=rvs,
            random_state=seed,
            ax=ax,
            show=False,
        )
        ax.axhline(0.0, color="0.4", lw=0.6)
        ax.set_title(f"{quantity} ({u.size} ranks, {label})", fontsize=9)
        ax.set_xlabel("normalised rank")
        ax.set_ylabel("ECDF - uniform")
    if title:
        fig.suptitle(f"{title} ({100 * prob:g}% simultaneous bands)", fontsize=10)
    return fig
