"""The low-rank second try: a run that fails the gate is sampled again with a low-rank matrix."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm

import bayes_cart.inference.sampling as sampling
from bayes_cart.inference.diagnostics import better_run, gate_numbers, low_rank_retry_text


def _gate(passed: bool, **kw) -> dict:
    base = {"passed": passed, "max_rhat": 1.0, "min_ess": 900.0, "divergences": 0}
    return {**base, "stuck": 0, "chains": 2, **kw}


def test_better_run_orders_by_the_gate():
    failed = _gate(False, max_rhat=1.03, min_ess=450.0)
    assert better_run(failed, _gate(True, max_rhat=1.01, min_ess=410.0))
    assert not better_run(_gate(True), failed)
    # divergences weigh more than R-hat; R-hat within 0.005 is a tie decided by ESS
    assert better_run(_gate(False, divergences=3), _gate(False, max_rhat=1.05))
    assert better_run(_gate(False, max_rhat=1.031, min_ess=100.0), _gate(False, max_rhat=1.03))
    assert not better_run(_gate(False, max_rhat=1.02), _gate(False, max_rhat=1.04, min_ess=9e3))
    assert better_run(_gate(False, stuck=1), _gate(False, max_rhat=1.2))


def test_gate_numbers_read_the_run():
    rng = np.random.default_rng(3)
    good = az.from_dict(
        posterior={"mu": rng.normal(size=(4, 1000))},
        sample_stats={"diverging": np.zeros((4, 1000), dtype=bool)},
    )
    g = gate_numbers(good)
    assert g["passed"] and g["divergences"] == 0 and g["chains"] == 4
    assert g["max_rhat"] < 1.01 and g["min_ess"] > 2000
    # one chain shifted by 1 SD: chains disagree
    shifted = rng.normal(size=(4, 1000)) + np.array([[0.0], [0.0], [0.0], [1.0]])
    div = np.zeros((4, 1000), dtype=bool)
    div[0, 5] = True
    bad = az.from_dict(posterior={"mu": shifted}, sample_stats={"diverging": div})
    g = gate_numbers(bad)
    assert not g["passed"] and g["divergences"] == 1 and g["max_rhat"] > 1.05


def _collective_gaussian() -> pm.Model:
    d = 10
    v = np.ones(d) / np.sqrt(d)
    with pm.Model() as model:
        pm.MvNormal("x", np.zeros(d), cov=0.01 * np.eye(d) + 25.0 * np.outer(v, v))
    return model


def _forced_gate(monkeypatch, verdicts: list[bool]) -> list:
    """gate_numbers as computed, with ``passed`` forced per call (the test decides the verdict)."""
    calls: list = []

    def forced(idata):
        g = gate_numbers(idata)
        g["passed"] = verdicts[len(calls)]
        g["low_rank_run"] = "num_eigenvalues" in idata.sample_stats
        calls.append(g)
        return g

    monkeypatch.setattr(sampling, "gate_numbers", forced)
    return calls


def test_a_failed_run_is_sampled_again_with_a_low_rank_matrix(monkeypatch):
    second_passes = True
    calls = _forced_gate(monkeypatch, [False, second_passes])
    idata, timings = sampling.sample_posterior(
        _collective_gaussian(),
        chains=2,
        tune=300,
        draws=2000,
        random_seed=4,
        max_extensions=0,
        retry_target_accept=None,
        low_rank_retry=True,
    )
    record = timings["low_rank_retry"]
    assert [c["low_rank_run"] for c in calls] == [False, True]
    assert record["diagonal"]["passed"] is False
    assert record["low_rank"]["passed"] is second_passes
    # a passing low-rank run is kept; a failing one with equal numbers is not better
    kept_low_rank = "num_eigenvalues" in idata.sample_stats
    assert record["kept"] == ("low_rank" if kept_low_rank else "diagonal")
    assert kept_low_rank is better_run(record["diagonal"], record["low_rank"])
    assert kept_low_rank
    text = low_rank_retry_text(record)
    assert "low-rank mass matrix" in text and "2 chains" in text


def test_no_second_try_for_a_passing_or_short_run(monkeypatch):
    model = _collective_gaussian()
    kw = {"chains": 2, "tune": 200, "random_seed": 5, "max_extensions": 0}
    kw["retry_target_accept"] = None
    calls = _forced_gate(monkeypatch, [True])
    _, timings = sampling.sample_posterior(model, draws=2000, low_rank_retry=True, **kw)
    assert timings["low_rank_retry"] == {} and len(calls) == 1
    # a short exploratory run (2 x 300 draws) is not repeated, whatever its gate says
    calls = _forced_gate(monkeypatch, [False])
    _, timings = sampling.sample_posterior(model, draws=300, low_rank_retry=True, **kw)
    assert timings["low_rank_retry"] == {} and calls == []
