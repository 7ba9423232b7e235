"""The diagnostics gate on synthetic posteriors with known defects."""

from __future__ import annotations

import arviz as az
import numpy as np

from bayes_cart.inference.diagnostics import check_fit


def _idata(n_trials: int, diverging: bool, seed: int = 0) -> az.InferenceData:
    rng = np.random.default_rng(seed)
    chains, draws = 4, 500
    div = np.zeros((chains, draws), dtype=bool)
    if diverging:
        div[0, :7] = True
    return az.from_dict(
        posterior={
            "beta": rng.lognormal(-1.0, 0.05, (chains, draws)),
            "omega_trial_beta": rng.lognormal(-2.0, 0.5, (chains, draws)),
            "u_trial_beta": rng.normal(0.0, 0.1, (chains, draws, n_trials)),
        },
        sample_stats={"diverging": div},
        coords={"trial": [f"T{i}" for i in range(n_trials)]},
        dims={"u_trial_beta": ["trial"]},
    )


def test_divergences_with_few_trials_point_at_the_trial_sd() -> None:
    diag = check_fit(_idata(n_trials=7, diverging=True), warn=False)
    assert diag.divergences == 7 and not diag.passed
    (hint,) = [a for a in diag.advice if "few groups" in a]
    assert "omega_trial_beta: 7 levels" in hint and "--trial TRIAL:fixed" in hint


def test_no_trial_hint_without_divergences_or_with_many_trials() -> None:
    for n_trials, diverging in ((7, False), (25, True)):
        diag = check_fit(_idata(n_trials=n_trials, diverging=diverging), warn=False)
        assert diag.divergences == (7 if diverging else 0)
        assert not [a for a in diag.advice if "few groups" in a]


def test_low_ess_of_a_group_sd_names_the_number_of_groups() -> None:
    idata = _idata(n_trials=7, diverging=False)
    # a sticky chain for the trial SD: strongly autocorrelated draws
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(0.0, 0.05, (4, 500)), axis=1)
    idata.posterior["omega_trial_beta"] = (("chain", "draw"), np.exp(-2.0 + walk))
    diag = check_fit(idata, warn=False)
    assert diag.worst["ess_bulk"] == "omega_trial_beta" and diag.min_ess_bulk < 400
    (hint,) = [a for a in diag.advice if "estimated from 7 groups" in a]
    assert "--trial TRIAL:fixed" in hint
