"""Figures of a method-comparison study, drawn from the tables of its report.

The tables come first (:mod:`bayes_cart.study.report_tables`: coverage, bias and RMSE,
decisions, SBC ECDF differences, run time, failures); these functions only draw them with
matplotlib and return a :class:`~matplotlib.figure.Figure` (no :mod:`matplotlib.pyplot`, no
global state). Error bars are +- ``z`` Monte Carlo standard errors (default 1.96: a 95% Monte
Carlo interval over the replicates). A method keeps its colour in every figure when the
same ``colours`` mapping is passed (:func:`method_colours`).

Examples
--------
>>> from bayes_cart.study.report_tables import study_tables  # doctest: +SKIP
>>> t = study_tables("study_out")  # doctest: +SKIP
>>> plot_coverage(t.coverage).savefig("coverage.png", dpi=150)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "method_colours",
    "plot_accuracy",
    "plot_coverage",
    "plot_decisions",
    "plot_failures",
    "plot_runtime",
    "plot_sbc_ranks",
]

_RULE_STYLES = ("-", "--", ":", "-.")


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, in the given order (matplotlib's ``tab10``).

    Examples
    --------
    >>> method_colours(["bayes", "two_stage"])
    {'bayes': '#1f77b4', 'two_stage': '#ff7f0e'}
    """
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10"]
    return {m: to_hex(cmap(i % 10)) for i, m in enumerate(methods)}


def _colours(table: pd.DataFrame, colours: Mapping[str, str] | None) -> dict[str, str]:
    methods = list(dict.fromkeys(table["method"])) if len(table) else []
    known = dict(colours or {})
    extra = [m for m in methods if m not in known]
    known.update(method_colours(extra) if not colours else dict.fromkeys(extra, "0.3"))
    return known


def _empty(message: str) -> Figure:
    fig = Figure(figsize=(6, 1.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color="0.35")
    return fig


def _row_label(quantity: str, scenario: str, truth: float) -> str:
    return f"{quantity} | {scenario} (true {truth:.3g})"


def _share_err(share: pd.Series, mcse: pd.Series, z: float) -> np.ndarray:
    """Error bars of a share, +- z MC SEs cut at 0 and 1 (a share cannot leave [0, 1])."""
    p = share.to_numpy(float)
    half = z * mcse.fillna(0).to_numpy(float)
    return np.vstack([np.minimum(half, p), np.minimum(half, 1 - p)])


def _mc_band(nominal: float, n: float, z: float) -> float:
    return z * math.sqrt(nominal * (1 - nominal) / n) if n > 0 else float("nan")


def plot_coverage(
    coverage: pd.DataFrame, *, colours: Mapping[str, str] | None = None, z: float = 1.96
) -> Figure:
    """Coverage of the 50% and 90% central intervals, one row per quantity and scenario.

    Each point is a method's coverage over the replicates, its bar +- ``z`` Monte Carlo SEs;
    the dashed line is the nominal coverage and the grey band where a calibrated method's
    coverage falls with 95% probability for the largest number of replicates shown.

    Parameters
    ----------
    coverage : pandas.DataFrame
        :func:`bayes_cart.study.report_tables.coverage_table`.
    colours : mapping, optional
        Method -> colour.
    z : float
        Half-width of the error bars in Monte Carlo SEs.
    """
    if coverage.empty:
        return _empty("no method with intervals has finished fits yet")
    colours = _colours(coverage, colours)
    cells = list(dict.fromkeys(zip(coverage["quantity"], coverage["scenario"], strict=True)))
    methods = list(dict.fromkeys(coverage["method"]))
    fig = Figure(
        figsize=(11, 1.0 + 0.32 * len(cells) * max(1, len(methods) / 2)), layout="constrained"
    )
    axes = fig.subplots(1, 2, sharey=True)
    step = 0.7 / max(1, len(methods))
    n_max = float(coverage["n"].max())
    for ax, level in zip(axes, (50, 90), strict=True):
        nominal = level / 100
        half = _mc_band(nominal, n_max, z)
        ax.axvspan(nominal - half, nominal + half, color="0.9", zorder=0)
        ax.axvline(nominal, color="0.3", ls="--", lw=1)
        for j, method in enumerate(methods):
            rows = coverage[coverage["method"] == method]
            y = [
                cells.index((q, s)) + (j - (len(methods) - 1) / 2) * step
                for q, s in zip(rows["quantity"], rows["scenario"], strict=True)
            ]
            ax.errorbar(
                rows[f"coverage_{level}"],
                y,
                xerr=_share_err(rows[f"coverage_{level}"], rows[f"coverage_{level}_mcse"], z),
                fmt="o",
                ms=5,
                capsize=2,
                color=colours[method],
                label=method if level == 50 else None,
            )
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(f"{level}% central interval (nominal {level}%)", fontsize=10)
        ax.grid(axis="x", color="0.92")
    labels = []
    for q, s in cells:
        truth = coverage[(coverage["quantity"] == q) & (coverage["scenario"] == s)]["truth"]
        labels.append(_row_label(q, s, float(truth.iloc[0])))
    axes[0].set_yticks(range(len(cells)), labels)
    axes[0].set_ylim(len(cells) - 0.5, -0.5)
    fig.legend(loc="outside upper center", ncols=min(len(methods), 5), frameon=False)
    n_min = int(coverage["n"].min())
    replicates = f"{n_min}" if n_min == int(n_max) else f"{n_min}-{int(n_max)}"
    fig.supxlabel(
        f"coverage: share of the replicates whose interval holds the truth ({replicates} "
        f"replicates per row; grey: where a calibrated method's coverage falls with 95% "
        f"probability at {int(n_max)} replicates)",
        fontsize=9,
        color="0.25",
    )
    return fig


def plot_accuracy(
    accuracy: pd.DataFrame,
    *,
    colours: Mapping[str, str] | None = None,
    z: float = 1.96,
    ncols: int = 4,
) -> Figure:
    """Bias (with +- ``z`` MC SE bars) and RMSE of each method, one panel per quantity.

    Rows of panels alternate bias and RMSE; in each panel a row is a scenario (its true value
    in brackets), in the quantity's own units (effects on the log scale).

    Parameters
    ----------
    accuracy : pandas.DataFrame
        :func:`bayes_cart.study.report_tables.accuracy_table`.
    colours : mapping, optional
        Method -> colour.
    z : float
        Half-width of the bias error bars in Monte Carlo SEs.
    ncols : int
        Panels per row.
    """
    if accuracy.empty:
        return _empty("no finished fits yet")
    colours = _colours(accuracy, colours)
    quantities = list(dict.fromkeys(accuracy["quantity"]))
    methods = list(dict.fromkeys(accuracy["method"]))
    ncols = max(1, min(ncols, len(quantities)))
    blocks = math.ceil(len(quantities) / ncols)
    n_scen = accuracy.groupby("quantity")["scenario"].nunique().max()
    height = 0.6 + 0.3 * n_scen * max(1, len(methods) / 2)
    fig = Figure(figsize=(3.3 * ncols + 1.5, 2 * blocks * (height + 0.6)), layout="constrained")
    axes = np.asarray(fig.subplots(2 * blocks, ncols, squeeze=False))
    step = 0.6 / max(1, len(methods))
    for i, q in enumerate(quantities):
        b, c = divmod(i, ncols)
        rows_q = accuracy[accuracy["quantity"] == q]
        scen = list(dict.fromkeys(rows_q["scenario"]))
        for k, metric in enumerate(("bias", "rmse")):
            ax = axes[2 * b + k, c]
            ax.axvline(0, color="0.3", lw=1, ls="--" if metric == "bias" else "-")
            for j, method in enumerate(methods):
                rows = rows_q[rows_q["method"] == method]
                y = [scen.index(s) + (j - (len(methods) - 1) / 2) * step for s in rows["scenario"]]
                err = z * rows["bias_mcse"].fillna(0) if metric == "bias" else None
                ax.errorbar(
                    rows[metric],
                    y,
                    xerr=err,
                    fmt="o" if metric == "bias" else "s",
                    ms=5,
                    capsize=2,
                    color=colours[method],
                    label=method if i == 0 and k == 0 else None,
                )
            truths = [float(rows_q[rows_q["scenario"] == s]["truth"].iloc[0]) for s in scen]
            labels = [f"{s} (true {t:.3g})" for s, t in zip(scen, truths, strict=True)]
            ax.set_yticks(range(len(scen)), labels)
            ax.set_ylim(len(scen) - 0.5, -0.5)
            ax.set_title(f"{q}: {'bias' if metric == 'bias' else 'RMSE'}", fontsize=10)
            ax.grid(axis="x", color="0.92")
            if metric == "rmse":
                ax.set_xlim(left=0)
    for i in range(len(quantities), blocks * ncols):
        b, c = divmod(i, ncols)
        axes[2 * b, c].axis("off")
        axes[2 * b + 1, c].axis("off")
    fig.legend(loc="outside upper center", ncols=min(len(methods), 5), frameon=False)
    return fig


def plot_decisions(
    decisions: pd.DataFrame, *, colours: Mapping[str, str] | None = None, z: float = 1.96
) -> Figure:
    """Rejection rate against the true effect size: type-I error at 0, power elsewhere.

    One panel per covariate effect; a line per (method, decision rule), points +- ``z`` MC
    SEs; the dotted lines are the rules' nominal type-I errors. The x axis is the true
    effect (log scale of the parameter), its ticks name the scenarios.

    Parameters
    ----------
    decisions : pandas.DataFrame
        :func:`bayes_cart.study.report_tables.decision_table`.
    colours : mapping, optional
        Method -> colour.
    z : float
        Half-width of the error bars in Monte Carlo SEs.
    """
    if decisions.empty:
        return _empty("no covariate effect with finished fits")
    colours = _colours(decisions, colours)
    quantities = list(dict.fromkeys(decisions["quantity"]))
    fig = Figure(figsize=(6.2 * len(quantities) + 2.5, 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(quantities), squeeze=False)[0])
    for ax, q in zip(axes, quantities, strict=True):
        rows_q = decisions[decisions["quantity"] == q]
        lines = list(dict.fromkeys(zip(rows_q["method"], rows_q["rule"], strict=True)))
        span = float(np.ptp(rows_q["truth"])) or 1.0
        dodge = {line: (k - (len(lines) - 1) / 2) * 0.012 * span for k, line in enumerate(lines)}
        for nominal in sorted(set(rows_q["nominal"])):
            ax.axhline(nominal, color="0.45", ls=":", lw=1)
            ax.text(
                1.0,
                nominal,
                f" nominal {nominal:.0%}",
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=8,
                color="0.35",
            )
        for (method, rule), rows in rows_q.groupby(["method", "rule"], sort=False):
            rules = list(dict.fromkeys(rows_q[rows_q["method"] == method]["rule"]))
            rows = rows.groupby("truth", as_index=False).agg(
                rate=("rate", "mean"), rate_mcse=("rate_mcse", "max")
            )
            ax.errorbar(
                rows["truth"] + dodge[(method, rule)],  # side by side where rates coincide
                rows["rate"],
                yerr=_share_err(rows["rate"], rows["rate_mcse"], z),
                fmt="o",
                ls=_RULE_STYLES[rules.index(rule) % len(_RULE_STYLES)],
                ms=5,
                capsize=3,
                color=colours[method],
                label=f"{method}: {rule}",
            )
        truths = sorted(set(rows_q["truth"]))
        names = [
            " / ".join(dict.fromkeys(rows_q[rows_q["truth"] == t]["scenario"])) for t in truths
        ]
        ax.set_xticks(truths, [f"{t:g}\n{n}" for t, n in zip(truths, names, strict=True)])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"true effect {q} (log scale)")
        ax.set_ylabel("share of replicates declaring an effect")
        ax.set_title(f"{q}: type-I error at 0, power elsewhere", fontsize=10)
        ax.grid(color="0.92")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.12, 0.5), frameon=False, fontsize=9)
    return fig


def plot_sbc_ranks(ecdf: pd.DataFrame, *, colours: Mapping[str, str] | None = None) -> Figure:
    """ECDF-difference plots of SBC ranks with their simultaneous 95% bands.

    One panel per (scenario and method) x quantity; the line is the ECDF of the normalised
    ranks minus the uniform CDF, the grey area the band a calibrated method stays inside with
    95% probability. A curve arching above 0 means ranks too often low, truths below the
    posterior (overestimation); below 0, underestimation; above 0 for low ranks and below
    for high ones (a U-shaped rank histogram), posteriors too narrow; the mirror image, too
    wide.

    Parameters
    ----------
    ecdf : pandas.DataFrame
        :func:`bayes_cart.study.report_tables.sbc_ecdf`.
    colours : mapping, optional
        Method -> colour.
    """
    if ecdf.empty:
        return _empty("no SBC ranks in this study")
    colours = _colours(ecdf, colours)
    quantities = list(dict.fromkeys(ecdf["quantity"]))
    cells = list(dict.fromkeys(zip(ecdf["scenario"], ecdf["method"], strict=True)))
    fig = Figure(
        figsize=(2.9 * len(quantities) + 0.6, 2.4 * len(cells) + 0.4), layout="constrained"
    )
    axes = np.asarray(fig.subplots(len(cells), len(quantities), squeeze=False, sharex=True))
    for i, (scenario, method) in enumerate(cells):
        for j, q in enumerate(quantities):
            ax = axes[i, j]
            rows = ecdf[
                (ecdf["scenario"] == scenario)
                & (ecdf["method"] == method)
                & (ecdf["quantity"] == q)
            ]
            ax.axhline(0, color="0.3", lw=0.8)
            if rows.empty:
                ax.text(0.5, 0.5, "no ranks", ha="center", transform=ax.transAxes, color="0.4")
            else:
                ax.fill_between(rows["z"], rows["lower"], rows["upper"], color="0.85", step="post")
                ax.step(rows["z"], rows["ecdf_diff"], where="post", color=colours[method])
                ax.set_title(
                    f"{q}\n{method} | {scenario} (n = {int(rows['n'].iloc[0])})", fontsize=9
                )
            if i == len(cells) - 1:
                ax.set_xlabel("normalised rank")
            if j == 0:
                ax.set_ylabel("ECDF - uniform")
    return fig


def plot_runtime(
    runtime: pd.DataFrame,
    fits: pd.DataFrame,
    *,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Seconds per fit by method: the median split into compile / sampling / other, and every fit.

    Parameters
    ----------
    runtime : pandas.DataFrame
        :func:`bayes_cart.study.report_tables.runtime_table`.
    fits : pandas.DataFrame
        The fits table (one point per finished task's wall seconds).
    colours : mapping, optional
        Method -> colour.
    """
    if runtime.empty:
        return _empty("no finished fits yet")
    colours = _colours(runtime, colours)
    methods = list(runtime["method"])
    fig = Figure(figsize=(11, 1.7 + 0.5 * len(methods)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(methods))
    start = np.zeros(len(methods))
    parts = (
        ("median_compile_seconds", "compile", "#8c6d31"),
        ("median_sampling_seconds", "sampling", "#3182bd"),
        ("median_other_seconds", "other (simulate, summarise, reruns)", "#bdbdbd"),
    )
    for column, label, colour in parts:
        width = runtime[column].fillna(0).clip(lower=0).to_numpy(float)
        left.barh(y, width, left=start, color=colour, label=label, height=0.6)
        start = start + width
    left.set_yticks(y, methods)
    left.set_ylim(len(methods) - 0.5, -0.5)
    left.set_xlabel("median seconds per fit")
    left.set_title("median seconds of each step, stacked", fontsize=10)
    fig.legend(loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    tasks = fits.drop_duplicates(["scenario", "method", "replicate"])
    tasks = tasks[tasks["status"] == "ok"]
    rng = np.random.default_rng(0)
    walls = []
    for i, method in enumerate(methods):
        wall = pd.to_numeric(tasks[tasks["method"] == method]["wall_seconds"], errors="coerce")
        wall = wall.dropna().to_numpy(float)
        walls.extend(wall)
        ax_y = i + rng.uniform(-0.2, 0.2, len(wall))
        right.plot(wall, ax_y, "o", ms=4, alpha=0.6, color=colours[method])
    if walls and min(walls) > 0 and max(walls) / min(walls) > 20:
        right.set_xscale("log")
    else:
        right.set_xlim(left=0)
    right.set_xlabel("wall seconds per fit (every finished task)")
    right.set_title("every task", fontsize=10)
    right.grid(axis="x", color="0.92")
    return fig


def plot_failures(failures: pd.DataFrame) -> Figure:
    """Tasks per method: passed the gate, failed the gate, raised, timed out, not run yet.

    Parameters
    ----------
    failures : pandas.DataFrame
        :func:`bayes_cart.study.report_tables.failure_table`.
    """
    if failures.empty:
        return _empty("no methods")
    methods = list(failures["method"])
    fig = Figure(figsize=(9, 1.3 + 0.45 * len(methods)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(methods))
    start = np.zeros(len(methods))
    passed = (failures["ok"] - failures["gate_failed"]).to_numpy(float)
    parts = (
        (passed, "finished, passed the gate (or no gate)", "#2ca02c"),
        (failures["gate_failed"].to_numpy(float), "finished, failed the gate", "#ffbf00"),
        (failures["error"].to_numpy(float), "raised an error", "#d62728"),
        (failures["timeout"].to_numpy(float), "timed out", "#7b3294"),
        (failures["pending"].to_numpy(float), "not run yet", "#d9d9d9"),
    )
    for width, label, colour in parts:
        ax.barh(y, width, left=start, color=colour, label=label, height=0.6)
        start = start + width
    ax.set_yticks(y, methods)
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.set_xlabel("tasks")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(loc="outside right center", fontsize=8, frameon=False)
    return fig
