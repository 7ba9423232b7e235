"""An independent reference for the Liu et al. kinetics: SciPy integration and a parameter grid.

The closed form (:mod:`bayes_cart.kinetics.structures.liu2021`) and the diffrax route
(:mod:`bayes_cart.kinetics.engines.diffrax_ode`) are checked against :func:`scipy_liu_states`,
which integrates the ODEs phase by phase with SciPy's DOP853 at ``rtol=1e-12`` and shares no
code with either.
:func:`paper_range_grid` gives parameter sets spanning the ranges reported by Liu et al.
(beta 3-30 /month, alpha 0.5-10 /month, rM and deltaM 0.001-1 /month, T1 5-30 days, with and
without a distribution phase) plus the singular case ``lam == deltaM`` and its neighbours.
The tests (``tests/test_kinetics_closed_form.py``) and ``bench/bench_kinetics.py`` use both; use
them to validate a kinetic function of your own.

Examples
--------
>>> import numpy as np
>>> from bayes_cart.units import DELTA_E_PER_DAY
>>> e, m = scipy_liu_states(np.array([0.0, 10.0, 40.0]), dict(C0=10.0, k=0.0, T0=0.0,
...     beta=0.5, T1=10.0, alpha=0.1, rM=0.01, deltaM=0.001, deltaE=DELTA_E_PER_DAY))
>>> np.round(e + m, 2)  # as the closed form gives
array([  10.  , 1484.13,  149.58])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.integrate import solve_ivp

from bayes_cart.units import DAYS_PER_MONTH, DELTA_E_PER_DAY

__all__ = ["paper_range_grid", "scipy_liu_states"]

#: (beta /month, T1 day, k /day, T0 day, C0): slow/fast expansion, early/late peak, with and
#: without a distribution phase
_EXPANSION_SETTINGS = (
    (3.0, 30.0, 0.0, 0.0, 50.0),
    (30.0, 5.0, 0.0, 0.0, 1.0),
    (30.0, 30.0, 1.0, 3.0, 0.01),
    (10.0, 12.0, 0.3, 1.0, 200.0),
)


def paper_range_grid(
    alpha: Sequence[float] = (0.5, 10.0),
    r_m: Sequence[float] = (0.001, 1.0),
    delta_m: Sequence[float] = (0.001, 1.0),
) -> list[dict[str, float]]:
    """Parameter sets over the paper's ranges, rates given per month and returned per day.

    Parameters
    ----------
    alpha, r_m, delta_m : sequence of float
        Levels (/month) crossed with four expansion settings (beta, T1, distribution phase,
        C0).

    Returns
    -------
    list of dict
        ``C0, k, T0, beta, T1, alpha, rM, deltaM, deltaE`` (per day), followed by six sets with
        ``deltaM == lam = alpha + deltaE + rM`` exactly and 1e-10 on either side, with and
        without a distribution phase.
    """
    grid = []
    for (beta, t1, k, t0, c0), a, r, d in itertools.product(
        _EXPANSION_SETTINGS, alpha, r_m, delta_m
    ):
        grid.append(
            dict(
                C0=c0,
                k=k,
                T0=t0,
                beta=beta / DAYS_PER_MONTH,
                T1=t1,
                alpha=a / DAYS_PER_MONTH,
                rM=r / DAYS_PER_MONTH,
                deltaM=d / DAYS_PER_MONTH,
                deltaE=DELTA_E_PER_DAY,
            )
        )
    for (k, t0), offset in itertools.product(((0.0, 0.0), (0.5, 2.0)), (0.0, 1e-10, -1e-10)):
        a, r = 2.0 / DAYS_PER_MONTH, 0.3 / DAYS_PER_MONTH
        grid.append(
            dict(
                C0=5.0,
                k=k,
                T0=t0,
                beta=8.0 / DAYS_PER_MONTH,
                T1=14.0,
                alpha=a,
                rM=r,
                deltaM=a + DELTA_E_PER_DAY + r + offset,
                deltaE=DELTA_E_PER_DAY,
            )
        )
    return grid


def scipy_liu_states(t: np.ndarray, p: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Effector and memory levels E(t), M(t) of the Liu et al. model by SciPy integration.

    Each phase is integrated separately (DOP853, ``rtol=1e-12``) with its state scaled to 1 at
    the phase start, so the result keeps its relative accuracy over many orders of magnitude.

    Parameters
    ----------
    t : array
        Times (days), any order, ``>= 0``.
    p : dict
        ``C0, k, T0, beta, T1, alpha, rM, deltaM, deltaE`` (rates per day); ``T0 <= T1``.

    Returns
    -------
    E, M : array
        Levels at ``t`` (data units).
    """
    t = np.asarray(t, dtype=float)
    opts = dict(method="DOP853", rtol=1e-12, atol=1e-100)
    e_out, m_out = np.zeros_like(t), np.zeros_like(t)
    y = p["C0"]
    for lo, hi, rate in ((0.0, p["T0"], -p["k"]), (p["T0"], p["T1"], p["beta"])):
        inside = (t >= lo) & (t <= hi)
        if hi > lo:
            t_eval = np.unique(np.r_[t[inside], hi])
            sol = solve_ivp(lambda s, u, r=rate: r * u, (lo, hi), [1.0], t_eval=t_eval, **opts)
            e_out[inside] = y * sol.y[0][np.searchsorted(t_eval, t[inside])]
            y = y * sol.y[0][-1]
        else:
            e_out[inside] = y
    lam = p["alpha"] + p["deltaE"] + p["rM"]
    after = t > p["T1"]
    if after.any():

        def rhs(s: float, u: np.ndarray) -> list[float]:
            return [-lam * u[0], p["rM"] * u[0] - p["deltaM"] * u[1]]

        order = np.argsort(t[after])
        sol = solve_ivp(rhs, (p["T1"], t[after].max()), [1.0, 0.0], t_eval=t[after][order], **opts)
        idx = np.flatnonzero(after)[order]
        e_out[idx] = y * sol.y[0]
        m_out[idx] = y * sol.y[1]
    return e_out, m_out
