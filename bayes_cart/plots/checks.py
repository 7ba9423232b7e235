"""Pictures of the predictive checks, drawn from the statistics tables.

Every function takes the table(s) computed by :mod:`bayes_cart.checks.vpc`,
:mod:`bayes_cart.checks.gof` or :mod:`bayes_cart.checks.ppc` and returns a
:class:`matplotlib.figure.Figure`. Figures are built without :mod:`matplotlib.pyplot` (no global
state, no GUI backend needed: saving uses Agg), so they work in scripts, servers and tests;
``fig.savefig("vpc.png")`` writes them.

Examples
--------
>>> from bayes_cart.checks.vpc import vpc  # doctest: +SKIP
>>> plot_vpc(vpc(fit, by="TRIAL")).savefig("vpc.png", dpi=150)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from bayes_cart.checks.vpc import VPCResult, quantile_label

__all__ = [
    "plot_blq_fraction",
    "plot_gof",
    "plot_individual_fits",
    "plot_pit",
    "plot_vpc",
]

_BAND = {"q5": "tab:blue", "q50": "tab:red", "q95": "tab:blue"}
_OBS = "0.35"
_CENS = "tab:orange"


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _band_color(label: str) -> str:
    return _BAND.get(label, "tab:purple")


def _draw_vpc_panel(
    ax: Axes, table: pd.DataFrame, obs: pd.DataFrame, result: VPCResult, points: bool, log_x: bool
) -> None:
    t = table["t_mid"].to_numpy()
    lloq = table["lloq"].to_numpy()
    floor = np.where(np.isfinite(lloq), lloq, np.nan)
    if points and len(obs):
        q = obs[obs["CENS"] != 1]
        ax.scatter(q["TIME"], q["value"], s=6, color=_OBS, alpha=0.5, lw=0, label="observed")
        c = obs[obs["CENS"] == 1]
        if len(c):
            ax.scatter(
                c["TIME"],
                c["value"],
                s=12,
                marker="v",
                color=_CENS,
                alpha=0.6,
                lw=0,
                label="BLQ (at LLOQ)",
            )
    seen: set[str] = set()

    def once(text: str) -> str | None:
        if text in seen:
            return None
        seen.add(text)
        return text

    for qq in result.quantiles:
        lab = quantile_label(qq)
        color = _band_color(lab)
        kind = "median" if lab == "q50" else "outer percentiles"
        low = table[f"{lab}_pi_low"].to_numpy()
        high = table[f"{lab}_pi_high"].to_numpy()
        # a censored bound is drawn at the LLOQ: the interval reaches below it
        low_d = np.where(np.isnan(low), floor, low)
        high_d = np.where(np.isnan(high), floor, high)
        ax.fill_between(
            t,
            low_d,
            high_d,
            color=color,
            alpha=0.25,
            lw=0,
            label=once(f"{kind}: {100 * result.interval:g}% PI"),
        )
        ax.plot(t, table[f"{lab}_pi_mid"], color=color, lw=1, ls="--")
        ax.plot(
            t,
            table[f"{lab}_observed"],
            color=color,
            lw=1.8,
            marker="o",
            ms=3,
            label=once(f"{kind}: observed"),
        )
    values = np.concatenate([obs["value"].to_numpy() if len(obs) else [], floor])
    values = values[np.isfinite(values) & (values > 0)]
    if len(values):
        ax.set_ylim(values.min() / 5, values.max() * 20)
    if np.isfinite(lloq).any():
        ax.step(t, lloq, where="mid", color="k", lw=0.8, ls=":", label="LLOQ")
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("time (days)")
    ax.set_ylabel("prediction-corrected DV" if result.prediction_corrected else "DV")


def _draw_blq_panel(ax: Axes, table: pd.DataFrame, log_x: bool, interval: float) -> None:
    t = table["t_mid"].to_numpy()
    ax.fill_between(
        t,
        table["blq_pi_low"],
        table["blq_pi_high"],
        color="tab:green",
        alpha=0.3,
        lw=0,
        label=f"predicted {100 * interval:g}% PI",
    )
    ax.plot(t, table["blq_pi_mid"], color="tab:green", ls="--", lw=1)
    ax.plot(t, table["blq_observed"], color="k", marker="o", ms=3, lw=1.5, label="observed")
    ax.set_ylim(-0.02, 1.02)
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("time (days)")
    ax.set_ylabel("fraction BLQ")


def _strata(result: VPCResult) -> list[str]:
    return list(pd.unique(result.table["stratum"]))


def plot_vpc(
    result: VPCResult,
    *,
    blq_panel: bool = True,
    ncols: int = 3,
    points: bool = True,
    log_x: bool = False,
    panel_size: tuple[float, float] = (4.2, 3.2),
    infusions: pd.DataFrame | None = None,
) -> Figure:
    """Draw a VPC: one panel per stratum, optionally with its BLQ-fraction panel below.

    Observed percentiles are lines with points; the shaded bands are the prediction intervals
    of the same percentiles (dashed: their medians). A percentile at or below the LLOQ is not
    drawn; a censored interval bound is drawn at the LLOQ (dotted line).

    Parameters
    ----------
    result : VPCResult
        From :func:`bayes_cart.checks.vpc.vpc`.
    blq_panel : bool
        Add the fraction-BLQ panel under each stratum.
    ncols : int
        Panels per row.
    points : bool
        Show the observed samples.
    log_x : bool
        Symmetric-log time axis (linear below 1 day).
    panel_size : (float, float)
        Width and height of one VPC panel (inches).
    infusions : DataFrame, optional
        ``ID, INFUSION, TIME`` (``Dataset.infusions``): the days of later infusions are
        marked by ticks at the bottom of every panel (the VPC replicates are re-infused on the
        same days).

    Returns
    -------
    Figure
    """
    strata = _strata(result)
    later = (
        infusions.loc[infusions["INFUSION"] > 1, "TIME"].to_numpy(dtype=float)
        if infusions is not None and len(infusions)
        else np.empty(0)
    )
    nrows, ncols = _grid(len(strata), ncols)
    w, h = panel_size
    rows_per = 2 if blq_panel else 1
    ratios = ([3, 1] if blq_panel else [1]) * nrows
    height = nrows * (h + (h / 3 if blq_panel else 0))
    fig = Figure(figsize=(w * ncols, height), layout="constrained")
    gs = fig.add_gridspec(nrows * rows_per, ncols, height_ratios=ratios)
    for k, s in enumerate(strata):
        r, c = divmod(k, ncols)
        tab = result.table[result.table["stratum"] == s].sort_values("t_mid")
        obs = result.observations[result.observations["stratum"] == s]
        ax = fig.add_subplot(gs[r * rows_per, c])
        _draw_vpc_panel(ax, tab, obs, result, points, log_x)
        if len(later):
            ax.plot(
                later,
                np.full(len(later), 0.02),
                "|",
                transform=ax.get_xaxis_transform(),
                color="tab:purple",
                ms=9,
                label=f"later infusions ({len(later)})",
            )
        ax.set_title(
            s if s != "all" else ("pcVPC" if result.prediction_corrected else "VPC"), fontsize=9
        )
        if blq_panel:
            ax.set_xlabel("")
            ax2 = fig.add_subplot(gs[r * rows_per + 1, c], sharex=ax)
            _draw_blq_panel(ax2, tab, log_x, result.interval)
        if k == 0:
            ax.legend(fontsize=6, loc="best")
    return fig


def plot_blq_fraction(result: VPCResult, *, ncols: int = 3, log_x: bool = False) -> Figure:
    """Fraction of BLQ samples per bin: observed against the predicted interval, per stratum.

    Parameters
    ----------
    result : VPCResult
        From :func:`bayes_cart.checks.vpc.vpc`.
    ncols : int
        Panels per row.
    log_x : bool
        Symmetric-log time axis.

    Returns
    -------
    Figure
    """
    strata = _strata(result)
    nrows, ncols = _grid(len(strata), ncols)
    fig = Figure(figsize=(4 * ncols, 2.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, s in enumerate(strata):
        ax = axes.flat[k]
        tab = result.table[result.table["stratum"] == s].sort_values("t_mid")
        _draw_blq_panel(ax, tab, log_x, result.interval)
        ax.set_title(s, fontsize=9)
        if k == 0:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(strata) :]:
        ax.set_visible(False)
    return fig


def plot_gof(table: pd.DataFrame) -> Figure:
    """Four goodness-of-fit panels from :func:`bayes_cart.checks.gof.gof_table`.

    Observed vs PRED and vs IPRED (log-log, identity line; BLQ samples at their LLOQ as
    triangles), IWRES vs time and IWRES vs IPRED (with 0 and +-1.96 lines).

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(9, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    q = table[~table["censored"]]
    c = table[table["censored"]]
    for ax, col, name in (
        (axes[0, 0], "PRED", "population prediction (PRED)"),
        (axes[0, 1], "IPRED", "individual prediction (IPRED)"),
    ):
        ax.scatter(q[col], q["DV"], s=8, alpha=0.5, color="tab:blue", lw=0, label="quantified")
        if len(c):
            ax.scatter(
                c[col],
                c["DV"],
                s=14,
                marker="v",
                alpha=0.6,
                color=_CENS,
                lw=0,
                label="BLQ (at LLOQ)",
            )
        values = np.concatenate([table[col].to_numpy(), table["DV"].to_numpy()])
        values = values[np.isfinite(values) & (values > 0)]
        if len(values):
            lo, hi = values.min(), values.max()
            ax.plot([lo, hi], [lo, hi], color="k", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("observed DV")
        ax.legend(fontsize=7)
    for ax, x, name, log in (
        (axes[1, 0], "TIME", "time (days)", False),
        (axes[1, 1], "IPRED", "IPRED", True),
    ):
        ax.scatter(q[x], q["IWRES"], s=8, alpha=0.5, color="tab:blue", lw=0)
        for y, ls in ((0.0, "-"), (1.96, ":"), (-1.96, ":")):
            ax.axhline(y, color="k", lw=0.8, ls=ls)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("IWRES")
    return fig


def plot_individual_fits(
    curves: pd.DataFrame,
    observations: pd.DataFrame | None = None,
    *,
    ncols: int = 4,
    states: Sequence[str] = ("total", "E", "M"),
    max_patients: int | None = 24,
    floor: float | None = None,
    infusions: pd.DataFrame | None = None,
) -> Figure:
    """Individual fits: posterior median and band of each patient's curves, with the data.

    Parameters
    ----------
    curves : DataFrame
        From :func:`bayes_cart.checks.gof.individual_fits`.
    observations : DataFrame, optional
        ``ID, TIME, DV, CENS`` (e.g. :func:`bayes_cart.predict.observations.observation_table`);
        BLQ samples are drawn as triangles at the LLOQ.
    ncols : int
        Panels per row.
    states : sequence of str
        Curves to draw (``total`` with its band, ``E`` and ``M`` as median lines).
    max_patients : int, optional
        Draw at most this many patients (the first ones of ``curves``).
    floor : float, optional
        Lower limit of the y axis (default: a decade below the lowest observation).
    infusions : DataFrame, optional
        ``ID, INFUSION, TIME`` (``Dataset.infusions``): each later infusion is marked by a
        dotted vertical line.

    Returns
    -------
    Figure
    """
    ids = list(pd.unique(curves["ID"]))
    if max_patients is not None:
        ids = ids[:max_patients]
    nrows, ncols = _grid(len(ids), ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    styles = {"total": ("k", "-"), "E": ("tab:red", "--"), "M": ("tab:blue", "-.")}
    if floor is None and observations is not None and len(observations):
        floor = float(np.nanmin(observations["DV"])) / 10
    for k, pid in enumerate(ids):
        ax = axes.flat[k]
        cur = curves[curves["ID"] == pid]
        for state in states:
            part = cur[cur["state"] == state]
            if part.empty:
                continue
            color, ls = styles.get(state, ("tab:gray", ":"))
            if state == "total":
                ax.fill_between(
                    part["TIME"], part["low"], part["high"], color=color, alpha=0.15, lw=0
                )
            ax.plot(part["TIME"], part["median"], color=color, ls=ls, lw=1.2, label=state)
        if observations is not None:
            o = observations[observations["ID"].astype(str) == str(pid)]
            q, c = o[o["CENS"] != 1], o[o["CENS"] == 1]
            ax.scatter(q["TIME"], q["DV"], s=12, color="tab:green", zorder=3, label="observed")
            if len(c):
                ax.scatter(
                    c["TIME"],
                    c["DV"],
                    s=18,
                    marker="v",
                    color=_CENS,
                    zorder=3,
                    label="BLQ (at LLOQ)",
                )
        if infusions is not None and len(infusions):
            later = infusions[
                (infusions["ID"].astype(str) == str(pid)) & (infusions["INFUSION"] > 1)
            ]
            for j, day in enumerate(later["TIME"]):
                ax.axvline(
                    float(day),
                    color="tab:purple",
                    ls=":",
                    lw=1.0,
                    label="re-infusion" if j == 0 else None,
                )
        ax.set_yscale("log")
        if floor is not None and floor > 0:
            ax.set_ylim(bottom=floor)
        ax.set_title(str(pid), fontsize=9)
        ax.set_xlabel("time (days)", fontsize=8)
        if k == 0:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(ids) :]:
        ax.set_visible(False)
    return fig


def plot_pit(table: pd.DataFrame, *, bins: int = 20, interval: float = 0.9) -> Figure:
    """Histograms of the PIT (and LOO-PIT) values with the band expected under uniformity.

    Parameters
    ----------
    table : DataFrame
        From :func:`bayes_cart.checks.ppc.pit_table` (columns ``pit`` and optionally ``loo_pit``).
    bins : int
        Number of bins.
    interval : float
        Probability of the band of bin counts under a uniform PIT (binomial quantiles).

    Returns
    -------
    Figure
    """
    cols = [c for c in ("pit", "loo_pit") if c in table]
    fig = Figure(figsize=(4.5 * len(cols), 3.4), layout="constrained")
    axes = fig.subplots(1, len(cols), squeeze=False)
    n = len(table)
    tail = (1 - interval) / 2
    lo, hi = stats.binom.ppf([tail, 1 - tail], n, 1 / bins)
    edges = np.linspace(0, 1, bins + 1)
    for ax, col in zip(axes.flat, cols, strict=True):
        values = table[col].to_numpy()
        ax.axhspan(lo, hi, color="0.85", label=f"{100 * interval:g}% band if uniform")
        ax.hist(values, bins=edges, color="tab:blue", alpha=0.8, edgecolor="white")
        ax.axhline(n / bins, color="k", lw=0.8)
        ks = stats.kstest(values, "uniform").statistic
        ax.set_title(
            f"{'LOO-PIT' if col == 'loo_pit' else 'PIT'} (KS distance {ks:.3f})", fontsize=9
        )
        ax.set_xlabel(col)
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    return fig
