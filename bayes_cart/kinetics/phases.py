"""Phase description of a kinetic structure: what each phase's ODE is, not how it is solved.

A structure without a closed form is a sequence of :class:`Phase` objects (a right-hand side
between two boundaries) gathered in a :class:`PhasedODE`. This module imports no solver and no
JAX; the engines that integrate a :class:`PhasedODE` live in
:mod:`bayes_cart.kinetics.engines` (adaptive diffrax: ``solver="ode"``; matrix exponential of
linear phases: ``solver="linear"``), and :mod:`bayes_cart.kinetics.solvers` picks one.

Conventions shared by every engine
----------------------------------
* Boundaries are parameter names (``"T1"``) or constants (``0.0``, ``"0"``); only the last
  phase may end at ``"inf"``.
* A later boundary takes precedence over an earlier one: a phase that would end after a later
  boundary is cut there (``end[i] = min(end[i], end[i+1])``) and no phase ends before the first
  one starts. This is the convention of the Liu closed form: with ``T0 > T1`` the distribution
  phase is cut at T1, the expansion phase is empty and contraction starts at T1, the peak;
  ``T0 = 0`` is an empty distribution phase (see :func:`phase_boundaries`).
* A time exactly on a boundary takes the later phase, which starts from the end state of the
  earlier one, so both agree.
* Right-hand sides are ``rhs(t, y, params) -> dy/dt`` with ``t`` in days and ``y`` the states
  on the natural scale. They are traced by JAX, so write them with ``jax.numpy`` or with plain
  arithmetic returning a tuple of components (``(-p["k"] * y[0], 0.0 * y[1])``), which the
  engines stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
Params = Mapping[str, Array]
RHS = Callable[[Array, Array, Params], Array]
Bound = str | float

__all__ = [
    "Bound",
    "Phase",
    "PhasedODE",
    "effector_memory_output",
    "is_inf",
    "phase_boundaries",
    "phased_ode",
]


def is_inf(bound: Bound) -> bool:
    """Whether a phase boundary is ``+inf`` (``"inf"``, ``"+inf"``, ``math.inf``...)."""
    if isinstance(bound, str):
        return bound.strip().lower() in ("inf", "+inf", "infinity")
    return math.isinf(float(bound)) and float(bound) > 0


def array_namespace(x: Array) -> ModuleType:
    """Array module of ``x``: ``jax.numpy`` for JAX arrays and tracers, else numpy."""
    get = getattr(x, "__array_namespace__", None)
    if get is None or isinstance(x, np.ndarray):
        return np
    return get()


def _safe_log(x: Array, xp: ModuleType) -> Array:
    """``log(x)`` with ``-inf`` (and a finite gradient) where ``x <= 0``."""
    pos = x > 0
    return xp.where(pos, xp.log(xp.where(pos, x, 1.0)), -xp.inf)


def effector_memory_output(y: Array) -> dict[str, Array]:
    """Output function for a two-state (effector, memory) system.

    Parameters
    ----------
    y : array, shape (..., 2)
        States ``E`` and ``M`` on the natural scale (numpy or JAX).

    Returns
    -------
    dict
        ``log_E``, ``log_M`` (``-inf`` where M = 0) and ``log_total`` = log(E + M).

    Examples
    --------
    >>> import numpy as np
    >>> out = effector_memory_output(np.array([[10.0, 0.0]]))
    >>> bool(out["log_total"][0] == np.log(10.0)), bool(np.isneginf(out["log_M"][0]))
    (True, True)
    """
    xp = array_namespace(y)
    e, m = y[..., 0], y[..., 1]
    return {
        "log_E": _safe_log(e, xp),
        "log_M": _safe_log(m, xp),
        "log_total": _safe_log(e + m, xp),
    }


@dataclass(frozen=True)
class Phase:
    """One phase of a phased ODE system.

    Parameters
    ----------
    start, end : str or float
        Boundaries: a parameter name (``"T1"``), a constant (``0.0`` or ``"0"``) or, for the
        end of the last phase only, ``"inf"`` / ``math.inf``.
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` (see the module docstring); ``params`` maps names to
        scalar parameters.
    log_space : bool, default False
        Let the diffrax engine integrate the states on log scale. Only valid for states that
        never become negative (cell populations); a state may start the phase at zero.
    name : str
        Label, e.g. ``"expansion"``.
    two_stage : bool, default True
        For a ``log_space`` phase in the diffrax engine: run it in two stages so that a state
        starting the phase at zero moves to log scale after the first
        ``PhasedODE.first_stage`` of the phase (memory cells at T1). With ``False`` such a
        state stays on the natural scale (exact for a state that stays zero).
    """

    start: Bound
    end: Bound
    rhs: RHS
    log_space: bool = False
    name: str = ""
    two_stage: bool = True


@dataclass(frozen=True)
class PhasedODE:
    """An ODE system made of consecutive phases, and the options of the diffrax engine.

    Parameters
    ----------
    phases : tuple of Phase
        Consecutive phases; ``phases[i].start`` must be the same boundary as
        ``phases[i-1].end``. Only the last phase may end at ``inf``.
    n_states : int
        Size of the state vector (the same in every phase).
    y0 : callable
        ``y0(params) -> states (n_states,)``: the state at the start of the first phase (an
        array or a tuple of components).
    output : callable
        ``output(y) -> dict`` with ``log_total`` (and ``log_E``, ``log_M`` where meaningful),
        for ``y`` of shape ``(..., n_states)``.
    solver : diffrax solver, optional
        Any diffrax solver; ``None``: ``diffrax.Tsit5()`` (``Kvaerno5()`` for stiff variants).
    rtol, atol : float
        Tolerances of the diffrax step-size controller; ``atol`` is relative to the largest
        state at the start of each natural-scale phase.
    max_steps : int
        Maximum number of diffrax steps per phase stage.
    step_to_obs : bool, default True
        Make diffrax step exactly to every observation time instead of interpolating.
    first_stage : float, default 0.01
        Fraction of a two-stage phase integrated before states that started it at zero switch
        to log scale.
    adjoint : diffrax adjoint, optional
        How diffrax computes gradients; ``None``: ``RecursiveCheckpointAdjoint()``.
    throw : bool, default False
        Raise when a diffrax solve fails; by default a failed solve gives NaN outputs, so that
        a sampler rejects the proposal.

    Examples
    --------
    >>> from bayes_cart.kinetics.structures.liu2021 import LIU2021_ODE
    >>> LIU2021_ODE.parameter_bounds()
    ['T0', 'T1']
    >>> LIU2021_ODE.with_options(rtol=1e-6).rtol
    1e-06
    """

    phases: tuple[Phase, ...]
    n_states: int
    y0: Callable[[Params], Array]
    output: Callable[[Array], dict[str, Array]] = effector_memory_output
    solver: Any = None
    rtol: float = 1e-8
    atol: float = 1e-14
    max_steps: int = 4096
    step_to_obs: bool = True
    first_stage: float = 0.01
    adjoint: Any = None
    throw: bool = False

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        object.__setattr__(self, "phases", phases)
        if not phases:
            raise ValueError("a PhasedODE needs at least one phase")
        for i, phase in enumerate(phases):
            if i > 0 and str(phase.start) != str(phases[i - 1].end):
                raise ValueError(
                    f"phase {i} ({phase.name or 'unnamed'}) starts at {phase.start!r} but "
                    f"phase {i - 1} ends at {phases[i - 1].end!r}; phases must be consecutive"
                )
            if is_inf(phase.end) and i < len(phases) - 1:
                raise ValueError(f"only the last phase may end at inf (phase {i} does)")
            if is_inf(phase.start):
                raise ValueError(f"phase {i} cannot start at inf")

    def with_options(self, **options: Any) -> PhasedODE:
        """Return a copy with other engine options (``solver``, ``rtol``, ``atol``, ...)."""
        return replace(self, **options)

    def parameter_bounds(self) -> list[str]:
        """Parameter names used as phase boundaries (e.g. ``["T0", "T1"]``)."""
        names: list[str] = []
        for phase in self.phases:
            for bound in (phase.start, phase.end):
                if isinstance(bound, str) and not is_inf(bound):
                    try:
                        float(bound)
                    except ValueError:
                        if bound not in names:
                            names.append(bound)
        return names


def _bound_value(bound: Bound, params: Params, xp: ModuleType) -> Array:
    """Value of a phase boundary: a constant, or the parameter of that name."""
    if isinstance(bound, str):
        try:
            return xp.asarray(float(bound), dtype=xp.float64)
        except ValueError:
            return xp.asarray(params[bound], dtype=xp.float64)
    return xp.asarray(float(bound), dtype=xp.float64)


def phase_boundaries(
    ode: PhasedODE, t_last: Array, params: Params, xp: ModuleType = np
) -> tuple[Array, Array]:
    """Start and length of every phase, with the precedence rules of the module docstring.

    Parameters
    ----------
    ode : PhasedODE
        The structure.
    t_last : scalar
        Latest time needed: the end of a last phase that runs to ``inf``.
    params : mapping
        Scalar parameter values (boundaries given by name are read from it).
    xp : module
        Array namespace (numpy or ``jax.numpy``).

    Returns
    -------
    starts, lengths : arrays, shape (n_phases,)

    Examples
    --------
    >>> from bayes_cart.kinetics.structures.liu2021 import LIU2021_ODE
    >>> starts, lengths = phase_boundaries(LIU2021_ODE, 100.0, {"T0": 12.0, "T1": 10.0})
    >>> starts.tolist(), lengths.tolist()
    ([0.0, 10.0, 10.0], [10.0, 0.0, 90.0])
    """
    first = _bound_value(ode.phases[0].start, params, xp)
    ends: list[Array | None] = [
        None if is_inf(phase.end) else _bound_value(phase.end, params, xp) for phase in ode.phases
    ]
    for i in range(len(ends) - 2, -1, -1):
        later = ends[i + 1]
        if later is not None:
            # full gradient to the earlier boundary at a tie
            ends[i] = xp.where(ends[i] <= later, ends[i], later)
    lo = first
    starts, lengths = [], []
    for end in ends:
        hi = t_last if end is None else end
        hi = xp.where(hi >= lo, hi, lo)  # full gradient to hi at a tie (T0 = 0)
        starts.append(lo)
        lengths.append(hi - lo)
        lo = hi
    # constants (the first start) broadcast against per-patient boundaries
    return xp.stack(xp.broadcast_arrays(*starts)), xp.stack(xp.broadcast_arrays(*lengths))


def phased_ode(model: Any) -> PhasedODE:
    """Return the :class:`PhasedODE` of ``model`` (a KineticModel, or the PhasedODE itself).

    Raises
    ------
    ValueError
        If the kinetic model has no ODE system.
    """
    ode = model if isinstance(model, PhasedODE) else getattr(model, "ode", None)
    if ode is None:
        raise ValueError(f"kinetic model {getattr(model, 'name', model)!r} has no ODE system")
    return ode
