"""Eta-shrinkage (``bayes_cart.inference.shrinkage``), checked against a model whose value is known.

In the normal-normal model eta_i ~ N(0, omega^2), y_i | eta_i ~ N(eta_i, s^2), the posterior
of eta_i is N(k y_i, k s^2) with k = omega^2 / (omega^2 + s^2). Its posterior means have SD
k sqrt(omega^2 + s^2) over patients, so the shrinkage is 1 - omega / sqrt(omega^2 + s^2):
exact draws from that posterior (no sampler) must give it back.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayes_cart.inference.shrinkage import (
    HIGH_SHRINKAGE,
    SHRINKAGE_COLUMNS,
    eta_shrinkage,
    high_shrinkage_text,
)


def _normal_normal(omega: float, s: float, n: int, rng, chains: int = 2, draws: int = 400):
    eta = rng.normal(0.0, omega, n)
    y = eta + rng.normal(0.0, s, n)
    k = omega**2 / (omega**2 + s**2)
    post = k * y + np.sqrt(k * s**2) * rng.standard_normal((chains, draws, n))
    return post


@pytest.mark.parametrize("s", [0.1, 1.0, 3.0])
def test_shrinkage_of_exact_posterior_draws_matches_the_normal_normal_value(s):
    rng = np.random.default_rng(20261203)
    omega, n = 0.8, 4000
    draws = _normal_normal(omega, s, n, rng)
    post = xr.Dataset(
        {
            "eta_alpha": (("chain", "draw", "patient"), draws),
            "omega_alpha": (("chain", "draw"), np.full(draws.shape[:2], omega)),
        }
    )
    table = eta_shrinkage(az.InferenceData(posterior=post))
    assert list(table.columns) == SHRINKAGE_COLUMNS
    (row,) = table.to_dict("records")
    expected = 1.0 - omega / np.sqrt(omega**2 + s**2)
    assert row["parameter"] == "alpha" and row["n_patients"] == n
    # SD over 4000 patients: relative error about 1/sqrt(2 n) = 1.1%
    assert abs(row["shrinkage"] - expected) < 0.02, (row, expected)
    assert row["omega"] == pytest.approx(omega)


def test_draws_from_the_prior_are_shrunk_completely_and_flagged():
    """Posterior = prior (the data say nothing): every EBE is about 0."""
    rng = np.random.default_rng(5)
    omega = rng.uniform(0.3, 1.0, size=(2, 500))
    post = xr.Dataset(
        {
            "eta_FB": (
                ("chain", "draw", "patient"),
                omega[..., None] * rng.normal(size=(2, 500, 40)),
            ),
            "omega_FB": (("chain", "draw"), omega),
            "eta_Cmax": (
                ("chain", "draw", "patient"),
                rng.normal(size=40) + 0.01 * rng.normal(size=(2, 500, 40)),
            ),
            "omega_Cmax": (("chain", "draw"), np.ones((2, 500))),
        }
    )
    table = eta_shrinkage(az.InferenceData(posterior=post)).set_index("parameter")
    assert table.loc["FB", "shrinkage"] > 0.9
    assert abs(table.loc["Cmax", "shrinkage"]) < 0.3
    text = high_shrinkage_text(table.reset_index())
    assert "FB" in text and "Cmax" not in text and f"{HIGH_SHRINKAGE:.0%}" in text


def test_variables_that_are_not_patient_random_effects_are_left_out():
    post = xr.Dataset(
        {
            # a trial-level effect, an eta without its omega, an eta of one patient (the
            # only one with a distribution phase)
            "eta_beta": (("chain", "draw", "TRIAL"), np.zeros((1, 10, 3))),
            "omega_beta": (("chain", "draw"), np.ones((1, 10))),
            "eta_T1": (("chain", "draw", "patient"), np.zeros((1, 10, 5))),
            "eta_k": (("chain", "draw", "patient_dp"), np.zeros((1, 10, 1))),
            "omega_k": (("chain", "draw"), np.ones((1, 10))),
        }
    )
    table = eta_shrinkage(az.InferenceData(posterior=post))
    assert table["parameter"].tolist() == ["k"]
    assert np.isnan(table["shrinkage"].iloc[0])  # one patient with a distribution phase: no SD
    assert high_shrinkage_text(table) == ""
    empty = eta_shrinkage(
        az.InferenceData(posterior=xr.Dataset({"sigma": (("chain", "draw"), np.ones((1, 3)))}))
    )
    assert empty.empty and list(empty.columns) == SHRINKAGE_COLUMNS


@pytest.mark.parametrize("name", ["liu2021", "liu2021_meta", "stein2019", "liu2021_fixed_t1"])
def test_every_iiv_parameter_of_a_shipped_spec_has_the_names_shrinkage_reads(name, checks_sim):
    """eta_<p> over patients and a scalar omega_<p>, for each parameter with IIV."""
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.errors import DataWarning
    from bayes_cart.model.build import build_model
    from bayes_cart.model.spec import load_spec

    spec = load_spec(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = checks_sim.data.copy()
        if name == "liu2021_meta":  # its covariates and trials need columns
            k = data.groupby("ID").ngroup()
            data = data.assign(
                RESPONSE=np.where(data["ARM"] == "a", "CR/PR", "PD/NR"),
                TUMOR_TYPE=np.where(k % 3 == 0, "solid", "heme"),
                TRIAL=np.where(k % 2 == 0, "T-A", "T-B"),
            )
        dataset = load_dataset(data)
    model = build_model(dataset, spec)
    dims = model.named_vars_to_dims
    for p in spec.iiv_parameters:
        if spec.doc.parameters[p].distribution_phase_only:
            continue  # no patient of these data has a distribution phase
        assert f"eta_{p}" in model.named_vars, (name, p)
        assert dims[f"eta_{p}"] == ("patient",)
        assert f"omega_{p}" in model.named_vars and not dims.get(f"omega_{p}")


def _sticky_fit(ebe_sd: float) -> az.InferenceData:
    """omega_FB mixes slowly (a random walk); the patients' EBEs of FB have SD ``ebe_sd``."""
    rng = np.random.default_rng(11)
    chains, draws, n = 4, 500, 30
    walk = np.cumsum(rng.normal(0.0, 0.05, (chains, draws)), axis=1)
    ebe = rng.normal(size=n)
    ebe = ebe_sd * (ebe - ebe.mean()) / ebe.std(ddof=1)
    return az.from_dict(
        posterior={
            "FB": rng.lognormal(-4.0, 0.05, (chains, draws)),
            "omega_FB": np.exp(walk),  # median about 1
            "eta_FB": ebe + 0.05 * rng.normal(size=(chains, draws, n)),
        },
        sample_stats={"diverging": np.zeros((chains, draws), dtype=bool)},
        dims={"eta_FB": ["patient"]},
    )


def test_the_gate_names_a_slow_quantity_whose_random_effect_is_shrunk():
    from bayes_cart.inference.diagnostics import check_fit

    shrunk = check_fit(_sticky_fit(ebe_sd=0.1), warn=False)
    assert not shrunk.passed and shrunk.worst["ess_bulk"] == "omega_FB"
    (hint,) = [a for a in shrunk.advice if "eta-shrinkage" in a]
    assert hint.startswith("omega_FB mixes slowly") and "parameters.FB.iiv" in hint
    # the same slow chain with well-informed patients: no such hint
    informed = check_fit(_sticky_fit(ebe_sd=0.95), warn=False)
    assert not informed.passed and informed.worst["ess_bulk"] == "omega_FB"
    assert not [a for a in informed.advice if "eta-shrinkage" in a]
