"""The study's side of the compiled-model cache: the worker's cache, the records and the counts."""

from __future__ import annotations

from study_doubles import study_dict

from bayes_cart.study import study_from_dict
from bayes_cart.study.bayes_method import worker_cache
from bayes_cart.study.summary import fits_table, status_table


def _record(scenario: str, replicate: int, method: str, cache: str | None, status: str = "ok"):
    timings = {"compile_seconds": 1.0, "sampling_seconds": 2.0, "wall_seconds": 3.0}
    if cache is not None:
        timings["model_cache"] = cache
    return {
        "scenario": scenario,
        "replicate": replicate,
        "method": method,
        "kind": "bayes",
        "status": status,
        "gate_passed": True,
        "diagnostics": {},
        "timings": timings,
        "quantities": [{"quantity": "beta", "median": 0.4, "truth": 0.4}],
    }


def test_status_counts_compiled_models_and_cache_hits():
    study = study_from_dict(study_dict(replicates=3))
    records = [
        _record("null", 0, "exact", "miss"),
        _record("null", 1, "exact", "hit"),
        _record("null", 2, "exact", "hit"),
        _record("effect", 0, "exact", "off"),
        _record("effect", 1, "exact", None),  # a method without a compiled model
        _record("effect", 2, "exact", "hit", status="error"),  # failed: not counted
    ]
    table = status_table(study, records).set_index(["scenario", "method"])
    assert table.loc[("null", "exact"), ["compiled", "cache_hits"]].tolist() == [1, 2]
    assert table.loc[("effect", "exact"), ["compiled", "cache_hits"]].tolist() == [1, 0]
    fits = fits_table(records)
    assert fits["model_cache"].tolist()[:4] == ["miss", "hit", "hit", "off"]


def test_the_worker_cache_is_one_per_process_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("BAYES_CART_MODEL_CACHE", raising=False)
    first = worker_cache()
    assert first is not None and worker_cache() is first
    monkeypatch.setenv("BAYES_CART_MODEL_CACHE", "0")
    assert worker_cache() is None
