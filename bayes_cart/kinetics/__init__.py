"""Kinetic structures of CAR-T cellular kinetics, looked up by name.

Use :func:`get_kinetics` to get a :class:`KineticModel` and its :meth:`KineticModel.solve`.

Layout (imports flow downwards only, no cycles):

* :mod:`~bayes_cart.kinetics.registry`: :func:`get_kinetics`, :func:`register_kinetics`,
  :func:`register_ode_kinetics`; registers the built-in structures.
* :mod:`~bayes_cart.kinetics.structures`: one module per built-in structure (``liu2021``,
  ``stein2019``) with its closed form, phases, heuristics and CK-metric mapping.
* :mod:`~bayes_cart.kinetics.structure`: the :class:`KineticModel` record.
* :mod:`~bayes_cart.kinetics.solvers`: solver choice (``closed_form``, ``linear``, ``ode``).
* :mod:`~bayes_cart.kinetics.phases`: the phase description of an ODE system (no JAX).
* :mod:`~bayes_cart.kinetics.engines`: the JAX engines (diffrax, matrix exponential, the
  PyTensor op), imported only when an ODE route is used.
* :mod:`~bayes_cart.kinetics.closed_form`, :mod:`~bayes_cart.kinetics.metrics`,
  :mod:`~bayes_cart.kinetics.mapping`, :mod:`~bayes_cart.kinetics.initial_estimates`:
  log-space helpers, analytic CK metrics, the Liu <-> Stein mapping, profile summaries.

:func:`make_batched_log_total` (the diffrax engine's batched solve) is imported on first
access, because importing it imports JAX and diffrax.
"""

from typing import Any

from bayes_cart.kinetics.closed_form import log_add_exp, log_biexp_kernel
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
from bayes_cart.kinetics.phases import Phase, PhasedODE, effector_memory_output
from bayes_cart.kinetics.registry import (
    get_kinetics,
    list_kinetics,
    register_kinetics,
    register_ode_kinetics,
)
from bayes_cart.kinetics.solvers import JAX_SOLVERS, SOLVERS, available_solvers
from bayes_cart.kinetics.structure import KineticModel
from bayes_cart.kinetics.structures.liu2021 import (
    LIU2021_ODE,
    LIU_PHASES,
    liu_log_c0_from_cmax,
    liu_log_cmax,
    liu_log_states,
)
from bayes_cart.kinetics.structures.stein2019 import stein_log_total


def __getattr__(name: str) -> Any:
    if name == "make_batched_log_total":
        from bayes_cart.kinetics.engines.diffrax_ode import make_batched_log_total

        return make_batched_log_total
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JAX_SOLVERS",
    "SOLVERS",
    "KineticModel",
    "LIU2021_ODE",
    "LIU_PHASES",
    "Phase",
    "PhasedODE",
    "auc",
    "available_solvers",
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
