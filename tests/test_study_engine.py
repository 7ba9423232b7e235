"""The task engine: seeds, records, coverage arithmetic, and the metrics on known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import study_doubles
from study_doubles import study_dict

from bayes_cart.study import run_study, study_from_dict, study_tasks, write_summary
from bayes_cart.study.datasets import simulate_replicate
from bayes_cart.study.summary import fits_table, metrics_table
from bayes_cart.study.task import Task, judge_estimate, run_task


def test_every_method_sees_the_same_data_and_seeds_are_reproducible():
    methods = {"first": {"kind": "data_digest"}, "second": {"kind": "data_digest"}}
    study = study_from_dict(study_dict(replicates=2, methods=methods))
    study_doubles.DIGESTS.clear()
    for task in study_tasks(study):
        assert run_task(study, task)["status"] == "ok"
    d = study_doubles.DIGESTS
    assert d[("null", 0, "first")] == d[("null", 0, "second")]
    assert d[("null", 1, "first")] == d[("null", 1, "second")]
    assert d[("null", 0, "first")] != d[("null", 1, "first")]
    assert d[("null", 0, "first")] != d[("effect", 0, "first")]
    # the same dataset again, and unchanged by adding a method or replicates
    more = study_from_dict(
        study_dict(replicates=5, methods={**methods, "third": {"kind": "conjugate"}})
    )
    pd.testing.assert_frame_equal(
        simulate_replicate(study, "null", 1).data, simulate_replicate(more, "null", 1).data
    )
    # fits of different methods get different sampler seeds, a rerun the same
    a, b = run_task(study, Task("null", 0, "first")), run_task(study, Task("null", 0, "second"))
    assert a["seed"] != b["seed"] and a["seed"] == run_task(study, Task("null", 0, "first"))["seed"]


def test_a_record_holds_truth_estimates_coverage_gate_and_timings():
    study = study_from_dict(study_dict(replicates=1))
    record = run_task(study, Task("effect", 0, "exact"))
    assert record["status"] == "ok" and record["error"] is None
    assert record["data"]["patients"] == 12
    assert record["gate_passed"] is True
    assert {"simulate_seconds", "sampling_seconds", "wall_seconds"} <= set(record["timings"])
    rows = {q["quantity"]: q for q in record["quantities"]}
    assert set(rows) == {"beta", "beta:RESPONSE[CR/PR]"}
    assert rows["beta"]["truth"] == 0.4 and rows["beta:RESPONSE[CR/PR]"]["truth"] == 0.4
    effect = rows["beta:RESPONSE[CR/PR]"]
    assert effect["q5"] < effect["q25"] < effect["median"] < effect["q75"] < effect["q95"]
    assert effect["covers_90"] == (effect["q5"] <= 0.4 <= effect["q95"])
    assert 0.5 <= effect["p_direction"] <= 1
    assert rows["beta"]["interval_reject"] is None  # not an effect: no decision


def test_a_failing_method_is_a_record_not_an_exception():
    study = study_from_dict(study_dict(replicates=1, methods={"bad": {"kind": "failing"}}))
    record = run_task(study, Task("null", 0, "bad"))
    assert record["status"] == "error"
    assert record["error"] == "RuntimeError: this method always fails (replicate 0)"
    assert "study_doubles.py" in record["traceback"] and record["quantities"] == []


def test_judge_estimate_on_the_interval_edges():
    row = {"quantity": "beta:X[a]", "q5": -0.1, "q25": 0.0, "median": 0.1, "q75": 0.2, "q95": 0.3}
    judged = judge_estimate({**row, "p_positive": 0.9}, truth=0.2)
    assert judged["covers_50"] is True and judged["covers_90"] is True  # edges included
    assert judged["interval_reject"] is False and judged["pd_reject"] is False
    assert judged["p_direction"] == 0.9
    two_stage = judge_estimate(
        {"quantity": "beta:X[a]", "median": 0.1, "p_value": 0.01, "test_reject": True}, truth=0.0
    )
    assert two_stage["covers_90"] is None and two_stage["test_reject"] is True
    assert math.isnan(two_stage["q5"])


def _records(rows):
    """Records of one cell: each row (median, q5, q25, q75, q95, gate, status)."""
    out = []
    for r, (median, q5, q25, q75, q95, gate, status) in enumerate(rows):
        q = judge_estimate(
            {
                "quantity": "beta:RESPONSE[L]",
                "median": median,
                "q5": q5,
                "q25": q25,
                "q75": q75,
                "q95": q95,
                "p_positive": 0.99 if q5 > 0 else 0.6,
            },
            truth=0.4,
        )
        out.append(
            {
                "scenario": "s",
                "replicate": r,
                "method": "m",
                "kind": "bayes",
                "status": status,
                "gate_passed": gate,
                "quantities": [q] if status == "ok" else [],
                "diagnostics": {"max_rhat": 1.0},
                "timings": {"sampling_seconds": 10.0 * (r + 1)},
            }
        )
    return out


def test_metrics_on_records_with_known_answers():
    rows = [
        (0.5, 0.1, 0.42, 0.6, 0.9, True, "ok"),  # covers 90 only; rejects
        (0.4, 0.2, 0.35, 0.45, 0.6, True, "ok"),  # covers both; rejects
        (0.2, -0.1, 0.1, 0.3, 0.35, False, "ok"),  # covers neither; no rejection; gate failed
        (0.3, 0.0, 0.2, 0.41, 0.5, True, "ok"),  # covers both; interval touches 0: no rejection
        (0.0, 0.0, 0.0, 0.0, 0.0, None, "error"),  # failed task: counted, no estimate
    ]
    metrics = metrics_table(fits_table(_records(rows)))
    every = metrics[metrics["fits"] == "all"].iloc[0]
    assert every["n_tasks"] == 5 and every["n"] == 4
    assert every["n_failed"] == 1 and every["n_gate_failed"] == 1
    err = np.array([0.1, 0.0, -0.2, -0.1])
    assert every["bias"] == pytest.approx(err.mean())
    assert every["bias_mcse"] == pytest.approx(err.std(ddof=1) / 2)
    assert every["rel_bias"] == pytest.approx(err.mean() / 0.4 * 100)
    assert every["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert every["rel_rmse"] == pytest.approx(np.sqrt(((err / 0.4) ** 2).mean()) * 100)
    assert every["coverage_90"] == 0.75
    assert every["coverage_90_mcse"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert every["coverage_50"] == 0.5 and every["coverage_50_mcse"] == pytest.approx(0.25)
    assert every["width_90"] == pytest.approx(np.mean([0.8, 0.4, 0.45, 0.5]))
    assert every["rejection_rate"] == 0.5 and every["power"] == 0.5
    assert math.isnan(every["type1_error"])  # the truth is not 0
    assert every["median_sampling_seconds"] == 25.0  # 10, 20, 30, 40 (the failed one has none)
    passed = metrics[metrics["fits"] == "passed"].iloc[0]
    assert passed["n"] == 3 and passed["coverage_90"] == 1.0 and passed["coverage_90_mcse"] == 0


def test_conjugate_intervals_have_their_nominal_coverage(tmp_path):
    """The double's intervals are exact: 90% coverage within 3 MC SEs over 100 replicates,
    and the null effect is rejected at about the 10% of a two-sided 90% interval."""
    study = study_from_dict(study_dict(replicates=100, methods={"exact": {"kind": "conjugate"}}))
    result = run_study(study, tmp_path / "s", workers=0)
    assert result.ran == 200 and result.failed == 0
    _, metrics = write_summary(tmp_path / "s")
    m = metrics[metrics["fits"] == "all"].set_index(["scenario", "quantity"])
    for cell in m.index:
        row = m.loc[cell]
        assert row["n"] == 100
        assert abs(row["coverage_90"] - 0.9) <= 3 * math.sqrt(0.09 / 100), cell
        assert abs(row["coverage_50"] - 0.5) <= 3 * math.sqrt(0.25 / 100), cell
    null = m.loc[("null", "beta:RESPONSE[CR/PR]")]
    assert abs(null["type1_error"] - 0.1) <= 3 * math.sqrt(0.09 / 100)
    assert m.loc[("effect", "beta:RESPONSE[CR/PR]"), "power"] > 0.5
    assert (tmp_path / "s" / "fits.parquet").exists()
