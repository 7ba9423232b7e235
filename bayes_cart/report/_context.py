"""What every report section shares: the Section / Report records and the fit context."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from bayes_cart.data.column_roles import find_column
from bayes_cart.report._format import (
    _FAILED_TEXT,
    _RATE_UNITS,
    _TIME_UNITS,
    _failed_box,
    _frame,
    _num,
    _pct,
    logger,
)
from bayes_cart.units import DELTA_E_PER_DAY

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
    tables : dict of str to pandas.DataFrame
        The tables the section was built from, by name: the numeric results it computed
        (e.g. ``"contrasts by RESPONSE"``, with the true values when a truth was given) and the
        tables it shows, cell by cell as rendered (e.g. ``"typical values"``). A part that
        could not be computed has none.
    """

    key: str
    title: str
    body: Markup
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


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
    meta : dict of str to str
        Lines shown under the contents: ``draws``, ``truth`` (a fit's report), ``note``.
    badge, badge_class, badge_title : str
        A badge of the page's own in place of PASS / FAIL (the study report's COMPLETE /
        PARTIAL), its CSS class (``pass``, ``fail``, ``partial``) and tooltip.
    banner : str
        A warning shown under the title on every page ("approximate inference (ADVI) —
        intervals may be too narrow" for a fit that was not sampled by NUTS); empty for none.
    """

    title: str
    subtitle: str
    passed: bool
    sections: list[Section]
    seconds: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)
    badge: str = ""
    badge_class: str = ""
    badge_title: str = ""
    banner: str = ""

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
        self.tables: dict[str, pd.DataFrame] = {}

    def keep(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Record a table of the section under ``name`` (see :attr:`Section.tables`).

        Parameters
        ----------
        name : str
            Name of the table in :attr:`Section.tables`.
        table : pandas.DataFrame
            The table, numeric or as rendered.

        Returns
        -------
        pandas.DataFrame
            ``table`` itself, so that a call can wrap the table where it is used.
        """
        self.tables[name] = table
        return table

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
    return find_column(fit.dataset.patients.columns, name)


def _trial_column(fit: Any) -> str | None:
    group = getattr(fit.model_data, "group_column", None)
    if group and _column(fit, group):
        return _column(fit, group)
    return _column(fit, "TRIAL")


def default_by(fit: Any) -> list[str]:
    """Default grouping covariates of a report: RESPONSE, TUMOR_TYPE and the trial column.

    Only those present among the fit's patient covariates (case-insensitive) with at least
    two observed levels: a column with one level has nothing to compare.

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
    patients = fit.dataset.patients
    return [c for c in out if c not in patients or patients[c].dropna().nunique() >= 2]


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
    from bayes_cart.model.expressions import formula_variables

    return {n.lower() for n in formula_variables(rhs)[0]}


def _expression_columns(expr: str | None) -> set[str]:
    if not expr:
        return set()
    from bayes_cart.model.expressions import parse_subset_expression

    tree = parse_subset_expression(expr)
    return {node.id.lower() for node in ast.walk(tree) if isinstance(node, ast.Name)}


# --------------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------------


def _truth_population(truth: Mapping[str, Any]) -> Mapping[str, Any]:
    return truth.get("population", truth)


def _flat_truth(truth: Mapping[str, Any] | None) -> dict[str, float]:
    """Return true values named as in :func:`~bayes_cart.analysis.summary.population_summary`."""
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
    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.model.covariates import UNKNOWN_LEVEL

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
    from bayes_cart.analysis.ck_metrics import metric_draws

    params = _true_typical(fit, truth, column, levels)
    if params is None:
        return None
    from bayes_cart.predict import fit_kinetics, fit_solver

    ds = metric_draws(params, fit_kinetics(fit), dims=("sample", "group"), solver=fit_solver(fit))
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
