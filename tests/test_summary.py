"""population_summary: arviz.summary's statistics under the pharmacometric names."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

import bayes_cart.analysis.summary as summary
from bayes_cart.analysis.summary import COLUMNS, population_summary


@pytest.fixture
def idata(monkeypatch):
    rng = np.random.default_rng(1)
    post = {
        "beta": rng.normal(size=(4, 300)),
        "omega_beta": rng.lognormal(size=(4, 300)),
        "b_beta": rng.normal(size=(4, 300, 2)),
        "b_alpha_TOCI": rng.normal(size=(4, 300)),
        "corr": rng.normal(size=(4, 300, 2, 2)),  # two extra dims: not a row
        "u_trial": rng.normal(size=(4, 300, 3)),  # trial effects: not a row
    }
    monkeypatch.setattr(summary, "population_variables", lambda idata: list(post))
    return az.from_dict(
        posterior=post,
        coords={"beta_effect": ["RESPONSE[CR/PR]", "AGE"]},
        dims={"b_beta": ["beta_effect"]},
    )


def test_the_rows_are_named_as_a_pharmacometrician_expects(idata):
    table = population_summary(idata)
    assert list(table.columns) == COLUMNS
    assert table["parameter"].tolist() == [
        "beta",
        "omega_beta",
        "beta:RESPONSE[CR/PR]",
        "beta:AGE",
        "alpha:TOCI",
    ]


def test_the_statistics_are_the_draws_own(idata):
    table = population_summary(idata).set_index("parameter")
    x = idata.posterior["b_beta"].sel(beta_effect="AGE").to_numpy()
    flat = x.reshape(-1)
    expected = {
        "mean": flat.mean(),
        "sd": flat.std(ddof=1),
        "q5": np.quantile(flat, 0.05),
        "q50": np.quantile(flat, 0.5),
        "q95": np.quantile(flat, 0.95),
        "r_hat": az.rhat(x),
        "ess_bulk": az.ess(x, method="bulk"),
        "ess_tail": az.ess(x, method="tail"),
    }
    for column, value in expected.items():
        assert table.loc["beta:AGE", column] == pytest.approx(float(value), rel=1e-12)


def test_no_population_quantity_gives_an_empty_table(monkeypatch, idata):
    monkeypatch.setattr(summary, "population_variables", lambda idata: ["u_trial"])
    table = population_summary(idata)
    assert table.empty and list(table.columns) == COLUMNS
