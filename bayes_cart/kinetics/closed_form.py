"""Closed-form solutions of the Liu et al. (2021) and Stein et al. (2019) kinetic models.

Each formula is written once, against an array namespace ``xp`` that is ``numpy``,
``pytensor.tensor`` or ``jax.numpy``. The same function therefore serves numpy simulation, the
PyMC/PyTensor graph and JAX code; there are no copies to keep in step.

All times are in days and all rates per day. Every formula works in log space so that the
likelihood never takes the log of an underflowed concentration, and every ``where`` is written
with a safe branch so that gradients stay finite everywhere (the "double where" pattern).

Liu et al. model, for one patient (DESIGN.md section 1)::

    t < T0         dE/dt = -k E
    T0 <= t <= T1  dE/dt = beta E
    t > T1         dE/dt = -(alpha + deltaE + rM) E,  dM/dt = rM E - deltaM M

with E(0) = C0 and M(0) = 0. With lam = alpha + deltaE + rM and tau = t - T1 > 0::

    E(T1) = C0 exp(-k T0 + beta (T1 - T0))
    E(t)  = E(T1) exp(-lam tau)
    M(t)  = rM E(T1) (exp(-deltaM tau) - exp(-lam tau)) / (lam - deltaM)

and the limit tau exp(-lam tau) rM E(T1) when lam == deltaM.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from bayes_cart.units import DELTA_E_PER_DAY

Array = Any
_SMALL = 1e-8


def log_add_exp(a: Array, b: Array, xp: ModuleType = np) -> Array:
    """``log(exp(a) + exp(b))``, stable in value and gradient; ``-inf`` arguments allowed.

    ``pytensor.tensor.logaddexp`` is ``log(exp(a) + exp(b))``: its value is rewritten into a
    stable form but its gradient is ``0/0`` once both terms underflow (``a, b < -745``, e.g.
    long after the peak). Here ``hi + log1p(exp(lo - hi))`` is used, whose gradient is split
    evenly at ``a == b``.

    Examples
    --------
    >>> float(log_add_exp(-1000.0, -1000.0))
    -999.3068528194401
    >>> float(log_add_exp(2.0, -np.inf))
    2.0
    """
    a_larger = a >= b
    hi = xp.where(a_larger, a, b)
    lo = xp.where(a_larger, b, a)
    diff = xp.where(hi > -np.inf, lo - hi, -np.inf)
    return hi + xp.log1p(xp.exp(diff))


def log_biexp_kernel(rate_a: Array, rate_b: Array, tau: Array, xp: ModuleType = np) -> Array:
    """Log of ``(exp(-a tau) - exp(-b tau)) / (b - a)`` for tau > 0, stable for a == b.

    The kernel is symmetric in (a, b). With ``lo = min(a, b)``, ``x = |b - a| tau`` it equals
    ``tau exp(-lo tau) (1 - exp(-x)) / x``, whose log is computed without cancellation; when
    ``x`` is tiny the series ``log((1 - e^-x)/x) = -x/2 + O(x^2)`` is used.

    Parameters
    ----------
    rate_a, rate_b : array
        Two rate constants (/day), positive.
    tau : array
        Time since the start of the phase (days). Must be > 0; the caller masks tau == 0.
    xp : module
        Array namespace (numpy, pytensor.tensor or jax.numpy).

    Returns
    -------
    array
        The log kernel, broadcast over the inputs.

    Examples
    --------
    >>> float(np.exp(log_biexp_kernel(0.1, 0.1, 2.0)))  # tau exp(-a tau)
    1.6374615061559636
    """
    # min(a, b) written so that its gradient is split evenly at a == b (the kernel is smooth
    # there; xp.minimum would give the whole gradient to one rate, or to both in pytensor)
    lo = 0.5 * (rate_a + rate_b - xp.abs(rate_b - rate_a))
    x = xp.abs(rate_b - rate_a) * tau
    small = x < _SMALL
    x_safe = xp.where(small, 1.0, x)
    log_g = xp.where(small, -0.5 * x, xp.log(-xp.expm1(-x_safe)) - xp.log(x_safe))
    return xp.log(tau) - lo * tau + log_g


def liu_log_states(
    t: Array,
    log_c0: Array,
    beta: Array,
    t1: Array,
    alpha: Array,
    r_m: Array,
    delta_m: Array,
    k: Array = 0.0,
    t0: Array = 0.0,
    delta_e: Array = DELTA_E_PER_DAY,
    xp: ModuleType = np,
) -> tuple[Array, Array, Array]:
    """Log effector, log memory and log total CAR-T level of the Liu et al. model.

    Parameters
    ----------
    t : array
        Time since infusion (days).
    log_c0 : array
        Log of the initial effector level C0 (data units).
    beta : array
        Expansion rate constant (/day).
    t1 : array
        End of expansion, i.e. time of the peak (days). Must satisfy ``t1 >= t0``.
    alpha : array
        Rapid contraction rate constant (/day).
    r_m : array
        Effector-to-memory differentiation rate constant (/day).
    delta_m : array
        Memory death rate constant (/day).
    k : array, default 0
        Distribution rate constant (/day); only used for ``t < t0``.
    t0 : array, default 0
        End of the distribution phase (days); 0 means no distribution phase.
    delta_e : array, default 0.435 / 30.4375
        Natural death rate of effector cells (/day), fixed in the paper.
    xp : module
        Array namespace (numpy, pytensor.tensor or jax.numpy).

    Returns
    -------
    log_e, log_m, log_total : array
        Logs of E, M and E + M. ``log_m`` is ``-inf`` up to T1 (M = 0 there).

    Examples
    --------
    >>> le, lm, lt = liu_log_states(np.array([0.0, 10.0, 40.0]), np.log(10.0), 0.5, 10.0,
    ...                            0.1, 0.01, 0.001)
    >>> np.round(np.exp(lt), 2)
    array([  10.  , 1484.13,  149.58])
    """
    # before the peak: distribution then expansion, in log space
    # the phases are ordered: a distribution phase ending after T1 is cut at T1
    t0 = xp.minimum(t0, t1)
    s = xp.minimum(t, t1)
    log_e_pre = log_c0 - k * xp.minimum(s, t0) + beta * xp.maximum(s - t0, 0.0)
    lam = alpha + delta_e + r_m
    tau = xp.maximum(t - t1, 0.0)
    log_e = log_e_pre - lam * tau
    after = tau > 0.0
    tau_safe = xp.where(after, tau, 1.0)
    log_m_after = log_e_pre + xp.log(r_m) + log_biexp_kernel(lam, delta_m, tau_safe, xp=xp)
    log_total_after = log_add_exp(log_e, log_m_after, xp=xp)
    log_m = xp.where(after, log_m_after, -np.inf)
    log_total = xp.where(after, log_total_after, log_e)
    return log_e, log_m, log_total


def liu_log_cmax(log_c0: Array, beta: Array, t1: Array, k: Array = 0.0, t0: Array = 0.0) -> Array:
    """Log peak level, equations (5) and (6) of Liu et al.: ``log C0 - k T0 + beta (T1 - T0)``."""
    return log_c0 - k * t0 + beta * (t1 - t0)


def liu_log_c0_from_cmax(
    log_cmax: Array, beta: Array, t1: Array, k: Array = 0.0, t0: Array = 0.0
) -> Array:
    """Invert :func:`liu_log_cmax`: the log C0 that gives a peak ``exp(log_cmax)`` at T1."""
    return log_cmax + k * t0 - beta * (t1 - t0)


def stein_log_total(
    t: Array,
    log_cmax: Array,
    tmax: Array,
    foldx: Array,
    alpha: Array,
    beta: Array,
    fb: Array,
    xp: ModuleType = np,
) -> Array:
    """Log level of the Stein et al. (2019) model.

    ``C = R0 exp(rho t)`` before Tmax (``rho = ln(foldx)/Tmax``, ``R0 = Cmax/foldx``) and
    ``Cmax ((1-FB) exp(-alpha tau) + FB exp(-beta tau))`` after, ``tau = t - Tmax``.

    Parameters
    ----------
    t : array
        Time since infusion (days).
    log_cmax : array
        Log peak level.
    tmax : array
        Time of the peak (days).
    foldx : array
        Fold expansion from R0 to Cmax (> 1).
    alpha, beta : array
        Fast and slow decline rate constants (/day).
    fb : array
        Fraction of the decline that follows the slow phase (0 < FB < 1).
    xp : module
        Array namespace.

    Returns
    -------
    array
        Log of the level.
    """
    rho = xp.log(foldx) / tmax
    tau = xp.maximum(t - tmax, 0.0)
    log_pre = log_cmax - rho * xp.maximum(tmax - t, 0.0)
    log_post = log_cmax + log_add_exp(xp.log1p(-fb) - alpha * tau, xp.log(fb) - beta * tau, xp=xp)
    return xp.where(t > tmax, log_post, log_pre)
