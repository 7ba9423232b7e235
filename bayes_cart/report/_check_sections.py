"""Report sections 7-10: VPC, goodness of fit, individual fits, virtual population."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from bayes_cart.report._context import _Context, _Parts
from bayes_cart.report._format import _facts, _figure, _frame, _h3, _num, _p, _pct, _table

# --------------------------------------------------------------------------------------------
# 7. VPC
# --------------------------------------------------------------------------------------------


def _section_vpc(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.checks.vpc import vpc, vpc_coverage
    from bayes_cart.plots.checks import plot_vpc

    strata = f"stratified by {ctx.trial}" if ctx.trial else "all patients"
    out: list[Markup] = [
        _p(
            f"Visual predictive check ({strata}, {ctx.n_vpc_replicates} simulated datasets of "
            "new patients on the observed design: same sample times, covariates, trials and "
            "LLOQs). Lines with dots: observed 5th, 50th and 95th percentiles per time bin; "
            "shaded: 90% prediction intervals of the same percentiles. Percentiles below the "
            "LLOQ are not drawn. The lower panels compare the observed fraction of BLQ samples "
            "with its prediction interval. About 90% of the observed statistics should fall "
            "inside their intervals."
        )
    ]

    def body() -> Markup:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = vpc(
                ctx.light,
                by=ctx.trial,
                n_replicates=ctx.n_vpc_replicates,
                random_seed=ctx.rng_seed(80),
            )
        parts.keep("VPC bins", result.table)
        rows = []
        strata_list = list(pd.unique(result.table["stratum"]))
        for s in [*strata_list, "all"] if len(strata_list) > 1 else strata_list:
            sub = result.table if s == "all" else result.table[result.table["stratum"] == s]
            cov = vpc_coverage(sub)
            rows.append(
                {
                    "stratum": s,
                    "bins": len(sub),
                    "percentiles inside": (
                        f"{_pct(cov['percentiles'])} of {int(cov['n_percentiles'])}"
                    ),
                    "5th": _pct(cov.get("q5")),
                    "median": _pct(cov.get("q50")),
                    "95th": _pct(cov.get("q95")),
                    "BLQ fraction inside": f"{_pct(cov['blq'])} of {int(cov['n_blq'])}",
                }
            )
        classes = ["total" if r["stratum"] == "all" and len(rows) > 1 else "" for r in rows]
        table = _table(
            parts.keep("VPC coverage", _frame(rows)),
            numeric=["bins", "percentiles inside", "5th", "median", "95th", "BLQ fraction inside"],
            caption="Share of observed statistics inside their 90% prediction interval",
            row_classes=classes,
        )
        fig = plot_vpc(
            result,
            blq_panel=True,
            ncols=3,
            log_x=True,
            panel_size=(4.6, 3.2),
            infusions=ctx.fit.dataset.infusions,
        )
        return table + _figure(
            fig,
            "visual predictive check",
            "Time axis: linear below 1 day, logarithmic above. "
            "Triangles: BLQ samples at their LLOQ.",
        )

    out.append(parts.run("VPC", body))
    return out


# --------------------------------------------------------------------------------------------
# 8. GOF and PIT
# --------------------------------------------------------------------------------------------


def _section_gof(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.checks.gof import gof_table
    from bayes_cart.checks.ppc import pit_table, ppc_summary
    from bayes_cart.plots.checks import plot_gof, plot_pit

    out: list[Markup] = [
        _p(
            "Observed against population predictions (PRED: the typical patient with the "
            "patient's covariates and trial) and individual predictions (IPRED: the patient's "
            "own fitted curve), and the individual weighted residuals (IWRES, log scale, divided "
            "by the residual SD). Points should scatter around the identity line and IWRES "
            "within ±1.96 without trend. BLQ samples are triangles at their LLOQ."
        )
    ]

    def gof() -> Markup:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            table = gof_table(
                ctx.light,
                n_draws=None,
                n_simulations=ctx.n_vpc_replicates,
                random_seed=ctx.rng_seed(90),
            )
        parts.keep("GOF", table)
        q = table[~table["censored"]]
        iwres = q["IWRES"].to_numpy(dtype=float)
        npd = table["NPD"].to_numpy(dtype=float) if "NPD" in table else np.array([])
        npd = npd[np.isfinite(npd)]
        items = [
            (
                "IWRES mean (SD)",
                f"{_num(np.nanmean(iwres), 2)} ({_num(np.nanstd(iwres), 2)}); expected 0 (1)",
            ),
            ("|IWRES| > 1.96", f"{_pct(np.nanmean(np.abs(iwres) > 1.96), 1)}; expected about 5%"),
        ]
        if npd.size:
            items.append(
                ("NPD mean (SD)", f"{_num(npd.mean(), 2)} ({_num(npd.std(), 2)}); expected 0 (1)")
            )
        return _facts(items) + _figure(plot_gof(table), "goodness-of-fit plots")

    out.append(parts.run("goodness-of-fit plots", gof))
    out.append(_h3("Probability integral transform (PIT)"))
    out.append(
        _p(
            "For each sample, the fraction of posterior predictive draws below the observed "
            "value (randomised for BLQ samples). Under a well-specified model the LOO-PIT (the "
            "prediction of a sample left out of the fit) is uniform: a U shape means the "
            "predictions are too narrow, a hump too wide, a slope a bias. The plain PIT tends to "
            "bunch in the middle because the posterior has seen the data."
        )
    )

    def pit() -> Markup:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            table = pit_table(ctx.fit, random_seed=ctx.rng_seed(100))
        parts.keep("PIT", table)
        s = ppc_summary(table)
        items = [
            (
                "samples outside the 90% predictive interval",
                f"{_pct(s.get('fraction_outside'), 1)}; at most about 10% expected (fewer, "
                "as the posterior has seen these samples)",
            ),
        ]
        if "loo_pit_ks" in s:
            items.append(("LOO-PIT KS distance from uniform", f"{_num(s['loo_pit_ks'], 2)}"))
        if "pit_ks" in s:
            items.append(("PIT KS distance from uniform", f"{_num(s['pit_ks'], 2)}"))
        return _facts(items) + _figure(plot_pit(table), "PIT histograms")

    out.append(parts.run("PIT", pit))
    return out


# --------------------------------------------------------------------------------------------
# 9. individual fits
# --------------------------------------------------------------------------------------------


def _pick_patients(fit: Any, column: str | None, n: int, seed: int) -> list[str]:
    """``n`` patients spread over the levels of ``column`` (round robin, random within)."""
    ids = [str(p) for p in fit.model_data.patient_ids]
    rng = np.random.default_rng(seed)
    if column is None:
        pick = rng.choice(len(ids), size=min(n, len(ids)), replace=False)
        return [ids[i] for i in np.sort(pick)]
    labels = fit.dataset.patients[column].astype(object)
    labels.index = labels.index.astype(str)
    by_level: dict[str, list[str]] = {}
    for pid in ids:
        by_level.setdefault(str(labels.get(pid)), []).append(pid)
    queues = {k: list(rng.permutation(v)) for k, v in sorted(by_level.items())}
    chosen: list[str] = []
    while len(chosen) < min(n, len(ids)):
        for k in list(queues):
            if queues[k] and len(chosen) < n:
                chosen.append(str(queues[k].pop(0)))
    order = {pid: i for i, pid in enumerate(ids)}
    level_order = {k: i for i, k in enumerate(sorted(by_level))}
    return sorted(chosen, key=lambda p: (level_order[str(labels.get(p))], order[p]))


def _section_individual(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.checks.gof import individual_fits
    from bayes_cart.plots.checks import plot_individual_fits
    from bayes_cart.predict.observations import observation_table

    out: list[Markup] = [
        _p(
            f"{ctx.n_individual} patients chosen at random across "
            + (f"{ctx.trial} levels" if ctx.trial else "the data")
            + ": posterior median (line) and 90% credible band of the total CAR-T level, the "
            "effector (E, dashed) and memory (M, dash-dot) components, and the observed samples "
            "(BLQ samples as triangles at their LLOQ)."
            + (
                " Dotted vertical lines mark later infusions (each starts its own cohort of cells)."
                if getattr(ctx.fit.model_data, "infusions", None) is not None
                else ""
            )
        )
    ]

    def body() -> Markup:
        ids = _pick_patients(ctx.fit, ctx.trial, ctx.n_individual, ctx.rng_seed(110))
        curves = individual_fits(ctx.light, patients=ids, n_draws=None)
        fig = plot_individual_fits(
            curves,
            observation_table(ctx.fit),
            ncols=4,
            max_patients=len(ids),
            infusions=ctx.fit.dataset.infusions,
        )
        if ctx.trial:
            labels = ctx.fit.dataset.patients[ctx.trial].astype(object)
            labels.index = labels.index.astype(str)
            for ax in fig.axes:
                pid = ax.get_title()
                if pid in labels.index:
                    ax.set_title(f"{pid} ({labels[pid]})", fontsize=9)
        return _figure(fig, "individual fits")

    out.append(parts.run("individual fits", body))
    return out


# --------------------------------------------------------------------------------------------
# 10. virtual population
# --------------------------------------------------------------------------------------------


def _level_limits(observed: pd.DataFrame, bands: Any) -> tuple[float, float] | None:
    """Y limits of the virtual-population panels: a decade around the data and the bands."""
    dv = pd.to_numeric(observed["DV"], errors="coerce").to_numpy(dtype=float)
    dv = dv[np.isfinite(dv) & (dv > 0)]
    if not dv.size:
        return None
    high = np.asarray(bands["total"].isel(quantile=-1).values, dtype=float)
    high = high[np.isfinite(high) & (high > 0)]
    top = max(float(dv.max()), float(high.max()) if high.size else 0.0)
    return float(dv.min()) / 10, min(top, float(dv.max()) * 1e3) * 3


def _section_virtual(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.analysis.virtual_population import (
        observed_by_group,
        simulate_virtual_population,
    )
    from bayes_cart.plots.contrasts import plot_virtual_population

    out: list[Markup] = [
        _p(
            f"{ctx.n_virtual} virtual patients per "
            + (f"{ctx.trial}" if ctx.trial else "group")
            + " drawn from the posterior (each with its own posterior draw and new random "
            "effects; covariates resampled from the group's patients), followed for 10 months. "
            "Shaded: 10th-90th percentiles of the total level; lines: medians of total, effector "
            "and memory cells (dotted beyond the group's last observation); dots: observed samples."
        )
    ]

    def body() -> Markup:
        bands = simulate_virtual_population(
            ctx.light,
            by=ctx.trial,
            n_patients=ctx.n_virtual,
            random_seed=ctx.rng_seed(120),
        )
        observed = observed_by_group(ctx.fit, ctx.trial)
        observed = observed[observed["TIME"] <= float(bands["time"].max())]
        fig = plot_virtual_population(
            bands, observed, time_unit="month", ylim=_level_limits(observed, bands)
        )
        days = [28, 91, 182, 304]
        names = ["day 28", "month 3", "month 6", "month 10"]
        rows = []
        q = bands["quantile"].values
        for g in bands["group"].values:
            row: dict[str, Any] = {ctx.trial or "group": str(g)}
            for d, nm in zip(days, names, strict=True):
                if d > float(bands["time"].max()):
                    continue
                v = bands["total"].sel(group=g).sel(time=d, method="nearest").values
                row[nm] = f"{_num(v[int(np.argmin(np.abs(q - 0.5)))])} ({_num(v[0])}–{_num(v[-1])})"
            rows.append(row)
        table = _table(
            parts.keep("virtual population", _frame(rows)),
            numeric=names,
            caption="Total CAR-T level of the virtual patients: median (10th–90th percentile)",
        )
        return _figure(fig, "virtual population bands") + table

    out.append(parts.run("virtual population", body))
    return out
