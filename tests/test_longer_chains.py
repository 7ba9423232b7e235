"""Chains too short for R-hat are sampled again longer, not joined by more chains."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm

import bayes_cart.inference.sampling as sampling
from bayes_cart.inference.diagnostics import ESS_PER_CHAIN, RHAT_MAX, needs_longer_chains


def _ar1(phi: float, chains: int, draws: int, seed: int, shift: float = 0.0) -> az.InferenceData:
    """Healthy AR(1) chains (the stationary law N(0, 1)); ``shift`` moves the last chain."""
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    noise = rng.normal(size=(chains, draws)) * np.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    x[-1] += shift
    return az.from_dict(
        posterior={"beta": x},
        sample_stats={
            "diverging": np.zeros((chains, draws), bool),
            "logp": rng.normal(-100.0, 3.0, (chains, draws)),
            "step_size": np.full((chains, draws), 0.1),
            "n_steps": np.full((chains, draws), 63),
        },
    )


def test_split_r_hat_of_slow_chains_falls_with_their_length_not_their_number():
    """The premise: with phi = 0.9 (about 53 effective draws per 1,000), 16 chains keep R-hat
    near 1 + 1/53 while 4 chains 3x as long bring it under 1.01 (means over 20 seeds)."""
    many = [float(az.rhat(_ar1(0.9, 16, 1000, s).posterior)["beta"]) for s in range(20)]
    longer = [float(az.rhat(_ar1(0.9, 4, 3000, s).posterior)["beta"]) for s in range(20)]
    assert np.mean(many) > 1.012
    assert np.mean(longer) < RHAT_MAX


def test_needs_longer_chains_asks_for_the_factor_the_ess_per_chain_says():
    slow = _ar1(0.9, 4, 1000, seed=8)
    summ = az.summary(slow, kind="diagnostics")
    assert float(summ["r_hat"].max()) > RHAT_MAX  # this seed fails on R-hat
    per_chain = float(summ["ess_bulk"].min()) / 4
    assert needs_longer_chains(slow) == int(np.ceil(ESS_PER_CHAIN / per_chain))
    assert 2 <= needs_longer_chains(slow) <= 4
    # far too slow for 4x: a geometry problem
    assert needs_longer_chains(_ar1(0.99, 4, 1000, seed=3)) == 0
    # R-hat fine: nothing to do
    assert needs_longer_chains(_ar1(0.0, 4, 1000, seed=3)) == 0
    # long enough chains that disagree (one shifted by 1 SD): more draws would not help
    assert needs_longer_chains(_ar1(0.0, 4, 1000, seed=3, shift=1.0)) == 0
    # a divergence: never lengthened
    div = _ar1(0.9, 4, 1000, seed=8)
    div.sample_stats["diverging"][0, 10] = True
    assert needs_longer_chains(div) == 0


def test_chains_too_short_for_r_hat_are_sampled_again_longer(monkeypatch):
    """sample_posterior reruns every chain with factor x the draws, adds no chains to the short
    run, and reports the factor and the discarded run's gate numbers."""
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    asked: list[int] = []

    def fake(idata, max_factor):
        asked.append(int(idata.posterior.sizes["draw"]))
        return 2 if idata.posterior.sizes["draw"] == 40 else 0

    monkeypatch.setattr(sampling, "needs_longer_chains", fake)
    # more chains would be asked for, and must not be added to the short run
    monkeypatch.setattr(sampling, "needs_more_draws", lambda idata, max_factor: 1)
    monkeypatch.setattr(sampling, "better_run", lambda first, second: True)
    idata, timings = sampling.sample_posterior(
        model, chains=2, tune=50, draws=40, random_seed=2, retry_target_accept=None
    )
    record = timings["lengthened"]
    assert record["factor"] == 2 and record["draws"] == 80
    assert record["before"]["chains"] == 2
    assert idata.posterior.sizes["draw"] == 80
    # the longer run may be extended with chains of its own length (the fake asks each time)
    assert idata.posterior.sizes["chain"] == 2 + timings["extended_chains"]
    assert timings["extended_chains"] > 0
    # max_extensions=0 turns both off
    monkeypatch.setattr(sampling, "needs_longer_chains", lambda idata, max_factor: 2)
    idata, timings = sampling.sample_posterior(
        model, chains=2, tune=50, draws=40, max_extensions=0, retry_target_accept=None
    )
    assert timings["lengthened"] == {} and idata.posterior.sizes["draw"] == 40
