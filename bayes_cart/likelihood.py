"""Pointwise log-likelihood of log-scale observations with M3 censoring.

One implementation, written against an array namespace ``xp`` (numpy, pytensor.tensor or
jax.numpy), serves the PyMC graph, numpy checks and JAX backends.

The normal log-CDF is written here rather than taken from PyMC because PyMC's version calls
``erfcx``, which has no JAX implementation without tensorflow-probability (that is why a JAX
backend such as numpyro or nutpie's JAX mode failed on censored models) and whose gradient is
not finite far in the tail. Here ``log Phi(z)`` is ``log(erfc(-z/sqrt 2) / 2)`` for ``z >= -10``
(accurate: erfc does not cancel there), ``log1p(-erfc(z/sqrt 2)/2)`` for ``z > 0``, and the
asymptotic series ``-z^2/2 - log(-z) - log(2 pi)/2 + log(1 - 1/z^2 + 3/z^4 - 15/z^6 + 105/z^8)``
below -10 (relative error < 1e-7), each branch fed a clipped ("safe") argument so that the
gradient is finite everywhere.

Censoring codes (the dataset's ``CENS``): 0 quantified, 1 left-censored at the LLOQ (value =
log LLOQ; with a finite ``log_limit`` the interval [LIMIT, LLOQ]), -1 right-censored.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
_LOG_2PI = float(np.log(2.0 * np.pi))
_SQRT2 = float(np.sqrt(2.0))
_TAIL = -10.0


def log_normal_cdf(z: Array, xp: ModuleType = np) -> Array:
    """Log of the standard normal CDF, stable in both tails, finite gradients everywhere.

    Parameters
    ----------
    z : array
        Standardised value.
    xp : module
        Array namespace.

    Examples
    --------
    >>> from scipy.special import log_ndtr
    >>> z = np.array([-40.0, -10.5, -3.0, 0.0, 3.0, 12.0])
    >>> bool(np.allclose(log_normal_cdf(z), log_ndtr(z), rtol=1e-7))
    True
    """
    erfc = _erfc(xp)
    tail = z < _TAIL
    z_mid = xp.where(tail, _TAIL, z)
    z_neg = xp.minimum(z_mid, 0.0)
    z_pos = xp.maximum(z_mid, 0.0)
    mid = xp.where(
        z_mid > 0.0,
        xp.log1p(-0.5 * erfc(z_pos / _SQRT2)),
        xp.log(0.5 * erfc(-z_neg / _SQRT2)),
    )
    z_t = xp.where(tail, z, _TAIL)
    z2 = z_t * z_t
    series = 1.0 - 1.0 / z2 + 3.0 / z2**2 - 15.0 / z2**3 + 105.0 / z2**4
    asym = -0.5 * z2 - xp.log(-z_t) - 0.5 * _LOG_2PI + xp.log(series)
    return xp.where(tail, asym, mid)


def _erfc(xp: ModuleType):
    if xp is np:
        from scipy.special import erfc

        return erfc
    if getattr(xp, "__name__", "").startswith("jax"):
        import jax.scipy.special as jss

        return jss.erfc
    return xp.erfc


@dataclass(frozen=True)
class CensoringIndex:
    """Static positions of each kind of observation, computed once from the data.

    Attributes
    ----------
    quantified, left, interval, right : ndarray of int
        Positions of quantified, left-censored (no LIMIT), interval-censored and
        right-censored observations.
    order : ndarray of int
        Inverse permutation putting the concatenated pieces back in observation order.
    """

    quantified: np.ndarray
    left: np.ndarray
    interval: np.ndarray
    right: np.ndarray
    order: np.ndarray

    @classmethod
    def from_arrays(cls, cens: np.ndarray, log_limit: np.ndarray) -> CensoringIndex:
        """Build from the CENS codes and log LIMIT (NaN when absent)."""
        cens = np.asarray(cens)
        has_limit = np.isfinite(np.asarray(log_limit, dtype=float))
        q = np.flatnonzero(cens == 0)
        left = np.flatnonzero((cens == 1) & ~has_limit)
        interval = np.flatnonzero((cens == 1) & has_limit)
        right = np.flatnonzero(cens == -1)
        perm = np.concatenate([q, left, interval, right])
        order = np.empty_like(perm)
        order[perm] = np.arange(len(perm))
        return cls(q, left, interval, right, order)


def censored_loglik(
    value: Array,
    mu: Array,
    sigma: Array,
    index: CensoringIndex,
    log_limit: Array | None = None,
    xp: ModuleType = np,
) -> Array:
    """Pointwise log-likelihood of ``value ~ Normal(mu, sigma)`` with M3 censoring.

    Parameters
    ----------
    value : array
        Log observations (log DV; for censored rows log LLOQ).
    mu : array
        Log predictions, same length.
    sigma : array
        Residual SD on the log scale (scalar or per observation).
    index : CensoringIndex
        Which observation is which kind.
    log_limit : array, optional
        Log LIMIT per observation (lower bound of interval-censored rows).
    xp : module
        Array namespace.

    Returns
    -------
    array
        One log-likelihood term per observation, in observation order.

    Examples
    --------
    >>> idx = CensoringIndex.from_arrays(np.array([0, 1]), np.array([np.nan, np.nan]))
    >>> ll = censored_loglik(np.array([1.0, 0.0]), np.array([1.0, 0.0]), 0.5, idx)
    >>> bool(np.isclose(ll[1], np.log(0.5)))
    True
    """
    sig = sigma * xp.ones_like(mu)
    pieces = []
    q = index.quantified
    if len(q):
        z = (value[q] - mu[q]) / sig[q]
        pieces.append(-0.5 * z * z - xp.log(sig[q]) - 0.5 * _LOG_2PI)
    if len(index.left):
        i = index.left
        pieces.append(log_normal_cdf((value[i] - mu[i]) / sig[i], xp=xp))
    if len(index.interval):
        i = index.interval
        upper = log_normal_cdf((value[i] - mu[i]) / sig[i], xp=xp)
        lower = log_normal_cdf((log_limit[i] - mu[i]) / sig[i], xp=xp)
        # log(exp(upper) - exp(lower)), lower < upper
        pieces.append(upper + xp.log(-xp.expm1(xp.minimum(lower - upper, -1e-300))))
    if len(index.right):
        i = index.right
        pieces.append(log_normal_cdf(-(value[i] - mu[i]) / sig[i], xp=xp))
    if len(pieces) == 1:
        joined = pieces[0]
    else:
        joined = xp.concatenate(pieces)
    return joined[index.order]
