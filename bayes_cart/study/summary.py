"""The study's tables: one row per task and quantity, and the metrics per cell.

:func:`fits_table` flattens the task records (``DIR/fits.parquet``); :func:`metrics_table`
summarises them per (scenario, method, quantity) (``DIR/metrics.csv``). Definitions
(``docs/studies.md``), over the ``n`` replicates whose task finished (``fits = "all"``) or
whose fit also passed the study's gate (``fits = "passed"``), with ``est`` the posterior
median (the two-stage method's group difference) and ``theta`` the truth:

* ``bias`` = mean(est - theta), with ``bias_mcse`` = sd(est - theta) / sqrt(n);
  ``rel_bias`` = mean((est - theta) / theta) x 100 (empty at theta = 0);
* ``rmse`` = sqrt(mean((est - theta)^2)); ``rel_rmse`` = sqrt(mean(((est - theta) / theta)^2))
  x 100 (PsN's relative RMSE);
* ``coverage_50``, ``coverage_90``: share of central intervals that contain theta, each with
  its Monte Carlo standard error sqrt(c (1 - c) / n); ``width_90`` = mean(q95 - q5);
* for covariate effects, ``rejection_rate`` (the 90% interval excludes 0, or the method's own
  test for the two-stage method) and ``rejection_rate_pd`` (P(direction) >= 0.95) with their
  MC SEs; the rejection rate is the ``power`` where theta != 0 and the ``type1_error`` where
  theta = 0;
* ``n_tasks`` (replicates of the cell), ``n_failed`` (tasks that raised or timed out, which
  have no estimate), ``n_gate_failed`` (finished fits the gate failed), and the medians of
  the compile, sampling and wall seconds (``compile_seconds`` is the swap of the data on a
  task whose compiled model came from its worker's cache, column ``model_cache`` = ``hit``).

A study with ``from_prior`` scenarios also gets ``sbc.csv`` (:mod:`bayes_cart.study.sbc`): the
uniformity of the ranks in the ``sbc_rank`` / ``sbc_draws`` columns of ``fits.parquet`` (NaN
outside SBC scenarios; ``degenerate`` says whether an SBC replicate's dataset was degenerate).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.study.truth import is_effect

__all__ = [
    "FITS_COLUMNS",
    "METRICS_COLUMNS",
    "fits_table",
    "metrics_table",
    "status_table",
    "write_summary",
]

#: Columns of :func:`fits_table` (one row per finished task and quantity).
FITS_COLUMNS = [
    "scenario",
    "replicate",
    "method",
    "kind",
    "quantity",
    "truth",
    "mean",
    "median",
    "q5",
    "q25",
    "q75",
    "q95",
    "covers_50",
    "covers_90",
    "p_direction",
    "interval_reject",
    "pd_reject",
    "p_value",
    "test_reject",
    "max_rhat",
    "min_ess_bulk",
    "divergences",
    "gate_passed",
    "compile_seconds",
    "sampling_seconds",
    "wall_seconds",
    "model_cache",
    "status",
    "sbc_rank",
    "sbc_draws",
    "degenerate",
]

#: Columns of :func:`metrics_table`.
METRICS_COLUMNS = [
    "scenario",
    "method",
    "quantity",
    "fits",
    "truth",
    "n_tasks",
    "n",
    "n_failed",
    "n_gate_failed",
    "bias",
    "bias_mcse",
    "rel_bias",
    "rmse",
    "rel_rmse",
    "coverage_50",
    "coverage_50_mcse",
    "coverage_90",
    "coverage_90_mcse",
    "width_90",
    "rejection_rate",
    "rejection_rate_mcse",
    "rejection_rate_pd",
    "rejection_rate_pd_mcse",
    "power",
    "type1_error",
    "median_compile_seconds",
    "median_sampling_seconds",
    "median_wall_seconds",
]


def fits_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Flatten task records: one row per (task, quantity).

    A failed task (``status`` error or timeout) gives one row without a quantity, so that it
    is counted.
    """
    rows = []
    for r in records:
        base = {
            "scenario": r["scenario"],
            "replicate": r["replicate"],
            "method": r["method"],
            "kind": r.get("kind"),
            "status": r["status"],
            "gate_passed": r.get("gate_passed"),
            **{k: r.get("diagnostics", {}).get(k) for k in ("max_rhat", "min_ess_bulk")},
            "divergences": r.get("diagnostics", {}).get("divergences"),
            "degenerate": (r.get("data") or {}).get("degenerate"),
            **{
                k: r.get("timings", {}).get(k)
                for k in ("compile_seconds", "sampling_seconds", "wall_seconds", "model_cache")
            },
        }
        quantities = r.get("quantities") or []
        if r["status"] != "ok" or not quantities:
            rows.append({**base, "quantity": None})
        rows += [{**base, **q} for q in quantities]
    table = pd.DataFrame(rows)
    for c in FITS_COLUMNS:
        if c not in table:
            table[c] = None
    for c in ("sbc_rank", "sbc_draws"):
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    return table[FITS_COLUMNS]


def _share(x: pd.Series) -> tuple[float, float]:
    """Share of True among the non-missing values, and its Monte Carlo SE."""
    v = x.dropna().astype(bool)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    p = float(v.mean())
    return p, float(np.sqrt(p * (1 - p) / n))


def _cell_metrics(cell: pd.DataFrame, truth: float, quantity: str) -> dict[str, Any]:
    est = cell["median"].astype(float)
    theta = cell["truth"].astype(float)  # one value, except in a from_prior (SBC) scenario
    err = est - theta
    n = int(err.notna().sum())
    out: dict[str, Any] = {"n": n}
    out["bias"] = float(err.mean()) if n else float("nan")
    out["bias_mcse"] = float(err.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    out["rmse"] = float(np.sqrt((err**2).mean())) if n else float("nan")
    if (theta != 0).all() and n:
        out["rel_bias"] = float((err / theta).mean() * 100)
        out["rel_rmse"] = float(np.sqrt(((err / theta) ** 2).mean()) * 100)
    else:
        out["rel_bias"] = out["rel_rmse"] = float("nan")
    out["coverage_50"], out["coverage_50_mcse"] = _share(cell["covers_50"])
    out["coverage_90"], out["coverage_90_mcse"] = _share(cell["covers_90"])
    width = (cell["q95"].astype(float) - cell["q5"].astype(float)).dropna()
    out["width_90"] = float(width.mean()) if len(width) else float("nan")
    if is_effect(quantity):
        decision = cell["test_reject"].where(cell["test_reject"].notna(), cell["interval_reject"])
        out["rejection_rate"], out["rejection_rate_mcse"] = _share(decision)
        out["rejection_rate_pd"], out["rejection_rate_pd_mcse"] = _share(cell["pd_reject"])
        if np.isfinite(truth):  # no single truth (SBC): neither power nor type-I error
            key = "power" if truth != 0 else "type1_error"
            out[key] = out["rejection_rate"]
    return out


def metrics_table(fits: pd.DataFrame) -> pd.DataFrame:
    """Summarise the fits per (scenario, method, quantity).

    Over all finished fits and over those that passed the gate (column ``fits``: ``all`` /
    ``passed``); definitions in the module docstring.
    """
    rows = []
    if fits.empty:
        return pd.DataFrame(columns=METRICS_COLUMNS)
    per_task = fits.drop_duplicates(["scenario", "method", "replicate"])
    for (scenario, method), tasks in per_task.groupby(["scenario", "method"], sort=True):
        n_tasks = len(tasks)
        ok = tasks[tasks["status"] == "ok"]
        timing = {
            f"median_{k}": float(pd.to_numeric(ok[k], errors="coerce").median())
            for k in ("compile_seconds", "sampling_seconds", "wall_seconds")
        }
        common = {
            "scenario": scenario,
            "method": method,
            "n_tasks": n_tasks,
            "n_failed": int((tasks["status"] != "ok").sum()),
            "n_gate_failed": int((ok["gate_passed"] == False).sum()),  # noqa: E712 (None = no gate)
            **timing,
        }
        cell_rows = fits[(fits["scenario"] == scenario) & (fits["method"] == method)]
        cell_rows = cell_rows[cell_rows["quantity"].notna() & (cell_rows["status"] == "ok")]
        for quantity, cell in cell_rows.groupby("quantity", sort=False):
            values = cell["truth"].astype(float)
            # a from_prior (SBC) scenario draws a truth per replicate: no single truth
            truth = float(values.iloc[0]) if values.nunique() <= 1 else float("nan")
            for subset, part in (("all", cell), ("passed", cell[cell["gate_passed"] != False])):  # noqa: E712
                rows.append(
                    {
                        **common,
                        "quantity": quantity,
                        "fits": subset,
                        "truth": truth,
                        **_cell_metrics(part, truth, str(quantity)),
                    }
                )
    table = pd.DataFrame(rows)
    for c in METRICS_COLUMNS:
        if c not in table:
            table[c] = np.nan
    return table[METRICS_COLUMNS]


def _cache(record: dict[str, Any]) -> str | None:
    """``hit``, ``miss`` or ``off`` for a sampling task; None without a compiled model."""
    if record.get("status") != "ok":
        return None
    value = (record.get("timings") or {}).get("model_cache")
    return str(value) if value is not None else None


def status_table(study: Any, records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Per (scenario, method): tasks, done, failed (error / timeout), gate failed, pending.

    ``compiled`` and ``cache_hits``: the finished tasks whose model was compiled and those
    whose compiled model came from their worker's cache (``timings["model_cache"]``).
    """
    from bayes_cart.study.task import study_tasks

    done: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        done.setdefault((r["scenario"], r["method"]), []).append(r)
    rows = []
    for scenario in study.scenarios:
        for method in study.methods:
            recs = done.get((scenario, method), [])
            total = sum(
                1 for t in study_tasks(study) if t.scenario == scenario and t.method == method
            )
            rows.append(
                {
                    "scenario": scenario,
                    "method": method,
                    "tasks": total,
                    "done": len(recs),
                    "failed": sum(r["status"] != "ok" for r in recs),
                    "gate_failed": sum(r.get("gate_passed") is False for r in recs),
                    "pending": total - len(recs),
                    "compiled": sum(_cache(r) == "miss" or _cache(r) == "off" for r in recs),
                    "cache_hits": sum(_cache(r) == "hit" for r in recs),
                }
            )
    return pd.DataFrame(rows)


def write_summary(directory: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a study directory's records; write ``fits.parquet`` and ``metrics.csv`` in it.

    A study with ``from_prior`` scenarios also gets ``sbc.csv``
    (:func:`bayes_cart.study.sbc.write_sbc`).

    Returns
    -------
    (fits, metrics) : tuple of DataFrame
        :func:`fits_table` and :func:`metrics_table`.
    """
    from bayes_cart.study.store import StudyStore, write_atomic

    store = StudyStore.existing(directory)
    fits = fits_table(store.records())
    metrics = metrics_table(fits)
    flags = ("covers_50", "covers_90", "gate_passed", "degenerate")
    fits.astype({c: "object" for c in flags}).to_parquet(store.root / "fits.parquet", index=False)
    write_atomic(store.root / "metrics.csv", metrics.to_csv(index=False, lineterminator="\n"))
    study = store.study()
    if any(s.from_prior for s in study.scenarios.values()):
        from bayes_cart.study.sbc import write_sbc

        write_sbc(store.root, fits, study)
    return fits, metrics
