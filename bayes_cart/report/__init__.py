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

The report of a method-comparison study (:func:`write_study_report`, its own seven sections
in the same page layout) is in :mod:`bayes_cart.report.study_report`.

Every section fails soft: when a computation raises, the section shows a "could not compute"
box with the reason (and the error is logged) instead of stopping the report.

The heavy computations use a random subset of posterior draws (``n_draws``, default 300); the
diagnostics, parameter table, PIT and LOO use every draw.

Examples
--------
>>> from bayes_cart.inference.io import load_fit  # doctest: +SKIP
>>> from bayes_cart.example import example_truth  # doctest: +SKIP
>>> write_report(load_fit("out/fit.nc"), "report.html", truth=example_truth())  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from bayes_cart.report._check_sections import (
    _section_gof,
    _section_individual,
    _section_virtual,
    _section_vpc,
)
from bayes_cart.report._context import (
    Report,
    Section,
    _column,
    _Context,
    _n_draws,
    _Parts,
    _posterior_attrs,
    _trial_column,
    default_by,
)
from bayes_cart.report._data_model import _section_data, _section_model
from bayes_cart.report._fit_sections import _section_diagnostics, _section_parameters
from bayes_cart.report._format import SECTION_TITLES, logger
from bayes_cart.report._group_sections import _section_contrasts, _section_metrics
from bayes_cart.report._loo_section import _section_loo
from bayes_cart.report.study_report import (
    STUDY_SECTION_TITLES,
    build_study_report,
    write_study_report,
)

__all__ = [
    "SECTION_TITLES",
    "STUDY_SECTION_TITLES",
    "Report",
    "Section",
    "build_report",
    "build_study_report",
    "default_by",
    "write_report",
    "write_study_report",
]


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
        tables=parts.tables,
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
    from bayes_cart.predict import subset_draws

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
        banner=approximate_banner(fit),
    )


def approximate_banner(fit: Any) -> str:
    """Return the report's warning for a fit by an approximate method ("" for NUTS).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> approximate_banner(SimpleNamespace(settings={"method": "advi"}))
    'approximate inference (ADVI) — intervals may be too narrow'
    >>> approximate_banner(SimpleNamespace(settings={}))
    ''
    """
    from bayes_cart.inference.approximate import METHOD_LABELS, is_approximate

    method = (getattr(fit, "settings", None) or {}).get("method", "nuts")
    if not is_approximate(method):
        return ""
    return f"approximate inference ({METHOD_LABELS[method]}) — intervals may be too narrow"


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
        The fit to report (:func:`bayes_cart.inference.sampling.fit` or
        :func:`bayes_cart.inference.io.load_fit`).
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
