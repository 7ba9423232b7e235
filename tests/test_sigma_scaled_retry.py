"""The second try in sigma-scaled coordinates: a first run with E-BFMI below 0.3 is sampled again.

The trigger (:func:`residual_sd_funnel`) is tested on energies with known E-BFMI, the hook that
stops a run after its first pass on a tiny model, and :func:`bayes_cart.fit`'s rebuild on a small
simulated dataset with the trigger forced (the real trigger needs the sparse panel design and
full-length chains: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytest

import bayes_cart.inference.sampling as sampling
from bayes_cart.inference.diagnostics import (
    BFMI_MIN,
    better_with_bfmi,
    min_bfmi,
    residual_sd_funnel,
    sigma_scaled_retry_text,
)


def _with_energy(energy: np.ndarray) -> az.InferenceData:
    rng = np.random.default_rng(0)
    return az.from_dict(
        posterior={"mu": rng.normal(size=energy.shape)},
        sample_stats={"energy": energy, "diverging": np.zeros(energy.shape, dtype=bool)},
    )


def test_the_trigger_reads_the_energy():
    rng = np.random.default_rng(1)
    # independent energies: E-BFMI = var(diff) / var = 2
    healthy = _with_energy(rng.normal(size=(4, 1000)))
    assert min_bfmi(healthy) == pytest.approx(2.0, abs=0.3)
    assert not residual_sd_funnel(healthy)
    # one chain's energy a slow AR(1) walk (rho 0.98): E-BFMI = 2 (1 - rho) = 0.04
    energy = rng.normal(size=(4, 1000))
    walk = np.zeros(1000)
    for t in range(1, 1000):
        walk[t] = 0.98 * walk[t - 1] + rng.normal()
    energy[2] = walk
    funnel = _with_energy(energy)
    assert min_bfmi(funnel) < BFMI_MIN
    assert residual_sd_funnel(funnel)
    # no energy recorded: nothing to judge, no second try
    no_energy = az.from_dict(posterior={"mu": rng.normal(size=(2, 50))})
    assert np.isnan(min_bfmi(no_energy)) and not residual_sd_funnel(no_energy)


def _gate(**kw) -> dict:
    base = {"passed": True, "max_rhat": 1.0, "min_ess": 800.0, "divergences": 0, "stuck": 0}
    return {**base, "chains": 4, "min_bfmi": 0.8, **kw}


def test_the_e_bfmi_check_comes_first():
    funnel = _gate(min_bfmi=0.25, min_ess=1500.0)
    assert better_with_bfmi(funnel, _gate(min_ess=420.0))
    assert not better_with_bfmi(_gate(min_ess=420.0), funnel)
    # both pass (or both fail) the E-BFMI check: the gate's order decides
    assert better_with_bfmi(_gate(min_ess=500.0), _gate(min_ess=600.0))
    assert not better_with_bfmi(_gate(), _gate(passed=False, max_rhat=1.03))
    text = sigma_scaled_retry_text(
        {"plain": funnel, "sigma_scaled": _gate(min_ess=420.0), "kept": "sigma_scaled"}
    )
    assert "E-BFMI 0.25" in text and "E-BFMI 0.80" in text and "sigma-scaled run was kept" in text


def _gaussian() -> pm.Model:
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=3)
    return model


@pytest.mark.parametrize("give_up", [True, False])
def test_the_abandon_hook_stops_after_the_first_run(give_up):
    seen: list = []

    def abandon(idata):
        seen.append(int(idata.posterior.sizes["chain"]))
        return give_up

    idata, timings = sampling.sample_posterior(
        _gaussian(), chains=2, tune=100, draws=100, random_seed=3, abandon=abandon
    )
    assert seen == [2]  # judged once, on the first run's chains
    assert timings.get("abandoned", False) is give_up
    assert idata.posterior.sizes["draw"] == 100
    assert timings["sampling_seconds"] > 0


@pytest.mark.slow
def test_fit_builds_the_model_again_sigma_scaled(monkeypatch):
    """The first run is judged a funnel (forced): the fit samples the sigma-scaled model too."""
    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.errors import DataWarning
    from bayes_cart.inference.diagnostics import gate_numbers
    from bayes_cart.model.spec import load_spec
    from tests.conftest import checks_simulation

    sim = checks_simulation(n_patients=6, random_seed=77)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = load_dataset(sim.data)
    judged: list = []

    def forced(idata):
        judged.append(idata)
        return True

    monkeypatch.setattr(sampling, "residual_sd_funnel", forced)
    monkeypatch.setattr(sampling, "SIGMA_SCALED_RETRY_MIN_DRAWS", 0)
    monkeypatch.setattr(sampling, "RETRY_TARGET_ACCEPT", 0.0)  # no divergence retry: quicker
    spec = load_spec("liu2021")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = sampling.fit(
            data,
            spec,
            sampler="nutpie-jax",
            chains=2,
            tune=100,
            draws=60,
            random_seed=5,
            prior_draws=0,
            predictive=False,
            extend=False,
        )
    assert len(judged) == 1  # only the plain model's first run is judged
    record = f.diagnostics.sigma_scaled_retry
    assert set(record) >= {"plain", "sigma_scaled", "kept", "plain_seconds"}
    assert record["plain"]["chains"] == 2
    keep = better_with_bfmi(record["plain"], record["sigma_scaled"])
    assert record["kept"] == ("sigma_scaled" if keep else "plain")
    # the fit holds the run it says it kept, and the spec that run was sampled with
    scaled_names = [v for v in f.idata.posterior.data_vars if v.startswith("ss_")]
    assert f.spec.doc.sampling.sigma_scaled is keep
    assert bool(scaled_names) is keep
    assert gate_numbers(f.idata)["max_rhat"] == record[record["kept"]]["max_rhat"]
    assert not spec.doc.sampling.sigma_scaled  # the caller's spec is not changed
    assert f.timings["sampling_seconds"] > record["plain_seconds"] - f.timings["compile_seconds"]
