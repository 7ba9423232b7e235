"""Replicate datasets of new patients on the fitted design (VPC, NPD, predictive checks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bayes_cart.data.lloq import LloqInput
from bayes_cart.predict.curves import predict_fit_observations
from bayes_cart.predict.draws import subset_draws
from bayes_cart.predict.observations import observation_table
from bayes_cart.predict.parameters import design_population_parameters
from bayes_cart.predict.residuals import draw_residuals

__all__ = ["simulate_observed_design"]


def simulate_observed_design(
    fit: Any,
    *,
    n_replicates: int = 200,
    lloq: LloqInput = None,
    group: str = "fitted",
    random_seed: int | np.random.Generator | None = 0,
) -> dict[str, np.ndarray]:
    """Simulate replicate datasets of new patients on the fitted design.

    Parameters
    ----------
    fit : Fit
        A fit.
    n_replicates : int
        Number of replicate datasets; each uses a different posterior draw (drawn with
        replacement only when there are fewer draws than replicates).
    lloq : float, str, mapping or Series, optional
        See :func:`bayes_cart.data.lloq.lloq_per_observation`.
    group : {"fitted", "new", "none"}
        Trial effect: the fitted one of each trial, a new trial per replicate, or none.
    random_seed : int or Generator
        Seed.

    Returns
    -------
    dict
        ``log_ipred`` (replicate, obs) noise-free log curves, ``log_dv`` (replicate, obs)
        with residual error (uncensored), ``blq`` (replicate, obs) bool, ``draw`` (replicate,)
        position of the posterior draw used.
    """
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    rng = np.random.default_rng(random_seed)
    sub, sel = subset_draws(fit, n_replicates, rng)
    params = design_population_parameters(sub, n_draws=None, iiv=True, group=group, random_seed=rng)
    mu = predict_fit_observations(fit, params)
    y = mu + draw_residuals(fit, sub, mu, rng)
    log_lloq = observation_table(fit, lloq)["log_lloq"].to_numpy()
    blq = np.where(np.isfinite(log_lloq), y < log_lloq, False)
    return {"log_ipred": mu, "log_dv": y, "blq": blq, "draw": sel}
