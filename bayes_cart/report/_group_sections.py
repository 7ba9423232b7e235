"""Report sections 5-6: contrasts between groups and CK metrics with the NCA reconciliation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from bayes_cart.report._context import _Context, _param_unit, _Parts, _true_quantities, _unit_kind
from bayes_cart.report._data_model import _is_numeric
from bayes_cart.report._format import (
    _METRIC_LABELS,
    _ci,
    _figure,
    _frame,
    _h3,
    _metric_label,
    _num,
    _p,
    _pct,
    _prob,
    _table,
)

# --------------------------------------------------------------------------------------------
# 5. contrasts
# --------------------------------------------------------------------------------------------


def _contrast_levels(fit: Any, column: str) -> list[float] | None:
    """Levels compared for a continuous covariate: its 25th and 75th percentiles."""
    series = fit.dataset.patients[column]
    if not _is_numeric(series):
        return None
    return [float(series.quantile(0.25)), float(series.quantile(0.75))]


def _contrast(ctx: _Context, column: str) -> pd.DataFrame:
    from bayes_cart.analysis.contrasts import contrast

    def run() -> pd.DataFrame:
        return contrast(
            ctx.light,
            column,
            levels=_contrast_levels(ctx.fit, column),
            random_seed=ctx.rng_seed(50),
        )

    return ctx.cached(f"contrast:{column}", run)


#: Short plain names of the liu2021 parameters.
_SHORT_NAMES = {
    "C0": "initial level",
    "Cmax": "peak level",
    "k": "distribution rate",
    "T0": "end of distribution",
    "beta": "expansion rate",
    "T1": "time of the peak",
    "alpha": "contraction rate",
    "rM": "memory differentiation rate",
    "deltaM": "memory death rate",
    "deltaE": "effector death rate",
}


def _quantity_label(fit: Any, name: str) -> str:
    if name in fit.spec.parameters:
        short = _SHORT_NAMES.get(name) or fit.spec.parameters[name].description
        return f"{name} ({short})" if short else name
    label, _ = _metric_label(name)
    return label


def _quantity_short(name: str) -> str:
    return _metric_label(name)[0] if any(name.startswith(m[0]) for m in _METRIC_LABELS) else name


def _section_contrasts(ctx: _Context, parts: _Parts) -> list[Markup]:
    out: list[Markup] = [
        _p(
            "Each row compares the typical patient of a group with the typical patient of the "
            "reference group (every other covariate at its reference, no random effect): the "
            "ratio of their values, posterior median and 90% CrI. P(direction) is the posterior "
            "probability that the ratio lies on the side of 1 of its median (0.5 = no evidence, "
            "1 = certain); P(ROPE) the probability that the two groups are within 10% of each "
            "other. Quantities the covariate does not enter in the model (ratio 1 by "
            "construction) are listed below each table, not in it. Response is known only after "
            "infusion: contrasts by response are associations, not effects."
        )
    ]
    if not ctx.by:
        out.append(_p("No grouping covariate (RESPONSE, TUMOR_TYPE or trial) in the data."))
        return out
    for column in ctx.by:
        out.append(_h3(f"By {column}"))
        out.append(
            parts.run(f"contrasts by {column}", lambda c=column: _contrast_block(ctx, parts, c))
        )
    return out


def _true_ratios(ctx: _Context, column: str, table: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Return the true ratio of every (quantity, group) of a contrast table."""
    if not ctx.truth:
        return {}
    labels = [str(table["reference"].iloc[0]), *map(str, pd.unique(table["group"]))]
    true = _true_quantities(ctx.fit, ctx.truth, column, labels)
    if true is None:
        return {}
    out = {}
    for q, values in true.items():
        for j, g in enumerate(labels[1:], start=1):
            with np.errstate(divide="ignore", invalid="ignore"):
                out[(q, g)] = float(values[j] / values[0])
    return out


def _is_time(fit: Any, quantity: str, kind: str) -> bool:
    unit = _metric_label(quantity)[1] if kind == "metric" else _param_unit(fit, quantity)
    return _unit_kind(unit) == "time"


def _contrast_cell(
    r: Mapping[str, Any], lo: str, hi: str, truth: float | None, time: bool
) -> Markup:
    if not r["in_model"]:
        html = Markup('<span class="muted">1 (not in the model)</span>')
    else:
        html = escape(_ci(r["ratio_q50"], r[f"ratio_{lo}"], r[f"ratio_{hi}"]))
        html += Markup('<br><span class="small">P(dir.) {} · P(ROPE) {}</span>').format(
            _prob(r["p_direction"]), _prob(r["p_rope"])
        )
        if time:
            html += Markup('<br><span class="small">difference {} d</span>').format(
                _ci(r["diff_q50"], r[f"diff_{lo}"], r[f"diff_{hi}"])
            )
    if truth is not None:
        html += Markup('<br><span class="truth">truth {}</span>').format(_num(truth))
    return html


def _contrast_block(ctx: _Context, parts: _Parts, column: str) -> Markup:
    from bayes_cart.analysis.ck_metrics import interval_columns

    table = _contrast(ctx, column)
    lo, hi = interval_columns(float(table["ci"].iloc[0]))
    truth_ratio = _true_ratios(ctx, column, table)
    keys = zip(table["quantity"].astype(str), table["group"].astype(str), strict=True)
    parts.keep(
        f"contrasts by {column}",
        table.assign(truth=[truth_ratio.get(k, np.nan) for k in keys]),
    )

    def shown(q: str, g: str, in_model: bool) -> bool:
        t = truth_ratio.get((q, g))
        missed = t is not None and np.isfinite(t) and t > 0 and abs(math.log(t)) > 0.01
        return in_model or missed  # also quantities the model ignores but the truth does not

    reference = str(table["reference"].iloc[0])
    groups = list(map(str, pd.unique(table["group"])))
    quantities = [
        q
        for q in pd.unique(table["quantity"])
        if any(
            shown(q, str(r["group"]), bool(r["in_model"]))
            for r in table[table["quantity"] == q].to_dict("records")
        )
    ]
    rows = []
    for q in quantities:
        part = table[table["quantity"] == q]
        kind = str(part["kind"].iloc[0])
        row: dict[str, Any] = {"quantity": _quantity_label(ctx.fit, q)}
        for r in part.to_dict("records"):
            g = str(r["group"])
            row[f"{g} vs {reference}"] = _contrast_cell(
                r, lo, hi, truth_ratio.get((q, g)), _is_time(ctx.fit, q, kind)
            )
        rows.append(row)
    html = Markup("")
    if rows:
        html += _table(_frame(rows), classes="contrasts")
    else:
        html += _p(f"{column} enters no quantity of the model.")
    ignored = [q for q in pd.unique(table["quantity"]) if q not in quantities]
    if ignored:
        html += _p(
            f"Not in the model for {column} (ratio 1 by construction): "
            + ", ".join(_quantity_label(ctx.fit, q) for q in ignored)
            + ".",
            "muted",
        )
    html += _forest(table, column, many=len(groups) > 3)
    return html


#: Metrics drawn in the forest plots of covariates with many levels.
_FOREST_KEY_METRICS = ("Cmax", "AUC_")


def _forest(table: pd.DataFrame, column: str, many: bool = False) -> Markup:
    """Forest plots of parameters and of metrics (only Cmax and AUC when ``many`` levels)."""
    from bayes_cart.plots.contrasts import plot_forest

    rows = table[table["in_model"].astype(bool)]
    lo_col = [c for c in rows.columns if c.startswith("ratio_q") and c != "ratio_q50"]
    if len(rows):  # a ratio identically 1 (e.g. Tmax when T1 has no covariate) says nothing
        const = np.all(np.isclose(rows[["ratio_q50", *lo_col]].to_numpy(float), 1.0), axis=1)
        rows = rows[~const]
    figs = []
    for kind, title in (("parameter", "parameters"), ("metric", "derived metrics")):
        part = rows[rows["kind"] == kind]
        if kind == "metric" and many:
            part = part[part["quantity"].str.startswith(_FOREST_KEY_METRICS)]
        if part.empty:
            continue
        part = part.copy()
        part["quantity"] = [_quantity_short(q) for q in part["quantity"]]
        part.attrs.update(table.attrs)
        ref = part["reference"].iloc[0]
        fig = plot_forest(part, title=f"{column}: {title}, ratio to {ref}")
        figs.append(_figure(fig, f"forest plot of {title} by {column}"))
    if not figs:
        return Markup("")
    caption = _p(
        "Forest plots: dot = posterior median ratio, line = 90% CrI, grey band = ±10% "
        "(region of practical equivalence), pd = P(direction)."
        + (" Metrics: Cmax and AUC only." if many else ""),
        "muted",
    )
    return Markup('<div class="fig-row">') + Markup("").join(figs) + Markup("</div>") + caption


# --------------------------------------------------------------------------------------------
# 6. CK metrics and NCA reconciliation
# --------------------------------------------------------------------------------------------


def _section_metrics(ctx: _Context, parts: _Parts) -> list[Markup]:
    out: list[Markup] = [
        _p(
            "Cellular-kinetic metrics of the typical patient of each group (posterior median "
            "and 90% CrI), computed draw by draw from the typical parameters: Cmax (peak), Tmax "
            "(time of the peak), AUC over days 0-28, persistence (time after the peak until "
            "the level falls below the median LLOQ), doubling time ln2/beta, half-lives of the "
            "contraction and of the memory phase, and the memory fraction at day 90."
        )
    ]
    groups: list[str | None] = list(ctx.by) or [None]
    for column in groups:
        out.append(_h3(f"Typical patient by {column}" if column else "Typical patient"))
        out.append(
            parts.run(f"CK metrics by {column}", lambda c=column: _metrics_block(ctx, parts, c))
        )
    out.append(_h3("Model-based metrics vs NCA of the observed samples"))
    out.append(parts.run("NCA reconciliation", lambda: _reconciliation_block(ctx, parts)))
    return out


def _metrics_block(ctx: _Context, parts: _Parts, column: str | None) -> Markup:
    from bayes_cart.analysis.ck_metrics import typical_metrics

    kwargs: dict[str, Any] = {}
    if column is not None and _contrast_levels(ctx.fit, column) is not None:
        kwargs["levels"] = _contrast_levels(ctx.fit, column)
    table = typical_metrics(ctx.light, column, random_seed=ctx.rng_seed(60), **kwargs)
    metrics = list(dict.fromkeys(table["metric"]))
    groups = list(dict.fromkeys(table["group"]))
    true = None
    if ctx.truth:
        true = _true_quantities(ctx.fit, ctx.truth, column, [str(g) for g in groups])
    position = {g: j for j, g in enumerate(groups)}
    parts.keep(
        f"CK metrics by {column}" if column else "CK metrics",
        table.assign(
            truth=[
                float(true[m][position[g]]) if true is not None and m in true else np.nan
                for m, g in zip(table["metric"], table["group"], strict=True)
            ]
        ),
    )
    rows = []
    for m in metrics:
        label, unit = _metric_label(m)
        row: dict[str, Any] = {"metric": f"{label} ({unit})" if unit != "fraction" else label}
        for j, g in enumerate(groups):
            r = table[(table["group"] == g) & (table["metric"] == m)].iloc[0]
            cell = Markup('{}<br><span class="small">[{}, {}]</span>').format(
                _num(r["q50"]), _num(r["q5"]), _num(r["q95"])
            )
            if true is not None:
                t = true.get(m)
                tv = _num(t[j]) if t is not None else "–"
                cell += Markup('<br><span class="truth">truth {}</span>').format(tv)
            row[str(g)] = cell
        rows.append(row)
    caption = f"Median and [90% CrI] per {column}" if column else "Median and [90% CrI]"
    if column:
        caption += f" (reference level first: {groups[0]})"
    return _table(_frame(rows), classes="metrics", caption=caption)


def _reconciliation_block(ctx: _Context, parts: _Parts) -> Markup:
    from bayes_cart.analysis.ck_metrics import reconcile_nca, summarise_reconciliation

    table = parts.keep(
        "NCA reconciliation per patient", reconcile_nca(ctx.light, random_seed=ctx.rng_seed(70))
    )
    html = _p(
        "Per patient, the model-based Cmax, Tmax and AUC0-28 (posterior median of the metric of "
        "the patient's fitted curve) against the NCA of the observed samples. A ratio near 1 "
        "means agreement; the NCA Cmax is lower when the peak falls between samples, and an "
        "incomplete NCA AUC (last sample before day 28) is left out of the AUC ratios. "
        "'NCA inside' is the share of patients whose NCA value lies in the model's 90% interval."
    )
    keys = [ctx.trial] if ctx.trial else []
    summary = summarise_reconciliation(table, by=keys or None)
    overall = summarise_reconciliation(table)
    if keys:
        overall[ctx.trial] = "all"
        summary = pd.concat([summary, overall], ignore_index=True)
    parts.keep("NCA reconciliation", summary)
    metrics = list(dict.fromkeys(table["metric"]))
    rows = []
    for m in metrics:
        label, unit = _metric_label(m)
        for r in summary.to_dict("records"):
            rows.append(
                {
                    "metric": f"{label} ({unit})" if unit != "fraction" else label,
                    "group": r[ctx.trial] if keys else "all",
                    "patients": r["n"],
                    "NCA median": _num(r[f"{m}_nca_median"]),
                    "model median": _num(r[f"{m}_model_median"]),
                    "ratio model/NCA, median (range)": f"{_num(r[f'{m}_ratio_median'], 2)} "
                    f"({_num(r[f'{m}_ratio_min'], 2)}–{_num(r[f'{m}_ratio_max'], 2)})",
                    "NCA inside the model 90% interval": _pct(r[f"{m}_coverage"]),
                }
            )
    classes = ["total" if r["group"] == "all" and keys else "" for r in rows]
    return html + _table(
        _frame(rows),
        numeric=["patients", "NCA median", "model median", "NCA inside the model 90% interval"],
        row_classes=classes,
    )
