"""Solver choice, in one place: which route solves a kinetic structure.

Three routes, from fastest to most general:

``"closed_form"``
    The structure's hand-derived solution, written once against an array namespace (numpy,
    ``pytensor.tensor`` or ``jax.numpy``).
``"linear"``
    The matrix exponential of each phase of its :class:`~bayes_cart.kinetics.phases.PhasedODE`
    (:mod:`bayes_cart.kinetics.engines.linear`; phases linear in the states), like NONMEM's
    ADVAN5/7.
``"ode"``
    Adaptive diffrax integration of the phases (:mod:`bayes_cart.kinetics.engines.diffrax_ode`;
    any right-hand side), like ADVAN13.

The two ODE routes are JAX programs; their engines are imported here, when first used, so that
importing the registry or a structure imports neither JAX nor diffrax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from bayes_cart.kinetics.phases import phased_ode

Array = Any

#: Every solver name, in the order a user would try them.
SOLVERS = ("closed_form", "linear", "ode")
#: Solvers that run as JAX programs (a model using them is sampled with nutpie's JAX backend).
JAX_SOLVERS = ("linear", "ode")

__all__ = [
    "JAX_SOLVERS",
    "SOLVERS",
    "available_solvers",
    "batched_log_total",
    "check_solver",
    "output_names",
    "solve",
]


def available_solvers(model: Any) -> tuple[str, ...]:
    """Solvers that can solve ``model`` (a KineticModel), in the order of :data:`SOLVERS`.

    Examples
    --------
    >>> from bayes_cart.kinetics import get_kinetics
    >>> available_solvers(get_kinetics("liu2021")), available_solvers(get_kinetics("stein2019"))
    (('closed_form', 'linear', 'ode'), ('closed_form',))
    """
    out = []
    if getattr(model, "closed_form", None) is not None:
        out.append("closed_form")
    if getattr(model, "ode", None) is not None:
        out += ["linear", "ode"]
    return tuple(out)


def output_names(model: Any) -> tuple[str, ...]:
    """Curves a structure gives: ``log_total``, and ``log_E``, ``log_M`` where it has them.

    Read off the closed form at a probe point, or off the phases' output function (no solve).

    Examples
    --------
    >>> from bayes_cart.kinetics import get_kinetics
    >>> output_names(get_kinetics("liu2021")), output_names(get_kinetics("stein2019"))
    (('log_E', 'log_M', 'log_total'), ('log_total',))
    """
    if getattr(model, "closed_form", None) is not None:
        probe = {p: 1.0 for p in model.parameters if p not in model.defaults}
        return tuple(solve(model, np.array([1.0]), probe))
    ode = phased_ode(model)
    return tuple(ode.output(np.ones((1, ode.n_states))))


def check_solver(model: Any, solver: str) -> None:
    """Raise a ``ValueError`` that says why ``solver`` cannot solve ``model``, if it cannot.

    The linearity of the phases (needed by ``"linear"``) is checked when the route is built
    (:func:`bayes_cart.kinetics.engines.linear.check_linear`), since it evaluates them.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {list(SOLVERS)}")
    name = getattr(model, "name", "?")
    if solver == "closed_form" and getattr(model, "closed_form", None) is None:
        raise ValueError(
            f"kinetic model {name!r} has no closed form; use solver='linear' (phases linear "
            "in the states) or solver='ode' (any right-hand side)"
        )
    if solver in JAX_SOLVERS and getattr(model, "ode", None) is None:
        raise ValueError(
            f"kinetic model {name!r} has no ODE system (no phases), so solver={solver!r} "
            "cannot solve it; use solver='closed_form'"
        )


def solve(
    model: Any,
    t: Array,
    params: Mapping[str, Array],
    solver: str = "closed_form",
    xp: ModuleType = np,
) -> dict[str, Array]:
    """Solve ``model`` at times ``t`` (elementwise: parameters broadcast with ``t``).

    Parameters
    ----------
    model : KineticModel
        The structure; its defaults complete ``params``.
    t : array
        Times since infusion (days).
    params : mapping
        Parameter values (arrays broadcastable with ``t``).
    solver : {"closed_form", "linear", "ode"}
        The route, see the module docstring.
    xp : module
        Array namespace of the closed form; the ODE routes compute with JAX.

    Returns
    -------
    dict
        At least ``log_total``; ``log_E`` and ``log_M`` where the structure has them.
    """
    check_solver(model, solver)
    full = model.with_defaults(params)
    if solver == "closed_form":
        return model.closed_form(t, full, xp)
    ode = phased_ode(model)
    if solver == "linear":
        from bayes_cart.kinetics.engines.linear import linear_solve

        return linear_solve(ode, t, full)
    from bayes_cart.kinetics.engines import diffrax_ode

    return diffrax_ode.solve(ode, t, full)


def batched_log_total(
    model: Any, solver: str = "closed_form", state: str = "log_total", **options: Any
) -> Callable[[Array, Array, Mapping[str, Array]], Array]:
    """``f(t_obs, patient_idx, params) -> log_total`` (or another state) for many patients.

    Parameters
    ----------
    model : KineticModel
        The structure.
    solver : {"closed_form", "linear", "ode"}
        The route.
    state : str
        Output to return: ``"log_total"`` or, where the structure has them, ``"log_E"``,
        ``"log_M"``.
    **options
        diffrax options (``rtol``, ``atol``, ``max_steps``, ...) for ``solver="ode"`` only.

    Returns
    -------
    callable
        ``params`` maps names to per-patient arrays ``(n_patients,)`` (or scalars); the result
        has one value per observation. The ODE routes return JAX arrays and are differentiable
        with :func:`jax.grad`; the closed form computes with numpy.

    Examples
    --------
    >>> from bayes_cart.kinetics import get_kinetics
    >>> f = batched_log_total(get_kinetics("liu2021"))
    >>> p = dict(C0=np.array([10.0, 5.0]), beta=0.5, T1=10.0, alpha=0.1, rM=0.01, deltaM=1e-3)
    >>> np.round(np.exp(f(np.array([10.0, 0.0]), np.array([0, 1]), p)), 2)
    array([1484.13,    5.  ])
    """
    check_solver(model, solver)
    if options and solver != "ode":
        raise ValueError(f"solver options {sorted(options)} apply to solver='ode' only")
    if solver == "linear":
        from bayes_cart.kinetics.engines.linear import make_linear_log_total

        return make_linear_log_total(model, state=state)
    if solver == "ode":
        from bayes_cart.kinetics.engines.diffrax_ode import make_batched_log_total

        return make_batched_log_total(model, state=state, **options)

    def closed_form_log_total(
        t_obs: Array, patient_idx: Array, params: Mapping[str, Array]
    ) -> np.ndarray:
        idx = np.asarray(patient_idx, dtype=np.int64)
        per_obs = {
            name: (np.asarray(v)[idx] if np.ndim(v) > 0 else np.asarray(v))
            for name, v in params.items()
        }
        return np.asarray(solve(model, np.asarray(t_obs, dtype=float), per_obs)[state])

    return closed_form_log_total
