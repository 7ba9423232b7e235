"""The HTML report of a method-comparison study, in the look of the single-fit report.

:func:`write_study_report` reads a study directory
(:func:`bayes_cart.study.report_tables.study_tables`: the tables first, as DataFrames) and
writes one self-contained HTML file (figures embedded as PNG, no network) with seven sections:

1. the study and its progress (spec summary, scenarios, methods, tasks done / failed /
   pending per cell, what is missing);
2. coverage of the 50% and 90% intervals with Monte Carlo SEs;
3. bias and RMSE;
4. type-I error and power against the true effect size, the two-stage test beside the
   Bayesian decisions;
5. simulation-based calibration (ECDF differences), when the fits carry SBC ranks;
6. run time per fit (compile vs sampling);
7. failures: the gate, errors and timeouts with their messages.

Each section fails soft (a "could not compute" box with the reason), and a partly finished
study is reported as it stands, with what is missing said at the top. Every table of a
section is kept in :attr:`~bayes_cart.report.Section.tables` (numeric, as computed), so tests
and scripts read the numbers rather than the HTML.

Examples
--------
>>> write_study_report("study_out")  # doctest: +SKIP
PosixPath('study_out/report.html')
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from bayes_cart.plots.study import (
    method_colours,
    plot_accuracy,
    plot_coverage,
    plot_decisions,
    plot_failures,
    plot_runtime,
    plot_sbc_ranks,
)
from bayes_cart.report._context import Report, Section, _Parts
from bayes_cart.report._format import _facts, _figure, _frame, _h3, _num, _p, _pct, _table, logger

__all__ = ["STUDY_SECTION_TITLES", "build_study_report", "section_tables", "write_study_report"]

#: Section keys and headings of the study report, in order.
STUDY_SECTION_TITLES: dict[str, str] = {
    "overview": "1. Study and progress",
    "coverage": "2. Interval coverage",
    "accuracy": "3. Bias and RMSE",
    "decisions": "4. Type-I error and power",
    "sbc": "5. Simulation-based calibration",
    "runtime": "6. Run time",
    "failures": "7. Failures and missing tasks",
}

#: Error bars and "±" of the report: 1.96 Monte Carlo SEs (a 95% Monte Carlo interval).
_Z = 1.96


def _share_mcse(share: Any, mcse: Any) -> str:
    """``88% ± 6`` (the share and +- 1.96 MC SEs, in percentage points)."""
    if share is None or not math.isfinite(float(share)):
        return "–"
    if mcse is None or not math.isfinite(float(mcse)):
        return _pct(share)
    return f"{100 * float(share):.0f}% ± {100 * _Z * float(mcse):.0f}"


def _est_mcse(value: Any, mcse: Any) -> str:
    if mcse is None or not math.isfinite(float(mcse)):
        return _num(value)
    return f"{_num(value)} ± {_num(_Z * float(mcse), 2)}"


#: Replicates per cell below which the report says the numbers are too uncertain to conclude.
FEW_REPLICATES = 50


def _few_replicates(t: Any) -> str:
    """Say how uncertain the numbers are when a cell has fewer than FEW_REPLICATES."""
    n = t.metrics["n"][t.metrics["n"] > 0]
    if n.empty or int(n.min()) >= FEW_REPLICATES:
        return ""
    k = int(n.min())
    cov = 100 * _Z * math.sqrt(0.9 * 0.1 / k)
    err = 100 * _Z * math.sqrt(0.05 * 0.95 / k)
    return (
        f"Only {k} replicate(s) in the smallest cell: a 90% coverage is measured to about "
        f"± {cov:.0f} points and a 5% type-I error to ± {err:.0f} points (95% Monte Carlo "
        "intervals), and a share of 0% or 100% has a Monte Carlo SE of 0 although it is just "
        "as uncertain. Too few for conclusions; about 100 replicates per cell give ± 6 "
        "points on a 90% coverage."
    )


def _cautions(t: Any) -> list[str]:
    out = [_few_replicates(t)]
    ok = t.fits.drop_duplicates(["scenario", "method", "replicate"])
    ok = ok[ok["status"] == "ok"]
    gated = ok[ok["gate_passed"].notna()]
    if len(gated) and not (gated["gate_passed"] == True).any():  # noqa: E712
        then = (
            "no fit is left for the metrics (--fits passed); --fits all reports them all"
            if t.fits_subset == "passed"
            else "these metrics describe unconverged fits; lengthen the chains"
        )
        out.append(
            f"Every one of the {len(gated)} finished fits with a sampler failed the study's gate "
            f"(section 7): {then}."
        )
    return [c for c in out if c]


def _nothing_yet(t: Any) -> Markup:
    """Say why a section has no rows: nothing finished, or nothing passed the gate."""
    ok = t.fits[t.fits["status"] == "ok"] if not t.fits.empty else t.fits
    if ok.empty:
        text = "No task has finished with estimates yet."
    elif t.fits_subset == "passed" and not (t.metrics["n"] > 0).any():
        text = (
            "No finished fit passed the study's gate, and these metrics are over the fits that "
            "did (--fits passed): see section 7, or report every finished fit (--fits all)."
        )
    else:
        text = "None of the finished fits has the numbers this section needs."
    return Markup('<div class="warn">') + _p(text) + Markup("</div>")


def _without_intervals(t: Any) -> list[str]:
    """Methods whose finished fits have no interval at all (a test, a point estimate)."""
    ok = t.fits[(t.fits["status"] == "ok") & t.fits["quantity"].notna()]
    has = pd.to_numeric(ok["q5"], errors="coerce").notna().groupby(ok["method"]).any()
    return sorted(has.index[~has])


def _colours(t: Any) -> dict[str, str]:
    return method_colours(list(t.study.methods))


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def _section_overview(t: Any, parts: _Parts) -> list[Markup]:
    study, gate = t.study, t.study.gate
    n_failed = int(t.status["failed"].sum())
    progress = (
        f"{t.n_done} of {t.n_tasks} tasks have a record ({n_failed} raised or timed out); "
        f"{t.n_tasks - t.n_done} not run yet."
    )
    facts = _facts(
        [
            ("study", f"{study.name}: {study.doc.study.description}".rstrip(": ")),
            ("directory", str(t.directory)),
            ("spec hash", f"{t.meta.get('hash', study.hash)} (seed {study.seed})"),
            ("replicates", f"{study.replicates} per scenario"),
            ("tasks", progress),
            (
                "gate per fit",
                f"max R-hat ≤ {gate.max_rhat:g}, min bulk ESS ≥ {gate.min_ess_bulk:g}, "
                f"divergences ≤ {gate.max_divergences}",
            ),
            (
                "metrics over",
                "every finished fit" if t.fits_subset == "all" else "the fits that passed the gate",
            ),
            ("quantities", ", ".join(study.quantities)),
            ("per-task timeout", f"{study.timeout_s:g} s" if study.timeout_s else "none"),
            (
                "created",
                f"{str(t.meta.get('created', '?'))[:16].replace('T', ' ')} UTC by "
                f"bayes_cart {t.meta.get('bayes_cart', '?')}",
            ),
        ]
    )
    out: list[Markup] = [facts]
    for caution in _cautions(t):
        out.append(Markup('<div class="warn">') + _p(caution) + Markup("</div>"))
    if not t.complete:
        missing = parts.keep("missing", t.missing)
        listed = [
            f"{r.scenario} x {r.method} ({r.pending} of {r.of})" for r in missing.itertuples()
        ]
        cells = ", ".join(listed[:6])
        if len(listed) > 6:
            cells += f" and {len(listed) - 6} more cells, listed in section 7"
        out.append(
            Markup('<div class="warn">')
            + _p(
                f"Partial study: {t.n_tasks - t.n_done} of {t.n_tasks} tasks have not run yet "
                f"({cells}). Every number below is over the replicates finished so far; run the "
                "same `bayes-cart study run` command again to complete it."
            )
            + Markup("</div>")
        )
    if t.unreadable:
        out.append(
            Markup('<div class="warn">')
            + _p(
                f"{len(t.unreadable)} task record(s) could not be read and count as not run: "
                + ", ".join(p.name for p in t.unreadable[:5])
            )
            + Markup("</div>")
        )
    out.append(_h3("Scenarios: the truth and the design"))
    out.append(_table(_frame(parts.keep("scenarios", t.scenarios).to_dict("records"))))
    out.append(_h3("Methods"))
    out.append(_table(_frame(parts.keep("methods", t.methods).to_dict("records"))))
    out.append(_h3("Tasks per scenario and method"))
    status = parts.keep("status", t.status)
    shown = status.rename(
        columns={
            "done": "with a record",
            "failed": "raised / timed out",
            "gate_failed": "failed the gate",
            "pending": "not run yet",
        }
    )
    out.append(
        _table(
            _frame(shown.to_dict("records")),
            numeric=[c for c in shown.columns if c not in ("scenario", "method")],
        )
    )
    return out


def _section_coverage(t: Any, parts: _Parts) -> list[Markup]:
    table = parts.keep("coverage", t.coverage)
    without = _without_intervals(t)
    out = [
        _p(
            "Share of replicates whose central 50% and 90% interval (posterior quantiles "
            "25-75% and 5-95%) contains the true value. Bars and ± are 1.96 Monte Carlo "
            "standard errors, sqrt(c (1 - c) / n); the grey band is where a calibrated "
            "method's coverage falls with 95% probability with this many replicates. Below "
            "the nominal value: intervals too narrow or shifted (bias); above: too wide."
        )
    ]
    if without:
        out.append(
            _p(f"Without intervals (point estimate and test only): {', '.join(without)}.", "muted")
        )
    if table.empty:
        return [*out, _nothing_yet(t)]
    out.append(
        parts.run(
            "coverage figure",
            lambda: _figure(
                plot_coverage(table, colours=_colours(t)), "coverage of the 50% and 90% intervals"
            ),
        )
    )
    shown = _frame(
        {
            "quantity": r.quantity,
            "scenario": r.scenario,
            "method": r.method,
            "true value": _num(r.truth),
            "n": r.n,
            "coverage 50%": _share_mcse(r.coverage_50, r.coverage_50_mcse),
            "coverage 90%": _share_mcse(r.coverage_90, r.coverage_90_mcse),
            "mean 90% width": _num(r.width_90),
        }
        for r in table.itertuples()
    )
    out.append(
        _table(shown, numeric=["true value", "n", "coverage 50%", "coverage 90%", "mean 90% width"])
    )
    return out


def _section_accuracy(t: Any, parts: _Parts) -> list[Markup]:
    table = parts.keep("accuracy", t.accuracy)
    out = [
        _p(
            "Bias = mean(estimate - truth) over the replicates, with 1.96 Monte Carlo SEs; "
            "RMSE = sqrt(mean((estimate - truth)^2)); relative ones in % of the truth (empty "
            "at a true 0), as PsN sse reports them. The estimate is the posterior median (the "
            "two-stage method: the difference of the groups' median log EBEs). Units are "
            "the quantity's own: typical values per day or in DV units, IIV SDs and "
            "covariate effects on the log scale."
        )
    ]
    if table.empty:
        return [*out, _nothing_yet(t)]
    out.append(
        parts.run(
            "bias and RMSE figure",
            lambda: _figure(plot_accuracy(table, colours=_colours(t)), "bias and RMSE per method"),
        )
    )
    shown = _frame(
        {
            "quantity": r.quantity,
            "scenario": r.scenario,
            "method": r.method,
            "true value": _num(r.truth),
            "n": r.n,
            "bias": _est_mcse(r.bias, r.bias_mcse),
            "relative bias": "–" if not math.isfinite(r.rel_bias) else f"{r.rel_bias:.1f}%",
            "RMSE": _num(r.rmse),
            "relative RMSE": "–" if not math.isfinite(r.rel_rmse) else f"{r.rel_rmse:.1f}%",
        }
        for r in table.itertuples()
    )
    out.append(
        _table(shown, numeric=["true value", "n", "bias", "relative bias", "RMSE", "relative RMSE"])
    )
    return out


def _section_decisions(t: Any, parts: _Parts) -> list[Markup]:
    table = parts.keep("decisions", t.decisions)
    out = [
        _p(
            "How often each method declares a covariate effect, against the true effect "
            "(scenarios ordered by it): at a true 0 that share is the type-I error, elsewhere "
            "the power. The two-stage method decides by its test on the EBEs (p < alpha, "
            "nominal type-I error alpha); the Bayesian model by the 90% central interval "
            "excluding 0, or by P(direction) >= 0.95. Both Bayesian rules are two-sided with "
            "5% in each tail, so their nominal type-I error is 10%, not 5%: compare power at "
            "a matched type-I error. Bars and ± are 1.96 Monte Carlo SEs."
        )
    ]
    if table.empty:
        from bayes_cart.study.truth import is_effect

        if not any(is_effect(q) for q in t.study.quantities):
            return [*out, _p("The study's quantities include no covariate effect.", "muted")]
        return [*out, _nothing_yet(t)]
    if not (table["truth"] == 0).any():
        out.append(
            _p("No scenario has a true effect of 0: the type-I error is not measured.", "muted")
        )
    out.append(
        parts.run(
            "decision figure",
            lambda: _figure(
                plot_decisions(table, colours=_colours(t)), "type-I error and power vs effect size"
            ),
        )
    )
    shown = _frame(
        {
            "quantity": r.quantity,
            "true effect": _num(r.truth),
            "scenario": r.scenario,
            "method": r.method,
            "decision rule": r.rule,
            "n": r.n,
            "declares an effect": _share_mcse(r.rate, r.rate_mcse),
            "measures": f"{r.measures} (nominal {r.nominal:.0%})" if r.truth == 0 else r.measures,
        }
        for r in table.itertuples()
    )
    out.append(_table(shown, numeric=["true effect", "n", "declares an effect"]))
    effects = parts.keep("effects", t.effects)
    if not effects.empty:
        out.append(_h3("The covariate effects at a glance"))
        out.append(
            _p(
                "Per true effect and method: the estimate's bias, the 90% interval's coverage "
                "and the share of replicates declaring an effect (the 90% interval excludes 0, "
                "or the method's own test; and P(direction) >= 0.95), each ± 1.96 Monte Carlo "
                "SEs. At a true effect of 0 the share declaring an effect is the type-I error.",
                "muted",
            )
        )
        glance = _frame(
            {
                "quantity": r.quantity,
                "true effect": _num(r.truth),
                "scenario": r.scenario,
                "method": r.method,
                "n": r.n,
                "bias": _est_mcse(r.bias, r.bias_mcse),
                "RMSE": _num(r.rmse),
                "coverage 90%": _share_mcse(r.coverage_90, r.coverage_90_mcse),
                "effect declared (interval / test)": _share_mcse(
                    r.rejection_rate, r.rejection_rate_mcse
                ),
                "effect declared (P(direction) >= 0.95)": _share_mcse(
                    r.rejection_rate_pd, r.rejection_rate_pd_mcse
                ),
            }
            for r in effects.itertuples()
        )
        out.append(
            _table(
                glance,
                numeric=[c for c in glance.columns if c not in ("quantity", "scenario", "method")],
            )
        )
    return out


def _section_sbc(t: Any, parts: _Parts) -> list[Markup]:
    from bayes_cart.study.report_tables import sbc_ecdf, sbc_table

    ecdf = parts.keep("sbc_ecdf", sbc_ecdf(t.fits))
    table = parts.keep("sbc", sbc_table(t.fits, ecdf))
    if table.empty:
        return [
            _p(
                "No fit of this study carries SBC ranks. Simulation-based calibration needs "
                "scenarios whose truth is drawn from the prior (from_prior = true): each fit's "
                "rank of the true value among its thinned posterior draws is then uniform when "
                "the method is calibrated."
            )
        ]
    out = [
        _p(
            "Rank of each true value (drawn from the prior) among the fit's L thinned "
            "posterior draws, normalised to (0, 1). A calibrated method gives uniform ranks: "
            "the ECDF minus the uniform CDF stays inside the grey simultaneous 95% band. A "
            "curve arching above 0: ranks too often low, the posterior above the truth "
            "(overestimation); arching below: underestimation; above 0 for low ranks and "
            "below for high ones (a U-shaped rank histogram): posteriors too narrow, "
            "overconfident; the mirror image: too wide."
        ),
        parts.run(
            "SBC figure",
            lambda: _figure(plot_sbc_ranks(ecdf, colours=_colours(t)), "SBC ECDF-difference plots"),
        ),
    ]
    shown = _frame(
        {
            "scenario": r.scenario,
            "method": r.method,
            "quantity": r.quantity,
            "fits": r.n_fits,
            "draws L": r.draws,
            "mean normalised rank": _num(r.mean_rank, 2),
            "max |ECDF - uniform|": _num(r.max_ecdf_diff, 2),
            "inside the 95% band": {True: "yes", False: "no", None: "–"}[r.inside_band],
        }
        for r in table.itertuples()
    )
    out.append(
        _table(shown, numeric=["fits", "draws L", "mean normalised rank", "max |ECDF - uniform|"])
    )
    if t.sbc_csv is not None:
        out.append(_h3("Uniformity tests (sbc.csv)"))
        sbc_csv = parts.keep("sbc_csv", t.sbc_csv)
        out.append(
            _table(
                _frame(
                    [
                        {k: _num(v) if isinstance(v, float) else v for k, v in row.items()}
                        for row in sbc_csv.to_dict("records")
                    ]
                )
            )
        )
    return out


def _section_runtime(t: Any, parts: _Parts) -> list[Markup]:
    table = parts.keep("runtime", t.runtime)
    out = [
        _p(
            "Seconds per fit of each method over its finished tasks: compiling the model, "
            "sampling, and the rest (simulating the dataset, summarising, second runs after "
            "divergences). Total hours are the sum of the wall seconds, the method's share "
            "of the study's worker time; ESS / s is the smallest bulk ESS of the fit's "
            "population quantities per second of sampling."
        )
    ]
    if table.empty:
        return [*out, _nothing_yet(t)]
    if table["compile_share"].notna().any():
        share = float(
            (table["compile_share"] * table["total_hours"]).sum() / table["total_hours"].sum()
        )
        out.append(_p(f"Compiling took {share:.0%} of the fits' wall time in all."))
    out.append(
        parts.run(
            "run-time figure",
            lambda: _figure(
                plot_runtime(table, t.fits, colours=_colours(t)), "seconds per fit by method"
            ),
        )
    )
    shown = _frame(
        {
            "method": r.method,
            "fits": r.n_fits,
            "median compile s": _num(r.median_compile_seconds),
            "median sampling s": _num(r.median_sampling_seconds),
            "median other s": _num(r.median_other_seconds),
            "median wall s": _num(r.median_wall_seconds),
            "max wall s": _num(r.max_wall_seconds),
            "total hours": _num(r.total_hours, 2),
            "compile share": _pct(r.compile_share),
            "median ESS / s": _num(r.median_ess_per_second),
        }
        for r in table.itertuples()
    )
    out.append(_table(shown, numeric=[c for c in shown.columns if c != "method"]))
    return out


def _section_failures(t: Any, parts: _Parts) -> list[Markup]:
    table = parts.keep("failures", t.failures)
    messages = parts.keep("messages", t.messages)
    out = [
        _p(
            "Per method: tasks that finished and passed the study's gate, finished but "
            "failed it (counted in n_gate_failed; their estimates are in the 'all' metrics), "
            "raised an error or timed out (no estimate), and not run yet. A fit may fail the "
            "gate on more than one criterion."
        ),
        parts.run("failure figure", lambda: _figure(plot_failures(table), "tasks by outcome")),
        _table(
            table.rename(
                columns={
                    "rhat_high": "R-hat too high",
                    "ess_low": "ESS too low",
                    "divergent": "too many divergences",
                    "gate_failed": "failed the gate",
                    "ok": "finished",
                    "pending": "not run yet",
                }
            ),
            numeric=[c for c in table.columns if c != "method"],
        ),
    ]
    if messages.empty:
        out.append(_p("No task raised an error or timed out.", "muted"))
    else:
        out.append(_h3("Errors and timeouts"))
        out.append(_table(_frame(messages.to_dict("records")), numeric=["count"]))
    missing = t.missing
    if not missing.empty:
        out.append(_h3("Not run yet"))
        out.append(_table(_frame(missing.to_dict("records")), numeric=["pending", "of"]))
    return out


_SECTIONS: dict[str, Callable[[Any, _Parts], list[Markup]]] = {
    "overview": _section_overview,
    "coverage": _section_coverage,
    "accuracy": _section_accuracy,
    "decisions": _section_decisions,
    "sbc": _section_sbc,
    "runtime": _section_runtime,
    "failures": _section_failures,
}


def _run_section(key: str, tables: Any) -> Section:
    title = STUDY_SECTION_TITLES[key]
    parts = _Parts(title)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        body = parts.run(title, lambda: _SECTIONS[key](tables, parts))
    notes = list(
        dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    )
    return Section(
        key=key,
        title=title,
        body=body,
        failures=parts.failures,
        notes=notes[:10],
        seconds=time.perf_counter() - t0,
        tables=parts.tables,
    )


# --------------------------------------------------------------------------------------------
# building and writing
# --------------------------------------------------------------------------------------------


def build_study_report(
    directory: str | Path, *, fits: str = "all", title: str | None = None
) -> Report:
    """Compute every section of the report of a study directory.

    Parameters
    ----------
    directory : str or Path
        A study directory (partly finished is fine).
    fits : {"all", "passed"}
        Metrics over every finished fit, or over those that passed the study's gate.
    title : str, optional
        Page title.

    Returns
    -------
    Report
        :meth:`Report.to_html` renders it; each section's ``tables`` hold its numbers.

    Raises
    ------
    bayes_cart.errors.OutputError
        ``directory`` is not a study directory.
    """
    from bayes_cart import __version__
    from bayes_cart.study.report_tables import study_tables

    t0 = time.perf_counter()
    tables = study_tables(directory, fits=fits)
    sections = [_run_section(key, tables) for key in STUDY_SECTION_TITLES]
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    study = tables.study
    subtitle = (
        f"{len(study.scenarios)} scenarios x {len(study.methods)} methods x "
        f"{study.replicates} replicates · spec {tables.meta.get('hash', study.hash)} · "
        f"generated {now} by bayes_cart {__version__}"
    )
    if tables.complete:
        badge, badge_class = "COMPLETE", "pass"
    else:
        badge, badge_class = f"PARTIAL {tables.n_done}/{tables.n_tasks}", "partial"
    note = (
        "Metrics over every finished fit (those that failed the gate included)"
        if fits == "all"
        else "Metrics over the fits that passed the study's gate only"
    )
    return Report(
        title=title or f"Method-comparison study: {study.name}",
        subtitle=subtitle,
        passed=tables.complete,
        sections=sections,
        seconds=time.perf_counter() - t0,
        meta={"note": f"{note}; ± and error bars are 1.96 Monte Carlo standard errors."},
        badge=badge,
        badge_class=badge_class,
        badge_title="tasks with a record",
    )


def write_study_report(
    directory: str | Path,
    path: str | Path | None = None,
    *,
    fits: str = "all",
    title: str | None = None,
) -> Path:
    """Write the self-contained HTML report of a study directory.

    Also refreshes ``DIR/fits.parquet`` and ``DIR/metrics.csv`` from the task records.

    Parameters
    ----------
    directory : str or Path
        A study directory (:func:`bayes_cart.run_study`); partly finished is fine.
    path : str or Path, optional
        Output HTML file (default ``DIR/report.html``; parent folders are created).
    fits : {"all", "passed"}
        Metrics over every finished fit, or over those that passed the study's gate.
    title : str, optional
        Page title.

    Returns
    -------
    Path
        The written file. Parts that could not be computed show a "could not compute" box and
        are logged (logger ``bayes_cart.report``).

    Raises
    ------
    bayes_cart.errors.OutputError
        ``directory`` is not a study directory.

    Examples
    --------
    >>> import bayes_cart as bc  # doctest: +SKIP
    >>> bc.write_study_report("study_out")  # doctest: +SKIP
    PosixPath('study_out/report.html')
    """
    report = build_study_report(directory, fits=fits, title=title)
    out = Path(directory) / "report.html" if path is None else Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.to_html(), encoding="utf-8")
    for failure in report.failures:
        logger.warning("study report %s: %s", out, failure)
    return out


def section_tables(report: Report) -> dict[str, dict[str, pd.DataFrame]]:
    """Return the tables of a built report by section key (``{"coverage": {...}}``)."""
    return {s.key: s.tables for s in report.sections}
