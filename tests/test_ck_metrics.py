"""CK metrics with uncertainty: equal to kinetics.metrics of the draws; NCA reconciliation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_cart.analysis.ck_metrics import (
    as_liu,
    individual_metric_draws,
    individual_metrics,
    interval_columns,
    reconcile_nca,
    summarise_draws,
    summarise_reconciliation,
    typical_metric_draws,
    typical_metrics,
)
from bayes_cart.data.lloq import patient_lloq
from bayes_cart.kinetics import derived_metrics, liu_to_stein, stein_to_liu, time_below

LIU = ("C0", "beta", "T1", "alpha", "rM", "deltaM")
TYPICAL = {"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01}


def _typical_posterior(design) -> dict:
    cr = [0.3 if n == "RESPONSE[CR/PR]" else 0.0 for n in design.effect_names("beta")]
    return {
        **TYPICAL,
        "b_beta": cr,
        "b_alpha": [0.0] * len(design.effect_names("alpha")),
        "u_trial_beta": [0.0, 0.0, 0.0],
        "omega_trial_beta": 0.1,
    }


@pytest.fixture(scope="module")
def truth_fit(analysis_data, analysis_spec, fake_fit_factory):
    """Individual parameters = the simulation truth in every draw (a point-mass posterior)."""
    from bayes_cart.model.model_data import prepare_model_data

    data, sim = analysis_data
    truth = sim.truth.set_index("ID").loc[list(data.patient_ids)]
    post = _typical_posterior(prepare_model_data(data, analysis_spec).design)
    for p in LIU:
        post[f"{p}_i"] = truth[p].to_numpy()
    post["k_i"] = np.zeros(len(truth))
    post["T0_i"] = np.zeros(len(truth))
    return fake_fit_factory(data, analysis_spec, post, n_draws=20), truth


def test_individual_metrics_equal_kinetics_metrics_of_the_truth(truth_fit):
    fit, truth = truth_fit
    lloq = patient_lloq(fit.dataset, "TRIAL")
    table = individual_metrics(fit, memory_fraction_at=(90.0, 180.0))
    expected = derived_metrics(
        {p: truth[p].to_numpy() for p in LIU},
        lloq=lloq.to_numpy(),
        memory_fraction_at=(90.0, 180.0),
    )
    expected = expected.rename(columns={"time_below_lloq": "persistence"})
    expected.index = truth.index
    for metric in expected.columns:
        got = table[table["metric"] == metric].set_index("patient")
        np.testing.assert_allclose(got["q50"], expected[metric], rtol=1e-12, err_msg=metric)
        np.testing.assert_allclose(got["q5"], got["q95"], rtol=1e-12)  # point mass
    assert set(table.columns) == {"patient", "metric", "q50", "q5", "q95", "mean"}


def test_metric_draws_are_computed_draw_by_draw(analysis_data, analysis_spec, fake_fit_factory):
    from bayes_cart.model.model_data import prepare_model_data

    data, sim = analysis_data
    n, s = data.n_patients, 30
    rng = np.random.default_rng(5)
    post = _typical_posterior(prepare_model_data(data, analysis_spec).design)
    draws = {p: TYPICAL[p] * np.exp(rng.normal(0, 0.3, (s, n))) for p in LIU}
    post.update({f"{p}_i": v for p, v in draws.items()})
    post.update(k_i=np.zeros(n), T0_i=np.zeros(n))
    fit = fake_fit_factory(data, analysis_spec, post, n_draws=s)
    ds = individual_metric_draws(fit, lloq=10.0, memory_fraction_at=(90.0,))
    assert dict(ds.sizes) == {"sample": s, "patient": n}
    flat = derived_metrics(
        {p: v.ravel() for p, v in draws.items()}, lloq=10.0, memory_fraction_at=(90.0,)
    )
    for metric, column in [
        ("Cmax", "Cmax"),
        ("AUC_0_28", "AUC_0_28"),
        ("persistence", "time_below_lloq"),
        ("memory_fraction_90", "memory_fraction_90"),
        ("terminal_half_life", "terminal_half_life"),
    ]:
        np.testing.assert_allclose(ds[metric].values.ravel(), flat[column], rtol=1e-12)
    summary = summarise_draws(ds[["Cmax"]], ci=0.8)
    assert {"q10", "q90"} <= set(summary.columns)
    assert summary["q50"].to_numpy() == pytest.approx(np.median(ds["Cmax"].values, axis=0))
    sub = individual_metric_draws(fit, lloq=None, n_draws=10, random_seed=1)
    assert sub.sizes["sample"] == 10 and "persistence" not in sub


def test_patient_lloq_own_then_trial_then_overall(write_csv):
    from bayes_cart.data.dataset import load_dataset

    path = write_csv(
        "ID,TIME,DV,CENS,TRIAL\n"
        "a,1,50,0,X\na,60,20,1,X\n"  # own LLOQ 20
        "b,1,70,0,X\nb,30,40,0,X\n"  # no BLQ: trial X median = 20
        "c,1,80,0,Y\nc,90,5,1,Y\n"  # own 5
        "d,1,90,0,Z\n"  # trial Z has no LLOQ: overall median of known (20, 5) = 12.5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(path)
    lloq = patient_lloq(data, "TRIAL")
    assert lloq.to_dict() == {"a": 20.0, "b": 20.0, "c": 5.0, "d": 12.5}
    assert patient_lloq(data).to_dict()["b"] == 12.5


def test_persistence_uses_each_patients_lloq(truth_fit):
    fit, truth = truth_fit
    ds = individual_metric_draws(fit, lloq={"P001": 1.0, "P002": 100.0})
    first = {p: truth.loc["P001", p] for p in LIU}
    assert ds["persistence"].sel(patient="P001").values[0] == pytest.approx(time_below(first, 1.0))
    assert np.isnan(ds["persistence"].sel(patient="P003").values).all()  # no LLOQ given
    low = ds["persistence"].sel(patient="P002").values[0]
    second = {p: truth.loc["P002", p] for p in LIU}
    assert low == pytest.approx(time_below(second, 100.0))


def test_typical_metrics_per_group(truth_fit):
    fit, _ = truth_fit
    ds = typical_metric_draws(fit, "RESPONSE", lloq=5.0)
    assert list(ds["group"].values) == ["PD/NR", "CR/PR", "unknown"]
    expected = derived_metrics(
        {**TYPICAL, "beta": TYPICAL["beta"] * np.exp([0.0, 0.3, 0.0])}, lloq=5.0
    )
    np.testing.assert_allclose(ds["Cmax"].values[0], expected["Cmax"], rtol=1e-4)
    np.testing.assert_allclose(ds["persistence"].values[0], expected["time_below_lloq"], rtol=1e-4)
    table = typical_metrics(fit, "RESPONSE", lloq=None)
    assert "persistence" not in set(table["metric"])
    assert set(table["group"]) == {"PD/NR", "CR/PR", "unknown"}
    overall = typical_metrics(fit)
    assert set(overall["group"]) == {"all"}


def test_reconciliation_on_rich_noise_free_data_gives_ratios_near_one(fake_fit_factory):
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.model.spec import load_spec
    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    pop = PopulationParameters(
        typical=TYPICAL, omega={"C0": 0.5, "beta": 0.2, "T1": 0.2, "alpha": 0.3}, sigma=0.0
    )
    times = np.arange(0.0, 40.0, 0.25)
    design = make_design(6, times, covariates=pd.DataFrame({"ARM": list("xxxyyy")}))
    sim = simulate_patients(design, pop, random_seed=3)
    data = load_dataset(sim.data)
    truth = sim.truth.set_index("ID").loc[list(data.patient_ids)]
    post = {**TYPICAL}
    for p in LIU:
        post[f"{p}_i"] = truth[p].to_numpy()
    post.update(k_i=np.zeros(6), T0_i=np.zeros(6))
    fit = fake_fit_factory(data, load_spec("liu2021"), post, n_draws=5)
    table = reconcile_nca(fit)
    assert set(table["metric"]) == {"Cmax", "Tmax", "AUC_0_28"}
    assert len(table) == 18 and table["complete"].all()
    np.testing.assert_allclose(table["ratio"], 1.0, atol=0.03)
    assert {"model_q5", "model_q95", "ARM"} <= set(table.columns)
    summary = summarise_reconciliation(table, by="ARM")
    assert summary["n"].tolist() == [3, 3]
    assert summary["Cmax_ratio_median"].to_numpy() == pytest.approx(1.0, abs=0.03)
    x = table[(table["ARM"] == "x") & (table["metric"] == "AUC_0_28")]
    assert summary.loc[0, "AUC_0_28_nca_median"] == pytest.approx(x["nca"].median())


def test_reconciliation_flags_incomplete_auc(truth_fit):
    fit, _ = truth_fit
    table = reconcile_nca(fit, auc_window=(0.0, 500.0))  # beyond the last sample (180 d)
    auc = table[table["metric"] == "AUC_0_500"]
    assert not auc["complete"].any()
    summary = summarise_reconciliation(table)
    assert np.isnan(summary.loc[0, "AUC_0_500_ratio_median"])  # incomplete AUCs not compared
    assert summary.loc[0, "n"] == fit.dataset.n_patients


def test_stein_parameters_are_mapped_to_liu():
    liu = {
        "C0": np.array([2.0, 5.0]),
        "beta": np.array([0.5, 0.3]),
        "T1": np.array([10.0, 12.0]),
        "alpha": np.array([0.1, 0.2]),
        "rM": np.array([0.01, 0.002]),
        "deltaM": np.array([0.002, 0.01]),
    }
    stein = liu_to_stein(liu)
    stein["alpha"] = np.append(stein["alpha"][:1], [stein["beta"][1] / 2])  # 2nd has no Liu twin
    mapped = as_liu("stein2019", stein)
    first = stein_to_liu({k: v[:1] for k, v in stein.items()})
    for p in LIU:
        assert mapped[p][0] == pytest.approx(float(first[p][0]))
        assert np.isnan(mapped[p][1])
    with pytest.raises(ValueError, match="liu2021 or stein2019"):
        as_liu("other", {})


def test_interval_column_names():
    assert interval_columns(0.9) == ("q5", "q95")
    assert interval_columns(0.5) == ("q25", "q75")
    with pytest.raises(ValueError, match="ci"):
        interval_columns(1.0)
