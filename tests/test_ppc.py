"""Posterior predictive checks: LLOQ inference, randomised PIT, LOO-PIT, summaries."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import point_mass_fit

from bayes_cart.checks.ppc import pit_values, posterior_predictive_check
from bayes_cart.data.dataset import load_dataset
from bayes_cart.data.lloq import lloq_per_observation
from bayes_cart.errors import DataError, DataWarning
from bayes_cart.predict.observations import observation_table


def _load(frame: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(frame)


# patient A1 (trial T1) has a BLQ sample at 20, A2 (T1) none, B1 (T2) one at 50, C1 (T3) none
FRAME = pd.DataFrame(
    {
        "ID": ["A1", "A1", "A2", "A2", "B1", "B1", "C1", "C1"],
        "TIME": [1, 9, 1, 9, 1, 9, 1, 9],
        "DV": [300.0, 20.0, 80.0, 40.0, 500.0, 50.0, 90.0, 70.0],
        "CENS": [0, 1, 0, 0, 0, 1, 0, 0],
        "TRIAL": ["T1", "T1", "T1", "T1", "T2", "T2", "T3", "T3"],
        "ASSAY": [5.0, 5.0, 6.0, 6.0, 7.0, 7.0, 8.0, 8.0],
    }
)


def test_lloq_inferred_per_patient_then_trial_then_global():
    lloq = lloq_per_observation(_load(FRAME))
    # A1 own BLQ; A2 its trial's; B1 own; C1 (no BLQ in T3) the global minimum
    assert lloq.tolist() == [20.0, 20.0, 20.0, 20.0, 50.0, 50.0, 20.0, 20.0]


def test_lloq_inferred_without_trial_column():
    lloq = lloq_per_observation(_load(FRAME.drop(columns=["TRIAL"])))
    assert lloq.tolist() == [20.0, 20.0, 20.0, 20.0, 50.0, 50.0, 20.0, 20.0]
    # grouping by another covariate: C1 stays global, A2 grouped with nobody censored
    by_assay = lloq_per_observation(_load(FRAME), by="ASSAY")
    assert by_assay.tolist() == [20.0, 20.0, 20.0, 20.0, 50.0, 50.0, 20.0, 20.0]


def test_lloq_given_by_the_user():
    data = _load(FRAME)
    # a number applies to quantified rows; a censored row keeps its own DV (its stated limit)
    assert lloq_per_observation(data, 10.0).tolist() == [10, 20, 10, 10, 10, 50, 10, 10]
    assert lloq_per_observation(data, "assay").tolist() == [5, 20, 6, 6, 7, 50, 8, 8]
    by_id = {"A1": 1.0, "A2": 2.0, "B1": 3.0, "C1": 4.0}
    assert lloq_per_observation(data, by_id).tolist() == [1, 20, 2, 2, 3, 50, 4, 4]
    assert np.isnan(lloq_per_observation(_load(FRAME.assign(CENS=0)))).all()


def test_lloq_bad_input_names_the_problem():
    data = _load(FRAME)
    with pytest.raises(DataError, match=r"column 'NOPE'.*LLOQ column not found"):
        lloq_per_observation(data, "NOPE")
    with pytest.raises(DataError, match=r"no LLOQ given for patient\(s\) \['B1', 'C1'\]"):
        lloq_per_observation(data, {"A1": 1.0, "A2": 2.0})
    with pytest.raises(DataError, match=r"rows 1, 3, 4, 5, 7, 8; column 'LLOQ'\] LLOQ must be > 0"):
        lloq_per_observation(data, -1.0)


def test_pit_values_ranks_and_censoring():
    draws = np.arange(1.0, 10.0)[:, None] * np.ones((1, 4))  # 9 draws: 1..9
    observed = np.array([4.5, 3.0, 5.0, 7.0])
    cens = np.array([0, 1, 1, -1])
    log_limit = np.array([np.nan, np.nan, 2.0, np.nan])
    out = pit_values(draws, observed, cens, log_limit=log_limit, random_seed=1)
    # rank convention: bounds are counts / (S + 1)
    assert out["lower"].tolist() == pytest.approx([0.4, 0.0, 0.2, 0.7])
    assert out["upper"].tolist() == pytest.approx([0.5, 0.4, 0.6, 1.0])
    assert ((out["pit"] >= out["lower"]) & (out["pit"] <= out["upper"])).all()
    again = pit_values(draws, observed, cens, log_limit=log_limit, random_seed=1)
    assert again["pit"].tolist() == out["pit"].tolist()


def test_pit_values_with_weights():
    draws = np.arange(1.0, 11.0)[:, None] * np.ones((1, 2))  # 10 draws: 1..10
    weights = np.zeros((10, 2))
    weights[:5] = 0.2  # all weight on the draws 1..5
    out = pit_values(draws, np.array([3.0, 4.0]), np.array([0, 1]), weights=weights)
    assert out["lower"].tolist() == pytest.approx([0.4, 0.0])
    assert out["upper"].tolist() == pytest.approx([0.6, 0.8])


def test_observation_table_aligned_with_the_fit(checks_fit, checks_sim):
    table = observation_table(checks_fit)
    md = checks_fit.model_data
    assert table["obs"].tolist() == md.obs_rows.tolist()
    assert np.allclose(table["log_dv"], np.log(table["DV"]))
    assert (table["LLOQ"] == 20.0).all()
    assert table["CENS"].sum() == checks_sim.data["CENS"].sum()


def test_pit_uniform_under_the_true_model(checks_fit):
    check = posterior_predictive_check(checks_fit, random_seed=5)
    s = check.summary
    assert s["n_obs"] == 600
    assert s["pit_ks_pvalue"] > 0.01, s
    assert s["loo_pit_ks_pvalue"] > 0.01, s
    assert 0.06 <= s["fraction_outside"] <= 0.14, s
    assert s["blq_pi_low"] <= s["blq_observed"] <= s["blq_pi_high"], s


def test_pit_detects_a_too_narrow_predictive(checks_sim):
    wrong = point_mass_fit(checks_sim, overrides={"sigma": 0.15})
    s = posterior_predictive_check(wrong, random_seed=5).summary
    assert s["pit_ks_pvalue"] < 1e-6, s
    assert s["fraction_outside"] > 0.3, s


def test_censored_observations_use_the_blq_probability(checks_fit):
    table = posterior_predictive_check(checks_fit, random_seed=2).observations
    blq = table[table["CENS"] == 1]
    assert len(blq) > 20
    assert (blq["pit_lower"] == 0).all()
    assert (blq["pit"] <= blq["pit_upper"]).all()
    s = checks_fit.idata.posterior_predictive.sizes["draw"]
    # upper bound (#{draws <= LLOQ} + 1) / (S + 1) versus P(BLQ) = #{draws < LLOQ} / S
    assert np.allclose(blq["pit_upper"], (blq["p_blq"] * s + 1) / (s + 1))
    # a BLQ sample is outside only if the model gave it < 5% probability of being BLQ
    assert (blq["outside"] == (blq["pit_upper"] < 0.05)).all()
    assert (blq["pred_low"] >= 20.0 - 1e-9).all()


def test_per_patient_summary(checks_fit, checks_sim):
    check = posterior_predictive_check(checks_fit, random_seed=2)
    per = check.patients.set_index("ID")
    assert per["n_obs"].sum() == 600
    assert np.allclose(per["fraction_outside"], per["n_outside"] / per["n_obs"])
    n_blq = checks_sim.data.groupby("ID")["CENS"].sum()
    assert (per["n_blq"] == n_blq.reindex(per.index)).all()
    assert per["fraction_outside"].is_monotonic_decreasing


def test_ppc_needs_the_posterior_predictive_group(checks_fit):
    import arviz as az

    bare = copy.copy(checks_fit)
    bare.idata = az.InferenceData(posterior=checks_fit.idata.posterior)
    with pytest.raises(ValueError, match="no posterior_predictive group"):
        posterior_predictive_check(bare)
