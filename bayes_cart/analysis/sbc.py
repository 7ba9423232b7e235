"""Simulation-based calibration (SBC) arithmetic: ranks of the truth and their uniformity.

Talts et al. (2018): when the truth ``theta`` is drawn from the model's prior, the data from
the model given ``theta``, and the posterior computed exactly, the rank of ``theta`` among
``L`` independent posterior draws is uniform on ``0, 1, ..., L``. Any deviation is a fault of
the computation (or of the model's code).

* :func:`thinned_draws`: MCMC draws are autocorrelated, which makes ranks pile up at the ends
  even for a correct sampler. Each chain is thinned by ``ceil(N / ESS)`` (``N`` draws in all,
  ``ESS`` the bulk effective sample size of the quantity, :func:`arviz.ess`), so the kept draws
  are nearly independent, as R ``SBC`` thins its ranks; then ``L`` of them are kept, evenly
  spaced (fewer when the thinned chains hold fewer than ``L``).
* :func:`sbc_rank`: the number of kept draws below the truth (0 to ``L``).
* :func:`normalised_ranks`: ranks of fits with different ``L`` on one scale: ``(r + 1) / (L + 1)``
  when every fit has the same ``L`` (discrete uniform: the ECDF at ``j / (L + 1)`` is exactly
  binomial), else the randomised ``(r + V) / (L + 1)``, ``V ~ Uniform(0, 1)``, which is exactly
  Uniform(0, 1) under calibration whatever each fit's ``L``.
* :func:`gamma_statistic` / :func:`uniformity_test`: the ECDF test of Säilynoja, Bürkner and
  Vehtari (2022): gamma is twice the smallest binomial tail probability of the ECDF over the
  evaluation points, and its p-value is the share of the same statistic for uniform samples
  of the same size below it (Monte Carlo, seeded). Beside it, Pearson's chi-square test of
  ``bins`` equal-probability bins (:func:`scipy.stats.chisquare`).

None of it imports PyMC: it works on arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "UniformityTest",
    "ecdf_eval_points",
    "gamma_statistic",
    "normalised_ranks",
    "sbc_rank",
    "thinned_draws",
    "uniformity_test",
]


def thinned_draws(draws: np.ndarray, size: int) -> np.ndarray:
    """Return at most ``size`` nearly independent draws of one quantity.

    Parameters
    ----------
    draws : ndarray
        Posterior draws, shape ``(chain, draw)``; a flat array is one chain.
    size : int
        ``L``, the number of draws wanted.

    Returns
    -------
    ndarray
        The kept draws (flat): each chain thinned by ``ceil(N / ESS_bulk)``, then ``size`` of
        them evenly spaced, or all when fewer remain.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(2, 500))
    >>> thinned_draws(x, 100).shape
    (100,)
    >>> sticky = np.repeat(np.random.default_rng(1).normal(size=(2, 30)), 10, axis=1)
    >>> thinned_draws(sticky, 100).size < 100    # ESS about 60 of 600 draws: thinned by ~10
    True
    """
    import arviz as az

    x = np.asarray(draws, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    x = x.reshape(x.shape[0], -1)
    n = x.size
    ess = float(az.ess(x, method="bulk")) if x.shape[1] >= 4 else float("nan")
    step = max(1, math.ceil(n / ess)) if math.isfinite(ess) and ess > 0 else 1
    kept = x[:, ::step].reshape(-1)
    if kept.size > size:
        kept = kept[np.round(np.linspace(0, kept.size - 1, size)).astype(int)]
    return kept


def sbc_rank(draws: np.ndarray, truth: float, size: int) -> tuple[int, int]:
    """Return the rank of ``truth`` among the thinned draws, and their number ``L``.

    Examples
    --------
    >>> draws = np.random.default_rng(0).normal(size=(4, 250))
    >>> sbc_rank(draws, 10.0, 99), sbc_rank(draws, -10.0, 99)
    ((99, 99), (0, 99))
    """
    kept = thinned_draws(draws, size)
    return int((kept < truth).sum()), int(kept.size)


def normalised_ranks(
    ranks: np.ndarray, draws: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Put ranks on (0, 1]; return them and the ECDF's evaluation points.

    Parameters
    ----------
    ranks, draws : ndarray
        Each fit's rank and its ``L``.
    seed : int
        Seed of the randomisation when the fits' ``L`` differ.

    Returns
    -------
    (u, eval_points)
        With one common ``L``: ``u = (r + 1) / (L + 1)`` and the points ``j / (L + 1)``,
        ``j = 1..L``, at which the ECDF of ``u`` is exactly binomial under calibration. With
        different ``L``: ``u = (r + V) / (L + 1)`` (Uniform(0, 1) under calibration) and None.

    Examples
    --------
    >>> u, z = normalised_ranks(np.array([0, 4]), np.array([4, 4]))
    >>> u.tolist(), z.tolist()
    ([0.2, 1.0], [0.2, 0.4, 0.6, 0.8])
    """
    r = np.asarray(ranks, dtype=float)
    L = np.asarray(draws, dtype=float)
    if r.size and np.all(L == L[0]):
        common = L[0]
        return (r + 1) / (common + 1), np.arange(1, common + 1) / (common + 1)
    jitter = np.random.default_rng(seed).uniform(size=r.size)
    return (r + jitter) / (L + 1), None


def ecdf_eval_points(n: int, eval_points: np.ndarray | None) -> np.ndarray:
    """Return the ECDF's evaluation points: the given ones, else ``min(n, 100)`` evenly spaced."""
    if eval_points is not None:
        return np.asarray(eval_points, dtype=float)
    k = max(1, min(n, 100))
    return np.arange(1, k) / k if k > 1 else np.array([0.5])


def gamma_statistic(u: np.ndarray, eval_points: np.ndarray) -> float:
    """Säilynoja et al.'s gamma: twice the smallest binomial tail probability of the ECDF.

    At each point ``z`` the count ``n F(z)`` of values ``<= z`` is Binomial(n, z) under
    uniformity; gamma = 2 min_z min(P(X <= n F(z)), P(X >= n F(z))). Small means non-uniform.

    Examples
    --------
    >>> z = np.array([0.25, 0.5, 0.75])
    >>> round(gamma_statistic(np.array([0.1, 0.4, 0.6, 0.9]), z), 3)
    1.0
    >>> gamma_statistic(np.full(20, 0.01), z) < 1e-5
    True
    """
    u = np.asarray(u, dtype=float)
    z = np.asarray(eval_points, dtype=float)
    return float(_gamma(_ecdf_counts(u[None, :], z), u.size, z)[0])


def _ecdf_counts(u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per row of ``u`` (samples x n), the number of values ``<= z_j`` at each point."""
    rows, k = u.shape[0], z.size
    first = np.searchsorted(z + 1e-12, u, side="left")  # first point at or above each value
    flat = (np.arange(rows)[:, None] * (k + 1) + first).reshape(-1)
    counts = np.bincount(flat, minlength=rows * (k + 1)).reshape(rows, k + 1)
    return counts.cumsum(axis=1)[:, :k]


def _gamma(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(2 * np.minimum(lower, upper).min(axis=1), 1.0)


@dataclass(frozen=True)
class UniformityTest:
    """The uniformity tests of one set of ranks.

    Attributes
    ----------
    n : int
        Ranks tested.
    gamma, gamma_p : float
        Säilynoja et al.'s gamma statistic and its Monte Carlo p-value.
    chi2, chi2_p : float
        Pearson's chi-square of ``bins`` equal-probability bins and its p-value (``bins - 1``
        degrees of freedom).
    bins : int
        Bins of the chi-square test.
    """

    n: int
    gamma: float
    gamma_p: float
    chi2: float
    chi2_p: float
    bins: int


def _bin_probabilities(eval_points: np.ndarray | None, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges on (0, 1] and each bin's probability under uniformity."""
    if eval_points is None:
        edges = np.linspace(0, 1, bins + 1)
        return edges, np.diff(edges)
    # discrete ranks (u = (r + 1) / (L + 1)): whole ranks per bin, probability = their share
    support = np.append(eval_points, 1.0)
    bins = min(bins, support.size)
    which = np.minimum((np.arange(support.size) * bins) // support.size, bins - 1)
    probs = np.bincount(which, minlength=bins) / support.size
    upper = np.array([support[which == b].max() for b in range(bins)])
    edges = np.concatenate([[0.0], upper])
    return edges, probs


def uniformity_test(
    ranks: np.ndarray,
    draws: np.ndarray,
    *,
    bins: int = 10,
    simulations: int = 2000,
    seed: int = 0,
) -> UniformityTest:
    """Test the uniformity of SBC ranks (gamma ECDF test and chi-square test).

    Parameters
    ----------
    ranks, draws : ndarray
        Each fit's rank and its ``L`` (:func:`sbc_rank`).
    bins : int
        Chi-square bins (at most ``L + 1``).
    simulations : int
        Uniform samples for the gamma statistic's null distribution.
    seed : int
        Seed of the null simulations and of the randomisation of mixed ``L``.

    Returns
    -------
    UniformityTest

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> uniform = uniformity_test(rng.integers(0, 100, 200), np.full(200, 99))
    >>> narrow = uniformity_test(rng.choice([0, 99], 200), np.full(200, 99))
    >>> uniform.gamma_p > 0.05, narrow.gamma_p < 0.01, narrow.chi2_p < 0.01
    (True, True, True)
    """
    r = np.asarray(ranks, dtype=float)
    L = np.asarray(draws, dtype=float)
    ok = np.isfinite(r) & np.isfinite(L)
    r, L = r[ok], L[ok]
    n = int(r.size)
    if n == 0:
        nan = float("nan")
        return UniformityTest(0, nan, nan, nan, nan, bins)
    u, points = normalised_ranks(r, L, seed)
    z = ecdf_eval_points(n, points)
    gamma = gamma_statistic(u, z)
    rng = np.random.default_rng(seed + 1)
    if points is not None:  # the null of discrete ranks: uniform integers 0..L
        common = int(L[0])
        null_u = (rng.integers(0, common + 1, size=(simulations, n)) + 1) / (common + 1)
    else:
        null_u = rng.uniform(size=(simulations, n))
    null_gamma = _gamma(_ecdf_counts(null_u, z), n, z)
    gamma_p = float((1 + (null_gamma <= gamma).sum()) / (simulations + 1))
    if points is not None:
        bins = max(2, min(bins, points.size + 1))
    edges, probs = _bin_probabilities(points, bins)
    observed = np.histogram(u, bins=edges)[0] if points is None else _discrete_counts(u, edges)
    chi = stats.chisquare(observed, probs * n)
    return UniformityTest(n, gamma, gamma_p, float(chi.statistic), float(chi.pvalue), bins)


def _discrete_counts(u: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Count ``u`` in the bins ``(edges[b], edges[b + 1]]`` (the discrete ranks' bins)."""
    idx = np.searchsorted(edges[1:], u - 1e-12, side="left")
    return np.bincount(np.minimum(idx, edges.size - 2), minlength=edges.size - 1)
