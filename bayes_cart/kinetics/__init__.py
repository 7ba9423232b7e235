"""Kinetic structures of CAR-T cellular kinetics, looked up by name.

Use :func:`get_kinetics` to get a :class:`KineticModel` and its :meth:`KineticModel.solve`.

The ODE route (:mod:`bayes_cart.kinetics.ode`: :class:`PhasedODE`, :class:`Phase`,
:func:`register_ode_kinetics`, :func:`make_batched_log_total`, ``LIU2021_ODE``) is imported
lazily on first access, because importing it imports JAX and diffrax and switches JAX to
64-bit floats.
"""

from typing import Any

from bayes_cart.kinetics.closed_form import (
    liu_log_c0_from_cmax,
    liu_log_cmax,
    liu_log_states,
    log_add_exp,
    log_biexp_kernel,
    stein_log_total,
)
from bayes_cart.kinetics.mapping import liu_to_stein, stein_to_liu
from bayes_cart.kinetics.metrics import (
    auc,
    cmax,
    derived_metrics,
    doubling_time,
    initial_half_life,
    memory_fraction,
    terminal_half_life,
    time_below,
    tmax,
)
from bayes_cart.kinetics.registry import (
    KineticModel,
    get_kinetics,
    list_kinetics,
    register_kinetics,
)

_LAZY_ODE = (
    "LIU2021_ODE",
    "LIU_PHASES",
    "Phase",
    "PhasedODE",
    "effector_memory_output",
    "make_batched_log_total",
    "register_ode_kinetics",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_ODE:
        from bayes_cart.kinetics import ode

        return getattr(ode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KineticModel",
    "LIU2021_ODE",
    "LIU_PHASES",
    "Phase",
    "PhasedODE",
    "auc",
    "cmax",
    "derived_metrics",
    "doubling_time",
    "effector_memory_output",
    "get_kinetics",
    "initial_half_life",
    "list_kinetics",
    "liu_log_c0_from_cmax",
    "liu_log_cmax",
    "liu_log_states",
    "liu_to_stein",
    "log_add_exp",
    "log_biexp_kernel",
    "make_batched_log_total",
    "memory_fraction",
    "register_kinetics",
    "register_ode_kinetics",
    "stein_log_total",
    "stein_to_liu",
    "terminal_half_life",
    "time_below",
    "tmax",
]
