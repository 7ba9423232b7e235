"""One task of a study: simulate the replicate's dataset, apply the method, judge the estimates.

A task is one (scenario, replicate, method). :func:`run_task` is a plain function of the study
and the task (no Dask, no files): it simulates the dataset from the dataset seed, so every
method of a replicate sees the same data and nothing large crosses the network, runs the
method, and returns a small JSON-ready record. It never raises for a failing method: the error
becomes the record (``status = "error"`` with the message and the end of the traceback), so
one bad fit never stops a study.

Per quantity of interest the record holds the truth, the method's estimates, whether the
central 50% and 90% intervals cover the truth, and for covariate effects the decisions:
``interval_reject`` (the 90% interval excludes 0), ``pd_reject`` (the posterior probability
of the direction is at least 0.95) and ``test_reject`` (a method's own test, e.g. the two-stage
Wilcoxon test).

In a ``from_prior`` scenario (simulation-based calibration) the truth is the replicate's prior
draw (``SimulationResult.population``, also kept in the record as ``population``); each
quantity's row adds ``sbc_rank`` and ``sbc_draws``, the rank of the truth among ``L`` thinned
posterior draws (:func:`bayes_cart.analysis.sbc.sbc_rank`), and the record's ``data`` says
whether the dataset is degenerate (:func:`bayes_cart.study.prior.degenerate_reason`); with
``sbc.degenerate = "skip"`` a degenerate replicate is recorded unfitted, status
``"degenerate"``.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bayes_cart.analysis.sbc import sbc_rank
from bayes_cart.study.datasets import simulate_replicate
from bayes_cart.study.methods import ESTIMATE_COLUMNS, MethodContext, get_method
from bayes_cart.study.seeds import fit_seed
from bayes_cart.study.truth import is_effect, truth_values

__all__ = ["PD_THRESHOLD", "Task", "gate_passed", "judge_estimate", "run_task", "study_tasks"]

#: P(direction) at or above which a covariate effect counts as found (``pd_reject``).
PD_THRESHOLD = 0.95


@dataclass(frozen=True, order=True)
class Task:
    """One (scenario, replicate, method) of a study."""

    scenario: str
    replicate: int
    method: str

    @property
    def key(self) -> str:
        """Unique name of the task, also its file name in the study directory.

        Examples
        --------
        >>> Task("null", 3, "bayes").key
        'null__r0003__bayes'
        """
        return f"{self.scenario}__r{self.replicate:04d}__{self.method}"


def study_tasks(study: Any) -> list[Task]:
    """Every task of a study, replicate by replicate (so a partial run covers every cell)."""
    return [
        Task(s, r, m)
        for r in range(study.replicates)
        for s in study.scenarios
        for m in study.methods
    ]


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def judge_estimate(row: dict[str, Any], truth: float) -> dict[str, Any]:
    """Add the truth, interval coverage and effect decisions to one estimate row.

    Examples
    --------
    >>> r = judge_estimate({"quantity": "beta:RESPONSE[CR/PR]", "median": 0.3, "q5": 0.05,
    ...     "q25": 0.2, "q75": 0.4, "q95": 0.6, "p_positive": 0.97}, truth=0.4)
    >>> r["covers_50"], r["covers_90"], r["interval_reject"], r["pd_reject"], r["p_direction"]
    (True, True, True, True, 0.97)
    """
    out = {c: row.get(c) for c in ESTIMATE_COLUMNS}
    for c in ("mean", "median", "q5", "q25", "q75", "q95", "p_positive", "p_value"):
        out[c] = float(out[c]) if _finite(out[c]) else float("nan")
    out["truth"] = float(truth)
    has_50 = _finite(out["q25"]) and _finite(out["q75"])
    has_90 = _finite(out["q5"]) and _finite(out["q95"])
    out["covers_50"] = bool(out["q25"] <= truth <= out["q75"]) if has_50 else None
    out["covers_90"] = bool(out["q5"] <= truth <= out["q95"]) if has_90 else None
    effect = is_effect(out["quantity"])
    p = out["p_positive"]
    out["p_direction"] = max(p, 1.0 - p) if effect and _finite(p) else float("nan")
    out["interval_reject"] = bool(out["q5"] > 0 or out["q95"] < 0) if effect and has_90 else None
    out["pd_reject"] = bool(out["p_direction"] >= PD_THRESHOLD) if effect and _finite(p) else None
    out["test_reject"] = None if out["test_reject"] is None else bool(out["test_reject"])
    return out


def gate_passed(diagnostics: dict[str, Any], gate: Any, inference: str = "nuts") -> bool | None:
    """Whether a fit passes the study's gate (None for a method without a sampler).

    A NUTS fit passes on R-hat, bulk ESS and divergences (:class:`bayes_cart.study.spec.GateSpec`).
    An approximate fit (``inference`` ADVI, Pathfinder or Laplace) has no chains: it passes
    when the approximation's own check passed (``package_gate_passed``:
    :func:`bayes_cart.inference.approximate.approximation_passed`) and fails otherwise.
    """
    if not diagnostics or "max_rhat" not in diagnostics:
        return None
    if inference != "nuts":
        return bool(diagnostics.get("package_gate_passed"))
    rhat, ess = diagnostics["max_rhat"], diagnostics["min_ess_bulk"]
    return bool(
        _finite(rhat)
        and rhat <= gate.max_rhat
        and _finite(ess)
        and ess >= gate.min_ess_bulk
        and int(diagnostics.get("divergences", 0)) <= gate.max_divergences
    )


def _base_record(study: Any, task: Task) -> dict[str, Any]:
    return {
        "key": task.key,
        "study": study.name,
        "study_hash": study.hash,
        "scenario": task.scenario,
        "replicate": task.replicate,
        "method": task.method,
        "kind": study.methods[task.method].kind,
        "seed": fit_seed(study.seed, task.scenario, task.replicate, task.method),
        "status": "ok",
        "error": None,
        "traceback": None,
        "data": {},
        "diagnostics": {},
        "gate_passed": None,
        "timings": {},
        "notes": [],
        "quantities": [],
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def failed_record(study: Any, task: Task, status: str, message: str) -> dict[str, Any]:
    """Return the record of a task that did not finish (``status`` ``"error"`` or ``"timeout"``)."""
    record = _base_record(study, task)
    record.update(status=status, error=message, finished_at=datetime.now(UTC).isoformat())
    return record


def run_task(study: Any, task: Task) -> dict[str, Any]:
    """Run one task and return its record (a failing method gives a failed record).

    Parameters
    ----------
    study : bayes_cart.study.spec.StudySpec
        The study.
    task : Task
        Which scenario, replicate and method.

    Returns
    -------
    dict
        JSON-ready: identity, ``status``, ``error``, data counts, ``diagnostics``,
        ``gate_passed``, ``timings`` (``simulate_seconds``, ``compile_seconds``,
        ``sampling_seconds``, ``wall_seconds``) and ``quantities`` (one row per quantity of
        interest the method estimates, see :func:`judge_estimate`).
    """
    start = time.perf_counter()
    record = _base_record(study, task)
    try:
        sim = simulate_replicate(study, task.scenario, task.replicate)
        simulated = time.perf_counter()
        data = sim.data
        record["data"] = {
            "patients": int(data["ID"].nunique()),
            "samples": int(len(data)),
            "blq": int((data["CENS"] == 1).sum()),
        }
        scenario = study.scenarios[task.scenario]
        if scenario.from_prior:
            from bayes_cart.study.prior import degenerate_reason

            reason = degenerate_reason(data, scenario.sbc.min_informed)
            record["data"]["degenerate"] = reason is not None
            record["data"]["degenerate_reason"] = reason
            record["population"] = sim.population.to_dict()
            if reason is not None and scenario.sbc.degenerate == "skip":
                record.update(status="degenerate", error=f"degenerate dataset: {reason}")
                record["timings"] = {"simulate_seconds": simulated - start}
                record["timings"]["wall_seconds"] = time.perf_counter() - start
                record["finished_at"] = datetime.now(UTC).isoformat()
                return record
        method = study.methods[task.method]
        ctx = MethodContext(
            study=study,
            scenario=task.scenario,
            replicate=task.replicate,
            method_name=task.method,
            method=method,
            simulation=sim,
            seed=record["seed"],
        )
        output = get_method(method.kind)(ctx)
        population = sim.population if scenario.from_prior else scenario.population_parameters()
        truth = truth_values(population, scenario.design)
        wanted = set(study.quantities)
        record["quantities"] = [
            judge_estimate(row, truth[row["quantity"]])
            for row in output.estimates
            if row["quantity"] in wanted
        ]
        if scenario.from_prior:
            for row in record["quantities"]:
                draws = output.draws.get(row["quantity"])
                if draws is not None:
                    row["sbc_rank"], row["sbc_draws"] = sbc_rank(
                        draws, row["truth"], scenario.sbc.draws
                    )
        record["diagnostics"] = dict(output.diagnostics)
        record["gate_passed"] = gate_passed(
            output.diagnostics, study.gate, getattr(method, "inference", "nuts")
        )
        record["timings"] = {"simulate_seconds": simulated - start, **output.timings}
        record["notes"] = list(output.notes)
    except Exception as exc:  # a failing task is a record, never the end of the study
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = "".join(traceback.format_exception(exc)[-6:])
    record["timings"]["wall_seconds"] = time.perf_counter() - start
    record["finished_at"] = datetime.now(UTC).isoformat()
    return record
