"""The fit pipeline end to end on a tiny problem: fit, save, load, summary, CLI."""

import json

import numpy as np
import pytest

from bayes_cart.analysis.summary import COLUMNS, population_summary
from bayes_cart.errors import FitFileError
from bayes_cart.example import load_example
from bayes_cart.inference.io import load_fit, save_fit
from bayes_cart.inference.sampling import fit
from bayes_cart.model.spec import load_spec


@pytest.fixture(scope="module")
def tiny():
    ds = load_example()
    ids = [i for i in ds.patient_ids if i.startswith(("MM", "GBM"))][::3]
    return ds.subset(ids)


@pytest.fixture(scope="module")
def tiny_fit(tiny):
    spec = load_spec("liu2021").with_overrides(
        covariates={"beta": "TUMOR_TYPE"}, reference={"TUMOR_TYPE": "heme"}
    )
    return fit(
        tiny,
        spec,
        sampler="nutpie-jax",
        chains=2,
        tune=150,
        draws=100,
        random_seed=3,
        prior_draws=50,
    )


def test_fit_has_every_group_with_named_dims(tiny_fit, tiny):
    idata = tiny_fit.idata
    for group in (
        "posterior",
        "sample_stats",
        "prior",
        "prior_predictive",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "constant_data",
    ):
        assert group in idata.groups(), group
    post = idata.posterior
    assert post["beta_i"].dims == ("chain", "draw", "patient")
    assert list(post["patient"].values) == list(tiny.patient_ids)
    assert post["b_beta"].dims[-1] == "beta_effect"
    assert list(post["beta_effect"].values) == ["TUMOR_TYPE[solid]"]
    assert idata.log_likelihood["log_dv"].shape[-1] == tiny.n_observations
    assert idata.posterior_predictive["log_dv"].dims[-1] == "obs"
    np.testing.assert_allclose(idata.observed_data["log_dv"], np.log(tiny.observations["DV"]))


def test_random_seed_threads_through(tiny, tiny_fit):
    again = fit(
        tiny,
        tiny_fit.spec,
        sampler="nutpie-jax",
        chains=2,
        tune=150,
        draws=100,
        random_seed=3,
        prior_draws=50,
    )
    np.testing.assert_array_equal(again.idata.posterior["beta"], tiny_fit.idata.posterior["beta"])
    np.testing.assert_array_equal(
        again.idata.posterior_predictive["log_dv"], tiny_fit.idata.posterior_predictive["log_dv"]
    )


def test_summary_names_and_columns(tiny_fit):
    table = population_summary(tiny_fit.idata)
    assert list(table.columns) == COLUMNS
    names = set(table["parameter"])
    for expected in (
        "beta",
        "T1",
        "C0",
        "alpha",
        "rM",
        "deltaM",
        "omega_beta",
        "sigma",
        "corr_beta_T1",
        "beta:TUMOR_TYPE[solid]",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("z_", "eta_", "log_")) or n.endswith("_i") for n in names)
    row = table.set_index("parameter").loc["beta"]
    assert row["q5"] <= row["q50"] <= row["q95"]


def test_save_load_roundtrip_checks_identity(tiny_fit, tmp_path):
    path = save_fit(tiny_fit, tmp_path / "fit.nc")
    back = load_fit(path)
    assert back.spec.hash == tiny_fit.spec.hash
    assert back.dataset.n_observations == tiny_fit.dataset.n_observations
    assert back.model_data.n_patients == tiny_fit.model_data.n_patients
    np.testing.assert_allclose(back.idata.posterior["beta"], tiny_fit.idata.posterior["beta"])
    assert "z_C0" not in back.idata.posterior  # standard-normal helpers are not written
    assert back.diagnostics.max_rhat == pytest.approx(tiny_fit.diagnostics.max_rhat)


def test_load_refuses_tampered_or_foreign_files(tiny_fit, tmp_path):
    import arviz as az

    path = save_fit(tiny_fit, tmp_path / "fit.nc")
    idata = az.from_netcdf(path)
    raw = json.loads(idata.posterior.attrs["spec_json"])
    raw["parameters"]["beta"]["typical"]["median"] = 99.0
    idata.posterior.attrs["spec_json"] = json.dumps(raw, sort_keys=True)
    bad = tmp_path / "tampered.nc"
    idata.to_netcdf(str(bad), engine="h5netcdf")
    with pytest.raises(FitFileError, match="spec hash mismatch"):
        load_fit(bad)
    plain = tmp_path / "plain.nc"
    az.from_dict(posterior={"x": np.zeros((1, 5))}).to_netcdf(str(plain))
    with pytest.raises(FitFileError, match="not a bayes_cart fit"):
        load_fit(plain)
    with pytest.raises(FitFileError, match="no such file"):
        load_fit(tmp_path / "missing.nc")


@pytest.mark.slow  # a third real fit (linear solver, JAX): see the docstring
def test_cli_fit_writes_the_three_files(tiny, tmp_path):
    """`bayes-cart fit --solver linear` samples and writes fit.nc, summary.csv and
    diagnostics.json.

    Slow tier: the fast tier covers each piece without this fit: the CLI's output files
    (tests/test_fit_output.py, on a ready fit), ``resolve_sampler("auto", "linear")``
    (below) and a ``solver="linear"`` fit through every analysis (tests/test_examples.py).
    """
    from typer.testing import CliRunner

    from bayes_cart.cli import app

    data = tmp_path / "data.csv"
    tiny.to_frame().to_csv(data, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "fit",
            str(data),
            "--out",
            str(out),
            "--model",
            "liu2021",
            "--covariates",
            "beta ~ TUMOR_TYPE",
            "--reference",
            "TUMOR_TYPE=heme",
            "--chains",
            "2",
            "--tune",
            "100",
            "--draws",
            "50",
            "--solver",
            "linear",
        ],
    )
    assert result.exit_code == 0, result.output
    diag = json.loads((out / "diagnostics.json").read_text())
    # the matrix-exponential solver, sampled by default with nutpie's JAX backend
    assert diag["solver"] == "linear" and diag["sampler"] == "nutpie-jax"
    for key in (
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "divergences",
        "compile_seconds",
        "sampling_seconds",
        "n_patients",
        "n_observations",
        "n_censored",
    ):
        assert key in diag
    assert diag["n_patients"] == tiny.n_patients
    assert diag["n_censored"] == tiny.n_censored
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    assert "beta:TUMOR_TYPE[solid]" in set(summary["parameter"])
    assert (out / "fit.nc").stat().st_size > 0


def test_cli_fit_reports_bad_spec_and_data(tmp_path):
    from typer.testing import CliRunner

    from bayes_cart.cli import app

    bad = tmp_path / "bad.csv"
    bad.write_text("ID,TIME,DV\n1,-1,5\n")
    r = CliRunner().invoke(app, ["fit", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "negative TIME" in r.output
    r = CliRunner().invoke(
        app, ["fit", "example", "--covariates", "beta ~ NOPE", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and "NOPE" in r.output
    r = CliRunner().invoke(app, ["fit", "example", "--solver", "rk4", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown solver 'rk4'" in r.output


def test_auto_sampler_picks_numba_for_closed_form_and_jax_for_the_ode():
    from bayes_cart.inference.sampling import resolve_sampler

    assert resolve_sampler("auto") == "nutpie"
    assert resolve_sampler("auto", "ode") == "nutpie-jax"
    assert resolve_sampler("auto", "linear") == "nutpie-jax"
    assert resolve_sampler("pymc", "ode") == "pymc"
    with pytest.raises(ValueError, match="unknown sampler 'stan'"):
        resolve_sampler("stan")


def test_parallel_chains_hold_blas_to_one_thread():
    from threadpoolctl import threadpool_info

    from bayes_cart.inference.sampling import _one_blas_thread

    def blas_threads():
        return {
            i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        }

    before = blas_threads()
    with _one_blas_thread(2):
        inside = blas_threads()
    assert set(inside.values()) <= {1}
    assert blas_threads() == before  # restored afterwards
    with _one_blas_thread(1):  # a single chain keeps BLAS's own threads
        assert blas_threads() == before


@pytest.mark.slow  # a statistical comparison of two real fits
def test_default_sampler_numba_agrees_with_jax(tiny, tiny_fit):
    """The default backend (nutpie on the Numba graph, BLAS on one thread) samples the same
    posterior as the JAX backend used by the other tests.

    Slow tier: the fast tier samples with the default backend in tests/test_examples.py
    (simulation_estimation, responder_contrast) and tests/test_chain_health.py.
    """
    numba_fit = fit(
        tiny,
        tiny_fit.spec,
        chains=2,
        tune=150,
        draws=100,
        random_seed=4,
        prior_draws=0,
        predictive=False,
    )
    post_n, post_j = numba_fit.idata.posterior, tiny_fit.idata.posterior
    assert int(numba_fit.idata.sample_stats["diverging"].sum()) <= 2
    for name in ("beta", "T1", "alpha", "sigma"):
        a, b = np.log(post_n[name].values.ravel()), np.log(post_j[name].values.ravel())
        # medians within 4 combined posterior-SD / sqrt(ESS ~ 50) of each other
        tol = 4 * np.hypot(a.std(), b.std()) / np.sqrt(50)
        assert abs(np.median(a) - np.median(b)) < tol, name


@pytest.mark.parametrize("sampler", ["nutpie-jax", "pymc"])
def test_max_treedepth_caps_the_trajectories(sampler):
    """A correlation of 0.999 that no diagonal mass matrix absorbs needs long trajectories."""
    import pymc as pm

    from bayes_cart.inference.sampling import sample_posterior

    with pm.Model() as model:
        pm.MvNormal("x", mu=np.zeros(2), cov=np.array([[1.0, 0.999], [0.999, 1.0]]))

    def depth(max_treedepth):
        idata, _ = sample_posterior(
            model,
            sampler=sampler,
            chains=1,
            tune=200,
            draws=100,
            random_seed=1,
            max_treedepth=max_treedepth,
        )
        stats = idata.sample_stats
        if "depth" in stats:
            return int(stats["depth"].max())
        return int(stats["tree_depth"].max())

    assert depth(10) >= 4
    assert depth(2) <= 2


def test_fit_outcome_lines_report_every_second_try():
    """fit and run-example print the same outcome: verdict, restarts (with the reason),
    the divergence retry and extra chains; nothing when there were none."""
    from types import SimpleNamespace

    from rich.console import Console

    from bayes_cart.cli.common import print_fit_outcome

    def outcome(**d_kw):
        d = SimpleNamespace(
            passed=True,
            max_rhat=1.004,
            min_ess_bulk=757.0,
            min_ess_tail=801.0,
            divergences=0,
            gradients_per_ess=1347.4,
            restarted_chains=[],
            retried={},
            extended_chains=0,
            lengthened={},
            low_rank_retry={},
            advice=[],
        )
        for k, v in d_kw.items():
            setattr(d, k, v)
        console = Console(record=True, width=200)
        result = SimpleNamespace(
            diagnostics=d, timings={"compile_seconds": 16.6, "sampling_seconds": 836.6}
        )
        print_fit_outcome(console, result, chains=4, indent="  ")
        return console.export_text()

    plain = outcome()
    assert "compile 16.6 s, sampling 836.6 s; diagnostics PASSED: max R-hat 1.004" in plain
    assert "1347 gradients per effective sample" in plain
    assert "sampled again" not in plain and "more chains" not in plain
    text = outcome(
        restarted_chains=[{"chain": 2, "reason": "a local mode of patient [P1]"}],
        retried={"divergences": 2, "target_accept": 0.95, "divergences_after": 0},
        extended_chains=4,
    )
    assert "chain 2 was stuck (a local mode of patient [P1])" in text  # markup escaped
    assert "the first run had 2 divergences" in text and "target_accept 0.95" in text
    assert "4 more chains were sampled and kept" in text
    gate = {"max_rhat": 1.02, "min_ess": 200.0, "divergences": 0, "chains": 4}
    text = outcome(
        lengthened={"factor": 3, "draws": 3000, "before": gate},
        low_rank_retry={"diagonal": gate, "low_rank": gate, "kept": "diagonal"},
    )
    assert "sampled again with 3x the draws (3000 per chain)" in text
    assert "sampled again with a low-rank mass matrix" in text and "diagonal run was kept" in text
    assert "too slowly for R-hat" not in plain and "low-rank" not in plain
