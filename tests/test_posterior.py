"""bayes_cart.predict: individual, typical and new patients' parameters, and curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.spec import spec_from_dict
from bayes_cart.predict import individual_parameters, population_parameters, predict_curves
from bayes_cart.units import DELTA_E_PER_DAY

TYPICAL = {"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01}


def _effects(design, param, values):
    return np.array([values.get(n, 0.0) for n in design.effect_names(param)])


@pytest.fixture(scope="module")
def design(analysis_data, analysis_spec):
    from bayes_cart.model.model_data import prepare_model_data

    return prepare_model_data(analysis_data[0], analysis_spec).design


def _posterior(design, **overrides):
    post = {
        **TYPICAL,
        "b_beta": _effects(design, "beta", {"RESPONSE[CR/PR]": 0.3, "TUMOR_TYPE[solid]": -0.5}),
        "b_alpha": _effects(design, "alpha", {"RESPONSE[unknown]": 0.2}),
        "u_trial_beta": np.array([0.1, 0.0, -0.2]),
        "omega_trial_beta": 0.25,
        "sigma": 0.3,
    }
    for p in TYPICAL:
        post[f"omega_{p}"] = 0.0
    post["corr_beta_T1"] = 0.0
    post.update(overrides)
    return post


def _patients(**columns):
    n = len(next(iter(columns.values())))
    base = {
        "TRIAL": ["A"] * n,
        "RESPONSE": ["PD/NR"] * n,
        "TUMOR_TYPE": ["heme"] * n,
        "DOSE": [5e7] * n,
    }
    base.update(columns)
    return pd.DataFrame(base, index=[f"new{i}" for i in range(n)]).astype(
        {"TRIAL": object, "RESPONSE": object, "TUMOR_TYPE": object}
    )


def test_individual_parameters_stack_chains_and_broadcast_fixed(
    analysis_data, analysis_spec, fake_fit_factory
):
    data = analysis_data[0]
    n = data.n_patients
    beta_i = np.arange(10 * n, dtype=float).reshape(10, n) + 1.0
    fit = fake_fit_factory(data, analysis_spec, {"C0": 1.0, "beta_i": beta_i}, n_draws=10)
    params = individual_parameters(fit)
    assert set(params) == set(get_kinetics("liu2021").parameters)
    np.testing.assert_array_equal(params["beta"], beta_i)
    assert params["deltaE"].shape == (10, n)
    assert np.all(params["deltaE"] == pytest.approx(DELTA_E_PER_DAY))
    assert np.all(params["k"] == 0.0)  # default when not in the posterior


def test_typical_patient_combines_typical_value_covariates_and_trial(
    analysis_data, analysis_spec, design, fake_fit_factory
):
    fit = fake_fit_factory(analysis_data[0], analysis_spec, _posterior(design), n_draws=20)
    new = _patients(
        TRIAL=["A", "C", "C", "B"],
        RESPONSE=["PD/NR", "CR/PR", None, "CR/PR"],
        TUMOR_TYPE=["heme", "heme", "solid", "solid"],
    )
    p = population_parameters(fit, new, iiv=False, n_draws=None)
    assert p["beta"].shape == (20, 4)
    expected_beta = TYPICAL["beta"] * np.exp([0.1, 0.3 - 0.2, -0.5 - 0.2, 0.3 - 0.5])
    np.testing.assert_allclose(p["beta"][0], expected_beta, rtol=1e-12)
    np.testing.assert_allclose(p["alpha"][0], TYPICAL["alpha"] * np.exp([0, 0, 0.2, 0]))
    np.testing.assert_allclose(p["C0"], TYPICAL["C0"])
    none = population_parameters(fit, new, iiv=False, group="none")
    np.testing.assert_allclose(none["beta"][0], TYPICAL["beta"] * np.exp([0, 0.3, -0.5, -0.2]))


def test_a_table_without_the_reference_level_is_coded_against_the_fit(
    analysis_data, analysis_spec, design, fake_fit_factory
):
    # all patients solid tumours: the fit's reference (heme) is absent from the new table
    fit = fake_fit_factory(analysis_data[0], analysis_spec, _posterior(design), n_draws=5)
    new = _patients(TUMOR_TYPE=["solid", "solid"], RESPONSE=["CR/PR", "CR/PR"])
    p = population_parameters(fit, new, iiv=False, group="none")
    np.testing.assert_allclose(p["beta"][0], TYPICAL["beta"] * np.exp(0.3 - 0.5))


def test_new_trial_effects_are_drawn_from_omega_trial(
    analysis_data, analysis_spec, design, fake_fit_factory
):
    fit = fake_fit_factory(analysis_data[0], analysis_spec, _posterior(design), n_draws=2000)
    new = _patients(TRIAL=["unseen", "A"])
    p = population_parameters(fit, new, iiv=False, group="new", n_draws=None, random_seed=1)
    log_ratio = np.log(p["beta"] / TYPICAL["beta"])
    assert np.std(log_ratio[:, 0]) == pytest.approx(0.25, rel=0.08)
    assert np.std(log_ratio[:, 1]) == pytest.approx(0.25, rel=0.08)  # "new" ignores the fit's A
    fitted = population_parameters(fit, new, iiv=False, group="fitted", random_seed=1)
    assert np.std(np.log(fitted["beta"][:, 1])) == pytest.approx(0.0, abs=1e-12)
    assert np.std(np.log(fitted["beta"][:, 0] / TYPICAL["beta"])) > 0.2  # unseen trial: new


def test_random_effects_follow_omega_and_correlation(
    analysis_data, analysis_spec, design, fake_fit_factory
):
    post = _posterior(design, omega_beta=0.4, omega_T1=0.2, corr_beta_T1=-0.6, omega_C0=0.8)
    fit = fake_fit_factory(analysis_data[0], analysis_spec, post, n_draws=20)
    new = _patients(TRIAL=["A"] * 500)
    p = population_parameters(fit, new, iiv=True, group="none", random_seed=2)
    eta_beta = np.log(p["beta"] / TYPICAL["beta"]).ravel()
    eta_t1 = np.log(p["T1"] / TYPICAL["T1"]).ravel()
    assert np.std(eta_beta) == pytest.approx(0.4, rel=0.05)
    assert np.std(eta_t1) == pytest.approx(0.2, rel=0.05)
    assert np.corrcoef(eta_beta, eta_t1)[0, 1] == pytest.approx(-0.6, abs=0.05)
    assert np.std(np.log(p["C0"])) == pytest.approx(0.8, rel=0.05)
    assert np.std(np.log(p["alpha"])) < 1e-5  # omega 0
    again = population_parameters(fit, new, iiv=True, group="none", random_seed=2)
    np.testing.assert_array_equal(again["beta"], p["beta"])
    sub = population_parameters(fit, new, n_draws=7, random_seed=3)
    assert sub["beta"].shape == (7, 500)


def test_cmax_parameterisation_keeps_c0_as_the_typical_value(analysis_data, fake_fit_factory):
    """ "cmax" only changes the sampling coordinates: the typical value stays C0."""
    from bayes_cart.model.spec import load_spec

    raw = json.loads(load_spec("liu2021").text)
    raw["sampling"]["parameterisation"] = "cmax"
    raw["iiv"]["blocks"] = [["beta", "T1"]]
    spec = spec_from_dict(raw)
    fit = fake_fit_factory(analysis_data[0], spec, dict(TYPICAL), n_draws=5)
    p = population_parameters(fit, _patients(TRIAL=["A"]), iiv=False)
    np.testing.assert_allclose(p["C0"], TYPICAL["C0"], rtol=1e-10)


def test_distribution_phase_only_where_enabled(analysis_data, fake_fit_factory):
    from bayes_cart.model.spec import load_spec

    spec = spec_from_dict(
        {
            **json.loads(load_spec("liu2021").text),
            "distribution_phase": {"enabled_if": "TRIAL == 'B'"},
        }
    )
    post = {**TYPICAL, "k": 0.5, "T0": 2.0, "omega_k": 0.0, "omega_T0": 0.0}
    fit = fake_fit_factory(analysis_data[0], spec, post, n_draws=4)
    p = population_parameters(fit, _patients(TRIAL=["A", "B"]), iiv=False)
    np.testing.assert_allclose(p["k"][0], [0.0, 0.5])
    np.testing.assert_allclose(p["T0"][0], [0.0, 2.0])


def test_predict_curves_match_the_closed_form():
    params = {
        "C0": np.array([[10.0, 20.0]]),
        "beta": np.array([[0.4, 0.5]]),
        "T1": np.array([[10.0, 12.0]]),
        "alpha": np.array([[0.1, 0.2]]),
        "rM": np.array([[0.01, 0.002]]),
        "deltaM": np.array([[0.005, 0.01]]),
    }
    times = np.array([0.0, 5.0, 20.0, 100.0])
    out = predict_curves("liu2021", params, times)
    assert out["log_total"].shape == (1, 2, 4) and {"log_E", "log_M"} <= set(out)
    for j in range(2):
        single = {k: v[0, j] for k, v in params.items()}
        ref = get_kinetics("liu2021").solve(times, single)["log_total"]
        np.testing.assert_allclose(out["log_total"][0, j], ref, rtol=1e-12)
    per_patient = predict_curves("liu2021", params, np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert per_patient["log_total"].shape == (1, 2, 2)
    second = {k: v[0, 1] for k, v in params.items()}
    ref = get_kinetics("liu2021").solve(np.array([3.0, 4.0]), second)["log_total"]
    np.testing.assert_allclose(per_patient["log_total"][0, 1], ref, rtol=1e-12)
