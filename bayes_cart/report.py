"""A self-contained HTML report of a fit, readable without Python.

:func:`write_report` runs the analysis modules on a fit and writes one HTML file (figures
embedded as PNG data URIs, CSS inline, no external links or scripts) with eleven sections:

1. data summary (patients, samples, BLQ by trial, covariates, imputations and exclusions);
2. model card (kinetics, parameters and priors, IIV, covariates, error model, spec hash...);
3. diagnostics (PASS/FAIL badge, R-hat, ESS, divergences, E-BFMI, tree depth, advice);
4. population parameters (typical values per day and per month, IIV as SD and %CV,
   covariate effects as ratios, between-trial SDs, residual SD; truth when given);
5. posterior contrasts between covariate groups with forest plots;
6. CK metrics of the typical patient of each group, and the reconciliation with NCA;
7. a visual predictive check stratified by trial, with its coverage;
8. goodness-of-fit plots and the PIT histogram;
9. individual fits of patients chosen across trials;
10. virtual-population bands by trial to 10 months;
11. leave-one-patient-out cross-validation (and the comparison with other fits).

Every section fails soft: when a computation raises, the section shows a "could not compute"
box with the reason (and the error is logged) instead of stopping the report.

The heavy computations use a random subset of posterior draws (``n_draws``, default 300); the
diagnostics, parameter table, PIT and LOO use every draw.

Examples
--------
>>> from bayes_cart.io import load_fit  # doctest: +SKIP
>>> from bayes_cart.example import example_truth  # doctest: +SKIP
>>> write_report(load_fit("out/fit.nc"), "report.html", truth=example_truth())  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import base64
import datetime as _dt
import io
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from bayes_cart.units import DAYS_PER_MONTH, DELTA_E_PER_DAY

__all__ = [
    "SECTION_TITLES",
    "Report",
    "Section",
    "build_report",
    "default_by",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Section keys and headings, in report order.
SECTION_TITLES: dict[str, str] = {
    "data": "1. Data summary",
    "model": "2. Model card",
    "diagnostics": "3. Diagnostics",
    "parameters": "4. Population parameters",
    "contrasts": "5. Contrasts between groups",
    "metrics": "6. Cellular-kinetic metrics and NCA reconciliation",
    "vpc": "7. Visual predictive check",
    "gof": "8. Goodness of fit",
    "individual": "9. Individual fits",
    "virtual": "10. Virtual population",
    "loo": "11. Leave-one-patient-out cross-validation",
}

_FAILED_TEXT = "could not compute"

#: Readable names of derived metrics (prefix -> label, unit).
_METRIC_LABELS: tuple[tuple[str, str, str], ...] = (
    ("Cmax", "Cmax", "DV"),
    ("Tmax", "Tmax", "day"),
    ("AUC_", "AUC", "DV x day"),
    ("persistence", "persistence above the LLOQ", "day"),
    ("doubling_time", "doubling time", "day"),
    ("initial_half_life", "initial half-life", "day"),
    ("terminal_half_life", "terminal half-life", "day"),
    ("memory_fraction_", "memory fraction", "fraction"),
)

_RATE_UNITS = {"1/day", "/day", "day-1", "day^-1", "1/d", "per day"}
_TIME_UNITS = {"day", "days", "d"}


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def _num(x: Any, sig: int = 3) -> str:
    """Format a number with ``sig`` significant digits (plain between 1e-3 and 1e6)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if -3 <= mag < 6:
        return f"{v:.{max(0, sig - 1 - mag)}f}"
    mant, exp = f"{v:.{sig - 1}e}".split("e")
    return f"{mant}e{int(exp)}"


def _ci(mid: Any, lo: Any, hi: Any, sig: int = 3) -> str:
    """``median [low, high]``."""
    return f"{_num(mid, sig)} [{_num(lo, sig)}, {_num(hi, sig)}]"


def _pct(x: Any, digits: int = 0) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def _prob(x: Any) -> str:
    """Format a probability with two decimals ("<0.01" and ">0.99" at the extremes)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if 0 < v < 0.005:
        return "<0.01"
    if 0.995 < v < 1:
        return ">0.99"
    return f"{v:.2f}"


def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a table of formatted cells (object dtype keeps Markup cells as they are)."""
    return pd.DataFrame(list(rows), dtype=object)


def _cv(omega: float) -> float:
    """%CV of a log-normal quantity with log-scale SD ``omega``."""
    return float(np.sqrt(np.expm1(np.asarray(omega, dtype=float) ** 2)) * 100)


def _table(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    caption: str | None = None,
    classes: str = "",
    row_classes: Sequence[str] | None = None,
) -> Markup:
    """Render an HTML table of formatted cells (Markup cells are not escaped)."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    numeric_set = set(numeric)
    rows = []
    for i, rec in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for col, value in zip(frame.columns, rec, strict=True):
            cls = ' class="num"' if col in numeric_set else ""
            text = value if isinstance(value, Markup) else escape("" if value is None else value)
            cells.append(f"<td{cls}>{text}</td>")
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{rc}>{''.join(cells)}</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return Markup(
        f'<div class="table-wrap"><table class="{classes}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _facts(items: Sequence[tuple[str, Any]]) -> Markup:
    """Render a definition list of label/value pairs."""
    body = "".join(
        f"<dt>{escape(k)}</dt><dd>{v if isinstance(v, Markup) else escape(str(v))}</dd>"
        for k, v in items
    )
    return Markup(f'<dl class="facts">{body}</dl>')


def _p(text: str, cls: str = "") -> Markup:
    c = f' class="{cls}"' if cls else ""
    return Markup(f"<p{c}>{escape(text)}</p>")


def _h3(text: str) -> Markup:
    return Markup(f"<h3>{escape(text)}</h3>")


def _ul(items: Sequence[str], cls: str = "") -> Markup:
    c = f' class="{cls}"' if cls else ""
    return Markup(f"<ul{c}>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")


def _figure(fig: Any, alt: str, caption: str | None = None, dpi: int = 90) -> Markup:
    """Embed a matplotlib figure as a PNG data URI and release it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return Markup(
        f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'
    )


def _failed_box(label: str, reason: str) -> Markup:
    return Markup(
        f'<div class="failed"><strong>{escape(label)}</strong> — {_FAILED_TEXT}: '
        f"{escape(reason)}</div>"
    )


def _metric_label(name: str) -> tuple[str, str]:
    """Readable label and unit of a derived metric (e.g. ``AUC_0_28`` -> ``AUC 0-28 d``)."""
    for prefix, label, unit in _METRIC_LABELS:
        if name.startswith(prefix):
            if prefix == "AUC_":
                a, b = name[4:].split("_", 1)
                return f"AUC {a}-{b} d", unit
            if prefix == "memory_fraction_":
                return f"memory fraction at day {name[len(prefix) :]}", unit
            return label, unit
    return name, ""


# --------------------------------------------------------------------------------------------
# report structure
# --------------------------------------------------------------------------------------------


@dataclass
class Section:
    """One section of the report.

    Attributes
    ----------
    key : str
        Anchor (``data``, ``model``, ...; see :data:`SECTION_TITLES`).
    title : str
        Heading.
    body : markupsafe.Markup
        HTML body.
    failures : list of str
        Parts that could not be computed (``"part: reason"``); empty when all went well.
    notes : list of str
        Warnings raised while computing the section.
    seconds : float
        Time taken.
    """

    key: str
    title: str
    body: Markup
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    """A built report: render with :meth:`to_html`.

    Attributes
    ----------
    title : str
        Page title.
    subtitle : str
        One line: model, data, date.
    passed : bool
        The fit's diagnostics verdict.
    sections : list of Section
        In order.
    seconds : float
        Time taken to build.
    """

    title: str
    subtitle: str
    passed: bool
    sections: list[Section]
    seconds: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Every part that could not be computed, as ``"section / part: reason"``."""
        return [f"{s.title} / {f}" for s in self.sections for f in s.failures]

    def to_html(self) -> str:
        """Render the report as one self-contained HTML page."""
        from jinja2 import Environment

        template_text = (
            resources.files("bayes_cart").joinpath("report_template.html.j2").read_text("utf-8")
        )
        env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
        template = env.from_string(template_text)
        return template.render(report=self, meta=self.meta)


class _Parts:
    """Runs the parts of one section, turning failures into boxes and recording them."""

    def __init__(self, section_title: str) -> None:
        self.section_title = section_title
        self.failures: list[str] = []

    def run(self, label: str, func: Callable[[], Any]) -> Markup:
        try:
            out = func()
        except Exception as exc:  # noqa: BLE001 - fail soft, the reason is shown and logged
            reason = f"{type(exc).__name__}: {exc}".strip()
            logger.warning(
                "report section %r, %s: %s %s",
                self.section_title,
                label,
                _FAILED_TEXT,
                reason,
                exc_info=True,
            )
            self.failures.append(f"{label}: {reason}")
            return _failed_box(label, reason)
        if out is None:
            return Markup("")
        if isinstance(out, list | tuple):
            return Markup("").join(Markup(x) for x in out)
        return Markup(out)


@dataclass
class _Context:
    fit: Any
    light: Any
    by: list[str]
    trial: str | None
    truth: dict[str, Any] | None
    other_fits: dict[str, Any]
    n_vpc_replicates: int
    n_virtual: int
    n_individual: int
    seed: int
    cache: dict[str, Any] = field(default_factory=dict)

    def rng_seed(self, offset: int) -> int:
        return int(np.random.SeedSequence([self.seed, offset]).generate_state(1)[0])

    def cached(self, key: str, func: Callable[[], Any]) -> Any:
        if key not in self.cache:
            try:
                self.cache[key] = ("ok", func())
            except Exception as exc:  # noqa: BLE001 - re-raised in every part that needs it
                self.cache[key] = ("error", exc)
        status, value = self.cache[key]
        if status == "error":
            raise value
        return value


# --------------------------------------------------------------------------------------------
# helpers on fits
# --------------------------------------------------------------------------------------------


def _column(fit: Any, name: str) -> str | None:
    """Return the patient covariate called ``name`` (case-insensitive), or None."""
    lower = {str(c).lower(): str(c) for c in fit.dataset.patients.columns}
    return lower.get(name.lower())


def _trial_column(fit: Any) -> str | None:
    group = getattr(fit.model_data, "group_column", None)
    if group and _column(fit, group):
        return _column(fit, group)
    return _column(fit, "TRIAL")


def default_by(fit: Any) -> list[str]:
    """Default grouping covariates of a report: RESPONSE, TUMOR_TYPE and the trial column.

    Only those present among the fit's patient covariates, case-insensitive.

    Parameters
    ----------
    fit : Fit
        A fit.

    Returns
    -------
    list of str
        Column names as spelled in the data.
    """
    out = [c for c in (_column(fit, "RESPONSE"), _column(fit, "TUMOR_TYPE")) if c]
    trial = _trial_column(fit)
    if trial and trial not in out:
        out.append(trial)
    return out


def _n_draws(fit: Any) -> int:
    post = fit.idata.posterior
    return int(post.sizes["chain"] * post.sizes["draw"])


def _posterior_attrs(fit: Any) -> dict[str, Any]:
    try:
        return dict(fit.idata.posterior.attrs)
    except AttributeError:
        return {}


def _unit_kind(unit: str) -> str:
    u = unit.replace(" ", "").lower()
    if u in {x.replace(" ", "") for x in _RATE_UNITS}:
        return "rate"
    if u in _TIME_UNITS:
        return "time"
    return "level"


def _param_unit(fit: Any, name: str) -> str:
    params = fit.spec.parameters
    if name == "Cmax" and "C0" in params:
        return params["C0"].unit
    return params[name].unit if name in params else ""


def _formula_columns(rhs: str) -> set[str]:
    from bayes_cart.spec import formula_variables

    return {n.lower() for n in formula_variables(rhs)[0]}


def _expression_columns(expr: str | None) -> set[str]:
    if not expr:
        return set()
    from bayes_cart.spec import parse_subset_expression

    tree = parse_subset_expression(expr)
    return {node.id.lower() for node in ast.walk(tree) if isinstance(node, ast.Name)}


# --------------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------------


def _truth_population(truth: Mapping[str, Any]) -> Mapping[str, Any]:
    return truth.get("population", truth)


def _flat_truth(truth: Mapping[str, Any] | None) -> dict[str, float]:
    """Return true values under the names of :func:`bayes_cart.summary.population_summary`."""
    if not truth:
        return {}
    from bayes_cart.example import truth_by_summary_name

    pop = _truth_population(truth)
    flat = truth_by_summary_name({"population": pop})
    typical = {k: float(v) for k, v in pop.get("typical", {}).items()}
    if {"C0", "beta", "T1"} <= set(typical):
        flat["Cmax"] = typical["C0"] * math.exp(typical["beta"] * typical["T1"])
    flat["deltaE"] = float(truth.get("deltaE_per_day", DELTA_E_PER_DAY))
    for a, inner in pop.get("correlation", {}).items():
        for b, value in inner.items():
            flat[f"corr_{b}_{a}"] = float(value)
    return flat


def _true_typical(
    fit: Any, truth: Mapping[str, Any], column: str | None, levels: Sequence[str]
) -> dict[str, np.ndarray] | None:
    """Return true parameters of each level's typical patient (arrays (1, level)) or None.

    Same definition as the contrasts: the level of ``column``, every other covariate at its
    reference, no random effect; for the trial column the realised trial effect and the
    distribution phase of the trials that have one. An ``unknown`` level has no truth (NaN).
    """
    from bayes_cart.covariates import UNKNOWN_LEVEL
    from bayes_cart.kinetics import get_kinetics

    pop = _truth_population(truth)
    if pop.get("kinetics", truth.get("kinetics", fit.spec.kinetics)) != fit.spec.kinetics:
        return None
    typical = {k: float(v) for k, v in pop.get("typical", {}).items()}
    effects = pop.get("effects", {})
    trial_col = (_trial_column(fit) or "").lower()
    is_trial = column is not None and column.lower() == trial_col
    trial_effects = truth.get("trial_effects")
    if is_trial and trial_effects is None and pop.get("group_effects"):
        return None
    dp_trials = {str(t) for t in truth.get("distribution_phase", {}).get("trials", [])}
    kin = get_kinetics(fit.spec.kinetics)
    out = {p: np.full((1, len(levels)), np.nan) for p in kin.parameters}
    for j, level in enumerate(levels):
        if level == UNKNOWN_LEVEL and not is_trial:
            continue
        for p in kin.parameters:
            if p in ("k", "T0"):
                on = is_trial and str(level) in dp_trials
                value = typical.get(p, 0.0) if on else 0.0
            elif p == "deltaE":
                value = float(truth.get("deltaE_per_day", DELTA_E_PER_DAY))
            elif p in typical:
                log_v = math.log(typical[p])
                if column is not None:
                    by_cov = {str(k).lower(): v for k, v in effects.get(p, {}).items()}
                    log_v += float(by_cov.get(column.lower(), {}).get(str(level), 0.0))
                if is_trial and trial_effects:
                    log_v += float(trial_effects.get(p, {}).get(str(level), 0.0))
                value = math.exp(log_v)
            else:
                value = float(kin.defaults.get(p, np.nan))
            out[p][0, j] = value
    return out


def _true_quantities(
    fit: Any, truth: Mapping[str, Any], column: str | None, levels: Sequence[str]
) -> dict[str, np.ndarray] | None:
    """Return true parameters and derived metrics per level: ``{quantity: array}``."""
    from bayes_cart.ck_metrics import metric_draws

    params = _true_typical(fit, truth, column, levels)
    if params is None:
        return None
    ds = metric_draws(params, fit.spec.kinetics, dims=("sample", "group"))
    out = {p: v[0] for p, v in params.items()}
    out.update({str(name): np.asarray(ds[name].values)[0] for name in ds.data_vars})
    return out


# --------------------------------------------------------------------------------------------
# 1. data summary
# --------------------------------------------------------------------------------------------


def _lloq_text(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–"
    lo, hi = float(v.min()), float(v.max())
    return _num(lo) if math.isclose(lo, hi) else f"{_num(lo)}–{_num(hi)}"


def _data_by_group(fit: Any, col: str | None, extra: Sequence[str]) -> pd.DataFrame:
    obs = fit.dataset.observations
    patients = fit.dataset.patients
    if col is None:
        groups = pd.Series("all", index=obs.index)
    else:
        mapping = patients[col].astype(object).where(patients[col].notna(), "(missing)")
        mapping.index = mapping.index.astype(str)
        groups = obs["ID"].astype(str).map(mapping).astype(str)
    rows = []
    labels = list(pd.unique(groups))
    if col is not None:
        labels = sorted(labels)
    for label in [*labels, "all"] if len(labels) > 1 else labels:
        o = obs if label == "all" else obs[(groups == label).to_numpy()]
        ids = pd.unique(o["ID"].astype(str))
        n_blq = int((o["CENS"] == 1).sum())
        per = o.groupby("ID", sort=False).size()
        row = {
            col or "group": label,
            "patients": len(ids),
            "samples": len(o),
            "BLQ samples": f"{n_blq} ({_pct(n_blq / max(len(o), 1))})",
            "samples / patient": f"{_num(per.median(), 2)} ({int(per.min())}–{int(per.max())})",
            "last sample (day)": _num(o["TIME"].max()),
            "LLOQ (from BLQ rows)": _lloq_text(o.loc[o["CENS"] == 1, "DV"]),
        }
        sub = patients.loc[patients.index.astype(str).isin(ids)]
        for e in extra:
            counts = sub[e].astype(object).where(sub[e].notna(), "missing").value_counts()
            row[e] = ", ".join(f"{k} {v}" for k, v in counts.sort_index().items())
        rows.append(row)
    return _frame(rows)


def _covariate_usage(fit: Any) -> dict[str, list[str]]:
    doc = fit.spec.doc
    usage: dict[str, list[str]] = {}
    for col in fit.dataset.patients.columns:
        uses = [
            p for p, rhs in doc.covariates.formulas.items() if col.lower() in _formula_columns(rhs)
        ]
        items = [f"covariate on {', '.join(uses)}"] if uses else []
        group = getattr(fit.model_data, "group_column", None)
        if doc.group.mode != "none" and group and group.lower() == col.lower():
            items.append(f"trial {doc.group.mode} effect on {', '.join(doc.group.parameters)}")
        if col.lower() in _expression_columns(doc.distribution_phase.enabled_if):
            items.append(f"distribution phase ({doc.distribution_phase.enabled_if})")
        usage[str(col)] = items
    return usage


def _section_data(ctx: _Context, parts: _Parts) -> list[Markup]:
    fit = ctx.fit
    ds = fit.dataset
    out: list[Markup] = []

    def facts() -> Markup:
        s = ds.summary()
        cens = s["censored"]
        spp = s["samples_per_patient"]
        source = _posterior_attrs(fit).get("data_source") or s["source"]
        t0, t1 = s["time_range"]
        items = [
            ("data", source),
            ("patients", s["patients"]),
            ("samples", s["observations"]),
            (
                "BLQ samples",
                f"{cens['left']} ({_pct(cens['left'] / max(s['observations'], 1), 1)})",
            ),
        ]
        if cens["right"]:
            items.append(("right-censored samples", cens["right"]))
        items += [
            ("samples per patient", f"median {_num(spp['median'], 2)} ({spp['min']}–{spp['max']})"),
            ("sampling times", f"day {_num(t0)} to day {_num(t1)}"),
            ("dosing rows", s["doses"]),
        ]
        return _facts(items)

    out.append(parts.run("data facts", facts))

    def by_trial() -> Markup:
        extra = [c for c in ctx.by if c != ctx.trial and not _is_numeric(ds.patients[c])]
        table = _data_by_group(fit, ctx.trial, extra)
        last = ["" for _ in range(len(table) - 1)] + ["total"] if len(table) > 1 else None
        title = f"Samples and BLQ by {ctx.trial}" if ctx.trial else "Samples and BLQ"
        return _h3(title) + _table(
            table,
            numeric=["patients", "samples", "last sample (day)"],
            row_classes=last,
        )

    out.append(parts.run("samples by trial", by_trial))

    def covariates() -> Markup:
        s = ds.summary()
        usage = _covariate_usage(fit)
        rows = []
        for name, d in s["covariates"].items():
            if d.get("type") == "categorical":
                levels = d.get("levels", {})
                summary = ", ".join(f"{k} {v}" for k, v in levels.items())
                kind = "categorical"
            else:
                summary = (
                    f"median {_num(d.get('median'))} ({_num(d.get('min'))}–{_num(d.get('max'))})"
                )
                kind = "numeric"
            rows.append(
                {
                    "covariate": name,
                    "type": kind,
                    "values (patients)": summary,
                    "missing": d.get("missing", 0),
                    "in the model": "; ".join(usage.get(name, [])) or "not used",
                }
            )
        for name, d in s.get("time_varying", {}).items():
            rows.append(
                {
                    "covariate": f"{name} (time-varying)",
                    "type": d.get("type", ""),
                    "values (patients)": "",
                    "missing": d.get("missing", 0),
                    "in the model": "not used",
                }
            )
        if not rows:
            return _h3("Covariates") + _p("The data have no covariates.")
        return _h3("Covariates") + _table(_frame(rows), numeric=["missing"])

    out.append(parts.run("covariates", covariates))

    def notes() -> Markup:
        items = list(getattr(fit.model_data, "notes", []) or [])
        items += [str(w) for w in ds.report.warnings if str(w) not in items]
        excluded = ds.report.excluded
        body = _h3("Notes: imputations, exclusions, data warnings")
        body += _ul(items) if items else _p("No imputation, exclusion or data warning.")
        if excluded is not None and len(excluded):
            counts = excluded.groupby("reason").size().reset_index(name="rows")
            body += _p(f"{len(excluded)} row(s) of the data file were excluded:")
            body += _table(counts, numeric=["rows"])
        else:
            body += _p("Excluded rows: none (in the fitted data).", "muted")
        return body

    out.append(parts.run("notes", notes))
    return out


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


# --------------------------------------------------------------------------------------------
# 2. model card
# --------------------------------------------------------------------------------------------


def _prior_range(prior: Any) -> str:
    if prior is None or prior.dist != "LogNormal":
        return ""
    z = 1.6448536269514722
    lo, hi = prior.median * math.exp(-z * prior.sigma), prior.median * math.exp(z * prior.sigma)
    return f"{_num(lo)}–{_num(hi)}"


def _section_model(ctx: _Context, parts: _Parts) -> list[Markup]:
    fit = ctx.fit
    doc = fit.spec.doc
    out: list[Markup] = []

    def header() -> Markup:
        from bayes_cart import __version__

        attrs = _posterior_attrs(fit)
        items = [
            ("model (spec)", doc.name),
            ("description", doc.description),
            ("reference", doc.reference or "–"),
            ("kinetic structure", doc.kinetics),
            ("units", f"time in {doc.time_unit}s; DV in {doc.dv_unit or 'data units'}"),
            ("spec hash (model id)", fit.spec.hash),
            ("spec source", getattr(fit.spec, "source", "–")),
            (
                "bayes_cart version",
                f"{attrs.get('bayes_cart_version', __version__)} (fit); {__version__} (report)",
            ),
        ]
        if doc.notes:
            items.append(("notes", doc.notes))
        return _facts(items)

    out.append(parts.run("model", header))

    def parameters() -> Markup:
        from bayes_cart.kinetics import get_kinetics

        rows = []
        order = [*get_kinetics(doc.kinetics).parameters, *doc.parameters]
        for name in [n for n in dict.fromkeys(order) if n in doc.parameters]:
            p = doc.parameters[name]
            if p.fixed is not None:
                role = f"fixed at {_num(p.fixed)}"
                if _unit_kind(p.unit) == "rate":
                    role += f" ({_num(p.fixed * DAYS_PER_MONTH)} /month)"
            elif p.from_data is not None:
                role = f"set per patient from the data ({p.from_data})"
            else:
                role = "estimated"
            if p.distribution_phase_only:
                role += "; distribution phase only"
            rows.append(
                {
                    "parameter": name,
                    "description": p.description,
                    "unit": p.unit,
                    "role": role,
                    "prior, typical value": p.typical.describe() if p.typical else "–",
                    "90% prior range": _prior_range(p.typical),
                    "prior, IIV SD (log scale)": p.iiv.describe() if p.iiv else "none",
                }
            )
        return _h3("Parameters and priors") + _table(_frame(rows))

    out.append(parts.run("parameters", parameters))

    def structure() -> Markup:
        md = fit.model_data
        blocks = [" – ".join(b) for b in doc.iiv.blocks]
        items: list[tuple[str, Any]] = [
            (
                "IIV",
                "log-normal on "
                + (", ".join(fit.spec.iiv_parameters) or "no parameter")
                + (
                    f"; correlated blocks: {'; '.join(blocks)} (LKJ eta {_num(doc.iiv.lkj_eta)})"
                    if blocks
                    else "; independent"
                ),
            )
        ]
        formulas = doc.covariates.formulas
        if formulas:
            text = "; ".join(f"log {p} ~ {rhs}" for p, rhs in formulas.items())
            items.append(("covariate formulas", text))
            refs = dict(md.design.reference) or dict(doc.covariates.reference)
            items.append(
                ("reference levels", ", ".join(f"{k} = {v}" for k, v in refs.items()) or "–")
            )
            items.append(("prior of each covariate effect", doc.covariates.prior.describe()))
            items.append(
                ("missing categorical values", "an explicit level 'unknown' (not imputed)")
            )
        else:
            items.append(("covariates", "none"))
        if doc.group.mode != "none":
            items.append(
                (
                    "between-trial variability",
                    f"{doc.group.mode} effect of {md.group_column or doc.group.column} on "
                    f"{', '.join(doc.group.parameters)} (SD prior {doc.group.prior.describe()});"
                    f" {len(md.group_levels)} levels",
                )
            )
        err = doc.error
        err_text = f"{err.model} on the log scale; sigma ~ {err.sigma.describe()}"
        if err.additive is not None:
            err_text += f"; additive ~ {err.additive.describe()}"
        if err.nu is not None:
            err_text += f"; nu ~ {err.nu.describe()}"
        items.append(("residual error", err_text))
        items.append(
            (
                "censoring (BLQ)",
                "M3: BLQ samples enter the likelihood as P(value < LLOQ)"
                if doc.censoring.method == "M3"
                else "BLQ samples dropped",
            )
        )
        n_dp = int(np.sum(md.distribution_mask)) if len(md.distribution_mask) else 0
        items.append(
            (
                "distribution phase (k, T0)",
                f"patients with {doc.distribution_phase.enabled_if} ({n_dp} patients)"
                if doc.distribution_phase.enabled_if
                else "none",
            )
        )
        param_text = doc.sampling.parameterisation
        if doc.sampling.parameterisation == "cmax":
            param_text += (
                ": C0's random effect is sampled on the scale of the peak, log Cmax_i = "
                "log C0_i + beta_i (T1_i - T0_i) - k_i T0_i (an exact reparameterisation: the "
                "model, its priors and covariate effects are those of C0)"
            )
        if doc.sampling.centered:
            param_text += f"; centred: {', '.join(doc.sampling.centered)}"
        items.append(("parameterisation", param_text))
        return _h3("Structure") + _facts(items)

    out.append(parts.run("structure", structure))

    def sampler() -> Markup:
        post = fit.idata.posterior
        attrs = _posterior_attrs(fit)
        chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
        timings = dict(getattr(fit, "timings", {}) or {})
        tune = attrs.get("tuning_steps", attrs.get("tune"))
        items = [
            ("sampler", attrs.get("sampler", "NUTS (backend not recorded in the fit file)")),
            ("chains x draws", f"{chains} x {draws} = {chains * draws} posterior draws"),
            (
                "tuning draws per chain",
                tune if tune is not None else "not recorded in the fit file",
            ),
        ]
        if attrs.get("seed") is not None:
            items.append(("random seed", attrs["seed"]))
        if attrs.get("created_at"):
            items.append(("fitted on", str(attrs["created_at"])[:19].replace("T", " ")))
        for key, label in (
            ("compile_seconds", "compile time"),
            ("sampling_seconds", "sampling time"),
            ("predictive_seconds", "predictive draws"),
        ):
            v = timings.get(key)
            if v is not None and math.isfinite(float(v)):
                items.append((label, f"{float(v):.0f} s"))
        return _h3("Sampler") + _facts(items)

    out.append(parts.run("sampler", sampler))
    return out


# --------------------------------------------------------------------------------------------
# 3. diagnostics
# --------------------------------------------------------------------------------------------


def _section_diagnostics(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.diagnostics import BFMI_MIN, ESS_MIN, RHAT_MAX

    d = ctx.fit.diagnostics

    def body() -> Markup:
        badge = _badge(d.passed)
        verdict = (
            "The sampler converged: the posterior summaries below can be used."
            if d.passed
            else "The fit FAILED the diagnostics gate: treat every number below as provisional "
            "until the problems listed are fixed."
        )
        worst = dict(d.worst or {})

        def status(ok: bool) -> Markup:
            return Markup('<span class="ok">ok</span>' if ok else '<span class="bad">fail</span>')

        bfmi_ok = not math.isfinite(d.min_bfmi) or d.min_bfmi >= BFMI_MIN
        rows = [
            (
                "max R-hat",
                f"{d.max_rhat:.3f}",
                f"≤ {RHAT_MAX}",
                d.max_rhat <= RHAT_MAX,
                worst.get("r_hat", ""),
            ),
            (
                "min bulk ESS",
                f"{d.min_ess_bulk:.0f}",
                f"≥ {ESS_MIN:.0f}",
                d.min_ess_bulk >= ESS_MIN,
                worst.get("ess_bulk", ""),
            ),
            (
                "min tail ESS",
                f"{d.min_ess_tail:.0f}",
                f"≥ {ESS_MIN:.0f}",
                d.min_ess_tail >= ESS_MIN,
                worst.get("ess_tail", ""),
            ),
            ("divergent transitions", f"{d.divergences}", "0", d.divergences == 0, ""),
            ("min E-BFMI", _num(d.min_bfmi, 2), f"≥ {BFMI_MIN}", bfmi_ok, ""),
            (
                "draws at max tree depth",
                _pct(d.treedepth_saturation, 1),
                "≤ 1%",
                d.treedepth_saturation <= 0.01,
                "",
            ),
        ]
        table = _frame(
            [
                {"check": c, "value": v, "threshold": t, "status": status(ok), "worst quantity": w}
                for c, v, t, ok, w in rows
            ]
        )
        html = Markup('<div class="verdict">') + badge + _p(verdict) + Markup("</div>")
        html += _table(table, numeric=["value"])
        html += _h3("Advice")
        html += _ul(list(d.advice)) if d.advice else _p("Nothing to fix.")
        html += _h3("Weakly informed parameters")
        if d.weakly_informed:
            html += _p(
                "Posterior SD above 90% of the prior SD (the data barely inform them; their "
                "estimates mostly restate the prior): " + ", ".join(d.weakly_informed) + "."
            )
        else:
            html += _p("None: every population parameter is informed by the data.")
        return html

    return [parts.run("diagnostics", body)]


def _badge(passed: bool) -> Markup:
    return Markup(
        '<span class="badge pass">PASS</span>' if passed else '<span class="badge fail">FAIL</span>'
    )


# --------------------------------------------------------------------------------------------
# 4. population parameters
# --------------------------------------------------------------------------------------------


def _summary(ctx: _Context) -> pd.DataFrame:
    from bayes_cart.summary import population_summary

    def run() -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return population_summary(ctx.fit.idata)

    return ctx.cached("summary", run)


def _classify(fit: Any, name: str) -> str:
    from bayes_cart.kinetics import get_kinetics

    kin = set(get_kinetics(fit.spec.kinetics).parameters) | set(fit.spec.parameters) | {"Cmax"}
    gdim = (getattr(fit.model_data, "group_column", None) or "group").lower()
    if ":" in name:
        return "effect"
    if name in kin:
        return "typical"
    if name.startswith(f"omega_{gdim}_"):
        return "trial"
    if name.startswith("omega_"):
        return "iiv"
    if name.startswith("corr_"):
        return "corr"
    if name.startswith("sigma") or name == "nu":
        return "residual"
    return "other"


def _spec_order(fit: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows in the spec's parameter order (by the parameter each row is about)."""
    from bayes_cart.kinetics import get_kinetics

    names = [*get_kinetics(fit.spec.kinetics).parameters, *fit.spec.parameters]
    order = {p: i for i, p in enumerate(dict.fromkeys(names))}
    order.setdefault("Cmax", order.get("C0", -1))

    def key(r: dict[str, Any]) -> tuple[int, int]:
        name = r["parameter"].split(":", 1)[0]
        kind = _classify(fit, r["parameter"])
        rank = {"typical": 0, "iiv": 1, "corr": 2, "trial": 3, "residual": 4}.get(kind, 5)
        for p in sorted(order, key=len, reverse=True):
            if name == p or name.endswith(f"_{p}"):
                return rank, order[p]
        return rank, len(order)

    return sorted(records, key=key)


def _derived_c0(fit: Any) -> dict[str, Any] | None:
    """Summarise the typical C0 of a ``cmax``-parameterised fit, ``Cmax exp(-beta T1)``."""
    import arviz as az

    post = fit.idata.posterior
    if not all(v in post for v in ("log_Cmax", "beta", "T1")) or "C0" in post:
        return None
    x = np.asarray(post["log_Cmax"] - post["beta"] * post["T1"], dtype=float)  # (chain, draw)
    flat = np.exp(x).ravel()
    return {
        "parameter": "C0",
        "q5": float(np.quantile(flat, 0.05)),
        "q50": float(np.quantile(flat, 0.5)),
        "q95": float(np.quantile(flat, 0.95)),
        "r_hat": float(az.rhat(x)),
        "ess_bulk": float(az.ess(x, method="bulk")),
    }


def _diag_cells(row: Mapping[str, Any]) -> dict[str, str]:
    return {"R-hat": f"{row['r_hat']:.3f}", "ESS bulk": f"{row['ess_bulk']:.0f}"}


def _section_parameters(ctx: _Context, parts: _Parts) -> list[Markup]:
    fit = ctx.fit
    truth = _flat_truth(ctx.truth)
    has_truth = bool(truth)
    out: list[Markup] = [
        _p(
            "Posterior median and 90% credible interval (CrI) of each population parameter. "
            "Typical values are those of a patient at the reference covariate levels, with no "
            "random effect. Rates are per day and per month (x 30.4375 days), times in days. "
            "IIV is the SD of the log parameter and the equivalent "
            "%CV = sqrt(exp(SD^2) - 1) x 100. "
            "Covariate effects are ratios to the reference level (exp of the log-scale effect)."
        )
    ]

    def tv(name: str) -> str:
        return _num(truth[name]) if name in truth else "–"

    def typical() -> Markup:
        s = _summary(ctx)
        rows = []
        specs = fit.spec.parameters
        records = s.to_dict("records")
        derived = _derived_c0(fit)
        if derived is not None and not any(r["parameter"] == "C0" for r in records):
            records.append(derived)
        for r in _spec_order(fit, records):
            name = r["parameter"]
            if _classify(fit, name) != "typical":
                continue
            unit = _param_unit(fit, name)
            kind = _unit_kind(unit)
            desc = specs[name].description if name in specs else ""
            if name == "Cmax":
                desc = "typical peak level E(T1), sampled in place of C0"
                if has_truth and "Cmax" in truth:
                    desc += "; truth = C0 exp(beta T1) of the true typical values"
            elif name == "C0" and derived is not None:
                desc = "typical initial level, derived: Cmax exp(-beta T1)"
            month = (
                _ci(r["q50"] * DAYS_PER_MONTH, r["q5"] * DAYS_PER_MONTH, r["q95"] * DAYS_PER_MONTH)
                if kind == "rate"
                else ""
            )
            row = {
                "parameter": name,
                "description": desc,
                "unit": unit,
                "median [90% CrI]": _ci(r["q50"], r["q5"], r["q95"]),
                "per month": month,
            }
            if has_truth:
                t = truth.get(name)
                row["truth"] = "–" if t is None else _num(t)
                row["truth per month"] = (
                    _num(t * DAYS_PER_MONTH) if t is not None and kind == "rate" else ""
                )
            row.update(_diag_cells(r))
            rows.append(row)
        for name, p in specs.items():
            if p.fixed is None:
                continue
            kind = _unit_kind(p.unit)
            row = {
                "parameter": name,
                "description": p.description,
                "unit": p.unit,
                "median [90% CrI]": f"fixed {_num(p.fixed)}",
                "per month": f"fixed {_num(p.fixed * DAYS_PER_MONTH)}" if kind == "rate" else "",
            }
            if has_truth:
                row["truth"] = tv(name)
                t = truth.get(name)
                row["truth per month"] = (
                    _num(t * DAYS_PER_MONTH) if t is not None and kind == "rate" else ""
                )
            row.update({"R-hat": "", "ESS bulk": ""})
            rows.append(row)
        if not rows:
            return Markup("")
        return _h3("Typical values") + _table(
            _frame(rows), numeric=["R-hat", "ESS bulk"], classes="params"
        )

    out.append(parts.run("typical values", typical))

    def variability() -> Markup:
        s = _summary(ctx)
        rows = []
        for r in _spec_order(fit, s.to_dict("records")):
            name = r["parameter"]
            kind = _classify(fit, name)
            if kind not in ("iiv", "trial", "corr", "residual"):
                continue
            label = {
                "iiv": f"IIV of {name[len('omega_') :]}",
                "trial": "between-trial SD of "
                + name[len(f"omega_{(fit.model_data.group_column or 'group').lower()}_") :],
                "corr": "correlation of the random effects of "
                + " and ".join(name[len("corr_") :].split("_")),
                "residual": "residual SD (log scale)" if name == "sigma" else name,
            }[kind]
            cv = ""
            if kind in ("iiv", "trial") or name == "sigma":
                cv = _ci(_cv(r["q50"]), _cv(r["q5"]), _cv(r["q95"]))
            row = {
                "parameter": name,
                "meaning": label,
                "median [90% CrI]": _ci(r["q50"], r["q5"], r["q95"]),
                "%CV": cv,
            }
            if has_truth:
                t = truth.get(name)
                row["truth"] = (
                    "–" if t is None else (f"{_num(t)} ({_num(_cv(t), 3)}%)" if cv else _num(t))
                )
            row.update(_diag_cells(r))
            rows.append(row)
        if not rows:
            return Markup("")
        return _h3("Variability: IIV, between-trial, residual") + _table(
            _frame(rows), numeric=["R-hat", "ESS bulk"], classes="params"
        )

    out.append(parts.run("variability", variability))

    def effects() -> Markup:
        s = _summary(ctx)
        refs = dict(fit.model_data.design.reference)
        rows = []
        for r in _spec_order(fit, s.to_dict("records")):
            name = r["parameter"]
            if _classify(fit, name) != "effect":
                continue
            param, term = name.split(":", 1)
            col = term.split("[", 1)[0]
            ref = refs.get(col)
            row = {
                "parameter": param,
                "covariate level": term + (f" vs {ref}" if ref else ""),
                "effect (log scale)": _ci(r["q50"], r["q5"], r["q95"]),
                "ratio exp(b) [90% CrI]": _ci(
                    math.exp(r["q50"]), math.exp(r["q5"]), math.exp(r["q95"])
                ),
                "P(ratio > 1)": _prob(_prob_positive(fit, param, term)),
            }
            if has_truth:
                row["true ratio"] = _num(math.exp(truth[name])) if name in truth else "–"
            row.update(_diag_cells(r))
            rows.append(row)
        if not rows:
            return _h3("Covariate effects") + _p("The model has no covariate effect.")
        return _h3("Covariate effects (ratio to the reference level)") + _table(
            _frame(rows), numeric=["R-hat", "ESS bulk", "P(ratio > 1)"], classes="params"
        )

    out.append(parts.run("covariate effects", effects))

    def trial_effects() -> Markup:
        md = fit.model_data
        doc = fit.spec.doc
        if doc.group.mode != "random" or not md.group_levels:
            return Markup("")
        gdim = (md.group_column or "group").lower()
        post = fit.idata.posterior
        true_u = (ctx.truth or {}).get("trial_effects", {}) if has_truth else {}
        rows = []
        params = [p for p in doc.group.parameters]
        for level in md.group_levels:
            row: dict[str, Any] = {md.group_column or "group": level}
            for p in params:
                lab = "Cmax" if (doc.sampling.parameterisation == "cmax" and p == "C0") else p
                var = f"u_{gdim}_{lab}"
                if var not in post:
                    continue
                x = np.exp(np.asarray(post[var].sel({gdim: level})).ravel())
                row[f"{p}: exp(u)"] = _ci(*np.quantile(x, [0.5, 0.05, 0.95]))
                if has_truth:
                    t = true_u.get(p, {}).get(str(level))
                    row[f"{p}: truth"] = "–" if t is None else _num(math.exp(float(t)))
            rows.append(row)
        return _h3(
            f"{md.group_column} effects (ratio of the {md.group_column}'s typical value to the "
            "population typical value)"
        ) + _table(_frame(rows))

    out.append(parts.run("trial effects", trial_effects))
    return out


def _prob_positive(fit: Any, param: str, term: str) -> float:
    post = fit.idata.posterior
    var = f"b_{param}"
    if var not in post:
        return float("nan")
    dim = next(d for d in post[var].dims if d not in ("chain", "draw"))
    x = np.asarray(post[var].sel({dim: term})).ravel()
    return float(np.mean(x > 0))


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
    from bayes_cart.contrasts import contrast

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
        out.append(parts.run(f"contrasts by {column}", lambda c=column: _contrast_block(ctx, c)))
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


def _contrast_block(ctx: _Context, column: str) -> Markup:
    from bayes_cart.ck_metrics import interval_columns

    table = _contrast(ctx, column)
    lo, hi = interval_columns(float(table["ci"].iloc[0]))
    truth_ratio = _true_ratios(ctx, column, table)

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
    from bayes_cart.plots_contrasts import plot_forest

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
        out.append(parts.run(f"CK metrics by {column}", lambda c=column: _metrics_block(ctx, c)))
    out.append(_h3("Model-based metrics vs NCA of the observed samples"))
    out.append(parts.run("NCA reconciliation", lambda: _reconciliation_block(ctx)))
    return out


def _metrics_block(ctx: _Context, column: str | None) -> Markup:
    from bayes_cart.ck_metrics import typical_metrics

    kwargs: dict[str, Any] = {}
    if column is not None and _contrast_levels(ctx.fit, column) is not None:
        kwargs["levels"] = _contrast_levels(ctx.fit, column)
    table = typical_metrics(ctx.light, column, random_seed=ctx.rng_seed(60), **kwargs)
    metrics = list(dict.fromkeys(table["metric"]))
    groups = list(dict.fromkeys(table["group"]))
    true = None
    if ctx.truth:
        true = _true_quantities(ctx.fit, ctx.truth, column, [str(g) for g in groups])
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


def _reconciliation_block(ctx: _Context) -> Markup:
    from bayes_cart.ck_metrics import reconcile_nca, summarise_reconciliation

    table = reconcile_nca(ctx.light, random_seed=ctx.rng_seed(70))
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


# --------------------------------------------------------------------------------------------
# 7. VPC
# --------------------------------------------------------------------------------------------


def _section_vpc(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.plots_checks import plot_vpc
    from bayes_cart.vpc import vpc, vpc_coverage

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
            _frame(rows),
            numeric=["bins", "percentiles inside", "5th", "median", "95th", "BLQ fraction inside"],
            caption="Share of observed statistics inside their 90% prediction interval",
            row_classes=classes,
        )
        fig = plot_vpc(result, blq_panel=True, ncols=3, log_x=True, panel_size=(4.6, 3.2))
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
    from bayes_cart.gof import gof_table
    from bayes_cart.plots_checks import plot_gof, plot_pit
    from bayes_cart.ppc import pit_table, ppc_summary

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
    from bayes_cart.gof import individual_fits
    from bayes_cart.plots_checks import plot_individual_fits
    from bayes_cart.ppc import observation_table

    out: list[Markup] = [
        _p(
            f"{ctx.n_individual} patients chosen at random across "
            + (f"{ctx.trial} levels" if ctx.trial else "the data")
            + ": posterior median (line) and 90% credible band of the total CAR-T level, the "
            "effector (E, dashed) and memory (M, dash-dot) components, and the observed samples "
            "(BLQ samples as triangles at their LLOQ)."
        )
    ]

    def body() -> Markup:
        ids = _pick_patients(ctx.fit, ctx.trial, ctx.n_individual, ctx.rng_seed(110))
        curves = individual_fits(ctx.light, patients=ids, n_draws=None)
        fig = plot_individual_fits(
            curves, observation_table(ctx.fit), ncols=4, max_patients=len(ids)
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
    from bayes_cart.plots_contrasts import plot_virtual_population
    from bayes_cart.virtual_population import observed_by_group, simulate_virtual_population

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
            _frame(rows),
            numeric=names,
            caption="Total CAR-T level of the virtual patients: median (10th–90th percentile)",
        )
        return _figure(fig, "virtual population bands") + table

    out.append(parts.run("virtual population", body))
    return out


# --------------------------------------------------------------------------------------------
# 11. LOO
# --------------------------------------------------------------------------------------------


def _bad_k_text(bad: pd.DataFrame, n_patients: int, shown: int = 12) -> str:
    """Plain-language warning about the patients with a high Pareto k (worst first)."""
    from bayes_cart.loo import PARETO_K_THRESHOLD

    worst = ", ".join(
        f"{p} ({k:.2f})"
        for p, k in zip(bad["patient"][:shown], bad["pareto_k"][:shown], strict=True)
    )
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    text = (
        f"Pareto k > {PARETO_K_THRESHOLD} for {len(bad)} of {n_patients} patients: {worst}{more}. "
        "Their leave-one-out estimates are unreliable; check a model comparison that rests on "
        "them by refitting without them (K-fold cross-validation)."
    )
    if len(bad) > 0.5 * n_patients:
        text += (
            " With most patients above the threshold, importance sampling cannot approximate "
            "leaving a patient out of this model (each patient has its own parameters): read "
            "elpd_loo and the comparison as rough only."
        )
    return text


def _section_loo(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.loo import PARETO_K_THRESHOLD, bad_pareto_k, compare_fits, patient_loo

    out: list[Markup] = [
        _p(
            "Pareto-smoothed importance-sampling leave-one-out cross-validation, leaving out one "
            "patient at a time (all samples of the patient): how well the model predicts a new "
            "patient. elpd_loo is the expected log predictive density (higher is better); p_loo "
            "the effective number of parameters. Patients with Pareto k > 0.7 make the estimate "
            "unreliable for them."
        )
    ]

    def this_fit() -> Markup:
        elpd = patient_loo(ctx.fit)
        bad = bad_pareto_k(elpd)
        items = [
            ("elpd_loo (SE)", f"{float(elpd.elpd_loo):.1f} ({float(elpd.se):.1f})"),
            ("p_loo", f"{float(elpd.p_loo):.1f}"),
            ("patients", int(elpd.n_data_points)),
            (f"patients with Pareto k > {PARETO_K_THRESHOLD}", len(bad)),
        ]
        html = _facts(items)
        if len(bad):
            html += Markup('<div class="warn">') + _p(_bad_k_text(bad, int(elpd.n_data_points)))
            html += Markup("</div>")
        return html

    out.append(_h3("This fit"))
    out.append(parts.run("LOO of this fit", this_fit))
    out.append(_h3("Comparison with other fits"))
    if not ctx.other_fits:
        out.append(_p("No other fit given (command line: --compare OTHER_FIT).", "muted"))
        return out

    def comparison() -> Markup:
        name = getattr(ctx.fit.spec, "name", "this fit")
        fits = {f"{name} (this report)": ctx.fit, **ctx.other_fits}
        table, bad = compare_fits(fits)
        rows = []
        for model, r in table.iterrows():
            rows.append(
                {
                    "model": model,
                    "rank": int(r["rank"]),
                    "elpd_loo": f"{r['elpd_loo']:.1f}",
                    "SE": f"{r['se']:.1f}",
                    "elpd_diff": f"{r['elpd_diff']:.1f}",
                    "dSE": f"{r['dse']:.1f}",
                    "p_loo": f"{r['p_loo']:.1f}",
                    "weight": f"{r['weight']:.2f}",
                    f"patients k > {PARETO_K_THRESHOLD}": int(r["n_bad_pareto_k"]),
                }
            )
        html = _table(
            _frame(rows),
            numeric=[
                "rank",
                "elpd_loo",
                "SE",
                "elpd_diff",
                "dSE",
                "p_loo",
                "weight",
                f"patients k > {PARETO_K_THRESHOLD}",
            ],
            caption="Best model first; a difference smaller than about 2 dSE is not clear evidence",
        )
        n_patients = dict(zip(table.index, table["n_patients"], strict=True))
        warns = [
            f"{m}: {_bad_k_text(b, int(n_patients[m]), shown=5)}" for m, b in bad.items() if len(b)
        ]
        if warns:
            html += Markup('<div class="warn">') + _ul(warns) + Markup("</div>")
        return html

    out.append(parts.run("LOO comparison", comparison))
    return out


# --------------------------------------------------------------------------------------------
# building and writing
# --------------------------------------------------------------------------------------------

_SECTIONS: dict[str, Callable[[_Context, _Parts], list[Markup]]] = {
    "data": _section_data,
    "model": _section_model,
    "diagnostics": _section_diagnostics,
    "parameters": _section_parameters,
    "contrasts": _section_contrasts,
    "metrics": _section_metrics,
    "vpc": _section_vpc,
    "gof": _section_gof,
    "individual": _section_individual,
    "virtual": _section_virtual,
    "loo": _section_loo,
}


def _run_section(key: str, ctx: _Context) -> Section:
    title = SECTION_TITLES[key]
    parts = _Parts(title)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        body = parts.run(title, lambda: _SECTIONS[key](ctx, parts))
    notes = []
    for w in caught:
        if issubclass(w.category, UserWarning) and str(w.message) not in notes:
            notes.append(str(w.message))
    return Section(
        key=key,
        title=title,
        body=body,
        failures=parts.failures,
        notes=notes[:10],
        seconds=time.perf_counter() - t0,
    )


def _resolve_by(fit: Any, by: Sequence[str] | None) -> list[str]:
    if by is None:
        return default_by(fit)
    out = []
    for name in by:
        col = _column(fit, name)
        out.append(col if col else name)  # unknown: the section shows the error
    return list(dict.fromkeys(out))


def build_report(
    fit: Any,
    *,
    other_fits: Mapping[str, Any] | None = None,
    by: Sequence[str] | None = None,
    truth: Mapping[str, Any] | None = None,
    n_vpc_replicates: int = 200,
    n_draws: int | None = 300,
    n_virtual: int = 1000,
    n_individual: int = 12,
    random_seed: int = 0,
    title: str | None = None,
    sections: Sequence[str] | None = None,
) -> Report:
    """Compute every section of the report of a fit.

    Parameters
    ----------
    fit : Fit
        The fit to report.
    other_fits : mapping of str to Fit, optional
        Other fits of the same data, compared by leave-one-patient-out cross-validation.
    by : list of str, optional
        Grouping covariates of the contrasts and CK metrics (default :func:`default_by`).
    truth : dict, optional
        True values (the format of :func:`bayes_cart.example.example_truth`: ``population``
        with ``typical``, ``omega``, ``correlation``, ``effects``, ``group_effects``,
        ``sigma``; ``trial_effects``; ``distribution_phase``), shown beside the estimates.
    n_vpc_replicates : int
        Simulated datasets of the VPC and of the NPD.
    n_draws : int or None
        Posterior draws used by contrasts, metrics, VPC, GOF, individual fits and the virtual
        population (random subset; None: every draw).
    n_virtual : int
        Virtual patients per trial.
    n_individual : int
        Patients in the individual-fit grid.
    random_seed : int
        Seed of every random step.
    title : str, optional
        Page title.
    sections : list of str, optional
        Compute only these sections (keys of :data:`SECTION_TITLES`, e.g. ``["vpc"]``).

    Returns
    -------
    Report
        Render with :meth:`Report.to_html`; :attr:`Report.failures` lists what could not be
        computed.
    """
    from bayes_cart import __version__
    from bayes_cart.gof import subset_draws

    keys = list(SECTION_TITLES) if sections is None else list(sections)
    unknown = [k for k in keys if k not in SECTION_TITLES]
    if unknown:
        raise ValueError(f"unknown report section(s) {unknown}; choose from {list(SECTION_TITLES)}")
    t0 = time.perf_counter()
    total = _n_draws(fit)
    if n_draws is not None and n_draws < total:
        light, _ = subset_draws(fit, int(n_draws), random_seed)
    else:
        light = fit
    ctx = _Context(
        fit=fit,
        light=light,
        by=_resolve_by(fit, by),
        trial=_trial_column(fit),
        truth=dict(truth) if truth else None,
        other_fits=dict(other_fits or {}),
        n_vpc_replicates=int(n_vpc_replicates),
        n_virtual=int(n_virtual),
        n_individual=int(n_individual),
        seed=int(random_seed),
    )
    done = [_run_section(key, ctx) for key in SECTION_TITLES if key in keys]
    attrs = _posterior_attrs(fit)
    source = attrs.get("data_source") or getattr(fit.dataset, "source", "")
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = (
        f"model {fit.spec.name} ({fit.spec.kinetics}, spec {fit.spec.hash}) · data {source} · "
        f"{fit.dataset.n_patients} patients · generated {now} by bayes_cart {__version__}"
    )
    used = total if light is fit else _n_draws(light)
    meta = {
        "draws": f"{used} of {total} posterior draws for the simulation-based sections",
        "truth": "true values from the simulation shown beside the estimates" if truth else "",
    }
    return Report(
        title=title or f"CAR-T cellular kinetics: {fit.spec.name}",
        subtitle=subtitle,
        passed=bool(fit.diagnostics.passed),
        sections=done,
        seconds=time.perf_counter() - t0,
        meta=meta,
    )


def write_report(
    fit: Any,
    path: str | Path,
    *,
    other_fits: Mapping[str, Any] | None = None,
    by: Sequence[str] | None = None,
    truth: Mapping[str, Any] | None = None,
    n_vpc_replicates: int = 200,
    random_seed: int = 0,
    n_draws: int | None = 300,
    title: str | None = None,
    sections: Sequence[str] | None = None,
) -> Path:
    """Write the self-contained HTML report of a fit.

    Parameters
    ----------
    fit : Fit
        The fit to report (:func:`bayes_cart.sampling.fit` or :func:`bayes_cart.io.load_fit`).
    path : str or Path
        Output HTML file (parent folders are created).
    other_fits : mapping of str to Fit, optional
        Other fits of the same data for the leave-one-patient-out comparison.
    by : list of str, optional
        Grouping covariates of the contrasts and metrics; default: RESPONSE and TUMOR_TYPE
        when present and the trial column.
    truth : dict, optional
        True values of a simulation (format of :func:`bayes_cart.example.example_truth`).
    n_vpc_replicates : int
        Simulated datasets of the VPC and NPD.
    random_seed : int
        Seed of every random step (the report is reproducible).
    n_draws : int or None
        Posterior draws used by the simulation-based sections (None: all).
    title : str, optional
        Page title.
    sections : list of str, optional
        Only these sections (keys of :data:`SECTION_TITLES`); default all.

    Returns
    -------
    Path
        The written file. Sections that could not be computed show a "could not compute" box
        and are logged (logger ``bayes_cart.report``).

    Examples
    --------
    >>> write_report(fit, "report.html", by=["RESPONSE"])  # doctest: +SKIP
    """
    report = build_report(
        fit,
        other_fits=other_fits,
        by=by,
        truth=truth,
        n_vpc_replicates=n_vpc_replicates,
        n_draws=n_draws,
        random_seed=random_seed,
        title=title,
        sections=sections,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_html(), encoding="utf-8")
    for failure in report.failures:
        logger.warning("report %s: %s", path, failure)
    return path
