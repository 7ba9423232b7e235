"""ODE route for kinetic structures: phase-by-phase integration with diffrax.

The closed form (:mod:`bayes_cart.kinetics.closed_form`) is the default solver. This module
serves structures that have no closed form -- a user's own right-hand side, saturable expansion,
tumour-driven expansion -- and is checked against the closed form for the Liu et al. model.

How a :class:`PhasedODE` is solved
----------------------------------
A structure is a sequence of :class:`Phase` objects. Each phase has its own right-hand side and
runs between two boundaries given by parameter names or constants, e.g. ``("0", "T0")``,
``("T0", "T1")``, ``("T1", "inf")``. A later boundary takes precedence over an earlier one:
a phase that would end after a later boundary is cut there (``end[i] = min(end[i],
end[i+1])``), and no phase ends before the first one starts. This is the convention of the
closed form: with ``T0 > T1`` the distribution phase is cut at T1 (``T0_eff = min(T0, T1)``),
the expansion phase is empty and contraction starts at T1, the peak; ``T0 = 0`` means an empty
distribution phase.

Every phase is integrated by its own :func:`diffrax.diffeqsolve`, never as one solve with a
switch inside it: diffrax gives a zero gradient with respect to a switch time inside a solve
(diffrax issue 363). Within a phase of length ``L`` starting at ``b`` the time is rescaled to
``s = (t - b) / L`` in ``[0, 1]``, so the solve always runs over ``[0, 1]`` with
``dy/ds = L rhs(b + L s, y)``. The phase boundaries then enter only through ``L`` and ``b``,
gradients with respect to them are exact for the discretised scheme, and a zero-length phase
(``T0 = 0``) is an ordinary, NaN-free solve of ``dy/ds = 0`` whose gradient with respect to
``L`` is still the correct one-sided derivative. The last phase may end at ``inf``; it is
integrated up to the latest requested time.

Observation times are clipped into each phase (``SaveAt(ts=clip(...))``; sorted times stay
sorted) and each time takes the value of the phase it falls in. A time exactly on a boundary
takes the later phase (which starts from the end state of the earlier one, so both agree).

States are integrated relative to ``scale``, the largest state at the start of the phase, so
that tolerances are relative to the level reached. How, depends on ``Phase.log_space``:

* ``log_space=False``: ``y / scale`` on the natural scale (any sign).
* ``log_space=True`` (for cell populations, which cannot become negative): positive states
  as ``log(y / scale)``, which makes a linear phase exact in one or two steps and keeps the
  relative accuracy of a state that decays by tens of orders of magnitude. A state that is
  zero at the phase start (memory cells at T1) cannot start in log space. In a phase with
  ``two_stage=True`` (the default) it is integrated on the natural scale over the first
  ``first_stage`` (1 %) of the phase and then, the phase being restarted from there, as
  ``log(y / scale + 1e-30)`` -- an exact change of variables (a state that stays at zero
  stays exactly zero). With ``two_stage=False`` the phase is a single solve and such a state
  stays on the natural scale (used for the Liu phases before T1, where M stays zero).
  Tolerances on log states are absolute ``rtol`` (a relative error), natural-scale states
  use ``rtol`` and ``atol``.

By default the solver steps exactly to every observation time (``step_to_obs``), because the
dense interpolant of Tsit5 is otherwise the largest error just after a phase switch (about
1e-5 relative at ``rtol=1e-8``; at the ``rtol=1e-6`` used for sampling, interpolating is as
accurate as stepping and cheaper, see :mod:`bayes_cart.kinetics.pytensor_ode`).

Gradients and cost
------------------
Gradients are reverse mode through the solver steps (``RecursiveCheckpointAdjoint``). The
position of an observation inside its phase, ``s = (t - b) / L``, depends on the boundaries;
its derivative uses the vector field at the saved point (exact) rather than the derivative of
the interpolant. All phases and stages share one ``diffeqsolve`` inside a ``lax.scan`` (the
right-hand side is picked with ``lax.switch``), so the solver is compiled once.

Measured for the Liu model on the bundled example (``bench/bench_ode.py``: 218 patients, 2240
observations, log-likelihood + gradient, jitted JAX, shared 2-core machine): with these
defaults log_total is within ~1e-8 of the closed form and a call took ~55 ms with every phase
in two stages, about 80 times the closed form; with the sampling settings of
:data:`bayes_cart.kinetics.pytensor_ode.MCMC_OPTIONS` (rtol 1e-6, interpolated outputs, 256
fully checkpointed steps) and the single-stage Liu phases before T1, within ~2e-6 and ~16 ms,
about 20 times the closed form (~15 times for the whole hierarchical model's log density). The
cost is diffrax's per-step machinery (step-size control, dense output, checkpointing) over
~35 steps per patient, not the right-hand side: forward-mode Jacobians, dense output, Dopri5 /
Dopri8, unrolled stages and a leaner vector field were all measured and none was faster. Use
the closed form when one exists; when every phase is linear in the states, the
matrix-exponential route (:mod:`bayes_cart.kinetics.linear_ode`, ``solver="linear"``) solves
the same :class:`PhasedODE` at about twice the cost of the closed form.

Numerical precision
-------------------
Importing this module switches JAX to 64-bit floats (``jax_enable_x64``, set with JAX's
persistent compile cache in :func:`bayes_cart.jax_setup.configure_jax`) for the whole
process: 32-bit floats cannot represent the 10+ orders of magnitude a CAR-T profile spans with
the tolerances used here. Failed solves (e.g. ``max_steps`` reached for extreme parameters) give
NaN outputs instead of raising, so that a sampler simply rejects the proposal; set
``throw=True`` on the :class:`PhasedODE` to raise instead.

Registering your own structure
------------------------------
Either call :func:`register_ode_kinetics`, or build a :class:`PhasedODE` yourself, wrap it in a
:class:`~bayes_cart.kinetics.registry.KineticModel` with ``ode=...`` and pass that to
:func:`~bayes_cart.kinetics.registry.register_kinetics`.

Examples
--------
>>> import numpy as np
>>> out = LIU2021_ODE.solve(np.array([0.0, 10.0, 40.0]), dict(
...     C0=10.0, k=0.0, T0=0.0, beta=0.5, T1=10.0, alpha=0.1, rM=0.01, deltaM=0.001,
...     deltaE=0.435 / 30.4375))
>>> np.round(np.exp(np.asarray(out["log_total"])), 2)
array([  10.  , 1484.13,  149.58])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax

from bayes_cart.jax_setup import configure_jax

configure_jax()  # 64-bit floats and the persistent compile cache, see bayes_cart.jax_setup

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

Array = Any
Params = Mapping[str, Array]
RHS = Callable[[Array, Array, Params], Array]
Bound = str | float

_LOG_OFFSET = 1e-30
"""Offset (relative to the largest state at the phase start) of states that start at zero in a
log_space phase: they are integrated as ``log(y / scale + 1e-30)``, an exact change of
variables that keeps about 8 significant digits down to ``y ~ 1e-22 scale``."""

__all__ = [
    "LIU2021_ODE",
    "LIU_PHASES",
    "Phase",
    "PhasedODE",
    "effector_memory_output",
    "make_batched_log_total",
    "phased_ode",
    "register_ode_kinetics",
]


def _is_inf(bound: Bound) -> bool:
    if isinstance(bound, str):
        return bound.strip().lower() in ("inf", "+inf", "infinity")
    return math.isinf(float(bound)) and float(bound) > 0


def _resolve(bound: Bound, params: Params) -> Array:
    """Value of a phase boundary: a constant, or the parameter of that name."""
    if isinstance(bound, str):
        try:
            return jnp.asarray(float(bound), dtype=jnp.float64)
        except ValueError:
            return jnp.asarray(params[bound], dtype=jnp.float64)
    return jnp.asarray(float(bound), dtype=jnp.float64)


def _safe_log(x: Array) -> Array:
    """``log(x)`` with ``-inf`` (and a finite gradient) where ``x <= 0``."""
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def effector_memory_output(y: Array) -> dict[str, Array]:
    """Output function for a two-state (effector, memory) system.

    Parameters
    ----------
    y : array, shape (..., 2)
        States ``E`` and ``M`` on the natural scale.

    Returns
    -------
    dict
        ``log_E``, ``log_M`` (``-inf`` where M = 0) and ``log_total`` = log(E + M).
    """
    e, m = y[..., 0], y[..., 1]
    return {"log_E": _safe_log(e), "log_M": _safe_log(m), "log_total": _safe_log(e + m)}


@dataclass(frozen=True)
class Phase:
    """One phase of a phased ODE system.

    Parameters
    ----------
    start, end : str or float
        Boundaries: a parameter name (``"T1"``), a constant (``0.0`` or ``"0"``) or, for the
        end of the last phase only, ``"inf"`` / ``math.inf``.
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` written with ``jax.numpy``; ``t`` in days, ``y`` the
        state vector on the natural scale, ``params`` a mapping of scalar parameters.
    log_space : bool, default False
        Integrate the states on log scale (see the module docstring). Only valid for states
        that never become negative (cell populations); a state may start the phase at zero.
    name : str
        Label, e.g. ``"expansion"``.
    two_stage : bool, default True
        Run a ``log_space`` phase in two stages so that a state starting the phase at zero
        moves to log scale after the first ``PhasedODE.first_stage`` of the phase (memory cells
        at T1). With ``False`` the phase is one solve and a state that starts it at zero is
        integrated on the natural scale throughout: cheaper, and exact for a state that stays
        zero (memory cells before T1). Ignored when ``log_space`` is False.
    """

    start: Bound
    end: Bound
    rhs: RHS
    log_space: bool = False
    name: str = ""
    two_stage: bool = True


@dataclass(frozen=True)
class PhasedODE:
    """An ODE system made of consecutive phases, each integrated separately with diffrax.

    Parameters
    ----------
    phases : tuple of Phase
        Consecutive phases; ``phases[i].start`` must be the same boundary as
        ``phases[i-1].end``. Only the last phase may end at ``inf``.
    n_states : int
        Size of the state vector (the same in every phase).
    y0 : callable
        ``y0(params) -> array (n_states,)``: the state at the start of the first phase.
    output : callable
        ``output(y) -> dict`` with ``log_total`` (and ``log_E``, ``log_M`` where meaningful),
        for ``y`` of shape ``(..., n_states)``.
    solver : diffrax solver, default ``Tsit5()``
        Any explicit or implicit diffrax solver (``Kvaerno5()`` for stiff variants).
    rtol, atol : float
        Tolerances of the PID step-size controller; ``atol`` is relative to the largest state
        at the start of each natural-scale phase.
    max_steps : int
        Maximum number of steps per phase stage (each phase runs in two stages).
    step_to_obs : bool, default True
        Make the solver step exactly to every observation time instead of interpolating
        between steps (``diffrax.ClipStepSizeController(step_ts=...)``). Costs a few extra
        steps per observation, but the dense-output interpolant of Tsit5 is otherwise the
        largest error (about 1e-5 relative just after T1, versus 1e-8 at the steps).
    first_stage : float, default 0.01
        Fraction of each phase integrated before states that started the phase at zero
        switch to log scale (log_space phases only; see the module docstring).
    adjoint : diffrax adjoint, default ``RecursiveCheckpointAdjoint()``
        How gradients are computed (reverse mode through the solver steps).
    throw : bool, default False
        Raise when a solve fails; by default a failed solve returns NaN outputs.

    Examples
    --------
    >>> ode = LIU2021_ODE.with_options(rtol=1e-6, atol=1e-10)
    >>> ode.rtol
    1e-06
    """

    phases: tuple[Phase, ...]
    n_states: int
    y0: Callable[[Params], Array]
    output: Callable[[Array], dict[str, Array]] = effector_memory_output
    solver: Any = field(default_factory=diffrax.Tsit5)
    rtol: float = 1e-8
    atol: float = 1e-14
    max_steps: int = 4096
    step_to_obs: bool = True
    first_stage: float = 0.01
    adjoint: Any = field(default_factory=diffrax.RecursiveCheckpointAdjoint)
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
            if _is_inf(phase.end) and i < len(phases) - 1:
                raise ValueError(f"only the last phase may end at inf (phase {i} does)")
            if _is_inf(phase.start):
                raise ValueError(f"phase {i} cannot start at inf")

    def with_options(self, **options: Any) -> PhasedODE:
        """Return a copy with other solver options (``solver``, ``rtol``, ``atol``, ...)."""
        return replace(self, **options)

    def parameter_bounds(self) -> list[str]:
        """Parameter names used as phase boundaries (e.g. ``["T0", "T1"]``)."""
        names: list[str] = []
        for phase in self.phases:
            for bound in (phase.start, phase.end):
                if isinstance(bound, str) and not _is_inf(bound):
                    try:
                        float(bound)
                    except ValueError:
                        if bound not in names:
                            names.append(bound)
        return names

    # ------------------------------------------------------------------ core (one patient)
    def _rhs(self, index: Array, t: Array, y: Array, params: Params) -> Array:
        """Right-hand side of phase ``index`` (a traced integer)."""
        branches = [
            (lambda t_, y_, p_, f=phase.rhs: jnp.asarray(f(t_, y_, p_), dtype=jnp.float64))
            for phase in self.phases
        ]
        if len(branches) == 1:
            return branches[0](t, y, params)
        return jax.lax.switch(index, branches, t, y, params)

    def _integrate_phase(
        self,
        index: Array,
        lo: Array,
        length: Array,
        shift_zero: Array,
        y_start: Array,
        t: Array,
        params: Params,
    ) -> tuple[Array, Array, Array]:
        """Integrate phase ``index``; return the states at clipped ``t``, end state, success.

        All phases share this one ``diffeqsolve`` (the right-hand side is chosen with
        ``lax.switch``), so the solver is traced and compiled once, not once per phase.
        """
        length_safe = jnp.where(length > 0, length, 1.0)
        s_obs = jnp.clip((t - lo) / length_safe, 0.0, 1.0)
        s_save = jnp.concatenate([s_obs, jnp.ones((1,), dtype=s_obs.dtype)])
        # every state is integrated relative to the largest state at the stage start: in a
        # log_space phase as u = log(y / scale) if positive, and if zero either on the natural
        # scale (first stage) or as u = log(y / scale + _LOG_OFFSET) (second stage)
        log_space = jnp.asarray([phase.log_space for phase in self.phases])[index]
        scale = jax.lax.stop_gradient(jnp.max(jnp.abs(y_start)))
        scale = jnp.where(scale > 0, scale, 1.0)
        is_log = log_space & ((y_start > 0) | (shift_zero & (y_start == 0)))
        offset = jnp.where(y_start > 0, 0.0, _LOG_OFFSET)
        z0 = jnp.where(
            is_log, jnp.log(jnp.where(is_log, y_start / scale + offset, 1.0)), y_start / scale
        )

        def to_natural(z: Array, is_log_: Array, offset_: Array, scale_: Array) -> Array:
            # exp(u) - offset written as offset * expm1(u - log offset): exactly 0 while a
            # state that started at zero has not moved
            shifted = offset_ > 0
            log_offset = jnp.log(jnp.where(shifted, offset_, 1.0))
            u = jnp.where(is_log_, z, 0.0)
            y_log = jnp.where(shifted, offset_ * jnp.expm1(u - log_offset), jnp.exp(u))
            return scale_ * jnp.where(is_log_, y_log, z)

        def field_fn(s: Array, z: Array, args: tuple) -> Array:
            index_, lo_, len_, is_log_, offset_, scale_, p = args
            y = to_natural(z, is_log_, offset_, scale_)
            dy = len_ * self._rhs(index_, lo_ + len_ * s, y, p) / scale_
            # d log(y/scale + offset) = (dy/scale) / exp(u); guard exp(u) underflow
            denom = jnp.where(is_log_, jnp.exp(jnp.where(is_log_, z, 0.0)), 1.0)
            return jnp.where(denom > 0, dy / jnp.where(denom > 0, denom, 1.0), 0.0)

        # log states: absolute tolerance rtol on log y (a relative error); others: rtol, atol
        rtol = jnp.where(is_log, 0.0, self.rtol)
        atol = jnp.where(is_log, self.rtol, self.atol)
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        s_fixed = jax.lax.stop_gradient(s_save)
        if self.step_to_obs:
            controller = diffrax.ClipStepSizeController(controller, step_ts=s_fixed)
        args = (index, lo, length, is_log, offset, scale, params)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field_fn),
            self.solver,
            t0=0.0,
            t1=1.0,
            dt0=None,
            y0=z0,
            args=args,
            saveat=diffrax.SaveAt(ts=s_fixed),
            stepsize_controller=controller,
            max_steps=self.max_steps,
            adjoint=self.adjoint,
            throw=self.throw,
        )
        # d z(s)/ds at a saved time is exactly the vector field there; use it for the
        # gradient w.r.t. the save times (which depend on the phase boundaries) instead of
        # the derivative of the dense interpolant, which is only ~4th-order accurate
        zs = sol.ys
        field_at_save = jax.vmap(lambda s, z: field_fn(s, z, args))(s_fixed, zs)
        zs = zs + jax.lax.stop_gradient(field_at_save) * (s_save - s_fixed)[:, None]
        ys = to_natural(zs, is_log, offset, scale)
        ok = sol.result == diffrax.RESULTS.successful
        return ys[:-1], ys[-1], ok

    def _boundaries(self, t: Array, params: Params) -> tuple[Array, Array]:
        """Start and length of every phase.

        A later boundary takes precedence over an earlier one: a phase that would end after a
        later boundary is cut there (``end[i] = min(end[i], end[i+1])``), the convention of the
        closed form, where a distribution phase ending after the peak is cut at T1
        (``T0_eff = min(T0, T1)``: contraction always starts at T1). No phase starts before
        the first boundary, so lengths are never negative (``T0 = 0``: an empty first phase).
        """
        first = _resolve(self.phases[0].start, params)
        t_last = jnp.max(t) if t.shape[0] > 0 else first
        ends: list[Array | None] = [
            None if _is_inf(phase.end) else _resolve(phase.end, params) for phase in self.phases
        ]
        for i in range(len(ends) - 2, -1, -1):
            later = ends[i + 1]
            if later is not None:
                # full gradient to the earlier boundary at a tie
                ends[i] = jnp.where(ends[i] <= later, ends[i], later)
        lo = first
        starts, lengths = [], []
        for end in ends:
            hi = t_last if end is None else end
            hi = jnp.where(hi >= lo, hi, lo)  # full gradient to hi at a tie (T0 = 0)
            starts.append(lo)
            lengths.append(hi - lo)
            lo = hi
        return jnp.stack(starts), jnp.stack(lengths)

    @functools.cached_property
    def _stages(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the static plan of the solves, one entry per stage.

        Phase index, start and length as fractions of the phase, and whether states at zero
        move to log scale (the second stage of a two-stage phase).
        """
        index, frac_lo, frac_len, shift = [], [], [], []
        f = self.first_stage
        for i, phase in enumerate(self.phases):
            if phase.log_space and phase.two_stage:
                index += [i, i]
                frac_lo += [0.0, f]
                frac_len += [f, 1.0 - f]
                shift += [False, True]
            else:
                index.append(i)
                frac_lo.append(0.0)
                frac_len.append(1.0)
                shift.append(False)
        return np.array(index), np.array(frac_lo), np.array(frac_len), np.array(shift)

    def _solve_sorted(self, t: Array, params: Params) -> dict[str, Array]:
        """Solve one patient at sorted 1-D times ``t``."""
        y0 = jnp.asarray(self.y0(params), dtype=jnp.float64)
        starts, lengths = self._boundaries(t, params)
        # two-stage phases run their first `first_stage`, then the rest (module docstring)
        index, frac_lo, frac_len, shift = self._stages
        indices = jnp.asarray(index)
        sub_starts = starts[index] + frac_lo * lengths[index]
        sub_lengths = frac_len * lengths[index]
        shift_zero = jnp.asarray(shift)

        def step(y: Array, xs: tuple) -> tuple[Array, tuple]:
            index, lo, length, shift = xs
            ys, y_end, ok = self._integrate_phase(index, lo, length, shift, y, t, params)
            return y_end, (ys, ok)

        _, (saved, ok) = jax.lax.scan(step, y0, (indices, sub_starts, sub_lengths, shift_zero))
        # each time takes the stage it falls in (the later one on a boundary)
        phase_of_t = jnp.sum(t[None, :] >= sub_starts[1:, None], axis=0)
        y_t = saved[phase_of_t, jnp.arange(t.shape[0])]
        out = self.output(y_t)
        return {key: jnp.where(jnp.all(ok), val, jnp.nan) for key, val in out.items()}

    def _solve_any_order(self, t: Array, params: Params) -> dict[str, Array]:
        order = jnp.argsort(t)
        out = self._solve_sorted(t[order], params)
        inverse = jnp.argsort(order)
        return {key: val[inverse] for key, val in out.items()}

    @functools.cached_property
    def _jit_single(self) -> Callable[[Array, Params], dict[str, Array]]:
        return jax.jit(self._solve_any_order)

    @functools.cached_property
    def _jit_elementwise(self) -> Callable[[Array, Params], dict[str, Array]]:
        def one(ti: Array, pi: Params) -> dict[str, Array]:
            out = self._solve_sorted(ti[None], pi)
            return {key: val[0] for key, val in out.items()}

        return jax.jit(jax.vmap(one))

    # ------------------------------------------------------------------ public
    def solve(self, t: Array, params: Params) -> dict[str, Array]:
        """Solve at times ``t``; same contract as the closed form.

        Parameters
        ----------
        t : array
            Times since infusion (days), any order.
        params : mapping
            Parameter values. Scalars describe one patient solved at all ``t``. Arrays are
            broadcast with ``t`` and each element is solved on its own (one ODE solve per
            element; for many patients use :func:`make_batched_log_total`).

        Returns
        -------
        dict of jax arrays
            ``log_total`` (and ``log_E``, ``log_M``), shaped like the broadcast of ``t`` and
            the parameters. Differentiable with :func:`jax.grad`.
        """
        t = jnp.asarray(t, dtype=jnp.float64)
        p = {key: jnp.asarray(val, dtype=jnp.float64) for key, val in params.items()}
        if all(val.ndim == 0 for val in p.values()):
            out = self._jit_single(t.reshape(-1), p)
            return {key: val.reshape(t.shape) for key, val in out.items()}
        shape = jnp.broadcast_shapes(t.shape, *(val.shape for val in p.values()))
        tb = jnp.broadcast_to(t, shape).reshape(-1)
        pb = {key: jnp.broadcast_to(val, shape).reshape(-1) for key, val in p.items()}
        out = self._jit_elementwise(tb, pb)
        return {key: val.reshape(shape) for key, val in out.items()}


def phased_ode(model: Any) -> PhasedODE:
    """Return the :class:`PhasedODE` of ``model`` (a KineticModel, or the PhasedODE itself).

    Raises
    ------
    ValueError
        If the kinetic model has no ODE system.
    """
    ode = model.ode if hasattr(model, "with_defaults") else model
    if ode is None:
        raise ValueError(f"kinetic model {getattr(model, 'name', model)!r} has no ODE system")
    if not isinstance(ode, PhasedODE):
        ode = ode.load()  # the registry's lazy placeholder
    return ode


def make_batched_log_total(
    model: Any, max_obs: int | None = None, **options: Any
) -> Callable[[Array, Array, Params], Array]:
    """Build a jitted ``log_total`` for many patients, each solved on its own time grid.

    Parameters
    ----------
    model : PhasedODE or KineticModel
        The ODE system; with a :class:`~bayes_cart.kinetics.registry.KineticModel` its
        parameter defaults (e.g. ``k = 0``, ``T0 = 0``) are filled in.
    max_obs : int, optional
        Largest number of observations of one patient. Needed when the returned function is
        called with traced ``patient_idx`` (inside ``jax.jit`` or ``jax.vmap``); otherwise it
        is computed from the data.
    **options
        Solver options for :meth:`PhasedODE.with_options` (``rtol``, ``atol``, ``solver``,
        ``max_steps``, ``step_to_obs``, ``adjoint``...), e.g. the looser
        :data:`bayes_cart.kinetics.pytensor_ode.MCMC_OPTIONS` used inside a PyMC model.

    Returns
    -------
    callable
        ``f(t_obs[n_obs], patient_idx[n_obs], params) -> log_total[n_obs]`` where ``params``
        maps names to ``[n_patients]`` arrays (scalars are broadcast). Observations may come
        in any order; each patient is solved once on its sorted, padded time grid
        (``jax.vmap`` over patients). ``jax.value_and_grad`` of a sum works with respect to
        ``params``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_cart.kinetics import get_kinetics
    >>> f = make_batched_log_total(get_kinetics("liu2021"))
    >>> p = dict(C0=np.array([1.0, 2.0]), beta=np.array([0.5, 0.4]), T1=np.array([10.0, 12.0]),
    ...          alpha=np.array([0.1, 0.2]), rM=np.array([0.01, 0.02]),
    ...          deltaM=np.array([0.01, 0.005]))
    >>> f(np.array([5.0, 30.0, 7.0]), np.array([0, 0, 1]), p).shape
    (3,)
    """
    with_defaults = getattr(model, "with_defaults", None)
    ode = phased_ode(model)
    if options:
        ode = ode.with_options(**options)

    def solve_grid(
        grid: Array, pid_sorted: Array, rank: Array, order: Array, params: Params
    ) -> Array:
        """Solve every patient on its row of ``grid``; return the values in data order."""
        p = {key: jnp.asarray(val, dtype=jnp.float64) for key, val in params.items()}
        p = {key: jnp.broadcast_to(val, (grid.shape[0],)) for key, val in p.items()}
        solved = jax.vmap(lambda ti, pi: ode._solve_sorted(ti, pi)["log_total"])(grid, p)
        picked = solved[pid_sorted, rank]
        return jnp.zeros_like(picked).at[order].set(picked)

    def core(t_obs: Array, patient_idx: Array, params: Params, n_cols: int) -> Array:
        """Build the grid with jax.numpy (traced times or patient indices), then solve."""
        t_obs = jnp.asarray(t_obs, dtype=jnp.float64)
        patient_idx = jnp.asarray(patient_idx, dtype=jnp.int32)
        n_patients = max((np.shape(v)[0] for v in params.values() if np.ndim(v) > 0), default=1)
        order = jnp.lexsort((t_obs, patient_idx))
        pid_sorted = patient_idx[order]
        t_sorted = t_obs[order]
        first = jnp.searchsorted(pid_sorted, pid_sorted, side="left")
        rank = jnp.arange(t_obs.shape[0]) - first
        row_max = jax.ops.segment_max(t_sorted, pid_sorted, num_segments=n_patients)
        row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
        grid = jnp.broadcast_to(row_max[:, None], (n_patients, n_cols))
        grid = grid.at[pid_sorted, rank].set(t_sorted)
        return solve_grid(grid, pid_sorted, rank, order, params)

    jitted_core = jax.jit(core, static_argnames=("n_cols",))
    jitted_grid = jax.jit(solve_grid)

    def batched_log_total(t_obs: Array, patient_idx: Array, params: Params) -> Array:
        full = dict(with_defaults(params)) if with_defaults is not None else dict(params)
        n_patients = max((np.shape(v)[0] for v in full.values() if np.ndim(v) > 0), default=1)
        if isinstance(patient_idx, jax.core.Tracer):
            if max_obs is None:
                raise ValueError(
                    "patient_idx is traced (inside jax.jit/vmap): pass max_obs= to "
                    "make_batched_log_total"
                )
            return jitted_core(t_obs, patient_idx, full, n_cols=max(int(max_obs), 1))
        idx = np.asarray(patient_idx, dtype=np.int64)
        counts = np.bincount(idx, minlength=1)
        if counts.size > n_patients:
            raise ValueError(
                f"patient_idx goes up to {counts.size - 1} but the parameters have "
                f"{n_patients} patient(s)"
            )
        n_cols = max(int(max_obs if max_obs is not None else counts.max()), 1)
        if isinstance(t_obs, jax.core.Tracer):
            return jitted_core(t_obs, idx, full, n_cols=n_cols)
        # known observation times: sort them into the per-patient grid once, with numpy
        grid = _observation_grid(np.asarray(t_obs, dtype=np.float64), idx, n_patients, n_cols)
        return jitted_grid(*grid, full)

    return batched_log_total


def _observation_grid(
    t_obs: np.ndarray, patient_idx: np.ndarray, n_patients: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted per-patient time grid (padded with each patient's last time) and its indices.

    Returns ``grid (n_patients, n_cols)``, ``pid_sorted``, ``rank`` (column of each sorted
    observation) and ``order`` (the sorting permutation of the observations).
    """
    order = np.lexsort((t_obs, patient_idx))
    pid_sorted = patient_idx[order]
    t_sorted = t_obs[order]
    rank = np.arange(t_obs.size) - np.searchsorted(pid_sorted, pid_sorted, side="left")
    row_max = np.full(n_patients, -np.inf)
    np.maximum.at(row_max, pid_sorted, t_sorted)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # patients without observations
    grid = np.repeat(row_max[:, None], n_cols, axis=1)
    grid[pid_sorted, rank] = t_sorted
    return grid, pid_sorted, rank, order


# ---------------------------------------------------------------------- Liu et al. (2021)
def _liu_distribution(t: Array, y: Array, p: Params) -> Array:
    return jnp.stack([-p["k"] * y[0], jnp.zeros_like(y[1])])


def _liu_expansion(t: Array, y: Array, p: Params) -> Array:
    return jnp.stack([p["beta"] * y[0], jnp.zeros_like(y[1])])


def _liu_contraction(t: Array, y: Array, p: Params) -> Array:
    e, m = y[0], y[1]
    lam = p["alpha"] + p["deltaE"] + p["rM"]
    return jnp.stack([-lam * e, p["rM"] * e - p["deltaM"] * m])


def _liu_y0(p: Params) -> Array:
    c0 = jnp.asarray(p["C0"], dtype=jnp.float64)
    return jnp.stack([c0, jnp.zeros_like(c0)])


LIU_PHASES: tuple[Phase, ...] = (
    # no memory cells before T1: M stays exactly zero, one stage per phase is enough
    Phase("0", "T0", _liu_distribution, log_space=True, name="distribution", two_stage=False),
    Phase("T0", "T1", _liu_expansion, log_space=True, name="expansion", two_stage=False),
    # memory cells start at zero at T1: two stages (natural scale, then log scale)
    Phase("T1", "inf", _liu_contraction, log_space=True, name="contraction"),
)
"""The three phases of the Liu et al. model; reuse them to build variants.

The distribution phase is cut at T1 when ``T0 > T1`` (``T0_eff = min(T0, T1)``), as in the
closed form: contraction always starts at T1, the peak."""

LIU2021_ODE = PhasedODE(phases=LIU_PHASES, n_states=2, y0=_liu_y0)
"""The Liu et al. (2021) system as a :class:`PhasedODE` (states E, M; E(0) = C0, M(0) = 0)."""


def register_ode_kinetics(
    name: str,
    parameters: Sequence[str],
    phases: Sequence[Phase],
    y0: Callable[[Params], Array],
    n_states: int,
    output: Callable[[Array], dict[str, Array]] = effector_memory_output,
    defaults: Mapping[str, float] | None = None,
    description: str = "",
    reference: str = "",
    overwrite: bool = False,
    **solver_options: Any,
) -> Any:
    """Register a kinetic structure defined by its phases' right-hand sides.

    Parameters
    ----------
    name : str
        Registry name.
    parameters : sequence of str
        All parameter names (including phase boundaries such as ``T1``).
    phases : sequence of Phase
        The phases, see :class:`Phase`.
    y0 : callable
        Initial state ``y0(params)``.
    n_states : int
        Size of the state vector.
    output : callable
        Output function, default :func:`effector_memory_output` (states E, M).
    defaults : mapping, optional
        Default parameter values.
    description, reference : str
        Metadata.
    overwrite : bool
        Replace an existing registration of the same name.
    **solver_options
        ``solver``, ``rtol``, ``atol``, ``max_steps``, ``throw`` of :class:`PhasedODE`.

    Returns
    -------
    KineticModel
        The registered model; ``model.solve(t, params, solver="ode")`` solves it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> def saturable(t, y, p):
    ...     return jnp.stack([p["beta"] * y[0] / (1 + y[0] / p["Emax"]), 0 * y[1]])
    >>> phases = (LIU_PHASES[0], Phase("T0", "T1", saturable, log_space=True), LIU_PHASES[2])
    >>> model = register_ode_kinetics(
    ...     "liu_saturable_doc", ("C0", "k", "T0", "beta", "Emax", "T1", "alpha", "rM",
    ...     "deltaM", "deltaE"), phases, y0=lambda p: jnp.stack([p["C0"], 0.0]), n_states=2,
    ...     defaults={"k": 0.0, "T0": 0.0, "deltaE": 0.435 / 30.4375}, overwrite=True)
    >>> model.closed_form is None
    True
    """
    from bayes_cart.kinetics.registry import KineticModel, register_kinetics

    ode = PhasedODE(phases=tuple(phases), n_states=n_states, y0=y0, output=output, **solver_options)
    missing = [b for b in ode.parameter_bounds() if b not in parameters]
    if missing:
        raise ValueError(f"phase boundaries {missing} are not among the parameters of {name!r}")
    model = KineticModel(
        name=name,
        parameters=tuple(parameters),
        description=description,
        ode=ode,
        defaults=dict(defaults or {}),
        reference=reference,
    )
    return register_kinetics(model, overwrite=overwrite)
