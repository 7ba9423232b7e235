"""Derived kinetic quantities of the Liu et al. (2021) model: Cmax, Tmax, AUC, persistence.

Every function takes a mapping of Liu parameters (``C0, beta, T1, alpha, rM, deltaM`` and
optionally ``k, T0, deltaE``; scalars or one array entry per patient, rates /day, times days)
and works element-wise with numpy. A :class:`pandas.DataFrame` of parameters (one row per
patient) is accepted too; columns that are not Liu parameters are ignored.

Facts used (for ``alpha + deltaE > 0``, ``deltaM >= 0``):

* before T1 the curve falls (rate k) until T0 and then rises (rate beta), so the maximum is
  ``E(T1) = C0 exp(-k T0 + beta (T1 - T0))`` unless the distribution phase loses more than the
  expansion gains (``C0 > E(T1)``), in which case it is ``C0`` at ``t = 0``;
* after T1 the total falls monotonically: ``d(E + M)/dt = -(alpha + deltaE) E - deltaM M``,
  hence ``E + M <= E(T1) exp(-c (t - T1))`` with ``c = min(alpha + deltaE, deltaM)``.

Examples
--------
>>> p = dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.005)
>>> df = derived_metrics(p, lloq=10.0)
>>> list(df.columns)  # doctest: +NORMALIZE_WHITESPACE
['Cmax', 'Tmax', 'AUC_0_28', 'doubling_time', 'initial_half_life', 'terminal_half_life',
 'time_below_lloq']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import elementwise
from scipy.special import exprel

from bayes_cart.kinetics.structures.liu2021 import liu_closed_form
from bayes_cart.units import DELTA_E_PER_DAY

Array = Any

__all__ = [
    "auc",
    "cmax",
    "derived_metrics",
    "doubling_time",
    "initial_half_life",
    "memory_fraction",
    "terminal_half_life",
    "time_below",
    "tmax",
]

_LIU_DEFAULTS = {"k": 0.0, "T0": 0.0, "deltaE": DELTA_E_PER_DAY}
_LIU_REQUIRED = ("C0", "beta", "T1", "alpha", "rM", "deltaM")
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)


def _liu(params: Mapping[str, Array] | pd.DataFrame) -> dict[str, np.ndarray]:
    """Liu parameters as broadcast float arrays, with defaults filled in."""
    names = _LIU_REQUIRED + tuple(_LIU_DEFAULTS)
    if isinstance(params, pd.DataFrame):
        params = {name: params[name].to_numpy(dtype=float) for name in names if name in params}
    else:
        unknown = set(params) - set(names)
        if unknown:
            raise KeyError(f"unknown Liu parameter(s) {sorted(unknown)}; expected {list(names)}")
    missing = [name for name in _LIU_REQUIRED if name not in params]
    if missing:
        raise KeyError(f"Liu parameters missing: {missing}")
    full = {name: params.get(name, _LIU_DEFAULTS.get(name)) for name in names}
    arrays = np.broadcast_arrays(*(np.asarray(full[name], dtype=float) for name in names))
    out = dict(zip(names, arrays, strict=True))
    if np.any(out["T1"] < out["T0"]):
        raise ValueError("T1 must not be earlier than T0")
    return out


def _log_peak(p: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return log E(T1)."""
    return np.log(p["C0"]) - p["k"] * p["T0"] + p["beta"] * (p["T1"] - p["T0"])


def _lam(p: Mapping[str, np.ndarray]) -> np.ndarray:
    return p["alpha"] + p["deltaE"] + p["rM"]


def _log_states(t: Array, p: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    with np.errstate(divide="ignore"):  # log(rM) = -inf when rM = 0 is fine
        out = liu_closed_form(t, p, np)
    return out["log_E"], out["log_M"], out["log_total"]


def cmax(params: Mapping[str, Array]) -> np.ndarray:
    """Maximum of E + M: ``max(C0, E(T1))``.

    Examples
    --------
    >>> float(cmax(dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.005)))
    148.4131591025766
    """
    p = _liu(params)
    return np.maximum(p["C0"], np.exp(_log_peak(p)))


def tmax(params: Mapping[str, Array]) -> np.ndarray:
    """Time of the maximum: T1, or 0 when the distribution loss exceeds the expansion gain.

    Examples
    --------
    >>> float(tmax(dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.005)))
    10.0
    """
    p = _liu(params)
    return np.where(p["C0"] > np.exp(_log_peak(p)), 0.0, p["T1"])


def _exp_integral(rate: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``int_u^v exp(rate * s) ds`` for ``0 <= u <= v <= inf`` (rate <= 0 if v is inf)."""
    w = v - u
    finite = np.isfinite(w)
    w_safe = np.where(finite, w, 0.0)
    bounded = np.exp(rate * u) * w_safe * exprel(rate * w_safe)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        unbounded = np.exp(rate * u) / -rate
    return np.where(finite, bounded, unbounded)


def _memory_integral(
    p: Mapping[str, np.ndarray], log_e1: np.ndarray, tau_u: np.ndarray, tau_v: np.ndarray
) -> np.ndarray:
    """``int M dt`` over ``[T1 + tau_u, T1 + tau_v]``, choosing the best-conditioned formula.

    Three exact expressions are evaluated and the one with the least cancellation is kept:

    * divided difference: ``rM E1 (G(deltaM) - G(lam)) / (lam - deltaM)`` with
      ``G(r) = int exp(-r tau) dtau`` (bad when lam ~ deltaM);
    * mass balance ``dM/dt = rM E - deltaM M``: ``(rM int E - [M]) / deltaM`` (bad when
      deltaM * tau is small);
    * 16-point Gauss-Legendre quadrature of the closed-form M, exact to rounding when every
      rate times the window length is below 2 (used for short windows).
    """
    lam, delta_m, r_m = _lam(p), p["deltaM"], p["rM"]
    e1 = np.exp(log_e1)
    w = tau_v - tau_u
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g_m = _exp_integral(-delta_m, tau_u, tau_v)
        g_l = _exp_integral(-lam, tau_u, tau_v)
        dd = r_m * e1 * (g_m - g_l) / (lam - delta_m)
        loss_dd = np.maximum(np.abs(g_m), np.abs(g_l)) / np.abs(g_m - g_l)

        t1 = p["T1"]
        m_u = np.exp(_log_states(t1 + tau_u, p)[1])
        m_v = np.where(np.isfinite(tau_v), np.exp(_log_states(t1 + tau_v, p)[1]), 0.0)
        inflow = r_m * e1 * g_l
        balance = (inflow - (m_v - m_u)) / delta_m
        loss_balance = np.maximum(np.abs(inflow), np.abs(m_v - m_u)) / np.abs(inflow - m_v + m_u)

        # Gauss-Legendre on short finite windows
        w_fin = np.where(np.isfinite(w), w, 0.0)
        nodes = t1[..., None] + tau_u[..., None] + 0.5 * w_fin[..., None] * (1 + _GL_NODES)
        p_nodes = {key: val[..., None] for key, val in p.items()}
        log_m_nodes = _log_states(nodes, p_nodes)[1]
        gauss = 0.5 * w_fin * np.sum(_GL_WEIGHTS * np.exp(log_m_nodes), axis=-1)

    loss_dd = np.where(np.isfinite(dd), loss_dd, np.inf)
    loss_balance = np.where(np.isfinite(balance), loss_balance, np.inf)
    use_gauss = np.isfinite(w) & (np.maximum(lam, delta_m) * w <= 2.0)
    best = np.where(loss_dd <= loss_balance, dd, balance)
    return np.where(w <= 0, 0.0, np.where(use_gauss, gauss, best))


def auc(params: Mapping[str, Array], t_start: Array = 0.0, t_end: Array = 28.0) -> np.ndarray:
    """Exact area under E + M between ``t_start`` and ``t_end`` (days; ``t_end`` may be inf).

    The integral is the sum of closed-form integrals over the distribution, expansion and
    contraction phases that intersect the window. Units: data units x days.

    Parameters
    ----------
    params : mapping
        Liu parameters.
    t_start, t_end : float or array
        Window (days), ``0 <= t_start <= t_end``.

    Returns
    -------
    numpy.ndarray
        AUC over the window, one value per patient.

    Examples
    --------
    >>> p = dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.005)
    >>> round(float(auc(p, 0.0, 10.0)), 6)  # (e^5 - 1) / 0.5
    294.826318
    """
    p = _liu(params)
    a = np.asarray(t_start, dtype=float)
    b = np.asarray(t_end, dtype=float)
    if np.any(b < a) or np.any(a < 0):
        raise ValueError("the AUC window needs 0 <= t_start <= t_end")
    t0, t1 = p["T0"], p["T1"]
    log_e1 = _log_peak(p)
    # distribution phase [0, T0]: C0 exp(-k t)
    u, v = np.clip(a, 0.0, t0), np.clip(b, 0.0, t0)
    part1 = p["C0"] * _exp_integral(-p["k"], u, v)
    # expansion phase [T0, T1]: E(T0) exp(beta (t - T0))
    u, v = np.clip(a, t0, t1), np.clip(b, t0, t1)
    e_t0 = p["C0"] * np.exp(-p["k"] * t0)
    part2 = e_t0 * _exp_integral(p["beta"], u - t0, v - t0)
    # contraction phase [T1, inf): E1 exp(-lam tau) + M
    tau_u = np.maximum(a, t1) - t1
    tau_v = np.maximum(b, t1) - t1
    part_e = np.exp(log_e1) * _exp_integral(-_lam(p), tau_u, tau_v)
    part_m = _memory_integral(p, log_e1, tau_u, tau_v)
    return part1 + part2 + part_e + part_m


def time_below(params: Mapping[str, Array], lloq: Array) -> np.ndarray:
    """Return the persistence: first time after T1 at which E + M falls below ``lloq``.

    After T1 the total decreases monotonically, so the root of
    ``log(E + M)(t) = log(lloq)`` is bracketed by ``[T1, T1 + log(E(T1)/lloq) / c]`` with
    ``c = min(alpha + deltaE, deltaM)`` and found element-wise with
    :func:`scipy.optimize.elementwise.find_root` (Chandrupatla's bracketing method).

    Parameters
    ----------
    params : mapping
        Liu parameters.
    lloq : float or array
        Lower limit of quantification (data units), one value or one per patient.

    Returns
    -------
    numpy.ndarray
        Time (days). ``T1`` when ``E(T1) <= lloq`` already; ``inf`` when ``deltaM = 0`` and
        the memory plateau stays above ``lloq``.

    Examples
    --------
    >>> p = dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.0, deltaM=0.005)
    >>> lam = 0.2 + 0.435 / 30.4375
    >>> round(float(time_below(p, 1.0)), 6) == round(10.0 + 5.0 / lam, 6)
    True
    """
    p = _liu(params)
    log_lloq = np.log(np.asarray(lloq, dtype=float))
    log_e1, log_lloq = np.broadcast_arrays(_log_peak(p), log_lloq)
    p = {key: np.broadcast_to(val, log_e1.shape) for key, val in p.items()}
    rate = np.minimum(p["alpha"] + p["deltaE"], p["deltaM"])
    drop = log_e1 - log_lloq
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_hi = np.where(drop > 0, drop / rate, 0.0)
        # deltaM == 0: E + M = plateau + E1 (1 - rM/lam) exp(-lam tau), plateau = rM E1 / lam
        plateau = np.exp(log_e1) * p["rM"] / _lam(p)
        lloq_lin = np.exp(log_lloq)
        tau_flat = np.log(np.exp(log_e1) / (lloq_lin - plateau)) / _lam(p)
    flat = p["deltaM"] <= 0
    never = (drop > 0) & flat & (plateau >= lloq_lin)
    tau_hi = np.where(flat & ~never, tau_flat, tau_hi)
    solve = (drop > 0) & ~never
    result = np.where(never, np.inf, p["T1"]).astype(float)
    if np.any(solve):
        sub = {key: val[solve] for key, val in p.items()}

        def f(tau: np.ndarray, *args: np.ndarray) -> np.ndarray:
            q = dict(zip(sub, args[:-1], strict=True))
            return _log_states(q["T1"] + tau, q)[2] - args[-1]

        args = (*sub.values(), log_lloq[solve])
        res = elementwise.find_root(
            f,
            (np.zeros(int(solve.sum())), tau_hi[solve] * (1 + 1e-12) + 1e-12),
            args=args,
            tolerances={"xatol": 1e-10, "xrtol": 1e-13},
        )
        result[solve] = sub["T1"] + res.x
    return result


def doubling_time(params: Mapping[str, Array]) -> np.ndarray:
    """Doubling time of the expansion phase, ``ln 2 / beta`` (days)."""
    return np.log(2.0) / _liu(params)["beta"]


def initial_half_life(params: Mapping[str, Array]) -> np.ndarray:
    """Half-life of the effector decline after the peak, ``ln 2 / lam`` (days).

    ``lam = alpha + deltaE + rM`` is the rate of the fast (contraction) exponential.
    """
    return np.log(2.0) / _lam(_liu(params))


def terminal_half_life(params: Mapping[str, Array]) -> np.ndarray:
    """Terminal half-life of E + M, ``ln 2 / min(deltaM, lam)`` (days).

    When ``deltaM < lam`` (the usual case) the memory pool sets the terminal slope; when
    memory cells die faster than effectors decline, M follows E and the slope is ``lam``.
    ``inf`` when ``deltaM = 0``.
    """
    p = _liu(params)
    with np.errstate(divide="ignore"):
        return np.log(2.0) / np.minimum(p["deltaM"], _lam(p))


def memory_fraction(params: Mapping[str, Array], t: Array) -> np.ndarray:
    """Fraction of memory cells ``M / (E + M)`` at times ``t`` (0 up to T1).

    Examples
    --------
    >>> p = dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.005)
    >>> np.round(memory_fraction(p, np.array([5.0, 20.0, 40.0])), 4)
    array([0.    , 0.2663, 0.9704])
    """
    p = _liu(params)
    _, log_m, log_total = _log_states(np.asarray(t, dtype=float), p)
    return np.exp(log_m - log_total)


def derived_metrics(
    params: Mapping[str, Array] | pd.DataFrame,
    lloq: Array | None = None,
    auc_window: tuple[float, float] = (0.0, 28.0),
    memory_fraction_at: Sequence[float] = (),
) -> pd.DataFrame:
    """Table of derived kinetic metrics, one row per patient (or parameter draw).

    Parameters
    ----------
    params : mapping or DataFrame
        Liu parameters, scalars or 1-D arrays of equal length. A DataFrame keeps its index.
    lloq : float or array, optional
        Adds ``time_below_lloq`` (see :func:`time_below`).
    auc_window : (float, float)
        Window of the AUC column ``AUC_<start>_<end>`` (days).
    memory_fraction_at : sequence of float
        Adds ``memory_fraction_<t>`` columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``Cmax`` (data units), ``Tmax`` (day), ``AUC_<a>_<b>`` (data units x day),
        ``doubling_time``, ``initial_half_life``, ``terminal_half_life`` (days), and the
        optional ``time_below_lloq`` (day) and ``memory_fraction_<t>``.
    """
    p = _liu(params)
    start, end = auc_window
    columns: dict[str, np.ndarray] = {
        "Cmax": cmax(p),
        "Tmax": tmax(p),
        f"AUC_{start:g}_{end:g}": auc(p, start, end),
        "doubling_time": doubling_time(p),
        "initial_half_life": initial_half_life(p),
        "terminal_half_life": terminal_half_life(p),
    }
    if lloq is not None:
        columns["time_below_lloq"] = time_below(p, lloq)
    for t in memory_fraction_at:
        columns[f"memory_fraction_{t:g}"] = memory_fraction(p, t)
    n = max(np.size(val) for val in columns.values())
    data = {key: np.broadcast_to(np.atleast_1d(val), (n,)) for key, val in columns.items()}
    index = params.index if isinstance(params, pd.DataFrame) else None
    return pd.DataFrame(data, index=index)
