"""Kinetic structures of CAR-T cellular kinetics, looked up by name.

Use :func:`get_kinetics` to get a :class:`KineticModel` and its :meth:`KineticModel.solve`.
"""

from bayes_cart.kinetics.closed_form import (
    liu_log_c0_from_cmax,
    liu_log_cmax,
    liu_log_states,
    log_biexp_kernel,
    stein_log_total,
)
from bayes_cart.kinetics.registry import (
    KineticModel,
    get_kinetics,
    list_kinetics,
    register_kinetics,
)

__all__ = [
    "KineticModel",
    "get_kinetics",
    "list_kinetics",
    "liu_log_c0_from_cmax",
    "liu_log_cmax",
    "liu_log_states",
    "log_biexp_kernel",
    "register_kinetics",
    "stein_log_total",
]
