"""The tables of the study report, computed from a study directory before anything is drawn.

:func:`study_tables` reads a study directory (its spec and task records), refreshes
``fits.parquet`` and ``metrics.csv`` (:func:`bayes_cart.study.summary.write_summary`, so a
partly finished or interrupted study is reported as it stands) and returns every table of the
report (:class:`StudyTables`) as pandas DataFrames; the HTML report
(:mod:`bayes_cart.report.study_report`) only formats and draws them. Each table function is a
plain function of the metrics / fits tables, documented with the columns it returns:

* :func:`coverage_table`: coverage of the 50% and 90% central intervals with Monte Carlo SEs;
* :func:`accuracy_table`: bias (with its MC SE), relative bias, RMSE, relative RMSE;
* :func:`decision_table`: per covariate effect, the rejection rate of each decision rule,
  ordered by the true effect size (type-I error at a true 0, power elsewhere), and
  :func:`effect_table`: the covariate effects at a glance (bias, coverage, decisions);
* :func:`sbc_table` and :func:`sbc_ecdf`: simulation-based calibration, from the ``sbc_rank``
  and ``sbc_draws`` columns of the fits table when a study has them;
* :func:`runtime_table`: seconds per fit per method (compile, sampling, wall);
* :func:`failure_table` and :func:`failure_messages`: per method, the tasks that failed the
  gate (and on which criterion), raised or timed out, and what they said;
* :func:`scenario_table`, :func:`method_table`, :func:`missing_table`: the spec and progress.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.study.truth import is_effect

__all__ = [
    "StudyTables",
    "accuracy_table",
    "coverage_table",
    "decision_rules",
    "decision_table",
    "effect_table",
    "failure_messages",
    "failure_table",
    "method_table",
    "missing_table",
    "runtime_table",
    "sbc_ecdf",
    "sbc_table",
    "scenario_table",
    "study_tables",
]

_CELL = ["quantity", "scenario", "method"]


@dataclass
class StudyTables:
    """Every table of a study report (see the module docstring for each).

    Attributes
    ----------
    directory : Path
        The study directory.
    study : bayes_cart.study.spec.StudySpec
        The spec the directory was made with (replicates as last run).
    meta : dict
        ``study.json`` (hash, creation time, bayes_cart version).
    fits_subset : str
        ``"all"`` finished fits or those that ``"passed"`` the gate (the metrics used).
    fits, metrics : DataFrame
        :func:`~bayes_cart.study.summary.fits_table` and the rows of
        :func:`~bayes_cart.study.summary.metrics_table` of ``fits_subset``.
    status : DataFrame
        :func:`~bayes_cart.study.summary.status_table` (tasks, done, failed, pending per cell).
    records : list of dict
        The task records read.
    unreadable : list of Path
        Task files that could not be read (they count as not done).
    """

    directory: Path
    study: Any
    meta: dict[str, Any]
    fits_subset: str
    fits: pd.DataFrame
    metrics: pd.DataFrame
    status: pd.DataFrame
    records: list[dict[str, Any]]
    unreadable: list[Path] = field(default_factory=list)
    sbc_csv: pd.DataFrame | None = None

    @property
    def n_tasks(self) -> int:
        """Tasks of the study."""
        return int(self.status["tasks"].sum())

    @property
    def n_done(self) -> int:
        """Tasks with a record (finished, successfully or not)."""
        return int(self.status["done"].sum())

    @property
    def complete(self) -> bool:
        """Whether every task has a record."""
        return self.n_done == self.n_tasks

    @property
    def scenarios(self) -> pd.DataFrame:
        """:func:`scenario_table` of the study."""
        return scenario_table(self.study)

    @property
    def methods(self) -> pd.DataFrame:
        """:func:`method_table` of the study."""
        return method_table(self.study)

    @property
    def missing(self) -> pd.DataFrame:
        """:func:`missing_table` of the status."""
        return missing_table(self.status)

    @property
    def coverage(self) -> pd.DataFrame:
        """:func:`coverage_table` of the metrics."""
        return coverage_table(self.metrics, self.study)

    @property
    def accuracy(self) -> pd.DataFrame:
        """:func:`accuracy_table` of the metrics."""
        return accuracy_table(self.metrics, self.study)

    @property
    def decisions(self) -> pd.DataFrame:
        """:func:`decision_table` of the metrics."""
        return decision_table(self.metrics, decision_rules(self.study, self.fits))

    @property
    def effects(self) -> pd.DataFrame:
        """:func:`effect_table` of the metrics."""
        return effect_table(self.metrics)

    @property
    def sbc(self) -> pd.DataFrame:
        """:func:`sbc_table` of the fits (empty without SBC ranks)."""
        return sbc_table(self.fits)

    @property
    def runtime(self) -> pd.DataFrame:
        """:func:`runtime_table` of the fits."""
        return runtime_table(self.fits)

    @property
    def failures(self) -> pd.DataFrame:
        """:func:`failure_table` of the study."""
        return failure_table(self.study, self.status, self.fits)

    @property
    def messages(self) -> pd.DataFrame:
        """:func:`failure_messages` of the records."""
        return failure_messages(self.records)


def study_tables(directory: str | Path, fits: str = "all") -> StudyTables:
    """Read a study directory and compute the tables of its report.

    Refreshes ``DIR/fits.parquet`` and ``DIR/metrics.csv`` from the task records first (as
    ``bayes-cart study summary`` does), so the report and the files agree.

    Parameters
    ----------
    directory : str or Path
        A study directory (made by :func:`bayes_cart.run_study`).
    fits : {"all", "passed"}
        Metrics over every finished fit, or over those that passed the study's gate.

    Returns
    -------
    StudyTables

    Raises
    ------
    bayes_cart.errors.OutputError
        ``directory`` is not a study directory, or its spec cannot be read.
    ValueError
        ``fits`` is neither ``"all"`` nor ``"passed"``.
    """
    import warnings

    from bayes_cart.study.store import StudyStore
    from bayes_cart.study.summary import status_table, write_summary

    if fits not in ("all", "passed"):
        raise ValueError(f"fits must be 'all' or 'passed', not {fits!r}")
    store = StudyStore.existing(directory)
    study = store.study()
    meta = store.meta()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable records: listed in the report instead
        records = store.records()
        fits_frame, metrics = write_summary(store.root)
    sbc_path = store.root / "sbc.csv"
    return StudyTables(
        directory=store.root,
        study=study,
        meta=meta,
        fits_subset=fits,
        fits=fits_frame,
        metrics=metrics[metrics["fits"] == fits].reset_index(drop=True),
        status=status_table(study, records),
        records=records,
        unreadable=list(store.unreadable),
        sbc_csv=pd.read_csv(sbc_path) if sbc_path.is_file() else None,
    )


# --------------------------------------------------------------------------------------------
# the spec and the progress
# --------------------------------------------------------------------------------------------


def _effects(population: Mapping[str, Any]) -> str:
    parts = []
    for p, columns in (population.get("effects") or {}).items():
        for column, levels in columns.items():
            for level, value in levels.items():
                parts.append(f"{p}:{column}[{level}] = {value:g}")
    return "; ".join(parts) or "none (null)"


def scenario_table(study: Any) -> pd.DataFrame:
    """One row per scenario: description, design and covariate effects of the truth.

    Columns: ``scenario``, ``description``, ``patients`` (trials x patients per trial),
    ``sampling_days``, ``lloq``, ``blq_stop`` (consecutive BLQ samples after which a patient
    is not sampled), ``effects`` (the true covariate effects, log scale).
    """
    rows = []
    for name, s in study.scenarios.items():
        d = s.design
        rows.append(
            {
                "scenario": name,
                "description": s.description,
                "patients": f"{d.trials} x {d.patients_per_trial} = {d.n_patients}",
                "sampling_days": ", ".join(f"{t:g}" for t in d.sample_times),
                "lloq": d.lloq,
                "blq_stop": d.stop_after_consecutive_blq,
                "effects": _effects(s.population),
            }
        )
    return pd.DataFrame(rows)


def method_table(study: Any) -> pd.DataFrame:
    """One row per method: kind, description, model, covariates, BLQ handling, sampler.

    Columns: ``method``, ``kind``, ``description``, ``model``, ``covariates``, ``blq``,
    ``sampling`` (chains x (tune + draws); a registered kind: its ``options``), ``test``
    (two-stage: the test and its level).
    """
    rows = []
    for name, m in study.methods.items():
        covariates = ", ".join(f"{p} ~ {f}" for p, f in m.covariates.items())
        test = ""
        if m.kind == "two_stage":
            test = (
                f"{_test_name(m, study)} on the EBEs of {m.parameter} by {m.covariate}, "
                f"p < {m.alpha:g}"
            )
        own = m.kind not in ("bayes", "two_stage")  # a registered kind: its options say it all
        options = ", ".join(f"{k} = {v}" for k, v in m.options.items())
        rows.append(
            {
                "method": name,
                "kind": m.kind,
                "description": m.description,
                "model": "" if own else m.model,
                "covariates": "" if own else covariates or "none",
                "blq": "" if own else m.blq,
                "sampling": options if own else f"{m.chains} x ({m.tune} + {m.draws})",
                "test": test,
            }
        )
    return pd.DataFrame(rows)


def missing_table(status: pd.DataFrame) -> pd.DataFrame:
    """List the cells with tasks not run yet: ``scenario``, ``method``, ``pending``, ``of``."""
    rows = status[status["pending"] > 0]
    out = rows[["scenario", "method", "pending", "tasks"]].rename(columns={"tasks": "of"})
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# coverage, bias, decisions
# --------------------------------------------------------------------------------------------


def _ordered(
    table: pd.DataFrame,
    quantities: Iterable[str] | None = None,
    scenarios: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows by quantity and scenario (in the spec's order), the truth first, then method."""
    if table.empty:
        return table.reset_index(drop=True)
    q_order = list(dict.fromkeys([*(quantities or []), *table["quantity"]]))
    s_order = list(dict.fromkeys([*(scenarios or []), *sorted(table["scenario"])]))
    key = table.assign(
        _q=table["quantity"].map({q: i for i, q in enumerate(q_order)}),
        _s=table["scenario"].map({s: i for i, s in enumerate(s_order)}),
    )
    return (
        key.sort_values(["_q", "truth", "_s", "method"], kind="stable")
        .drop(columns=["_q", "_s"])
        .reset_index(drop=True)
    )


def coverage_table(metrics: pd.DataFrame, study: Any = None) -> pd.DataFrame:
    """Coverage of the central 50% and 90% intervals per quantity, scenario and method.

    Columns: ``quantity``, ``scenario``, ``method``, ``truth``, ``n`` (estimates),
    ``coverage_50``, ``coverage_50_mcse``, ``coverage_90``, ``coverage_90_mcse``,
    ``width_90``: the values of ``metrics.csv``. A method without intervals (the two-stage
    test) has no rows. Ordered by quantity and scenario as the ``study`` lists them (when
    given), with a smaller truth first.
    """
    cols = [*_CELL, "truth", "n", "coverage_50", "coverage_50_mcse", "coverage_90"]
    cols += ["coverage_90_mcse", "width_90"]
    rows = metrics[metrics["coverage_90"].notna() | metrics["coverage_50"].notna()]
    return _ordered(rows[cols], *_spec_order(study))


def _spec_order(study: Any) -> tuple[list[str] | None, list[str] | None]:
    if study is None:
        return None, None
    return list(study.quantities), list(study.scenarios)


def accuracy_table(metrics: pd.DataFrame, study: Any = None) -> pd.DataFrame:
    """Bias and RMSE of the point estimate per quantity, scenario and method.

    Columns: ``quantity``, ``scenario``, ``method``, ``truth``, ``n``, ``bias``,
    ``bias_mcse``, ``rel_bias`` (%), ``rmse``, ``rel_rmse`` (%): the values of
    ``metrics.csv`` (relative ones empty at a true 0); ordered as :func:`coverage_table`.
    """
    cols = [*_CELL, "truth", "n", "bias", "bias_mcse", "rel_bias", "rmse", "rel_rmse"]
    return _ordered(metrics[metrics["n"] > 0][cols], *_spec_order(study))


def _test_name(method: Any, study: Any) -> str:
    """Name the two-stage method's test (``auto``: by the covariate's number of levels)."""
    if method.test == "auto":
        levels = {
            len(s.design.covariates[method.covariate].levels)
            for s in study.scenarios.values()
            if method.covariate in s.design.covariates
        }
        if levels == {2}:
            return "Wilcoxon rank-sum"
        if levels and min(levels) > 2:
            return "Kruskal-Wallis"
        return "Wilcoxon rank-sum (2 groups) / Kruskal-Wallis"
    return {"wilcoxon": "Wilcoxon rank-sum", "kruskal": "Kruskal-Wallis"}[method.test]


def decision_rules(study: Any, fits: pd.DataFrame) -> dict[str, list[tuple[str, str, float]]]:
    """Return each method's decision rules: ``method -> [(metrics column, label, nominal)]``.

    A method with a test of its own (``test_reject`` in its fits, e.g. the two-stage
    Wilcoxon test) has that one rule (``rejection_rate``, nominal type-I error alpha); a
    method with posterior intervals has two: the 90% interval excludes 0 (``rejection_rate``)
    and P(direction) >= 0.95 (``rejection_rate_pd``), each a two-sided rule with 5% in each
    tail, so a nominal type-I error of 10%.
    """
    out: dict[str, list[tuple[str, str, float]]] = {}
    for name, m in study.methods.items():
        own = fits[(fits["method"] == name) & fits["test_reject"].notna()]
        if m.kind == "two_stage" or not own.empty:
            label = (
                f"{_test_name(m, study)} p < {m.alpha:g}" if m.kind == "two_stage" else "own test"
            )
            out[name] = [("rejection_rate", label, float(m.alpha))]
        else:
            out[name] = [
                ("rejection_rate", "90% interval excludes 0", 0.10),
                ("rejection_rate_pd", "P(direction) >= 0.95", 0.10),
            ]
    return out


def effect_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Show the covariate effects at a glance: per effect, true value and method, all metrics.

    One row per (covariate effect, scenario, method), ordered by effect and true value (the
    null first): ``quantity``, ``truth``, ``scenario``, ``method``, ``n``, ``bias``,
    ``bias_mcse``, ``rmse``, ``coverage_90``, ``coverage_90_mcse``, ``rejection_rate``
    (the 90% interval excludes 0, or the method's own test) with its MC SE,
    ``rejection_rate_pd`` (P(direction) >= 0.95) with its MC SE: the values of
    ``metrics.csv``; the rejection rate is the type-I error where ``truth`` is 0.
    """
    cols = ["quantity", "truth", "scenario", "method", "n", "bias", "bias_mcse", "rmse"]
    cols += ["coverage_90", "coverage_90_mcse", "rejection_rate", "rejection_rate_mcse"]
    cols += ["rejection_rate_pd", "rejection_rate_pd_mcse"]
    rows = metrics[metrics["quantity"].map(lambda q: is_effect(str(q))) & (metrics["n"] > 0)]
    rows = rows[cols].assign(_abs=rows["truth"].abs())
    rows = rows.sort_values(["quantity", "_abs", "truth", "scenario", "method"], kind="stable")
    return rows.drop(columns="_abs").reset_index(drop=True)


def decision_table(
    metrics: pd.DataFrame, rules: Mapping[str, list[tuple[str, str, float]]]
) -> pd.DataFrame:
    """Type-I error and power of every decision rule, ordered by the true effect size.

    Parameters
    ----------
    metrics : DataFrame
        Rows of ``metrics.csv`` (one ``fits`` subset).
    rules : mapping
        :func:`decision_rules`.

    Returns
    -------
    DataFrame
        One row per (covariate effect, scenario, method, rule), sorted by effect, then true
        value (the null first), then scenario and method: ``quantity``, ``truth``,
        ``scenario``, ``method``, ``rule``, ``nominal`` (the rule's nominal type-I error),
        ``rate`` (share of replicates that reject no effect) with ``rate_mcse``, ``n`` and
        ``measures`` (``type-I error`` at a true 0, ``power`` elsewhere).
    """
    rows = []
    effects = metrics[metrics["quantity"].map(lambda q: is_effect(str(q)))]
    for r in effects.itertuples(index=False):
        for column, label, nominal in rules.get(r.method, []):
            rate = getattr(r, column)
            if rate is None or (isinstance(rate, float) and math.isnan(rate)):
                continue
            rows.append(
                {
                    "quantity": r.quantity,
                    "truth": r.truth,
                    "scenario": r.scenario,
                    "method": r.method,
                    "rule": label,
                    "nominal": nominal,
                    "rate": float(rate),
                    "rate_mcse": float(getattr(r, f"{column}_mcse")),
                    "n": int(r.n),
                    "measures": "type-I error" if r.truth == 0 else "power",
                }
            )
    columns = ["quantity", "truth", "scenario", "method", "rule", "nominal", "rate"]
    columns += ["rate_mcse", "n", "measures"]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    table["_abs"] = table["truth"].abs()
    table = table.sort_values(["quantity", "_abs", "truth", "scenario", "method", "rule"])
    return table.drop(columns="_abs").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# simulation-based calibration
# --------------------------------------------------------------------------------------------


def _sbc_rows(fits: pd.DataFrame) -> pd.DataFrame:
    if "sbc_rank" not in fits or "sbc_draws" not in fits:
        return fits.iloc[0:0]
    rows = fits[fits["quantity"].notna() & (fits["status"] == "ok")]
    rows = rows[pd.to_numeric(rows["sbc_rank"], errors="coerce").notna()]
    return rows.astype({"sbc_rank": float, "sbc_draws": float})


def _normalised_ranks(cell: pd.DataFrame, seed: int) -> tuple[np.ndarray, int]:
    """Normalised ranks of one cell and the ``L`` of its grid (0 when the fits' ``L`` differ).

    One ``L``: ``u = (rank + 0.5) / (L + 1)``, whose CDF at ``i / (L + 1)`` is exactly
    ``i / (L + 1)``. Several: the randomised ``(rank + V) / (L + 1)``, ``V ~ Uniform(0, 1)``,
    exactly Uniform(0, 1) under calibration whatever each fit's ``L``.
    """
    r = cell["sbc_rank"].to_numpy(float)
    draws = cell["sbc_draws"].to_numpy(float)
    if np.all(draws == draws[0]):
        return (r + 0.5) / (draws[0] + 1), int(draws[0])
    v = np.random.default_rng(seed).uniform(size=len(r))
    return (r + v) / (draws + 1), 0


def sbc_ecdf(
    fits: pd.DataFrame, *, prob: float = 0.95, max_points: int = 100, random_seed: int = 0
) -> pd.DataFrame:
    """ECDF of the normalised SBC ranks minus the uniform CDF, with simultaneous bands.

    The rank of a quantity is the number of its ``L`` thinned posterior draws below the
    truth drawn from the prior (``sbc_rank`` in 0..L, ``L = sbc_draws``); under a calibrated
    method it is uniform on 0..L. The normalised rank ``u = (rank + 0.5) / (L + 1)`` has,
    at the points ``z = i / (L + 1)``, the CDF ``z`` exactly (fits with different ``L``:
    randomised ranks, see :func:`_normalised_ranks`), so the curve is the ECDF of ``u`` at
    ``z`` minus ``z``, and the band the simultaneous ``prob`` band of
    :func:`arviz.stats.ecdf_utils.ecdf_confidence_band` for ``n`` fits (Säilynoja, Bürkner
    and Vehtari 2022): a calibrated method stays inside all of it with probability ``prob``.

    Returns
    -------
    DataFrame
        ``scenario``, ``method``, ``quantity``, ``n``, ``z``, ``ecdf_diff``, ``lower``,
        ``upper`` (the band, as differences from ``z``); empty without SBC ranks.
    """
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    rows = _sbc_rows(fits)
    out = []
    for (scenario, method, quantity), cell in rows.groupby(
        ["scenario", "method", "quantity"], sort=False
    ):
        n = len(cell)
        if n < 2:
            continue
        u, draws = _normalised_ranks(cell, random_seed)
        if 0 < draws <= max_points:
            z = np.arange(1, draws + 1) / (draws + 1)
        else:
            z = np.arange(1, max_points + 1) / (max_points + 1)
            if draws:  # a grid on the rank points of a long chain
                z = np.unique(np.round(z * (draws + 1))) / (draws + 1)
        ecdf = np.searchsorted(np.sort(u), z, side="right") / n
        lower, upper = ecdf_confidence_band(n, z, z, prob=prob, method="optimized")
        out.append(
            pd.DataFrame(
                {
                    "scenario": scenario,
                    "method": method,
                    "quantity": quantity,
                    "n": n,
                    "z": z,
                    "ecdf_diff": ecdf - z,
                    "lower": np.asarray(lower) - z,
                    "upper": np.asarray(upper) - z,
                }
            )
        )
    columns = ["scenario", "method", "quantity", "n", "z", "ecdf_diff", "lower", "upper"]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)


def sbc_table(fits: pd.DataFrame, ecdf: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (scenario, method, quantity) with SBC ranks: fits, draws, and the band check.

    Columns: ``scenario``, ``method``, ``quantity``, ``n_fits``, ``draws`` (L, the largest),
    ``mean_rank`` (normalised, 0.5 when calibrated), ``max_ecdf_diff`` (the largest
    absolute ECDF difference) and ``inside_band`` (whether the ECDF difference stays inside
    the simultaneous 95% band); empty without SBC ranks.
    """
    rows = _sbc_rows(fits)
    ecdf = sbc_ecdf(fits) if ecdf is None else ecdf
    out = []
    for (scenario, method, quantity), cell in rows.groupby(
        ["scenario", "method", "quantity"], sort=False
    ):
        draws = int(cell["sbc_draws"].max())
        curve = ecdf[
            (ecdf["scenario"] == scenario)
            & (ecdf["method"] == method)
            & (ecdf["quantity"] == quantity)
        ]
        inside = None
        if not curve.empty:
            inside = bool(
                (
                    (curve["ecdf_diff"] >= curve["lower"]) & (curve["ecdf_diff"] <= curve["upper"])
                ).all()
            )
        out.append(
            {
                "scenario": scenario,
                "method": method,
                "quantity": quantity,
                "n_fits": len(cell),
                "draws": draws,
                "mean_rank": float(((cell["sbc_rank"] + 0.5) / (cell["sbc_draws"] + 1)).mean()),
                "max_ecdf_diff": float(curve["ecdf_diff"].abs().max()) if len(curve) else np.nan,
                "inside_band": inside,
            }
        )
    columns = ["scenario", "method", "quantity", "n_fits", "draws", "mean_rank"]
    return pd.DataFrame(out, columns=[*columns, "max_ecdf_diff", "inside_band"])


# --------------------------------------------------------------------------------------------
# run time and failures
# --------------------------------------------------------------------------------------------


def _per_task(fits: pd.DataFrame) -> pd.DataFrame:
    return fits.drop_duplicates(["scenario", "method", "replicate"])


def runtime_table(fits: pd.DataFrame) -> pd.DataFrame:
    """Seconds per fit, per method, over its finished tasks.

    Columns: ``method``, ``n_fits``, ``median_compile_seconds``,
    ``median_sampling_seconds``, ``median_other_seconds`` (wall minus compile minus
    sampling: simulating the data, summarising, a second run), ``median_wall_seconds``,
    ``max_wall_seconds``, ``total_hours`` (the sum of wall seconds: the method's share of
    the study's CPU time), ``compile_share`` (compile seconds over wall seconds, summed),
    ``median_ess_per_second`` (the smallest bulk ESS of the fit's population quantities per
    second of sampling; empty for a method without a sampler).
    """
    columns = ["method", "n_fits", "median_compile_seconds", "median_sampling_seconds"]
    columns += ["median_other_seconds", "median_wall_seconds", "max_wall_seconds"]
    columns += ["total_hours", "compile_share", "median_ess_per_second"]
    tasks = _per_task(fits)
    tasks = tasks[tasks["status"] == "ok"]
    rows = []
    for method, t in tasks.groupby("method", sort=True):
        compile_s = pd.to_numeric(t["compile_seconds"], errors="coerce")
        sampling = pd.to_numeric(t["sampling_seconds"], errors="coerce")
        wall = pd.to_numeric(t["wall_seconds"], errors="coerce")
        other = wall - compile_s.fillna(0) - sampling.fillna(0)
        rows.append(
            {
                "method": method,
                "n_fits": len(t),
                "median_compile_seconds": float(compile_s.median()),
                "median_sampling_seconds": float(sampling.median()),
                "median_other_seconds": float(other.median()),
                "median_wall_seconds": float(wall.median()),
                "max_wall_seconds": float(wall.max()),
                "total_hours": float(wall.sum() / 3600),
                "compile_share": float(compile_s.sum() / wall.sum()) if wall.sum() else np.nan,
                "median_ess_per_second": float(
                    (pd.to_numeric(t["min_ess_bulk"], errors="coerce") / sampling).median()
                ),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def failure_table(study: Any, status: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Per method: tasks, finished, errors, timeouts, gate failures (by criterion), pending.

    Columns: ``method``, ``tasks``, ``ok`` (finished with estimates), ``error``,
    ``timeout``, ``gate_failed`` (finished fits the study's gate failed), ``rhat_high``,
    ``ess_low``, ``divergent`` (how many of those failed on each criterion: max R-hat above
    the gate, min bulk ESS below it, more divergences than allowed), ``pending``.
    """
    gate = study.gate
    tasks = _per_task(fits) if not fits.empty else fits
    rows = []
    for method in study.methods:
        st = status[status["method"] == method]
        t = tasks[tasks["method"] == method] if not tasks.empty else tasks
        ok = t[t["status"] == "ok"] if not t.empty else t
        failed_gate = ok[ok["gate_passed"] == False] if not ok.empty else ok  # noqa: E712
        rhat = pd.to_numeric(failed_gate.get("max_rhat"), errors="coerce")
        ess = pd.to_numeric(failed_gate.get("min_ess_bulk"), errors="coerce")
        div = pd.to_numeric(failed_gate.get("divergences"), errors="coerce")
        rows.append(
            {
                "method": method,
                "tasks": int(st["tasks"].sum()),
                "ok": len(ok),
                "error": int((t["status"] == "error").sum()) if not t.empty else 0,
                "timeout": int((t["status"] == "timeout").sum()) if not t.empty else 0,
                "gate_failed": len(failed_gate),
                "rhat_high": int(((rhat > gate.max_rhat) | rhat.isna()).sum()) if len(rhat) else 0,
                "ess_low": int(((ess < gate.min_ess_bulk) | ess.isna()).sum()) if len(ess) else 0,
                "divergent": int((div > gate.max_divergences).sum()) if len(div) else 0,
                "pending": int(st["pending"].sum()),
            }
        )
    return pd.DataFrame(rows)


def failure_messages(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Count the messages of the tasks that raised or timed out, alike ones together.

    Messages that differ only in their numbers (a replicate, a patient, a value) count as
    one: the first line of the first task's message is shown.

    Columns: ``method``, ``status`` (``error`` / ``timeout``), ``message``, ``count``,
    ``tasks`` (up to three task keys).
    """
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for r in records:
        if r.get("status") == "ok":
            continue
        lines = str(r.get("error") or "(no message)").strip().splitlines() or [""]
        alike = re.sub(r"\d+(\.\d+)?", "#", lines[0])
        key = (str(r.get("method")), str(r.get("status")), alike)
        groups.setdefault(key, []).append((str(r.get("key")), lines[0]))
    rows = []
    for (m, s, _), found in groups.items():
        found = sorted(found)
        keys = [k for k, _ in found]
        rows.append(
            {
                "method": m,
                "status": s,
                "message": found[0][1],
                "count": len(found),
                "tasks": ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else ""),
            }
        )
    table = pd.DataFrame(rows, columns=["method", "status", "message", "count", "tasks"])
    return table.sort_values(["method", "count"], ascending=[True, False]).reset_index(drop=True)
