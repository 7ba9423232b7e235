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

Every residual error model gets the same censored terms from :func:`censored_terms`, which
takes the model's log density, log CDF and log survival function: the log CDF at the LLOQ
(left), ``log(CDF(LLOQ) - CDF(LIMIT))`` (interval; written as a difference of survival
functions when the interval lies above the median, so neither tail cancels) and the log
survival function at the ULOQ (right). :func:`censored_loglik` is the normal model (proportional
and combined error), :func:`student_t_censored_loglik` the Student-t one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
_LOG_2PI = float(np.log(2.0 * np.pi))
_SQRT2 = float(np.sqrt(2.0))
_TAIL = -10.0
_LOG2 = float(np.log(2.0))
_LOG_PI = float(np.log(np.pi))
_TINY = 1e-300  # smallest gap kept between two log probabilities (log of it: about -690.8)

LogTerm = Callable[[Array, np.ndarray], Array]
"""``f(x, positions)``: a log density, log CDF or log survival function at ``x`` of the
observations at ``positions`` (whose distribution parameters the function closes over)."""


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
    return _special(xp, "erfc")


def _special(xp: ModuleType, name: str):
    """Return the special function ``name`` (``erfc``, ``gammaln``, ``betainc``) of ``xp``."""
    if xp is np:
        import scipy.special

        return getattr(scipy.special, name)
    if getattr(xp, "__name__", "").startswith("jax"):
        import jax.scipy.special as jss

        return getattr(jss, name)
    return getattr(xp, name)


def log1mexp(d: Array, xp: ModuleType = np) -> Array:
    """``log(1 - exp(d))`` for ``d < 0``, accurate for every ``d`` (Maechler 2012).

    ``log(-expm1(d))`` near 0, ``log1p(-exp(d))`` below ``-log 2``; each branch is fed a safe
    argument so that the gradient is finite wherever the value is.

    Parameters
    ----------
    d : array
        Negative values.
    xp : module
        Array namespace.

    Examples
    --------
    >>> d = np.array([-1e-20, -0.5, -50.0])
    >>> bool(np.allclose(log1mexp(d), [np.log(1e-20), np.log1p(-np.exp(-0.5)), -np.exp(-50.0)]))
    True
    """
    near = d > -_LOG2
    d_near = xp.where(near, d, -_LOG2)
    d_far = xp.where(near, -_LOG2, d)
    return xp.where(near, xp.log(-xp.expm1(d_near)), xp.log1p(-xp.exp(d_far)))


def log_diff_exp(a: Array, b: Array, xp: ModuleType = np) -> Array:
    """``log(exp(a) - exp(b))`` for ``b < a``, without leaving log space.

    A gap ``b - a`` that rounds to 0 is taken as ``-1e-300``, so the result stays finite.

    Parameters
    ----------
    a, b : array
        Log values, ``b < a``.
    xp : module
        Array namespace.

    Examples
    --------
    >>> float(log_diff_exp(np.log(0.5), np.log(0.25)))  # log(0.25)
    -1.3862943611198906
    """
    return a + log1mexp(xp.minimum(b - a, -_TINY), xp=xp)


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


def censored_terms(
    value: Array,
    index: CensoringIndex,
    logpdf: LogTerm,
    logcdf: LogTerm,
    logsf: LogTerm,
    log_limit: Array | None = None,
    xp: ModuleType = np,
) -> Array:
    """Pointwise M3 log-likelihood for any continuous residual distribution.

    Quantified rows get ``logpdf(value)``, left-censored ones ``logcdf(LLOQ)``, interval-censored
    ones ``log(CDF(LLOQ) - CDF(LIMIT))`` (see :func:`log_interval_probability`) and
    right-censored ones ``logsf(ULOQ)``, the terms of :class:`pymc.Censored`.

    Parameters
    ----------
    value : array
        Log observations (log DV; for censored rows the log limit).
    index : CensoringIndex
        Which observation is which kind.
    logpdf, logcdf, logsf : callable
        ``f(x, positions)`` of the residual distribution of the observations at ``positions``;
        ``logcdf`` and ``logsf`` must be accurate in their small tail (that is where they are
        used).
    log_limit : array, optional
        Log LIMIT per observation (lower bound of interval-censored rows).
    xp : module
        Array namespace.

    Returns
    -------
    array
        One log-likelihood term per observation, in observation order.
    """
    pieces = []
    if len(index.quantified):
        pieces.append(logpdf(value[index.quantified], index.quantified))
    if len(index.left):
        pieces.append(logcdf(value[index.left], index.left))
    if len(index.interval):
        i = index.interval
        pieces.append(log_interval_probability(log_limit[i], value[i], i, logcdf, logsf, xp=xp))
    if len(index.right):
        pieces.append(logsf(value[index.right], index.right))
    joined = pieces[0] if len(pieces) == 1 else xp.concatenate(pieces)
    return joined[index.order]


def log_interval_probability(
    lower: Array,
    upper: Array,
    positions: np.ndarray,
    logcdf: LogTerm,
    logsf: LogTerm,
    xp: ModuleType = np,
) -> Array:
    """``log(CDF(upper) - CDF(lower))``, stable in both tails.

    Below the median it is a difference of CDFs, above it (``CDF(lower) > 1/2``) the same
    probability as ``SF(lower) - SF(upper)``, each taken in log space by :func:`log_diff_exp`:
    no cancellation of two probabilities close to 1, and no underflow deep in a tail.

    Parameters
    ----------
    lower, upper : array
        Log LIMIT and log LLOQ, ``lower < upper``.
    positions : ndarray of int
        The observations they belong to.
    logcdf, logsf : callable
        As in :func:`censored_terms`.
    xp : module
        Array namespace.

    Returns
    -------
    array
        Log probability of the interval, per observation.
    """
    cdf_lo, cdf_hi = logcdf(lower, positions), logcdf(upper, positions)
    sf_lo, sf_hi = logsf(lower, positions), logsf(upper, positions)
    above_median = cdf_lo > sf_lo
    return xp.where(
        above_median, log_diff_exp(sf_lo, sf_hi, xp=xp), log_diff_exp(cdf_hi, cdf_lo, xp=xp)
    )


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

    def z(x: Array, i: np.ndarray) -> Array:
        return (x - mu[i]) / sig[i]

    def logpdf(x: Array, i: np.ndarray) -> Array:
        zi = z(x, i)
        return -0.5 * zi * zi - xp.log(sig[i]) - 0.5 * _LOG_2PI

    def logcdf(x: Array, i: np.ndarray) -> Array:
        return log_normal_cdf(z(x, i), xp=xp)

    def logsf(x: Array, i: np.ndarray) -> Array:
        return log_normal_cdf(-z(x, i), xp=xp)

    return censored_terms(value, index, logpdf, logcdf, logsf, log_limit, xp=xp)


def log_student_t_cdf(t: Array, nu: Array, xp: ModuleType = np) -> Array:
    """Log of the standard Student-t CDF, accurate in both tails.

    ``CDF(-|t|) = I_x(nu/2, nu/2)`` with ``x = (r - |t|) / (2 r)``, ``r = sqrt(t^2 + nu)``,
    evaluated as ``nu / (2 r (r + |t|))`` (no cancellation however deep the tail); the upper
    half is ``log1p(-CDF(-t))``. The same regularised incomplete beta function as PyMC's
    ``StudentT.logcdf``, which cancels in the lower tail and, used as ``log(1 - CDF)``, in the
    upper one. For very large ``nu`` (about 1e3 and more) and ``|t|`` beyond about 40 the
    beta function underflows and the log CDF is ``-inf``.

    Parameters
    ----------
    t : array
        Standardised value ``(x - mu) / sigma``.
    nu : array
        Degrees of freedom.
    xp : module
        Array namespace.

    Examples
    --------
    >>> from scipy import stats
    >>> t = np.array([-1e5, -3.0, 0.0, 2.0, 1e3])
    >>> ref = [stats.t.logcdf(-1e5, 4), stats.t.logcdf(-3, 4), np.log(0.5),
    ...        stats.t.logcdf(2, 4), np.log1p(-stats.t.sf(1e3, 4))]
    >>> bool(np.allclose(log_student_t_cdf(t, 4.0), ref, rtol=1e-10))
    True
    """
    betainc = _special(xp, "betainc")
    lower = t <= 0.0
    t_neg = xp.where(lower, t, -t)  # -|t|, with the gradient of the side it comes from
    r = xp.sqrt(t_neg * t_neg + nu)
    x = nu / (2.0 * r * (r - t_neg))
    half = 0.5 * nu
    tail = betainc(half, half, x)  # CDF(-|t|) <= 1/2
    return xp.where(lower, xp.log(tail), xp.log1p(-tail))


def student_t_censored_loglik(
    value: Array,
    mu: Array,
    sigma: Array,
    nu: Array,
    index: CensoringIndex,
    log_limit: Array | None = None,
    xp: ModuleType = np,
) -> Array:
    """Pointwise log-likelihood of ``value ~ StudentT(nu, mu, sigma)`` with M3 censoring.

    The censored terms are those of :func:`censored_loglik` with the Student-t distribution
    (:func:`censored_terms`); its log survival function is ``log_student_t_cdf(-t)``.

    Parameters
    ----------
    value : array
        Log observations (log DV; for censored rows the log limit).
    mu : array
        Log predictions, same length.
    sigma : array
        Residual scale on the log scale (scalar or per observation).
    nu : array
        Degrees of freedom (scalar or per observation).
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
    >>> from scipy import stats
    >>> idx = CensoringIndex.from_arrays(np.array([0, -1]), np.array([np.nan, np.nan]))
    >>> ll = student_t_censored_loglik(np.array([1.0, 3.0]), np.zeros(2), 0.5, 3.0, idx)
    >>> bool(np.allclose(ll, [stats.t.logpdf(1, 3, 0, 0.5), stats.t.logsf(3, 3, 0, 0.5)]))
    True
    """
    ones = xp.ones_like(mu)
    sig, dof = sigma * ones, nu * ones
    gammaln = _special(xp, "gammaln")

    def t(x: Array, i: np.ndarray) -> Array:
        return (x - mu[i]) / sig[i]

    def logpdf(x: Array, i: np.ndarray) -> Array:
        ti, v = t(x, i), dof[i]
        norm = gammaln(0.5 * (v + 1.0)) - gammaln(0.5 * v) - 0.5 * (xp.log(v) + _LOG_PI)
        return norm - xp.log(sig[i]) - 0.5 * (v + 1.0) * xp.log1p(ti * ti / v)

    def logcdf(x: Array, i: np.ndarray) -> Array:
        return log_student_t_cdf(t(x, i), dof[i], xp=xp)

    def logsf(x: Array, i: np.ndarray) -> Array:
        return log_student_t_cdf(-t(x, i), dof[i], xp=xp)

    return censored_terms(value, index, logpdf, logcdf, logsf, log_limit, xp=xp)
