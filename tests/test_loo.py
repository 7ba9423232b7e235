"""Patient-grouped PSIS-LOO: grouping arithmetic, comparison table, refusal of different data."""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from bayes_cart.analysis.loo import (
    IncomparableFitsError,
    bad_pareto_k,
    compare_fits,
    patient_log_likelihood,
    patient_loo,
)

S = 400


def _idata(loglik: np.ndarray, patient_index: np.ndarray, ids: list[str]) -> az.InferenceData:
    n_chain, n_draw, n_obs = loglik.shape
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw), "obs": np.arange(n_obs)}
    return az.InferenceData(
        posterior=xr.Dataset({"mu": (("chain", "draw"), np.zeros((n_chain, n_draw)))}),
        log_likelihood=xr.Dataset({"log_dv": (("chain", "draw", "obs"), loglik)}, coords=coords),
        constant_data=xr.Dataset(
            {"patient_index": ("obs", patient_index)},
            coords={"obs": np.arange(n_obs), "patient": ids},
        ),
    )


def test_grouping_sums_each_patients_samples():
    rng = np.random.default_rng(0)
    index = np.array([0, 0, 2, 1, 2, 2, 0, 1])  # interleaved on purpose
    ll = rng.normal(size=(2, 5, len(index)))
    grouped = patient_log_likelihood(_idata(ll, index, ["a", "b", "c"]))
    assert grouped.dims == ("chain", "draw", "patient")
    assert list(grouped["patient"].values) == ["a", "b", "c"]
    for i, pid in enumerate("abc"):
        manual = ll[:, :, index == i].sum(axis=-1)
        np.testing.assert_allclose(grouped.sel(patient=pid).values, manual, rtol=1e-12)


def _curve_fit(analysis_data, spec, factory, shift: float, seed: int, n_draws: int = S):
    """A fake fit whose pointwise log-likelihood is that of log DV ~ N(log IPRED + shift, 0.25).

    The posterior of the mean is the truth plus draw-to-draw noise; ``shift`` biases a model.
    """
    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.model.model_data import prepare_model_data

    data, sim = analysis_data
    md = prepare_model_data(data, spec)
    truth = sim.truth.set_index("ID").loc[list(md.patient_ids)]
    params = {
        p: truth[p].to_numpy()[md.patient_index]
        for p in ("C0", "beta", "T1", "alpha", "rM", "deltaM")
    }
    mu = get_kinetics("liu2021").solve(md.time, params)["log_total"]
    rng = np.random.default_rng(seed)
    draws = (
        mu[None, :]
        + shift
        + rng.normal(0, 0.05, (n_draws, 1))
        + rng.normal(0, 0.05, (n_draws, md.n_obs))
    )
    sigma = 0.25
    quant = stats.norm.logpdf(md.log_dv, draws, sigma)
    cens = stats.norm.logcdf(md.log_dv, draws, sigma)  # left-censored: P(y < LLOQ)
    ll = np.where(md.cens[None, :] == 1, cens, quant)
    coords = {"obs": md.obs_rows}
    groups = {
        "log_likelihood": xr.Dataset(
            {"log_dv": (("chain", "draw", "obs"), ll[None])}, coords=coords
        ),
        "constant_data": xr.Dataset(
            {
                "patient_index": ("obs", md.patient_index),
                "time": ("obs", md.time),
                "cens": ("obs", md.cens),
            },
            coords={**coords, "patient": list(md.patient_ids)},
        ),
        "observed_data": xr.Dataset({"log_dv": ("obs", md.log_dv)}, coords=coords),
    }
    return factory(data, spec, {"C0": 20.0, "sigma": sigma}, n_draws=n_draws, extra_groups=groups)


@pytest.fixture(scope="module")
def good_and_biased(analysis_data, analysis_spec, fake_fit_factory):
    good = _curve_fit(analysis_data, analysis_spec, fake_fit_factory, 0.0, 1)
    biased = _curve_fit(analysis_data, analysis_spec, fake_fit_factory, 0.4, 2)
    return good, biased


def test_patient_loo_has_one_point_per_patient(good_and_biased, analysis_data):
    good, _ = good_and_biased
    elpd = patient_loo(good)
    n = analysis_data[0].n_patients
    assert elpd.n_data_points == n
    assert elpd.pareto_k.dims == ("patient",) and elpd.loo_i.sizes["patient"] == n
    # the patient elpd sums to the total
    assert float(elpd.loo_i.sum()) == pytest.approx(elpd.elpd_loo)
    assert bad_pareto_k(elpd, threshold=-np.inf).shape == (n, 2)
    assert bad_pareto_k(elpd, threshold=np.inf).empty


def test_the_model_closer_to_the_data_wins(good_and_biased):
    good, biased = good_and_biased
    table, bad = compare_fits([good, biased], names=["good", "biased"])
    assert list(table.index) == ["good", "biased"]
    assert list(table.columns[:7]) == [
        "rank",
        "elpd_loo",
        "se",
        "elpd_diff",
        "dse",
        "p_loo",
        "weight",
    ]
    assert table.loc["good", "elpd_diff"] == 0.0
    assert table.loc["biased", "elpd_diff"] > 4 * table.loc["biased", "dse"]
    assert table["weight"].sum() == pytest.approx(1.0)
    assert table.loc["good", "weight"] > 0.9
    assert (table["n_patients"] == 18).all()
    assert set(bad) == {"good", "biased"}
    assert table.loc["good", "n_bad_pareto_k"] == len(bad["good"])


def test_default_names_are_made_unique(good_and_biased):
    good, biased = good_and_biased
    table, _ = compare_fits([good, biased])
    assert set(table.index) == {"liu2021", "liu2021_2"}
    with pytest.raises(ValueError, match="2 names for 3 fits"):
        compare_fits([good, biased, good], names=["a", "b"])


def test_fits_of_different_data_are_refused(
    good_and_biased, analysis_data, analysis_spec, fake_fit_factory
):
    good, _ = good_and_biased
    data, sim = analysis_data
    frame = sim.data.copy()
    frame.loc[5, "DV"] = frame.loc[5, "DV"] * 2.0
    from bayes_cart.data.dataset import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other_data = load_dataset(frame)
    other = _curve_fit((other_data, sim), analysis_spec, fake_fit_factory, 0.0, 3)
    with pytest.raises(
        IncomparableFitsError, match=r"different datasets.*sample 6 \(patient P001\): DV"
    ):
        compare_fits([good, other], names=["a", "b"])
    fewer = data.subset(data.patient_ids[:10])
    small = _curve_fit((fewer, sim), analysis_spec, fake_fit_factory, 0.0, 4)
    with pytest.raises(IncomparableFitsError, match="vs .* samples"):
        compare_fits([good, small])


def test_a_fit_without_log_likelihood_is_refused(
    analysis_data, analysis_spec, fake_fit_factory, good_and_biased
):
    bare = fake_fit_factory(analysis_data[0], analysis_spec, {"C0": 20.0}, n_draws=10)
    with pytest.raises(IncomparableFitsError, match="no pointwise log-likelihood"):
        patient_loo(bare)


def test_loo_cli_prints_and_writes_the_table(good_and_biased, tmp_path):
    from typer.testing import CliRunner

    from bayes_cart.cli import app
    from bayes_cart.inference.io import save_fit

    good, biased = good_and_biased
    a = save_fit(good, tmp_path / "a" / "fit.nc")
    b = save_fit(biased, tmp_path / "b" / "fit.nc")
    out = tmp_path / "loo.csv"
    runner = CliRunner()
    result = runner.invoke(
        app, ["loo", str(a), str(b), "--names", "good,biased", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "elpd_loo" in result.output
    table = pd.read_csv(out, index_col=0)
    assert list(table.index) == ["good", "biased"]
    one = runner.invoke(app, ["loo", str(a)])
    assert one.exit_code == 2 and "at least two" in one.output
    names = runner.invoke(app, ["loo", str(a), str(b), "--names", "x"])
    assert names.exit_code == 2 and "--names has 1 names for 2 fits" in names.output


def _no_memory_spec(spec):
    from bayes_cart.model.spec import spec_from_dict

    raw = json.loads(spec.text)
    raw["name"] = "no_memory"
    raw["parameters"]["rM"] = {"description": "no memory", "unit": "1/day", "fixed": 1e-9}
    raw["parameters"]["deltaM"] = {"description": "unused", "unit": "1/day", "fixed": 0.01}
    return spec_from_dict(raw, source="test: liu2021 without memory")


@pytest.mark.slow
def test_true_model_beats_a_model_without_memory_on_real_fits():
    """Two tiny real fits (~30 s): data with a memory plateau; the model with memory wins."""
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.inference.sampling import fit
    from bayes_cart.model.spec import load_spec, spec_from_dict
    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    pop = PopulationParameters(
        typical={"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.2, "rM": 0.01, "deltaM": 0.01},
        omega={"C0": 0.4},
        sigma=0.2,
    )
    times = [1, 4, 7, 10, 14, 21, 28, 42, 60, 90, 120, 180]
    sim = simulate_patients(make_design(8, times), pop, lloq=5.0, random_seed=3)
    data = load_dataset(sim.data)
    raw = json.loads(load_spec("liu2021").text)
    raw["iiv"]["blocks"] = []
    for p in ("beta", "T1", "alpha", "rM", "deltaM"):
        raw["parameters"][p]["iiv"] = None
    raw["sampling"] = {"parameterisation": "c0"}  # only C0 has IIV: nothing else to centre
    true = spec_from_dict(dict(raw, name="memory"), source="test: liu2021, IIV on C0")
    wrong = _no_memory_spec(true)
    fits = [
        fit(
            data,
            s,
            sampler="nutpie-jax",
            chains=2,
            tune=200,
            draws=200,
            random_seed=1,
            prior_draws=0,
        )
        for s in (true, wrong)
    ]
    table, _ = compare_fits(fits)
    assert table.index[0] == "memory", table
    diff = table.loc["no_memory", "elpd_diff"]
    assert diff > 4 * table.loc["no_memory", "dse"], table
