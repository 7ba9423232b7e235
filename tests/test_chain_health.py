"""Stuck-chain detection, restarts, gradients per effective sample and data-informed starts."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm
import pytest

from bayes_cart.inference import sampling
from bayes_cart.inference.diagnostics import (
    add_chains,
    check_fit,
    gradients_per_ess,
    needs_more_draws,
    replace_chains,
    stuck_chains,
)
from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.initial_estimates import read_profiles
from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients


def _idata(logp_means, step_sizes, seed=0, draws=400, lp_sd=20.0, n_steps=31):
    rng = np.random.default_rng(seed)
    chains = len(logp_means)
    logp = np.stack([rng.normal(m, lp_sd, draws) for m in logp_means])
    step = np.repeat(np.asarray(step_sizes, float)[:, None], draws, axis=1)
    return az.from_dict(
        posterior={"beta": rng.normal(0.0, 1.0, (chains, draws))},
        sample_stats={
            "logp": logp,
            "step_size": step,
            "n_steps": np.full((chains, draws), n_steps),
            "diverging": np.zeros((chains, draws), bool),
        },
    )


def test_healthy_chains_are_not_flagged():
    # means differ by Monte Carlo error only; step sizes within a factor of 2
    for seed in range(5):
        idata = _idata([-3000.0, -3002.5, -2999.0, -3001.0], [0.05, 0.04, 0.055, 0.03], seed)
        assert stuck_chains(idata) == []


def test_chain_far_below_in_log_density_is_flagged():
    # the "residual error explains everything" chain: -3,813 against -2,990
    idata = _idata([-2990.0, -3813.0, -2987.0, -2988.0], [0.05, 0.05, 0.055, 0.053])
    (stuck,) = stuck_chains(idata)
    assert stuck["chain"] == 1 and "mean log density" in stuck["reason"]
    diag = check_fit(idata, warn=False)
    assert not diag.passed and diag.stuck_chains[0]["chain"] == 1
    assert any("chain 1 is stuck" in a for a in diag.advice)


def test_chain_with_collapsed_step_size_is_flagged():
    idata = _idata([-2990.0, -2991.0, -2989.0, -2990.0], [0.05, 4.5e-6, 0.055, 0.053])
    (stuck,) = stuck_chains(idata)
    assert stuck["chain"] == 1 and "step size" in stuck["reason"]


def test_gradients_per_ess_counts_every_leapfrog_step():
    idata = _idata([-10.0] * 4, [0.5] * 4, n_steps=7)
    ess = float(az.ess(idata, var_names=["beta"])["beta"])
    assert gradients_per_ess(idata, ess) == pytest.approx(4 * 400 * 7 / ess)
    diag = check_fit(idata, warn=False)
    assert diag.gradients_per_ess == pytest.approx(4 * 400 * 7 / diag.min_ess_bulk)
    assert 2 < diag.gradients_per_ess < 20  # independent draws: ESS close to 1600


def test_replace_chains_keeps_labels_and_other_chains():
    old = _idata([-1.0, -2.0, -3.0], [0.1, 0.1, 0.1], seed=1)
    new = _idata([-9.0], [0.2], seed=2)
    out = replace_chains(old, [1], new)
    assert list(out.posterior["chain"].values) == [0, 1, 2]
    np.testing.assert_array_equal(out.posterior["beta"][0], old.posterior["beta"][0])
    np.testing.assert_array_equal(out.posterior["beta"][1], new.posterior["beta"][0])
    np.testing.assert_array_equal(out.sample_stats["logp"][1], new.sample_stats["logp"][0])


def _ar1_idata(phi, seed=0, chains=4, draws=400, diverging=0):
    """Healthy chains (same log density, same step size) with AR(1) draws: ESS set by phi."""
    idata = _idata([-100.0] * chains, [0.1] * chains, seed=seed, draws=draws)
    rng = np.random.default_rng(seed + 1)
    x = np.zeros((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=chains)
    idata.posterior["beta"] = (("chain", "draw"), x)
    div = np.zeros((chains, draws), bool)
    div[0, :diverging] = True
    idata.sample_stats["diverging"] = (("chain", "draw"), div)
    return idata


def test_slow_but_healthy_chains_ask_for_as_many_batches_as_the_ess_needs():
    # ESS ~ 1600 (1 - phi) / (1 + phi): about 230 at phi = 0.75, 1 more batch reaches 400
    slow = _ar1_idata(0.75)
    ess = float(az.ess(slow)["beta"])
    assert 134 < ess < 400
    assert needs_more_draws(slow) == int(np.ceil(400 / ess)) - 1
    # independent draws pass; far too slow (ESS ~ 40) is geometry, not run length
    assert needs_more_draws(_ar1_idata(0.0)) == 0
    assert needs_more_draws(_ar1_idata(0.95)) == 0
    # a divergence means bias: never extended
    assert needs_more_draws(_ar1_idata(0.75, diverging=1)) == 0


def test_add_chains_appends_relabelled_chains():
    old, new = _ar1_idata(0.5, seed=1), _ar1_idata(0.5, seed=2, chains=2)
    out = add_chains(old, new)
    assert list(out.posterior["chain"].values) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(out.posterior["beta"][4], new.posterior["beta"][0])
    np.testing.assert_array_equal(out.sample_stats["logp"][:4], old.sample_stats["logp"])


def test_slow_fit_is_extended_with_new_chains_and_reported(monkeypatch):
    """sample_posterior adds the batches needs_more_draws asks for, and says so."""
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    # asks for one more batch as long as there are fewer than 4 chains
    monkeypatch.setattr(
        sampling,
        "needs_more_draws",
        lambda idata, max_factor: int(idata.posterior.sizes["chain"] < 4),
    )
    idata, timings = sampling.sample_posterior(model, chains=2, tune=50, draws=30)
    assert timings["extended_chains"] == 2
    assert idata.posterior.sizes["chain"] == 4
    _, timings = sampling.sample_posterior(model, chains=2, tune=50, draws=30, max_extensions=0)
    assert timings["extended_chains"] == 0


def test_divergent_run_is_sampled_again_with_smaller_steps(monkeypatch):
    """A run with divergences is discarded and every chain sampled again at target_accept
    0.95; the divergences of both runs are reported, and retry_target_accept=None keeps it."""
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    calls = []
    real = sampling._divergences

    def five_the_first_time(idata):
        calls.append(1)
        return 5 if len(calls) == 1 else real(idata)

    monkeypatch.setattr(sampling, "_divergences", five_the_first_time)
    kept, timings = sampling.sample_posterior(model, chains=2, tune=50, draws=30, max_extensions=0)
    assert timings["retried"] == {"divergences": 5, "target_accept": 0.95, "divergences_after": 0}
    calls.clear()
    first, timings = sampling.sample_posterior(
        model, chains=2, tune=50, draws=30, max_extensions=0, retry_target_accept=None
    )
    assert timings["retried"] == {}
    assert not np.allclose(kept.posterior["x"], first.posterior["x"])  # a new run was kept


def test_stuck_chain_is_sampled_again_and_reported(monkeypatch):
    """A chain flagged stuck is resampled with a new seed, the others kept, and reported."""
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=3)
    calls = []
    real = sampling.stuck_chains

    def flag_chain_one_once(idata):
        calls.append(1)
        if len(calls) == 1:
            return [{"chain": 1, "reason": "test", "mean_logp": -1e6}]
        return real(idata)

    monkeypatch.setattr(sampling, "stuck_chains", flag_chain_one_once)
    first, _ = sampling.sample_posterior(
        model, chains=2, tune=50, draws=30, max_restarts=0, max_extensions=0
    )
    idata, timings = sampling.sample_posterior(model, chains=2, tune=50, draws=30, max_extensions=0)
    assert [r["chain"] for r in timings["restarted_chains"]] == [1]
    # chain 0 is the original draw sequence, chain 1 a new one
    np.testing.assert_array_equal(idata.posterior["x"][0], first.posterior["x"][0])
    assert not np.allclose(idata.posterior["x"][1], first.posterior["x"][1])


def test_a_chain_started_far_away_is_detected():
    """A real sampler run: one chain started 1e3 SDs away with no warm-up never gets back."""
    with pm.Model():
        pm.Normal("x", 0.0, 1.0, shape=50)
        step = pm.HamiltonianMC(path_length=0.5, step_scale=0.01, adapt_step_size=False)
        idata = pm.sample(
            draws=100,
            tune=0,
            chains=2,
            cores=1,
            initvals=[{"x": np.zeros(50)}, {"x": np.full(50, 1e3)}],
            init="adapt_diag",
            step=step,
            random_seed=3,
            progressbar=False,
            compute_convergence_checks=False,
        )
    flagged = [s["chain"] for s in stuck_chains(idata)]
    assert flagged == [1]


@pytest.mark.parametrize("kinetics", ["liu2021", "stein2019"])
def test_initial_estimates_land_near_the_truth(kinetics):
    """Estimates read off simulated profiles: within a factor of 2 of the true typical values
    for the well-sampled parameters (median over patients), and Stein's slow phase slower."""
    if kinetics == "liu2021":
        typical = {"C0": 50, "beta": 0.4, "T1": 12, "alpha": 0.12, "rM": 0.0015, "deltaM": 0.004}
        check = ("beta", "T1", "alpha", "C0")
    else:
        typical = {
            "Cmax": 24000,
            "Tmax": 9.3,
            "foldx": 3900,
            "alpha": 0.16,
            "beta": 0.0032,
            "FB": 0.0079,
        }
        check = ("Cmax", "Tmax", "alpha", "beta")
    omega = dict.fromkeys(typical, 0.3)
    pop = PopulationParameters(typical=typical, omega=omega, sigma=0.3, kinetics=kinetics)
    days = [1, 3, 5, 7, 9, 11, 14, 17, 21, 28, 42, 60, 90, 180, 270, 365]
    sim = simulate_patients(make_design(40, days), pop, lloq=1.0, random_seed=7)
    d = sim.data
    ids = {pid: i for i, pid in enumerate(dict.fromkeys(d["ID"]))}
    prof = read_profiles(
        d["TIME"].to_numpy(float),
        np.log(d["DV"].to_numpy(float)),
        d["CENS"].to_numpy(int),
        d["ID"].map(ids).to_numpy(),
        len(ids),
    )
    est = get_kinetics(kinetics).initial_estimates(prof)
    for name in check:
        ratio = np.nanmedian(est[name]) / typical[name]
        assert 0.5 < ratio < 2.0, (name, ratio)
    if kinetics == "stein2019":
        ok = np.isfinite(est["beta"]) & np.isfinite(est["alpha"])
        assert ok.sum() > 20 and np.all(est["beta"][ok] < est["alpha"][ok])


def _patient_idata(shift_chain, shift, lp_gap, seed=0, draws=1000, patients=50):
    """4 chains of a per-patient Tmax_i (log-normal posterior per patient); chain
    ``shift_chain`` has patient 7's log Tmax moved by ``shift`` posterior SDs and a mean log
    density ``lp_gap`` lower (within-chain SD 30, as with ~1,200 parameters)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(2.5, 0.5, patients)
    log_t = centre + 0.2 * rng.standard_normal((4, draws, patients))
    lp = rng.normal(-3700.0, 30.0, (4, draws))
    if shift_chain is not None:
        log_t[shift_chain, :, 7] += shift * 0.2 * np.sqrt(2.0)
        lp[shift_chain] -= lp_gap
    ids = [f"P{i:03d}" for i in range(patients)]
    return az.from_dict(
        posterior={"Tmax_i": np.exp(log_t)},
        sample_stats={"logp": lp, "step_size": np.full((4, draws), 0.05)},
        coords={"patient": ids},
        dims={"Tmax_i": ["patient"]},
    )


def test_a_chain_in_a_local_mode_of_one_patient_is_detected_and_named():
    """A chain 20 log-density units below the others (invisible next to a within-chain SD of
    30) whose patient P007 sits 5 SDs from the other chains is flagged, naming the patient;
    healthy chains, a shift without a lower log density, or a small shift are not."""
    stuck = stuck_chains(_patient_idata(2, shift=5.0, lp_gap=20.0))
    assert [s["chain"] for s in stuck] == [2]
    assert "patient P007" in stuck[0]["reason"] and "Tmax_i" in stuck[0]["reason"]
    assert stuck_chains(_patient_idata(None, 0.0, 0.0)) == []
    assert stuck_chains(_patient_idata(2, shift=5.0, lp_gap=0.0)) == []  # an equal mode
    assert stuck_chains(_patient_idata(2, shift=1.0, lp_gap=20.0)) == []  # same mode
    for seed in range(5):  # no false alarm on healthy chains with an unlucky log density
        assert stuck_chains(_patient_idata(1, shift=0.0, lp_gap=15.0, seed=seed)) == []


def test_a_stuck_chain_in_an_added_batch_is_sampled_again(monkeypatch):
    """Chains added for a slow fit are checked like the first ones: a stuck chain among
    them (flagged once) is resampled, reported, and the first chains are kept."""
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    monkeypatch.setattr(
        sampling,
        "needs_more_draws",
        lambda idata, max_factor: int(idata.posterior.sizes["chain"] < 4),
    )
    calls = []
    real = sampling.stuck_chains

    def flag_chain_three_once(idata):
        if idata.posterior.sizes["chain"] == 4 and not calls:
            calls.append(1)
            return [{"chain": 3, "reason": "test", "mean_logp": -1e6}]
        return real(idata)

    monkeypatch.setattr(sampling, "stuck_chains", flag_chain_three_once)
    idata, timings = sampling.sample_posterior(model, chains=2, tune=50, draws=30)
    assert idata.posterior.sizes["chain"] == 4 and timings["extended_chains"] == 2
    assert [r["chain"] for r in timings["restarted_chains"]] == [3]
    assert calls == [1]
