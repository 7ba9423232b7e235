"""Log-space building blocks of the closed-form solutions of the kinetic structures.

The closed forms themselves live with their structures
(:mod:`bayes_cart.kinetics.structures.liu2021`, :mod:`bayes_cart.kinetics.structures.stein2019`).
Each formula is written once, against an array namespace ``xp`` that is ``numpy``,
``pytensor.tensor`` or ``jax.numpy``. The same function therefore serves numpy simulation, the
PyMC/PyTensor graph and JAX code; there are no copies to keep in step.

All times are in days and all rates per day. Every formula works in log space so that the
likelihood never takes the log of an underflowed concentration, and every ``where`` is written
with a safe branch so that gradients stay finite everywhere (the "double where" pattern).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

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
