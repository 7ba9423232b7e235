"""The Stein et al. (2019) tisagenlecleucel model: closed form, heuristics, registration.

Exponential growth to ``Cmax`` at ``Tmax`` (``foldx`` the fold expansion), then a
bi-exponential decline ``(1 - FB) e^(-alpha tau) + FB e^(-beta tau)``. The decline is symmetric
under swapping its two phases (alpha with beta, FB with 1 - FB). The phases are not ordered in
the model: the priors (typical beta 50x below alpha) and the starting estimates (the slow
phase only where it is at least 3x slower than the fast one, :func:`stein_initial_estimates`)
keep the chains in the labelled mode (``docs/benchmarks.md``, session 4). CK metrics are the
Liu metrics of the equivalent Liu parameters
(:func:`bayes_cart.kinetics.mapping.stein_to_liu`), NaN where a draw has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from bayes_cart.kinetics.closed_form import log_add_exp
from bayes_cart.kinetics.initial_estimates import ProfileSummary
from bayes_cart.kinetics.mapping import stein_to_liu
from bayes_cart.kinetics.structure import KineticModel
from bayes_cart.kinetics.structures.liu2021 import LIU_PARAMETERS
from bayes_cart.units import DELTA_E_PER_DAY

Array = Any
Params = Mapping[str, Array]

#: Parameters of the structure (Cmax in data units, Tmax days, rates /day).
STEIN_PARAMETERS = ("Cmax", "Tmax", "foldx", "alpha", "beta", "FB")

__all__ = [
    "STEIN2019",
    "STEIN_PARAMETERS",
    "stein_initial_estimates",
    "stein_liu_equivalent",
    "stein_log_total",
]


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


def _closed_form(t: Array, p: Params, xp: ModuleType) -> dict[str, Array]:
    log_total = stein_log_total(
        t, xp.log(p["Cmax"]), p["Tmax"], p["foldx"], p["alpha"], p["beta"], p["FB"], xp=xp
    )
    return {"log_total": log_total}


def stein_initial_estimates(prof: ProfileSummary) -> dict[str, np.ndarray]:
    """Stein et al. parameters from profile summaries, the slow phase slower than the fast one.

    ``Cmax``/``Tmax`` are the observed peak, ``foldx = exp(rho Tmax)`` with ``rho`` the
    expansion slope, ``alpha`` the early decline, ``beta`` the terminal slope (only where it is
    at least 3x slower than alpha) and ``FB`` the late fraction.
    """
    alpha = prof.decline_rate
    beta = np.where(prof.terminal_rate < alpha / 3, prof.terminal_rate, np.nan)
    return {
        "Cmax": np.exp(prof.log_peak),
        "Tmax": prof.t_peak,
        "foldx": np.exp(prof.expansion_rate * prof.t_peak),
        "alpha": alpha,
        "beta": beta,
        "FB": np.where(np.isfinite(beta), prof.late_fraction, np.nan),
    }


def stein_liu_equivalent(params: Mapping[str, Array]) -> dict[str, np.ndarray]:
    """Liu parameters of Stein draws; NaN where a draw has no Liu equivalent.

    A draw maps when the slow rate is below the fast one, ``0 < FB < 1``, ``foldx > 0``,
    ``Tmax > 0`` and the early decline exceeds the effector death rate deltaE.
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    flat = {k: np.broadcast_to(v, shape).ravel() for k, v in arrays.items()}
    a_s, b_s, fb = flat["alpha"], flat["beta"], flat["FB"]
    ok = (a_s > b_s) & (fb > 0) & (fb < 1) & (flat["foldx"] > 0) & (flat["Tmax"] > 0)
    ok &= a_s - fb * (a_s - b_s) > DELTA_E_PER_DAY
    out = {p: np.full(flat["alpha"].shape, np.nan) for p in LIU_PARAMETERS}
    if ok.any():
        mapped = stein_to_liu({k: v[ok] for k, v in flat.items()})
        for p in LIU_PARAMETERS:
            out[p][ok] = mapped[p]
    return {p: v.reshape(shape) for p, v in out.items()}


STEIN2019 = KineticModel(
    name="stein2019",
    parameters=STEIN_PARAMETERS,
    description=(
        "Exponential growth to Cmax at Tmax, then bi-exponential decline "
        "(1-FB) e^(-alpha tau) + FB e^(-beta tau)"
    ),
    closed_form=_closed_form,
    reference="Stein AM et al. CPT Pharmacometrics Syst Pharmacol 2019; 8:285-295",
    initial_estimates=stein_initial_estimates,
    liu_equivalent=stein_liu_equivalent,
)
"""The registered ``stein2019`` structure."""
