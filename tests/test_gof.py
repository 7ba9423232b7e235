"""Goodness of fit: PRED/IPRED against the closed form, residuals, NPD, individual curves."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHECKS_TYPICAL, checks_simulation, point_mass_fit

from bayes_cart.checks.gof import gof_table, individual_fits
from bayes_cart.checks.ppc import pit_table
from bayes_cart.kinetics.structures.liu2021 import liu_log_states
from bayes_cart.predict import predict_at_observations, subset_draws
from bayes_cart.predict.observations import observation_table


def _closed_form(truth, ids, times):
    """(log_E, log_M, log_total) of each patient's true parameters at the given times."""
    row = truth.set_index("ID").loc[list(ids)]
    return liu_log_states(
        np.asarray(times, dtype=float),
        np.log(row["C0"].to_numpy()),
        row["beta"].to_numpy(),
        row["T1"].to_numpy(),
        row["alpha"].to_numpy(),
        row["rM"].to_numpy(),
        row["deltaM"].to_numpy(),
        row["k"].to_numpy(),
        row["T0"].to_numpy(),
        row["deltaE"].to_numpy(),
    )


@pytest.fixture(scope="module")
def noise_free():
    """Data simulated without residual error, fitted with a point mass (sigma 0.3)."""
    sim = checks_simulation(n_patients=12, sigma=0.0, random_seed=5)
    return sim, point_mass_fit(sim, n_draws=10, overrides={"sigma": 0.3})


def test_ipred_and_pred_equal_the_closed_form(checks_fit, checks_sim):
    table = gof_table(checks_fit, npd=False)
    _, _, log_total = _closed_form(checks_sim.truth, table["ID"], table["TIME"])
    assert np.allclose(table["log_ipred"], log_total, atol=1e-10)
    assert np.allclose(table["IPRED"], np.exp(log_total))
    # no covariates: PRED is the typical patient's curve
    typical = {k: np.full(len(table), v) for k, v in CHECKS_TYPICAL.items()}
    _, _, log_typ = liu_log_states(
        table["TIME"].to_numpy(),
        np.log(typical["C0"]),
        typical["beta"],
        typical["T1"],
        typical["alpha"],
        typical["rM"],
        typical["deltaM"],
    )
    assert np.allclose(table["log_pred"], log_typ, atol=1e-10)


def test_residuals_of_noise_free_data_are_zero(noise_free):
    sim, fit = noise_free
    table = gof_table(fit, npd=False)
    quantified = ~table["censored"]
    assert quantified.sum() > 50
    assert np.allclose(table.loc[quantified, "IRES"], 0.0, atol=1e-9)
    assert np.allclose(table.loc[quantified, "IWRES"], 0.0, atol=1e-9)


def test_censored_rows_are_flagged_without_residuals(noise_free):
    sim, fit = noise_free
    table = gof_table(fit, npd=False)
    n_cens = int(sim.data["CENS"].sum())
    assert n_cens > 0
    assert int(table["censored"].sum()) == n_cens
    assert table.loc[table["censored"], ["IRES", "IWRES"]].isna().all().all()
    assert (table.loc[table["censored"], "DV"] == 20.0).all()


def test_iwres_is_the_log_residual_over_sigma(checks_fit):
    table = gof_table(checks_fit, npd=False)
    q = ~table["censored"]
    ires = table.loc[q, "log_dv"] - table.loc[q, "log_ipred"]
    assert np.allclose(table.loc[q, "IWRES"], ires / 0.4)
    # under the true model the IWRES are roughly standard normal
    assert abs(table.loc[q, "IWRES"].mean()) < 0.15
    assert 0.85 < table.loc[q, "IWRES"].std() < 1.15


def test_npd_standard_normal_under_the_true_model(checks_fit):
    table = gof_table(checks_fit, n_simulations=300, random_seed=3)
    npd = table["NPD"].to_numpy()
    assert np.isfinite(npd).all()
    assert abs(npd.mean()) < 0.15
    assert 0.85 < npd.std() < 1.15


def test_npd_detects_a_wrong_typical_value(checks_sim):
    wrong = point_mass_fit(checks_sim, n_draws=20, overrides={"beta": 0.3, "log_beta": np.log(0.3)})
    npd = gof_table(wrong, n_simulations=100, random_seed=3)["NPD"]
    assert npd.mean() > 0.5  # data far above the wrong model's predictions


def test_individual_fits_at_a_point_mass(checks_fit, checks_sim):
    curves = individual_fits(checks_fit, ["P002", "P007"], n_grid=40)
    assert set(curves["state"]) == {"total", "E", "M"}
    assert list(dict.fromkeys(curves["ID"])) == ["P002", "P007"]
    # point mass: the band collapses onto the median, which is the closed form
    assert np.allclose(curves["low"], curves["median"]) and np.allclose(
        curves["high"], curves["median"]
    )
    for state, k in (("E", 0), ("M", 1), ("total", 2)):
        part = curves[curves["state"] == state]
        expected = _closed_form(checks_sim.truth, part["ID"], part["TIME"])[k]
        with np.errstate(divide="ignore"):  # M is 0 before the peak
            got = np.log(part["median"].to_numpy())
        assert np.allclose(got, expected, atol=1e-9), state
    # the grid reaches just past the last sample (180 days)
    assert curves["TIME"].max() == pytest.approx(189.0)
    picked = individual_fits(checks_fit, 3, n_grid=20, random_seed=1)
    assert picked["ID"].nunique() == 3
    with pytest.raises(KeyError, match="unknown patient"):
        individual_fits(checks_fit, ["nobody"])


def test_predict_at_observations_any_order():
    rng = np.random.default_rng(0)
    n_patients, n_obs = 4, 17
    params = {
        "C0": rng.uniform(5, 50, (3, n_patients)),
        "beta": rng.uniform(0.2, 0.6, (3, n_patients)),
        "T1": rng.uniform(8, 14, (3, n_patients)),
        "alpha": rng.uniform(0.05, 0.2, (3, n_patients)),
        "rM": rng.uniform(1e-3, 3e-3, (3, n_patients)),
        "deltaM": rng.uniform(3e-3, 1e-2, (3, n_patients)),
    }
    pidx = rng.integers(0, n_patients, n_obs)
    time = rng.uniform(0, 100, n_obs)
    out = predict_at_observations("liu2021", params, pidx, time)
    for s in range(3):
        _, _, expected = liu_log_states(
            time,
            np.log(params["C0"][s, pidx]),
            params["beta"][s, pidx],
            params["T1"][s, pidx],
            params["alpha"][s, pidx],
            params["rM"][s, pidx],
            params["deltaM"][s, pidx],
        )
        assert np.allclose(out[s], expected)


def test_subset_draws(checks_fit):
    sub, sel = subset_draws(checks_fit, 250, random_seed=0)  # more than the 100 draws
    assert sub.idata.posterior.sizes["draw"] == 250 and len(sel) == 250
    assert sel.max() < 100
    same, all_ = subset_draws(checks_fit, None)
    assert same is checks_fit and len(all_) == 100


def test_gof_individual_and_pit_plots(checks_fit, tmp_path):
    from matplotlib.figure import Figure

    from bayes_cart.plots.checks import plot_gof, plot_individual_fits, plot_pit

    fig = plot_gof(gof_table(checks_fit, npd=False))
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.axes[0].get_xscale() == "log" and fig.axes[2].get_xscale() == "linear"
    curves = individual_fits(checks_fit, 5, n_grid=30)
    fig = plot_individual_fits(curves, observation_table(checks_fit), ncols=3)
    assert len([a for a in fig.axes if a.get_visible()]) == 5
    fig.savefig(tmp_path / "fits.png", dpi=50)
    assert (tmp_path / "fits.png").stat().st_size > 1000
    fig = plot_pit(pit_table(checks_fit))
    assert len(fig.axes) == 2 and "KS distance" in fig.axes[0].get_title()
