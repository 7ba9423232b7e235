"""VPC: binning, censored percentiles, BLQ fraction, pcVPC, coverage under true/wrong models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import checks_simulation, point_mass_fit
from typer.testing import CliRunner

from bayes_cart.checks.vpc import (
    assign_bins,
    bin_statistics,
    prediction_correct,
    vpc,
    vpc_bins,
    vpc_coverage,
)
from bayes_cart.errors import DataError
from bayes_cart.predict import simulate_observed_design


def test_bins_one_per_nominal_time():
    edges = vpc_bins([1, 1, 7, 7, 28, 28, 90])
    assert edges.tolist() == [1.0, 4.0, 17.5, 59.0, 90.0]
    assert assign_bins([1, 3.9, 4.0, 28, 90], edges).tolist() == [0, 0, 1, 2, 3]


def test_bins_cluster_jittered_times():
    rng = np.random.default_rng(0)
    nominal = np.array([1, 4, 7, 14, 28, 90, 180, 365])
    times = (nominal[None, :] * rng.uniform(0.9, 1.1, size=(30, len(nominal)))).ravel()
    edges = vpc_bins(times, n_bins=8)
    assert len(edges) == 9
    # every nominal time gets its own bin
    assert sorted(set(assign_bins(nominal, edges).tolist())) == list(range(8))


def test_assign_bins_outside_and_bad_edges():
    assert assign_bins([0, 1, 4, 28, 30], [1, 4, 28]).tolist() == [-1, 0, 1, 1, -1]
    with pytest.raises(ValueError, match="increasing"):
        assign_bins([1.0], [5, 1])


def test_blq_fraction_hand_example():
    log_lloq = np.log(np.full(4, 10.0))
    observed = np.log(np.array([10.0, 50.0, 80.0, 10.0]))
    observed_blq = np.array([True, False, False, True])
    sim = np.log(np.full((5, 4), 100.0))
    # replicate r has r BLQ samples: fractions 0, .25, .5, .75, 1
    sim_blq = np.array([[j < r for j in range(4)] for r in range(5)])
    out = bin_statistics(observed, observed_blq, sim, sim_blq, log_lloq)
    assert out["n_obs"] == 4 and out["n_blq"] == 2
    assert out["blq_observed"] == 0.5
    expected = np.quantile([0, 0.25, 0.5, 0.75, 1.0], [0.05, 0.5, 0.95])
    assert [out["blq_pi_low"], out["blq_pi_mid"], out["blq_pi_high"]] == pytest.approx(expected)
    assert out["blq_inside"]


def test_censored_percentiles_hand_example():
    # 10 samples, 6 BLQ at LLOQ 20: the 5th and 50th percentiles are censored, the 95th is not
    values = np.array([20, 20, 20, 20, 20, 20, 30, 40, 100, 200.0])
    blq = values == 20
    log_lloq = np.log(np.full(10, 20.0))
    sim = np.log(np.tile(values, (4, 1)))
    out = bin_statistics(np.log(values), blq, sim, np.tile(blq, (4, 1)), log_lloq)
    assert out["lloq"] == pytest.approx(20.0)
    assert np.isnan(out["q5_observed"]) and np.isnan(out["q50_observed"])
    assert np.isnan(out["q5_pi_high"]) and np.isnan(out["q50_pi_low"])
    assert out["q95_observed"] == pytest.approx(np.exp(np.quantile(np.log(values), 0.95)))
    assert not out["q5_informative"] and not out["q50_informative"] and out["q95_informative"]
    assert out["q5_inside"] and out["q95_inside"]
    # observed median censored, but every replicate's median quantifiable: outside
    high = np.log(np.tile(np.linspace(30, 300, 10), (4, 1)))
    out2 = bin_statistics(np.log(values), blq, high, np.zeros((4, 10), bool), log_lloq)
    assert not out2["q50_inside"] and out2["q50_informative"]
    assert out2["blq_observed"] == 0.6 and out2["blq_pi_high"] == 0.0 and not out2["blq_inside"]


def test_prediction_correction_hand_example():
    log_y = np.log(np.array([10.0, 40.0, 100.0, 7.0]))
    log_pred = np.log(np.array([5.0, 20.0, 80.0, 3.0]))
    bins = np.array([0, 0, 0, 1])
    pc = prediction_correct(log_y, log_pred, bins)
    # bin 0: median PRED = 20, so y * 20 / PRED; bin 1 has one sample: unchanged
    assert np.exp(pc) == pytest.approx([40.0, 40.0, 25.0, 7.0])
    # identity: data equal to their typical prediction collapse onto the bin's median PRED
    assert np.exp(prediction_correct(log_pred, log_pred, bins)) == pytest.approx([20, 20, 20, 3])
    # replicate axis broadcast
    two = prediction_correct(np.vstack([log_y, log_y]), log_pred, bins)
    assert np.allclose(two[1], pc)


def test_simulations_use_the_design_and_censor_at_the_lloq(checks_fit):
    sims = simulate_observed_design(checks_fit, n_replicates=30, random_seed=3)
    n_obs = checks_fit.model_data.n_obs
    assert sims["log_dv"].shape == (30, n_obs) and sims["blq"].shape == (30, n_obs)
    assert (sims["blq"] == (sims["log_dv"] < np.log(20.0))).all()
    # new patients: replicates differ in their curves, not only in residuals
    assert np.std(sims["log_ipred"][:, 0]) > 0.1


def test_blq_fraction_per_bin_matches_the_data(checks_fit, checks_sim):
    result = vpc(checks_fit, n_replicates=50, random_seed=1)
    table = result.table.set_index("t_mid")
    observed = checks_sim.data.groupby("TIME")["CENS"].agg(["mean", "sum", "size"])
    assert table.index.tolist() == observed.index.tolist()
    assert np.allclose(table["blq_observed"], observed["mean"])
    assert (table["n_blq"] == observed["sum"]).all() and (table["n_obs"] == 60).all()
    assert np.allclose(table["lloq"], 20.0)


def test_vpc_under_the_true_model_covers_and_a_wrong_model_does_not(checks_sim, checks_fit):
    good = vpc_coverage(vpc(checks_fit, n_replicates=200, random_seed=7))
    assert good["n_percentiles"] >= 24
    assert good["percentiles"] >= 0.75, good
    assert good["blq"] >= 0.7, good
    wrong_fit = point_mass_fit(checks_sim, overrides={"beta": 0.2, "log_beta": np.log(0.2)})
    bad = vpc_coverage(vpc(wrong_fit, n_replicates=200, random_seed=7))
    assert bad["percentiles"] <= 0.5, bad


def test_vpc_coverage_is_calibrated_over_datasets():
    # 6 datasets x ~27 percentiles: the mean coverage of the 90% PIs is close to 0.9
    covers = []
    for seed in range(6):
        sim = checks_simulation(n_patients=40, random_seed=100 + seed)
        fit = point_mass_fit(sim, n_draws=20)
        covers.append(vpc_coverage(vpc(fit, n_replicates=150, random_seed=seed))["percentiles"])
    assert 0.8 <= np.mean(covers) <= 0.98, covers


def test_pcvpc_equals_vpc_when_pred_is_constant_within_bins(checks_fit):
    # no covariates and nominal times: PRED is the same for every sample of a bin
    plain = vpc(checks_fit, n_replicates=60, random_seed=4)
    pc = vpc(checks_fit, n_replicates=60, random_seed=4, prediction_corrected=True)
    cols = ["q5_observed", "q50_observed", "q95_observed", "q50_pi_low", "q95_pi_high"]
    pd.testing.assert_frame_equal(plain.table[cols], pc.table[cols])
    assert np.allclose(pc.observations["value"], pc.observations["DV"])


def test_pcvpc_normalises_by_the_bin_median_prediction(checks_fit):
    # one wide bin: PRED varies within it, values are scaled by median(PRED) / PRED
    result = vpc(checks_fit, bins=[0, 400], n_replicates=20, prediction_corrected=True)
    obs = result.observations
    log_pred = np.log(obs["PRED"].to_numpy())
    expected = obs["DV"].to_numpy() * np.exp(np.median(log_pred) - log_pred)
    assert np.allclose(obs["value"], expected)
    assert obs["PRED"].nunique() == 10


def test_stratified_vpc(checks_fit):
    result = vpc(checks_fit, by="arm", n_replicates=40)
    table = result.table
    assert result.by == ("ARM",)
    assert set(table["stratum"]) == {"ARM=a", "ARM=b"}
    assert (table["n_obs"] == 30).all() and table["n_obs"].sum() == 600
    assert set(result.observations["ARM"]) == {"a", "b"}
    with pytest.raises(DataError, match=r"column 'SEX'.*no covariate to stratify by.*ARM"):
        vpc(checks_fit, by="SEX")


def test_user_bins_and_samples_outside(checks_fit):
    result = vpc(checks_fit, bins=[0, 10, 30, 200], n_replicates=20)
    assert result.table["n_obs"].tolist() == [180, 240, 180]
    assert result.table["t_low"].tolist() == [0, 10, 30]
    with pytest.warns(UserWarning, match="180 sample"):
        vpc(checks_fit, bins=[2, 61], n_replicates=20)


def test_vpc_coverage_hand_table():
    table = pd.DataFrame(
        {
            "q5_inside": [True, True, False],
            "q5_informative": [True, False, True],
            "q50_inside": [True, True, True],
            "q50_informative": [True, True, True],
            "lloq": [10.0, 10.0, np.nan],
            "blq_inside": [True, False, True],
        }
    )
    cov = vpc_coverage(table)
    assert cov["q5"] == 0.5 and cov["q50"] == 1.0
    assert cov["percentiles"] == pytest.approx(4 / 5) and cov["n_percentiles"] == 5
    assert cov["blq"] == 0.5 and cov["n_blq"] == 2


def test_plot_vpc_and_blq_panels(checks_fit, tmp_path):
    from matplotlib.figure import Figure

    from bayes_cart.plots.checks import plot_blq_fraction, plot_vpc

    result = vpc(checks_fit, by="ARM", n_replicates=20)
    fig = plot_vpc(result)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # a VPC and a BLQ panel per stratum
    assert fig.axes[0].get_yscale() == "log"
    fig.savefig(tmp_path / "vpc.png")
    assert (tmp_path / "vpc.png").stat().st_size > 1000
    assert len(plot_vpc(result, blq_panel=False).axes) == 2
    assert len([a for a in plot_blq_fraction(result).axes if a.get_visible()]) == 2


def test_cli_vpc_writes_table_and_figure(checks_fit, tmp_path):
    from bayes_cart.cli import app
    from bayes_cart.inference.io import save_fit

    path = save_fit(checks_fit, tmp_path / "fit.nc")
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["vpc", str(path), "--out", str(out), "--by", "ARM", "--pc", "--replicates", "30"]
    result = runner.invoke(app, [*args, "--bins", "0,30,200"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "pcvpc_table.csv")
    assert len(table) == 4 and {"q50_observed", "blq_inside", "ARM"} <= set(table.columns)
    assert table["n_obs"].tolist() == [210, 90, 210, 90]
    assert (out / "pcvpc.png").stat().st_size > 1000
    assert (out / "pcvpc_observations.csv").exists()
    assert "observed percentiles inside their 90% PI" in result.output
    bad = runner.invoke(app, ["vpc", str(path), "--out", str(out), "--bins", "5,1"])
    assert bad.exit_code == 2 and "increasing" in bad.output
    missing = runner.invoke(app, ["vpc", str(tmp_path / "nope.nc"), "--out", str(out)])
    assert missing.exit_code == 2 and "not found" in missing.output
