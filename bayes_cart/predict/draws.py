"""Posterior draws: the one way bayes_cart stacks, counts and subsets them.

Every analysis that uses a subset of the posterior (GOF, VPC, PPC, CK metrics, virtual
populations, the report) picks it with :func:`draw_index` or :func:`subset_draws`, so the same
seed gives the same draws everywhere.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["draw_index", "n_samples", "stacked", "subset_draws"]


def stacked(post: xr.Dataset, var: str) -> np.ndarray:
    """Draws of ``var`` with chains and draws stacked first: array (sample, ...)."""
    return np.asarray(post[var].stack(sample=("chain", "draw")).transpose("sample", ...))


def n_samples(post: xr.Dataset) -> int:
    """Return the number of posterior samples (chains x draws)."""
    return int(post.sizes["chain"] * post.sizes["draw"])


def draw_index(
    n_total: int,
    n_draws: int | None,
    rng: np.random.Generator,
    *,
    replace_if_more: bool = False,
) -> np.ndarray:
    """Positions of the chosen draws among ``n_total`` stacked samples.

    Parameters
    ----------
    n_total : int
        Number of samples.
    n_draws : int or None
        How many; ``None`` keeps all.
    rng : Generator
        Random numbers (not used when every draw is kept).
    replace_if_more : bool
        When ``n_draws > n_total``: draw with replacement (``True``, e.g. more VPC replicates
        than draws) or keep every draw once (``False``).

    Returns
    -------
    ndarray of int
        Sorted positions when drawn without replacement.

    Examples
    --------
    >>> draw_index(10, None, np.random.default_rng(0)).tolist() == list(range(10))
    True
    >>> len(draw_index(10, 4, np.random.default_rng(0))), len(draw_index(3, 5, None))
    (4, 3)
    """
    if n_draws is None or (n_draws >= n_total and not replace_if_more):
        return np.arange(n_total)
    if n_draws > n_total:
        return rng.choice(n_total, size=n_draws, replace=True)
    return np.sort(rng.choice(n_total, size=n_draws, replace=False))


class PosteriorOnly:
    """Minimal stand-in for an InferenceData holding a posterior only."""

    def __init__(self, posterior: xr.Dataset) -> None:
        self.posterior = posterior

    def groups(self) -> list[str]:
        """Names of the groups (``["posterior"]``)."""
        return ["posterior"]


def subset_draws(
    fit: Any, n_draws: int | None, random_seed: int | np.random.Generator | None = 0
) -> tuple[Any, np.ndarray]:
    """Return a shallow copy of ``fit`` whose posterior holds the chosen draws only.

    Draws are chosen at random without replacement when ``n_draws`` is at most the number of
    draws, with replacement when it is larger; ``None`` keeps every draw.

    Parameters
    ----------
    fit : Fit
        A fit.
    n_draws : int or None
        Number of draws.
    random_seed : int or Generator
        Seed.

    Returns
    -------
    fit, index
        The copy (posterior with one chain of ``n_draws`` draws) and the positions of the
        chosen draws among the stacked (chain, draw) samples.
    """
    post = fit.idata.posterior
    n_total = n_samples(post)
    if n_draws is None:
        return fit, np.arange(n_total)
    rng = np.random.default_rng(random_seed)
    sel = draw_index(n_total, n_draws, rng, replace_if_more=True)
    sub = post.stack(sample=("chain", "draw")).isel(sample=sel)
    sub = sub.drop_vars(["sample", "chain", "draw"]).rename({"sample": "draw"})
    sub = sub.assign_coords(draw=np.arange(len(sel))).expand_dims(chain=[0])
    sub = sub.transpose("chain", "draw", ...)
    out = copy.copy(fit)
    out.idata = PosteriorOnly(sub)
    return out, sel
