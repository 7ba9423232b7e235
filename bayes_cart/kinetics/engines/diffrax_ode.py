"""The diffrax engine: adaptive phase-by-phase integration of a :class:`PhasedODE`.

This is ``solver="ode"`` (:mod:`bayes_cart.kinetics.solvers`): any right-hand side, like
NONMEM's ADVAN13. The phase conventions (boundaries, precedence, a time on a boundary) are those
of :mod:`bayes_cart.kinetics.phases`; what is specific to this engine:

* Every phase is integrated by its own :func:`diffrax.diffeqsolve`, never as one solve with a
  switch inside it (diffrax gives a zero gradient with respect to a switch time inside a solve,
  diffrax issue 363). Within a phase of length ``L`` starting at ``b`` time is rescaled to
  ``s = (t - b) / L`` in ``[0, 1]``, so phase boundaries enter only through ``L`` and ``b``:
  their gradients are exact for the discretised scheme, and an empty phase (``T0 = 0``) is a
  NaN-free solve of ``dy/ds = 0``. All phases share one solve inside a ``lax.scan`` (the
  right-hand side is picked with ``lax.switch``), so it is compiled once.
* States are integrated relative to the largest state at the start of each phase. In a
  ``log_space`` phase positive states are integrated as ``log(y / scale)`` (a linear phase is
  then exact in one or two steps); a state that starts the phase at zero (memory cells at T1)
  runs on the natural scale for the first ``first_stage`` of a two-stage phase and then as
  ``log(y / scale + 1e-30)``, an exact change of variables.
* The solver steps to every observation time (``step_to_obs``) unless told otherwise;
  gradients are reverse mode through the steps (``RecursiveCheckpointAdjoint``), and the
  derivative of an observation's position inside its phase uses the vector field there.
* A failed solve (``max_steps`` reached) gives NaN outputs, so a sampler rejects the proposal;
  ``PhasedODE(throw=True)`` raises instead.

Its accuracy against the closed form and its cost are measured in ``bench/bench_ode.py`` and
recorded in ``docs/benchmarks.md``. JAX is configured (64-bit floats, persistent compile cache)
by :func:`bayes_cart.jax_setup.configure_jax` when a solve is first built, not on import.

Examples
--------
>>> import numpy as np
>>> from bayes_cart.kinetics.structures.liu2021 import LIU2021_ODE
>>> out = solve(LIU2021_ODE, np.array([0.0, 10.0, 40.0]), dict(
...     C0=10.0, k=0.0, T0=0.0, beta=0.5, T1=10.0, alpha=0.1, rM=0.01, deltaM=0.001,
...     deltaE=0.435 / 30.4375))
>>> np.round(np.exp(np.asarray(out["log_total"])), 2)
array([  10.  , 1484.13,  149.58])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from bayes_cart.jax_setup import configure_jax
from bayes_cart.kinetics.phases import PhasedODE, phase_boundaries, phased_ode

Array = Any
Params = Mapping[str, Array]

_LOG_OFFSET = 1e-30
"""Offset (relative to the largest state at the phase start) of states that start at zero in a
log_space phase: they are integrated as ``log(y / scale + 1e-30)``, an exact change of
variables that keeps about 8 significant digits down to ``y ~ 1e-22 scale``."""

__all__ = ["make_batched_log_total", "solve", "solve_sorted"]


def _rhs(ode: PhasedODE, index: Array, t: Array, y: Array, params: Params) -> Array:
    """Right-hand side of phase ``index`` (a traced integer)."""
    branches = [
        (lambda t_, y_, p_, f=phase.rhs: jnp.asarray(f(t_, y_, p_), dtype=jnp.float64))
        for phase in ode.phases
    ]
    if len(branches) == 1:
        return branches[0](t, y, params)
    return jax.lax.switch(index, branches, t, y, params)


def _integrate_phase(
    ode: PhasedODE,
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
    log_space = jnp.asarray([phase.log_space for phase in ode.phases])[index]
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
        dy = len_ * _rhs(ode, index_, lo_ + len_ * s, y, p) / scale_
        # d log(y/scale + offset) = (dy/scale) / exp(u); guard exp(u) underflow
        denom = jnp.where(is_log_, jnp.exp(jnp.where(is_log_, z, 0.0)), 1.0)
        return jnp.where(denom > 0, dy / jnp.where(denom > 0, denom, 1.0), 0.0)

    # log states: absolute tolerance rtol on log y (a relative error); others: rtol, atol
    rtol = jnp.where(is_log, 0.0, ode.rtol)
    atol = jnp.where(is_log, ode.rtol, ode.atol)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    s_fixed = jax.lax.stop_gradient(s_save)
    if ode.step_to_obs:
        controller = diffrax.ClipStepSizeController(controller, step_ts=s_fixed)
    args = (index, lo, length, is_log, offset, scale, params)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field_fn),
        diffrax.Tsit5() if ode.solver is None else ode.solver,
        t0=0.0,
        t1=1.0,
        dt0=None,
        y0=z0,
        args=args,
        saveat=diffrax.SaveAt(ts=s_fixed),
        stepsize_controller=controller,
        max_steps=ode.max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if ode.adjoint is None else ode.adjoint,
        throw=ode.throw,
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


def _boundaries(ode: PhasedODE, t: Array, params: Params) -> tuple[Array, Array]:
    """Start and length of every phase, none integrated past the latest time ``t``.

    A last phase to ``inf`` ends at the latest ``t``; so does any phase that would run past it
    (e.g. a boundary that is ``inf`` for a patient: a step change that never happens), and a
    phase that starts after it is empty. Observations are unaffected: none lies past it.
    """
    t_last = jnp.max(t) if t.shape[0] > 0 else jnp.asarray(0.0, dtype=jnp.float64)
    starts, lengths = phase_boundaries(ode, t_last, params, xp=jnp)
    ends = starts + lengths
    late_start = ~(starts <= t_last)  # also NaN / inf
    starts = jnp.where(late_start, t_last, starts)
    ends = jnp.where(late_start | ~(ends <= t_last), jnp.maximum(t_last, starts), ends)
    return starts, ends - starts


@functools.lru_cache(maxsize=64)
def _stages(ode: PhasedODE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the static plan of the solves, one entry per stage.

    Phase index, start and length as fractions of the phase, and whether states at zero
    move to log scale (the second stage of a two-stage phase).
    """
    index, frac_lo, frac_len, shift = [], [], [], []
    f = ode.first_stage
    for i, phase in enumerate(ode.phases):
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


def solve_sorted(ode: PhasedODE, t: Array, params: Params) -> dict[str, Array]:
    """Solve one patient at sorted 1-D times ``t`` (traceable; the engine's building block)."""
    y0 = jnp.asarray(ode.y0(params), dtype=jnp.float64)
    starts, lengths = _boundaries(ode, t, params)
    # two-stage phases run their first `first_stage`, then the rest (module docstring)
    index, frac_lo, frac_len, shift = _stages(ode)
    indices = jnp.asarray(index)
    sub_starts = starts[index] + frac_lo * lengths[index]
    sub_lengths = frac_len * lengths[index]
    shift_zero = jnp.asarray(shift)

    def step(y: Array, xs: tuple) -> tuple[Array, tuple]:
        index, lo, length, shift = xs
        ys, y_end, ok = _integrate_phase(ode, index, lo, length, shift, y, t, params)
        return y_end, (ys, ok)

    _, (saved, ok) = jax.lax.scan(step, y0, (indices, sub_starts, sub_lengths, shift_zero))
    # each time takes the stage it falls in (the later one on a boundary)
    phase_of_t = jnp.sum(t[None, :] >= sub_starts[1:, None], axis=0)
    y_t = saved[phase_of_t, jnp.arange(t.shape[0])]
    out = ode.output(y_t)
    return {key: jnp.where(jnp.all(ok), val, jnp.nan) for key, val in out.items()}


def _solve_any_order(ode: PhasedODE, t: Array, params: Params) -> dict[str, Array]:
    order = jnp.argsort(t)
    out = solve_sorted(ode, t[order], params)
    inverse = jnp.argsort(order)
    return {key: val[inverse] for key, val in out.items()}


@functools.lru_cache(maxsize=32)
def _jit_single(ode: PhasedODE) -> Callable[[Array, Params], dict[str, Array]]:
    return jax.jit(functools.partial(_solve_any_order, ode))


@functools.lru_cache(maxsize=32)
def _jit_elementwise(ode: PhasedODE) -> Callable[[Array, Params], dict[str, Array]]:
    def one(ti: Array, pi: Params) -> dict[str, Array]:
        out = solve_sorted(ode, ti[None], pi)
        return {key: val[0] for key, val in out.items()}

    return jax.jit(jax.vmap(one))


def solve(ode: PhasedODE, t: Array, params: Params) -> dict[str, Array]:
    """Solve at times ``t``; same contract as the closed form.

    Parameters
    ----------
    ode : PhasedODE
        The structure.
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
    configure_jax()
    t = jnp.asarray(t, dtype=jnp.float64)
    p = {key: jnp.asarray(val, dtype=jnp.float64) for key, val in params.items()}
    if all(val.ndim == 0 for val in p.values()):
        out = _jit_single(ode)(t.reshape(-1), p)
        return {key: val.reshape(t.shape) for key, val in out.items()}
    shape = jnp.broadcast_shapes(t.shape, *(val.shape for val in p.values()))
    tb = jnp.broadcast_to(t, shape).reshape(-1)
    pb = {key: jnp.broadcast_to(val, shape).reshape(-1) for key, val in p.items()}
    out = _jit_elementwise(ode)(tb, pb)
    return {key: val.reshape(shape) for key, val in out.items()}


def make_batched_log_total(
    model: Any, max_obs: int | None = None, state: str = "log_total", **options: Any
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
    state : str
        Output to return: ``"log_total"`` (default) or another key of the structure's
        output function (``"log_E"``, ``"log_M"``).
    **options
        Solver options for :meth:`PhasedODE.with_options` (``rtol``, ``atol``, ``solver``,
        ``max_steps``, ``step_to_obs``, ``adjoint``...), e.g. the looser
        :data:`bayes_cart.kinetics.engines.pytensor_op.MCMC_OPTIONS` used inside a PyMC model.

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
    configure_jax()
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
        solved = jax.vmap(lambda ti, pi: solve_sorted(ode, ti, pi)[state])(grid, p)
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
