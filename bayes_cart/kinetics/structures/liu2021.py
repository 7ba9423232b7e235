"""The Liu et al. (2021) multiphasic CAR-T model: closed form, phases, heuristics, registration.

Liu et al. model, for one patient (DESIGN.md section 1)::

    t < T0         dE/dt = -k E
    T0 <= t <= T1  dE/dt = beta E
    t > T1         dE/dt = -(alpha + deltaE + rM) E,  dM/dt = rM E - deltaM M

with E(0) = C0 and M(0) = 0. With lam = alpha + deltaE + rM and tau = t - T1 > 0::

    E(T1) = C0 exp(-k T0 + beta (T1 - T0))
    E(t)  = E(T1) exp(-lam tau)
    M(t)  = rM E(T1) (exp(-deltaM tau) - exp(-lam tau)) / (lam - deltaM)

and the limit tau exp(-lam tau) rM E(T1) when lam == deltaM.

Everything bayes_cart knows about this structure is in this module: the closed form
(:func:`liu_log_states`, written against an array namespace), its peak
(:func:`liu_log_cmax`), the same system as phases for the ODE routes (:data:`LIU_PHASES`,
:data:`LIU2021_ODE`), the starting-estimate heuristic (:func:`liu_initial_estimates`), the
identity that lets the analytic CK metrics serve it (:func:`liu_equivalent`) and the
:class:`~bayes_cart.kinetics.structure.KineticModel` :data:`LIU2021`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from bayes_cart.kinetics.closed_form import log_add_exp, log_biexp_kernel
from bayes_cart.kinetics.initial_estimates import ProfileSummary
from bayes_cart.kinetics.phases import Phase, PhasedODE
from bayes_cart.kinetics.structure import KineticModel
from bayes_cart.units import DELTA_E_PER_DAY

Array = Any
Params = Mapping[str, Array]

#: Parameters of the structure, in the paper's notation (rates /day, times days).
LIU_PARAMETERS = ("C0", "k", "T0", "beta", "T1", "alpha", "rM", "deltaM", "deltaE")

__all__ = [
    "LIU2021",
    "LIU2021_ODE",
    "LIU_PARAMETERS",
    "LIU_PHASES",
    "liu_closed_form",
    "liu_equivalent",
    "liu_initial_estimates",
    "liu_log_c0_from_cmax",
    "liu_log_cmax",
    "liu_log_peak_shift",
    "liu_log_states",
]


# ---------------------------------------------------------------------- closed form
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


def liu_closed_form(t: Array, p: Params, xp: ModuleType = np) -> dict[str, Array]:
    """``log_E``, ``log_M``, ``log_total`` of complete Liu parameters (the registered form)."""
    log_e, log_m, log_total = liu_log_states(
        t,
        xp.log(p["C0"]),
        p["beta"],
        p["T1"],
        p["alpha"],
        p["rM"],
        p["deltaM"],
        k=p["k"],
        t0=p["T0"],
        delta_e=p["deltaE"],
        xp=xp,
    )
    return {"log_E": log_e, "log_M": log_m, "log_total": log_total}


# ---------------------------------------------------------------------- phases (ODE routes)
def _distribution(t: Array, y: Array, p: Params) -> tuple[Array, Array]:
    return (-p["k"] * y[0], 0.0 * y[1])


def _expansion(t: Array, y: Array, p: Params) -> tuple[Array, Array]:
    return (p["beta"] * y[0], 0.0 * y[1])


def _contraction(t: Array, y: Array, p: Params) -> tuple[Array, Array]:
    e, m = y[0], y[1]
    lam = p["alpha"] + p["deltaE"] + p["rM"]
    return (-lam * e, p["rM"] * e - p["deltaM"] * m)


def _y0(p: Params) -> tuple[Array, Array]:
    return (p["C0"], 0.0 * p["C0"])


LIU_PHASES: tuple[Phase, ...] = (
    # no memory cells before T1: M stays exactly zero, one stage per phase is enough
    Phase("0", "T0", _distribution, log_space=True, name="distribution", two_stage=False),
    Phase("T0", "T1", _expansion, log_space=True, name="expansion", two_stage=False),
    # memory cells start at zero at T1: two stages (natural scale, then log scale)
    Phase("T1", "inf", _contraction, log_space=True, name="contraction"),
)
"""The three phases of the Liu et al. model; reuse them to build variants.

The distribution phase is cut at T1 when ``T0 > T1`` (``T0_eff = min(T0, T1)``), as in the
closed form: contraction always starts at T1, the peak."""

LIU2021_ODE = PhasedODE(phases=LIU_PHASES, n_states=2, y0=_y0)
"""The Liu et al. (2021) system as a :class:`~bayes_cart.kinetics.phases.PhasedODE` (states E,
M; E(0) = C0, M(0) = 0)."""


# ---------------------------------------------------------------------- heuristics
def liu_initial_estimates(
    prof: ProfileSummary, delta_e: float = DELTA_E_PER_DAY
) -> dict[str, np.ndarray]:
    """Liu et al. parameters from profile summaries (no distribution phase assumed).

    ``T1`` is the peak time, ``beta`` the expansion slope, ``C0`` the peak extrapolated back to
    t = 0, the early decline rate is ``alpha + deltaE + rM`` and the terminal rate ``deltaM``;
    ``rM = FB (lambda - deltaM)`` with ``FB`` the late fraction.
    """
    beta = prof.expansion_rate
    t1 = prof.t_peak
    lam = prof.decline_rate
    delta_m = np.where(prof.terminal_rate < lam / 3, prof.terminal_rate, np.nan)
    r_m = prof.late_fraction * (lam - np.nan_to_num(delta_m, nan=0.0))
    alpha = lam - delta_e - np.nan_to_num(r_m, nan=0.0)
    alpha = np.where(alpha > 0.01, alpha, np.nan)
    return {
        "T1": t1,
        "beta": beta,
        "C0": np.exp(prof.log_peak - beta * t1),
        "alpha": alpha,
        "rM": np.where(r_m > 0, r_m, np.nan),
        "deltaM": delta_m,
    }


def liu_log_peak_shift(p: Params, xp: ModuleType = np) -> Array:
    """``log Cmax - log C0 = beta (T1 - T0) - k T0``, equations (5) and (6) of Liu et al."""
    return p["beta"] * (p["T1"] - p["T0"]) - p["k"] * p["T0"]


def liu_equivalent(params: Mapping[str, Array]) -> dict[str, np.ndarray]:
    """Return the parameters themselves, with ``T0`` cut at ``T1`` as in the closed form."""
    out = {p: np.asarray(params[p], dtype=float) for p in LIU_PARAMETERS if p in params}
    if "T0" in out and "T1" in out:
        out["T0"] = np.minimum(out["T0"], out["T1"])
    return out


LIU2021 = KineticModel(
    name="liu2021",
    parameters=LIU_PARAMETERS,
    description=(
        "Multiphasic CAR-T kinetics: distribution (k, T0), expansion (beta, T1), "
        "contraction with memory (alpha, rM, deltaM; deltaE fixed)"
    ),
    closed_form=liu_closed_form,
    ode=LIU2021_ODE,
    defaults={"k": 0.0, "T0": 0.0, "deltaE": DELTA_E_PER_DAY},
    reference="Liu C et al. Clin Pharmacol Ther 2021; medRxiv 2020.05.09.20096586",
    initial_estimates=liu_initial_estimates,
    distribution_parameters=("k", "T0"),
    log_peak_shift=liu_log_peak_shift,
    liu_equivalent=liu_equivalent,
)
"""The registered ``liu2021`` structure."""
