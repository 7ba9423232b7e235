"""Figures for contrasts and virtual populations (drawn from precomputed tables).

The statistics come first (:func:`bayes_cart.analysis.contrasts.contrast`,
:func:`bayes_cart.analysis.virtual_population.simulate_virtual_population`); these functions only
draw them with matplotlib and return the :class:`~matplotlib.figure.Figure`; nothing is shown.
Figures are built without :mod:`matplotlib.pyplot` (no global state, and the interactive backend of
a notebook is left alone). Save with ``fig.savefig("forest.png", dpi=150)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colormaps
from matplotlib.figure import Figure

from bayes_cart.analysis.ck_metrics import interval_columns

__all__ = ["STATE_COLOURS", "plot_forest", "plot_virtual_population"]

#: Colours of the paper's Fig 6: effector green, memory red, total blue.
STATE_COLOURS = {"total": "tab:blue", "effector": "tab:green", "memory": "tab:red"}


def plot_forest(
    table: pd.DataFrame,
    *,
    quantities: Sequence[str] | None = None,
    title: str | None = None,
    in_model_only: bool = True,
) -> Figure:
    """Forest plot of a contrast table: ratio medians and intervals on a log axis.

    Each row is one quantity and group; the dot is the posterior median ratio, the line its
    central interval, the shaded band the ROPE ``[1/(1 + rope), 1 + rope]`` and the dashed line
    ratio 1. Labels show ``P(direction)``.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`bayes_cart.analysis.contrasts.contrast` (one covariate).
    quantities : sequence of str, optional
        Quantities to show (default all).
    title : str, optional
        Figure title (default: the covariate and its reference).
    in_model_only : bool
        Leave out quantities the covariate does not enter (their ratio is 1 by construction).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    rows = table
    if quantities is not None:
        rows = rows[rows["quantity"].isin(list(quantities))]
    if in_model_only and "in_model" in rows:
        rows = rows[rows["in_model"].astype(bool)]
    ci = float(table["ci"].iloc[0]) if "ci" in table and len(table) else 0.9
    lo_name, hi_name = interval_columns(ci)
    n = max(len(rows), 1)
    fig = Figure(figsize=(7.0, 0.9 + 0.32 * n))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    groups = list(dict.fromkeys(rows["group"])) if len(rows) else []
    colours = {g: colormaps["tab10"](i % 10) for i, g in enumerate(groups)}
    for yi, r in zip(y, rows.to_dict("records"), strict=True):
        c = colours[r["group"]]
        ax.plot([r[f"ratio_{lo_name}"], r[f"ratio_{hi_name}"]], [yi, yi], color=c, lw=2)
        ax.plot(r["ratio_q50"], yi, "o", color=c)
    labels = [
        f"{r['quantity']}: {r['group']}  (pd {r['p_direction']:.2f})"
        for r in rows.to_dict("records")
    ]
    ax.set_yticks(y, labels)
    ax.set_xscale("log")
    ax.axvline(1.0, color="0.3", ls="--", lw=1)
    if "rope" in table and len(table):
        rope = float(table["rope"].iloc[0])
        if rope > 0:
            ax.axvspan(1.0 / (1.0 + rope), 1.0 + rope, color="0.85", zorder=0, label="ROPE")
            ax.legend(loc="lower right", fontsize="small")
    cov = table.attrs.get("covariate") or (table["covariate"].iloc[0] if len(table) else "")
    ref = table["reference"].iloc[0] if len(table) else ""
    ax.set_title(title or f"{cov}: ratio to {ref} (median, {ci:.0%} interval)")
    ax.set_xlabel("ratio of typical values")
    if not len(rows):
        ax.text(
            0.5, 0.5, "no quantity depends on this covariate", transform=ax.transAxes, ha="center"
        )
    fig.tight_layout()
    return fig


def plot_virtual_population(
    ds: xr.Dataset,
    observed: pd.DataFrame | None = None,
    *,
    states: Sequence[str] = ("total", "effector", "memory"),
    band: str = "total",
    time_unit: str = "day",
    ncols: int = 3,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Virtual-population percentile bands per group with the observed data overlaid.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of :func:`bayes_cart.analysis.virtual_population.simulate_virtual_population`.
    observed : pandas.DataFrame, optional
        ``TIME, DV, CENS, group`` (e.g.
        :func:`bayes_cart.analysis.virtual_population.observed_by_group`); BLQ samples are drawn as
        open triangles at the LLOQ. Median lines are dotted beyond a group's last observation.
    states : sequence of str
        Variables whose median is drawn.
    band : str
        Variable whose outer percentiles are shaded.
    time_unit : {"day", "month"}
        Unit of the time axis (1 month = 30.4375 days).
    ncols : int
        Panels per row.
    ylim : (float, float), optional
        Y limits (log axis).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per group.
    """
    from bayes_cart.units import DAYS_PER_MONTH

    scale = DAYS_PER_MONTH if time_unit == "month" else 1.0
    groups = [str(g) for g in ds["group"].values]
    ncols = max(1, min(ncols, len(groups)))
    nrows = -(-len(groups) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    q = ds["quantile"].values
    t = ds["time"].values / scale
    for ax, g in zip(axes.ravel(), groups, strict=False):
        last = np.inf
        if observed is not None:
            obs = observed[observed["group"].astype(str) == g]
            if len(obs):
                last = float(obs["TIME"].max()) / scale
                quant = obs[obs["CENS"] != 1]
                blq = obs[obs["CENS"] == 1]
                ax.plot(quant["TIME"] / scale, quant["DV"], ".", color="0.2", ms=3, alpha=0.6)
                ax.plot(blq["TIME"] / scale, blq["DV"], "v", mfc="none", color="0.4", ms=3)
        if band in ds:
            lo, hi = ds[band].sel(group=g).isel(quantile=0), ds[band].sel(group=g).isel(quantile=-1)
            ax.fill_between(
                t,
                lo,
                hi,
                color=STATE_COLOURS.get(band, "0.5"),
                alpha=0.2,
                lw=0,
                label=f"{band} {q[0]:.0%}-{q[-1]:.0%}",
            )
        mid = int(np.argmin(np.abs(q - 0.5)))
        inside = t <= last
        for state in states:
            if state not in ds:
                continue
            med = ds[state].sel(group=g).isel(quantile=mid).values
            colour = STATE_COLOURS.get(state, None)
            ax.plot(t[inside], med[inside], color=colour, lw=1.5, label=f"{state} median")
            if (~inside).any():
                ax.plot(t[~inside], med[~inside], color=colour, lw=1.5, ls=":")
        ax.set_yscale("log")
        ax.set_title(g)
        if ylim is not None:
            ax.set_ylim(*ylim)
    for ax in axes.ravel()[len(groups) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"time ({time_unit}s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("CAR-T level")
    axes.ravel()[0].legend(fontsize="x-small", loc="upper right")
    by = ds.attrs.get("by") or "all patients"
    fig.suptitle(f"virtual population by {by} ({ds.attrs.get('n_patients', '?')} per group)")
    fig.tight_layout()
    return fig
