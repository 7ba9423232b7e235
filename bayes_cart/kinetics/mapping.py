"""Exact mapping between the Liu et al. (2021) and Stein et al. (2019) parameterisations.

Without a distribution phase (``T0 = 0``) both models describe the same curve. Liu's total
E + M is, for ``tau = t - T1 > 0`` and ``lam = alpha + deltaE + rM``::

    E + M = E(T1) [(1 - f) exp(-lam tau) + f exp(-deltaM tau)],   f = rM / (lam - deltaM)

and before the peak ``E = C0 exp(beta t)``. Stein's model is ``R0 exp(rho t)`` up to Tmax, with
``rho = ln(foldx) / Tmax`` and ``R0 = Cmax / foldx``, then
``Cmax [(1 - FB) exp(-alpha_S tau) + FB exp(-beta_S tau)]``. Hence (subscript S = Stein):

==========================  ==============================
Liu -> Stein                Stein -> Liu
==========================  ==============================
Cmax = C0 e^(beta T1)       C0 = Cmax / foldx
Tmax = T1                   T1 = Tmax
foldx = e^(beta T1)         beta = ln(foldx) / Tmax
alpha_S = lam               deltaM = beta_S
beta_S = deltaM             rM = FB (alpha_S - beta_S)
FB = rM / (lam - deltaM)    alpha = alpha_S - deltaE - rM
==========================  ==============================

with ``lam = alpha + deltaE + rM`` and deltaE fixed (0.435 /month by default).

Constraints. Stein requires ``0 < FB < 1`` and a fast phase faster than the slow one
(``alpha_S > beta_S``). In Liu's terms that is ``deltaM < alpha + deltaE`` (then
``lam > deltaM`` and ``FB < 1`` follow, since ``rM > 0``). Liu curves with
``deltaM >= alpha + deltaE`` (memory cells dying at least as fast as the effectors' own
decline) have no Stein equivalent. Conversely a Stein curve maps to a Liu curve only if
``alpha = alpha_S (1 - FB) + FB beta_S - deltaE > 0``, i.e. the initial decline rate of the
total exceeds the fixed effector death rate deltaE.

The distribution phase (``k``, ``T0 > 0``) has no Stein counterpart: Stein's pre-peak curve is
a single exponential from ``R0`` at t = 0, whereas Liu's first falls (rate k) and then rises
(rate beta). The post-peak curves still match exactly, so :func:`liu_to_stein` accepts
``approximate_distribution=True`` and returns the Stein curve with the same Cmax, Tmax and
post-peak decline and ``R0 = C0`` (so ``foldx = Cmax / C0``); it then differs from Liu's curve
on ``0 < t < T1`` only.

Examples
--------
>>> s = liu_to_stein(dict(C0=2.0, beta=0.5, T1=10.0, alpha=0.1, rM=0.01, deltaM=0.002))
>>> back = stein_to_liu(s)
>>> round(float(back["alpha"]), 12), round(float(back["C0"]), 12)
(0.1, 2.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayes_cart.units import DELTA_E_PER_DAY

Array = Any

__all__ = ["liu_to_stein", "stein_to_liu"]


def _offending(mask: np.ndarray) -> str:
    """Describe where a vectorised constraint fails ('' for scalars)."""
    if mask.ndim == 0:
        return ""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:10])
    more = f" and {idx.size - 10} more" if idx.size > 10 else ""
    return f" (at index {shown}{more})"


def _get(params: Mapping[str, Array], name: str, model: str) -> np.ndarray:
    try:
        return np.asarray(params[name], dtype=float)
    except KeyError:
        raise KeyError(f"{model} parameters need {name!r}; got {sorted(params)}") from None


def liu_to_stein(
    params: Mapping[str, Array], approximate_distribution: bool = False
) -> dict[str, np.ndarray]:
    """Convert Liu et al. parameters to the Stein et al. parameterisation.

    Parameters
    ----------
    params : mapping
        ``C0, beta, T1, alpha, rM, deltaM`` and optionally ``deltaE`` (default
        0.435 /month in /day), ``k`` and ``T0`` (default 0). Scalars or arrays (one per
        patient); rates /day, times days.
    approximate_distribution : bool, default False
        Allow ``T0 > 0`` by keeping Cmax, Tmax and the decline and replacing the
        distribution + expansion phases by one exponential from C0 (see module docstring).

    Returns
    -------
    dict
        ``Cmax, Tmax, foldx, alpha, beta, FB`` (Stein's names; ``alpha``/``beta`` are the
        fast/slow decline rates /day).

    Raises
    ------
    ValueError
        If ``T0 > 0`` without ``approximate_distribution``, or ``deltaM >= alpha + deltaE``
        (no Stein curve with 0 < FB < 1 exists).

    Examples
    --------
    >>> s = liu_to_stein(dict(C0=1.0, beta=0.3, T1=10.0, alpha=0.2, rM=0.02, deltaM=0.01))
    >>> round(float(s["FB"]), 4), float(s["Tmax"])
    (0.0892, 10.0)
    """
    c0 = _get(params, "C0", "Liu")
    beta = _get(params, "beta", "Liu")
    t1 = _get(params, "T1", "Liu")
    alpha = _get(params, "alpha", "Liu")
    r_m = _get(params, "rM", "Liu")
    delta_m = _get(params, "deltaM", "Liu")
    delta_e = np.asarray(params.get("deltaE", DELTA_E_PER_DAY), dtype=float)
    k = np.asarray(params.get("k", 0.0), dtype=float)
    t0 = np.asarray(params.get("T0", 0.0), dtype=float)

    with_distribution = np.broadcast_to(t0 > 0, np.broadcast(t0, k).shape)
    if np.any(with_distribution) and not approximate_distribution:
        raise ValueError(
            "Stein's model has no distribution phase: with T0 > 0 the pre-peak curve "
            "(fall at rate k, then growth at rate beta) is not a single exponential"
            f"{_offending(with_distribution)}. Pass approximate_distribution=True to keep "
            "Cmax, Tmax and the decline and use R0 = C0."
        )
    no_stein = delta_m >= alpha + delta_e
    if np.any(no_stein):
        raise ValueError(
            "no Stein equivalent: the mapping needs deltaM < alpha + deltaE so that "
            f"0 < FB < 1 and alpha_S > beta_S{_offending(np.asarray(no_stein))}"
        )
    lam = alpha + delta_e + r_m
    log_cmax = np.log(c0) - k * t0 + beta * (t1 - t0)
    return {
        "Cmax": np.exp(log_cmax),
        "Tmax": t1 * np.ones_like(log_cmax),
        "foldx": np.exp(log_cmax - np.log(c0)),
        "alpha": lam,
        "beta": delta_m * np.ones_like(lam),
        "FB": r_m / (lam - delta_m),
    }


def stein_to_liu(
    params: Mapping[str, Array], delta_e: Array = DELTA_E_PER_DAY
) -> dict[str, np.ndarray]:
    """Convert Stein et al. parameters to the Liu et al. parameterisation.

    Parameters
    ----------
    params : mapping
        ``Cmax, Tmax, foldx, alpha, beta, FB`` (rates /day, Tmax in days); scalars or arrays.
    delta_e : float or array, default 0.435 /month in /day
        The fixed effector death rate deltaE assumed for the Liu model.

    Returns
    -------
    dict
        ``C0, k, T0, beta, T1, alpha, rM, deltaM, deltaE`` with ``k = T0 = 0``.

    Raises
    ------
    ValueError
        If ``alpha_S <= beta_S``, ``FB`` outside (0, 1), ``foldx <= 0`` or ``Tmax <= 0``, or
        the implied Liu ``alpha = alpha_S - deltaE - FB (alpha_S - beta_S)`` is not positive.

    Examples
    --------
    >>> p = stein_to_liu(dict(Cmax=1e4, Tmax=12.0, foldx=1e3, alpha=0.3, beta=0.01, FB=0.05))
    >>> round(float(p["rM"]), 4), round(float(p["C0"]), 1)
    (0.0145, 10.0)
    """
    cmax = _get(params, "Cmax", "Stein")
    tmax = _get(params, "Tmax", "Stein")
    foldx = _get(params, "foldx", "Stein")
    alpha_s = _get(params, "alpha", "Stein")
    beta_s = _get(params, "beta", "Stein")
    fb = _get(params, "FB", "Stein")
    delta_e = np.asarray(delta_e, dtype=float)

    checks = [
        (alpha_s <= beta_s, "Stein alpha (fast decline) must exceed beta (slow decline)"),
        ((fb <= 0) | (fb >= 1), "FB must lie strictly between 0 and 1"),
        (foldx <= 0, "foldx must be positive"),
        (tmax <= 0, "Tmax must be positive"),
    ]
    for mask, message in checks:
        if np.any(mask):
            raise ValueError(f"cannot map to Liu: {message}{_offending(np.asarray(mask))}")
    r_m = fb * (alpha_s - beta_s)
    alpha = alpha_s - delta_e - r_m
    if np.any(alpha <= 0):
        raise ValueError(
            "cannot map to Liu: alpha = alpha_S - deltaE - FB (alpha_S - beta_S) must be > 0 "
            "(the initial decline of the total must be faster than deltaE)"
            f"{_offending(np.asarray(alpha <= 0))}"
        )
    zeros = np.zeros_like(alpha)
    return {
        "C0": cmax / foldx,
        "k": zeros,
        "T0": zeros,
        "beta": np.log(foldx) / tmax,
        "T1": tmax * np.ones_like(alpha),
        "alpha": alpha,
        "rM": r_m,
        "deltaM": beta_s * np.ones_like(alpha),
        "deltaE": delta_e * np.ones_like(alpha),
    }
