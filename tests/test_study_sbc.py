"""Simulation-based calibration: ranks, uniformity tests, prior draws, the spec, the files.

The study-level tests use mock methods (``register_method``) whose posteriors are built from
the replicate's true values: ``sbc_calibrated`` is the posterior of a normal measurement with
a flat prior, N(y, s) with y ~ N(theta, s), whose ranks are exactly uniform; ``sbc_narrow``
has the same centre and a third of the spread (overconfident), whose ranks pile up at both
ends. The prior draws themselves are real (PyMC forward sampling of the liu2021 model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_cart.analysis.sbc import (
    gamma_statistic,
    normalised_ranks,
    sbc_rank,
    thinned_draws,
    uniformity_test,
)
from bayes_cart.study import MethodOutput, register_method, run_study, study_from_dict
from bayes_cart.study.datasets import simulate_replicate
from bayes_cart.study.spec import StudySpecError
from bayes_cart.study.summary import write_summary
from bayes_cart.study.truth import truth_values

QUANTITIES = ["beta", "T1", "omega_beta", "sigma", "corr_beta_T1", "beta:RESPONSE[CR/PR]"]


def _mock_posterior(ctx, spread: float) -> MethodOutput:
    scenario = ctx.study.scenarios[ctx.scenario]
    population = ctx.simulation.population
    truth = truth_values(population, scenario.design)
    rng = np.random.default_rng(ctx.seed)
    draws, rows = {}, []
    for q in ctx.quantities:
        s = 0.1
        y = truth[q] + s * rng.normal()
        draws[q] = rng.normal(y, spread * s, size=(4, 250))
    from bayes_cart.study import summarise_draws

    rows = summarise_draws(draws)
    return MethodOutput(
        estimates=rows,
        diagnostics={"max_rhat": 1.0, "min_ess_bulk": 1000.0, "divergences": 0},
        draws=draws,
    )


register_method("sbc_calibrated", lambda ctx: _mock_posterior(ctx, 1.0), replace=True)
register_method("sbc_narrow", lambda ctx: _mock_posterior(ctx, 1.0 / 3.0), replace=True)


def sbc_study(replicates: int = 4, fixed: bool = True, **scenario) -> dict:
    """A from_prior scenario of liu2021 (beta ~ RESPONSE), beside a fixed-truth one."""
    prior = {
        "from_prior": True,
        "model": "liu2021",
        "covariates": {"beta": "RESPONSE"},
        "reference": {"RESPONSE": "PD/NR"},
        "sbc": {"draws": 50},
        **scenario,
    }
    return {
        "study": {"name": "sbc", "seed": 11, "replicates": replicates, "quantities": QUANTITIES},
        "defaults": {
            "population": {
                "typical": {
                    "C0": 50.0,
                    "beta": 0.4,
                    "T1": 12.0,
                    "alpha": 0.12,
                    "rM": 0.0015,
                    "deltaM": 0.004,
                },
                "omega": {"beta": 0.3, "T1": 0.2},
                "correlation": {"beta": {"T1": -0.3}},
                "sigma": 0.3,
            },
            "design": {
                "patients_per_trial": 8,
                "times": [1, 7, 14, 28, 90],
                "lloq": 1.0,
                "covariates": {"RESPONSE": {"levels": ["CR/PR", "PD/NR"]}},
            },
        },
        "scenarios": {"prior": prior, **({"fixed": {}} if fixed else {})},
        "methods": {
            "calibrated": {"kind": "sbc_calibrated"},
            "narrow": {"kind": "sbc_narrow"},
        },
    }


# ---------------------------------------------------------------------------- rank arithmetic


def test_rank_counts_the_kept_draws_below_the_truth():
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(4, 200))
    kept = thinned_draws(draws, 100)
    assert kept.size == 100
    for truth in (-1.0, 0.0, 0.7):
        assert sbc_rank(draws, truth, 100) == (int((kept < truth).sum()), 100)
    assert sbc_rank(draws, -50.0, 100) == (0, 100)
    assert sbc_rank(draws, 50.0, 100) == (100, 100)


def test_thinning_by_the_ess_keeps_nearly_independent_draws():
    rng = np.random.default_rng(4)
    k = 10  # every value repeated 10 times: ESS about N / 10
    sticky = np.repeat(rng.normal(size=(2, 40)), k, axis=1)
    kept = thinned_draws(sticky, 1000)
    assert 40 <= kept.size <= 160  # ~80 independent values, not 800 draws
    assert len(np.unique(kept)) >= 0.75 * kept.size  # mostly one draw per repeated value
    assert len(np.unique(sticky[:, ::1])) / sticky.size == 0.1  # against 1 in 10 unthinned
    assert sbc_rank(sticky, 0.0, 1000)[1] == kept.size  # L is what was kept


def test_normalised_ranks_discrete_and_mixed():
    u, z = normalised_ranks(np.array([0, 2, 9]), np.array([9, 9, 9]))
    np.testing.assert_allclose(u, [0.1, 0.3, 1.0])
    np.testing.assert_allclose(z, np.arange(1, 10) / 10)
    u, z = normalised_ranks(np.array([0, 4]), np.array([4, 9]), seed=1)
    assert z is None
    assert 0 <= u[0] < 1 / 5 and 4 / 10 <= u[1] < 5 / 10


def test_gamma_statistic_exact_value():
    # four ranks all at 0.01: the ECDF is 1 at z = 0.25, P(X >= 4 | n = 4, p = 0.25) = 0.25**4
    z = np.array([0.25, 0.5, 0.75])
    assert gamma_statistic(np.full(4, 0.01), z) == pytest.approx(2 * 0.25**4)


def test_uniform_ranks_pass_and_piled_ranks_fail():
    rng = np.random.default_rng(5)
    L = np.full(200, 49)
    uniform = uniformity_test(rng.integers(0, 50, 200), L, seed=1)
    assert uniform.gamma_p > 0.05 and uniform.chi2_p > 0.05
    ends = np.where(rng.uniform(size=200) < 0.5, rng.integers(0, 5, 200), rng.integers(45, 50, 200))
    narrow = uniformity_test(ends, L, seed=1)
    assert narrow.gamma_p < 0.001 and narrow.chi2_p < 0.001
    low = uniformity_test(rng.integers(0, 35, 200), L, seed=1)  # truth too often low: shifted
    assert low.gamma_p < 0.01
    mixed = uniformity_test(rng.integers(0, 50, 200), rng.choice([49, 99], 200), seed=1)
    assert mixed.n == 200 and np.isfinite(mixed.gamma_p)


def test_uniformity_test_holds_its_level():
    rng = np.random.default_rng(6)
    p = [
        uniformity_test(rng.integers(0, 20, 50), np.full(50, 19), simulations=500, seed=i).gamma_p
        for i in range(200)
    ]
    assert 0.01 <= np.mean(np.asarray(p) < 0.05) <= 0.11  # nominal 5% (MC error ~1.5%)


# ---------------------------------------------------------------------------- prior draws


def test_prior_draws_are_seeded_per_replicate():
    study = study_from_dict(sbc_study())
    again = study_from_dict(sbc_study())
    a = [simulate_replicate(study, "prior", r) for r in (0, 1)]
    b = simulate_replicate(again, "prior", 0)
    assert a[0].population == b.population
    pd.testing.assert_frame_equal(a[0].data, b.data)
    assert a[0].population.typical != a[1].population.typical
    other = study_from_dict({**sbc_study(), "study": {**sbc_study()["study"], "seed": 12}})
    assert simulate_replicate(other, "prior", 0).population.typical != a[0].population.typical
    pop = a[0].population
    assert set(pop.typical) == {"C0", "beta", "T1", "alpha", "rM", "deltaM"}
    assert set(pop.omega) == set(pop.typical)
    assert -1 < pop.correlation[("beta", "T1")] < 1
    assert set(pop.effects["beta"]["RESPONSE"]) == {"CR/PR"}  # PD/NR is the reference
    assert pop.fixed["k"] == 0 and pop.fixed["T0"] == 0


def test_prior_draws_follow_the_spec_priors():
    study = study_from_dict(sbc_study())
    pops = [simulate_replicate(study, "prior", r).population for r in range(40)]
    log_beta = np.log([p.typical["beta"] for p in pops])
    omega_beta = np.array([p.omega["beta"] for p in pops])
    # liu2021: beta ~ LogNormal(median 0.3, sigma 1), omega_beta ~ HalfNormal(0.5)
    assert abs(log_beta.mean() - np.log(0.3)) < 3 * 1.0 / np.sqrt(40)
    assert abs(omega_beta.mean() - 0.5 * np.sqrt(2 / np.pi)) < 3 * 0.5 * 0.6 / np.sqrt(40)


# ---------------------------------------------------------------------------- the spec


def _problems(raw: dict) -> str:
    with pytest.raises(StudySpecError) as err:
        study_from_dict(raw)
    return str(err.value)


def test_from_prior_with_population_is_refused_naming_the_key():
    msg = _problems(sbc_study(population={"sigma": 0.2}))
    assert "scenarios.prior.population: not allowed with from_prior = true" in msg


def test_from_prior_needs_a_model():
    raw = sbc_study()
    del raw["scenarios"]["prior"]["model"]
    assert "scenarios.prior.model: required with from_prior = true" in _problems(raw)


def test_prior_covariates_without_from_prior_are_refused():
    raw = sbc_study()
    raw["scenarios"]["fixed"] = {"covariates": {"beta": "RESPONSE"}}
    assert "scenarios.fixed.covariates: only with from_prior = true" in _problems(raw)


def test_from_prior_refuses_a_continuous_covariate_and_unknown_quantities():
    raw = sbc_study(covariates={"beta": "AGE"})
    raw["defaults"]["design"]["covariates"]["AGE"] = {
        "distribution": "normal",
        "mean": 60.0,
        "sd": 10.0,
    }
    assert "scenarios.prior.covariates.beta: 'AGE' is not a categorical" in _problems(raw)
    raw = sbc_study()
    raw["study"]["quantities"] = ["beta", "omega_bta"]
    msg = _problems(raw)
    assert "'omega_bta' has no true value in scenario(s) ['prior', 'fixed']" in msg
    assert "did you mean 'omega_beta'" in msg


def test_a_fixed_scenario_keeps_its_hash_keys():
    study = study_from_dict(sbc_study())
    assert study.scenarios["prior"].from_prior and not study.scenarios["fixed"].from_prior
    assert study.scenarios["prior"].population == {}  # defaults.population not merged in
    raw = sbc_study()
    raw["scenarios"]["fixed"] = {"from_prior": False}
    assert study_from_dict(raw).hash == study.hash  # unused SBC keys are not hashed


# ---------------------------------------------------------------------------- the study


def test_mock_methods_calibrated_passes_narrow_fails(tmp_path):
    study = study_from_dict(sbc_study(replicates=60, fixed=False))
    run_study(study, tmp_path, workers=0)
    fits, metrics = write_summary(tmp_path)
    sbc = pd.read_csv(tmp_path / "sbc.csv")
    assert set(sbc["method"]) == {"calibrated", "narrow"}
    assert set(sbc["scenario"]) == {"prior"}
    assert (sbc["n_fits"] == 60).all() and (sbc["sbc_draws"] == 50).all()
    good = sbc[sbc["method"] == "calibrated"]
    bad = sbc[sbc["method"] == "narrow"]
    assert (good["gamma_p"] > 0.005).all(), good[["quantity", "gamma_p"]]
    assert (bad["gamma_p"] < 0.001).all() and (bad["chi2_p"] < 0.001).all()
    saved = pd.read_parquet(tmp_path / "fits.parquet")
    assert saved["sbc_rank"].between(0, 50).all() and (saved["sbc_draws"] == 50).all()
    # the truth differs per replicate: one row per quantity, no single truth in metrics
    m = metrics[(metrics["scenario"] == "prior") & (metrics["fits"] == "all")]
    assert m["truth"].isna().all() and m["power"].isna().all()


def test_degenerate_datasets_are_counted_fitted_or_skipped(tmp_path):
    design = {"lloq": 1e300}  # every sample BLQ: all datasets degenerate
    raw = sbc_study(replicates=3)
    raw["scenarios"]["prior"]["design"] = design
    run_study(study_from_dict(raw), tmp_path / "fit", workers=0)
    write_summary(tmp_path / "fit")
    fitted = pd.read_csv(tmp_path / "fit" / "sbc.csv")
    assert (fitted["n_degenerate"] == 3).all() and (fitted["n_fits"] == 3).all()
    assert set(fitted["scenario"]) == {"prior"}
    saved = pd.read_parquet(tmp_path / "fit" / "fits.parquet")
    fixed = saved[saved["scenario"] == "fixed"]
    assert len(fixed) and fixed[["sbc_rank", "sbc_draws"]].isna().all().all()  # not SBC: NaN
    assert fixed["degenerate"].isna().all()
    raw["scenarios"]["prior"]["sbc"] = {"draws": 50, "degenerate": "skip"}
    run_study(study_from_dict(raw), tmp_path / "skip", workers=0)
    fits, _ = write_summary(tmp_path / "skip")
    skipped = fits[fits["scenario"] == "prior"]
    assert set(skipped["status"]) == {"degenerate"} and skipped["degenerate"].all()
    sbc = pd.read_csv(tmp_path / "skip" / "sbc.csv")
    assert len(sbc) == 2 * len(QUANTITIES)  # no rank, but every cell's failures are shown
    assert (sbc["n_fits"] == 0).all() and (sbc["n_failed"] == 3).all()
    assert (sbc["n_degenerate"] == 3).all() and sbc["gamma_p"].isna().all()


# ---------------------------------------------------------------------------- the figure


def test_ecdf_difference_plot_one_panel_per_quantity_with_bands():
    import matplotlib.pyplot as plt

    from bayes_cart.plots.sbc import plot_sbc_ecdf

    rng = np.random.default_rng(8)
    table = pd.DataFrame(
        {
            "quantity": ["beta"] * 60 + ["sigma"] * 60 + ["T1"] * 5,
            "sbc_rank": np.r_[rng.integers(0, 50, 60), rng.integers(0, 50, 60), [np.nan] * 5],
            "sbc_draws": np.r_[np.full(60, 49), rng.choice([39, 49], 60), [np.nan] * 5],
        }
    )
    before = plt.get_fignums()
    fig = plot_sbc_ecdf(table, title="mock")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [
        "beta (60 ranks, L = 49)",
        "sigma (60 ranks, L = 39-49)",
    ]  # T1 has no rank: no panel
    assert all(len(ax.collections) >= 1 for ax in shown)  # the simultaneous band
    assert plt.get_fignums() == before  # no pyplot figure left behind


# ---------------------------------------------------------------------------- real fits


@pytest.mark.slow
def test_real_sbc_fit_records_ranks(tmp_path):
    """One SBC replicate of liu2021 fitted with NUTS (8 patients, 2 chains x (100 + 100))."""
    raw = sbc_study(replicates=1, fixed=False, sbc={"draws": 20})
    raw["methods"] = {
        "bayes": {
            "kind": "bayes",
            "model": "liu2021",
            "covariates": {"beta": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            "chains": 2,
            "tune": 100,
            "draws": 100,
            "retry": False,
        }
    }
    study = study_from_dict(raw)
    run_study(study, tmp_path, workers=0)
    fits, _ = write_summary(tmp_path)
    assert set(fits["status"]) == {"ok"}
    assert set(fits["quantity"]) == set(QUANTITIES)
    assert fits["sbc_draws"].between(1, 20).all()  # thinned by the ESS of 200 draws
    assert (fits["sbc_rank"] >= 0).all() and (fits["sbc_rank"] <= fits["sbc_draws"]).all()
    truth = truth_values(
        simulate_replicate(study, "prior", 0).population, study.scenarios["prior"].design
    )
    assert fits.set_index("quantity")["truth"].to_dict() == {q: truth[q] for q in QUANTITIES}
    sbc = pd.read_csv(tmp_path / "sbc.csv")
    assert len(sbc) == len(QUANTITIES) and (sbc["n_fits"] == 1).all()
