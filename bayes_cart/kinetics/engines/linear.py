"""The matrix-exponential engine for phased ODE systems whose phases are linear.

Most cellular-kinetic structures are linear within each phase: constant per-capita rates of
expansion, death, conversion between compartments (effector -> memory), so each phase solves
``dy/dt = A y (+ b)`` exactly as ``y(t) = expm(A (t - t_start)) y(t_start)``. This is the
matrix-exponential route of NONMEM's general linear models (ADVAN5/ADVAN7) for a user's own
structure, next to the closed form (hand-derived, fastest) and the adaptive diffrax route
(:mod:`bayes_cart.kinetics.engines.diffrax_ode`, any right-hand side, ADVAN13-like).

How it works
------------
Nothing is derived by hand: for each patient and phase the matrix ``A`` is the Jacobian of the
phase's own right-hand side (``Phase.rhs``) with respect to the states, taken by JAX at
``y = 0``, and ``b = rhs(t, 0)`` (an affine term, e.g. a constant influx, enters through the
usual augmented matrix ``[[A, b], [0, 0]]``). The phase boundaries follow the
:mod:`~bayes_cart.kinetics.phases` conventions (a later boundary takes precedence,
a time on a boundary takes the later phase). The state at each phase start comes from the
previous phase's exponential over its length, and every observation from the exponential of
its own phase over its time since the phase start -- all observations at once, with one batched
:func:`~bayes_cart.kinetics.engines.matrix_exp.expm_small`. Gradients (JAX reverse mode) are exact,
including those with respect to the phase boundaries (T0, T1).

A right-hand side that is not linear in the states, or that depends on time, cannot use this
route: :func:`check_linear` tests it numerically and :func:`make_linear_log_total` refuses such
a structure with the phase at fault (use the diffrax route, ``solver="ode"``).

Its cost and accuracy against the closed form are measured in ``bench/bench_ode.py`` and
recorded in ``docs/benchmarks.md``. JAX is configured by
:func:`bayes_cart.jax_setup.configure_jax` when a route is built, not on import.

Examples
--------
>>> import numpy as np
>>> from bayes_cart.kinetics import get_kinetics
>>> liu = get_kinetics("liu2021")
>>> f = make_linear_log_total(liu)
>>> p = dict(C0=np.array([10.0]), beta=np.array([0.5]), T1=np.array([10.0]),
...          alpha=np.array([0.1]), rM=np.array([0.01]), deltaM=np.array([0.001]))
>>> t = np.array([0.0, 10.0, 40.0])
>>> np.round(np.exp(np.asarray(f(t, np.zeros(3, dtype=int), p))), 2)
array([  10.  , 1484.13,  149.58])
>>> ref = liu.solve(t, {k: v[0] for k, v in p.items()})["log_total"]
>>> bool(np.allclose(f(t, np.zeros(3, dtype=int), p), ref, rtol=1e-12))
True
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayes_cart.jax_setup import configure_jax
from bayes_cart.kinetics.engines.matrix_exp import expm_small
from bayes_cart.kinetics.phases import PhasedODE, phase_boundaries, phased_ode

Array = Any
Params = Mapping[str, Array]

__all__ = ["check_linear", "linear_solve", "make_linear_log_total"]


class _ProbeParams(Mapping):
    """Any parameter name -> a fixed positive test value (for the linearity check)."""

    def __init__(self, salt: int) -> None:
        self._salt = salt

    def __getitem__(self, key: str) -> Array:
        h = zlib.crc32(f"{key}:{self._salt}".encode())
        return jnp.asarray(0.1 + (h % 1000) / 1000.0, dtype=jnp.float64)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def check_linear(model: Any, rtol: float = 1e-9) -> tuple[bool, ...]:
    """Check that every phase's right-hand side is linear (affine) in the states, time-free.

    Evaluates each phase's ``rhs`` at random states, two times and two sets of positive test
    parameter values, and checks ``f(a y1 + c y2) - f(0) = a (f(y1) - f(0)) + c (f(y2) - f(0))``
    and ``f(t1, y) = f(t2, y)``.

    Parameters
    ----------
    model : PhasedODE or KineticModel
        The structure.
    rtol : float
        Relative tolerance of the checks.

    Returns
    -------
    tuple of bool
        For each phase, whether it has a constant term (``rhs(t, 0) != 0``, an affine phase).

    Raises
    ------
    ValueError
        Naming the first phase that is not linear or depends on time.

    Examples
    --------
    >>> from bayes_cart.kinetics.structures.liu2021 import LIU2021_ODE
    >>> check_linear(LIU2021_ODE)
    (False, False, False)
    """
    configure_jax()
    ode = phased_ode(model)
    rng = np.random.default_rng(20261130)
    n = ode.n_states
    affine = []
    for i, phase in enumerate(ode.phases):
        label = phase.name or f"phase {i}"
        has_constant = False
        for salt in (1, 2):
            p = _ProbeParams(salt)

            def f(t: float, y: Array, p: Params = p, phase: Any = phase) -> np.ndarray:
                return np.asarray(phase.rhs(jnp.asarray(t), jnp.asarray(y), p), dtype=float)

            y1, y2 = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
            a, c = 1.7, -0.6
            f0 = f(3.0, np.zeros(n))
            lhs = f(3.0, a * y1 + c * y2) - f0
            rhs = a * (f(3.0, y1) - f0) + c * (f(3.0, y2) - f0)
            scale = np.max(np.abs(np.concatenate([lhs, rhs, f0]))) + 1e-300
            if np.max(np.abs(lhs - rhs)) > rtol * scale:
                raise ValueError(
                    f"{label}: the right-hand side is not linear in the states, so the "
                    "matrix-exponential route cannot solve it; use solver='ode' (diffrax)"
                )
            if np.max(np.abs(f(3.0, y1) - f(17.0, y1))) > rtol * scale:
                raise ValueError(
                    f"{label}: the right-hand side depends on time within the phase, so the "
                    "matrix-exponential route cannot solve it; use solver='ode' (diffrax)"
                )
            has_constant = has_constant or bool(np.any(f0 != 0.0))
        affine.append(has_constant)
    return tuple(affine)


def _system(ode: PhasedODE, affine: bool) -> Callable[[Params], tuple[Array, Array, Array]]:
    """Per-patient phase starts, lengths and (augmented) phase matrices."""
    n = ode.n_states

    def one(p: Params) -> tuple[Array, Array, Array]:
        starts, lengths = phase_boundaries(ode, jnp.asarray(0.0), p, xp=jnp)
        zero = jnp.zeros(n, dtype=jnp.float64)
        mats = []
        for i, phase in enumerate(ode.phases):

            def f(y: Array, t0: Array = starts[i], rhs: Any = phase.rhs) -> Array:
                return jnp.asarray(rhs(t0, y, p), dtype=jnp.float64)

            a = jax.jacfwd(f)(zero)
            if affine:
                b = f(zero)
                top = jnp.concatenate([a, b[:, None]], axis=1)
                a = jnp.concatenate([top, jnp.zeros((1, n + 1), dtype=jnp.float64)], axis=0)
            mats.append(a)
        return starts, lengths, jnp.stack(mats)

    return one


def _make_core(ode: PhasedODE) -> Callable[[Array, Array, Params], dict[str, Array]]:
    """``core(t, patient_idx, params) -> outputs`` for per-patient parameter vectors."""
    affine = any(check_linear(ode))
    system = _system(ode, affine)
    n = ode.n_states
    n_phases = len(ode.phases)

    def core(t: Array, patient_idx: Array, params: Params) -> dict[str, Array]:
        starts, lengths, mats = jax.vmap(system)(params)  # (P, K), (P, K), (P, K, m, m)
        y0 = jax.vmap(lambda p: jnp.asarray(ode.y0(p), dtype=jnp.float64))(params)
        if affine:
            y0 = jnp.concatenate([y0, jnp.ones((y0.shape[0], 1), dtype=y0.dtype)], axis=1)
        y_start = [y0]
        if n_phases > 1:
            steps = expm_small(mats[:, :-1] * lengths[:, :-1, None, None])
            for i in range(n_phases - 1):
                y_start.append(jnp.einsum("pij,pj->pi", steps[:, i], y_start[-1]))
        y_start = jnp.stack(y_start, axis=1)  # (P, K, m)
        st = starts[patient_idx]
        phase = jnp.sum(t[:, None] >= st[:, 1:], axis=1)  # a time on a boundary: later phase
        since = jnp.maximum(t - jnp.take_along_axis(st, phase[:, None], axis=1)[:, 0], 0.0)
        prop = expm_small(mats[patient_idx, phase] * since[:, None, None])
        y = jnp.einsum("oij,oj->oi", prop, y_start[patient_idx, phase])
        return ode.output(y[:, :n])

    return core


@functools.lru_cache(maxsize=32)
def _cached_core(ode: PhasedODE) -> Callable[[Array, Array, Params], dict[str, Array]]:
    return jax.jit(_make_core(ode))


def _jitted_core(ode: PhasedODE) -> Callable[[Array, Array, Params], dict[str, Array]]:
    """Return the jitted core of ``ode``, checked and compiled once per hashable structure."""
    try:
        hash(ode)
    except TypeError:  # e.g. a solver option that is not hashable
        return jax.jit(_make_core(ode))
    return _cached_core(ode)


def make_linear_log_total(
    model: Any, state: str = "log_total"
) -> Callable[[Array, Array, Params], Array]:
    """Build a jitted ``log_total`` for many patients with the exponential integrator.

    Same contract as :func:`bayes_cart.kinetics.engines.diffrax_ode.make_batched_log_total`.

    Parameters
    ----------
    model : PhasedODE or KineticModel
        A structure whose phases are all linear (checked, see :func:`check_linear`); with a
        :class:`~bayes_cart.kinetics.structure.KineticModel` its parameter defaults are filled
        in.
    state : str
        Output to return: ``"log_total"`` (default), ``"log_E"`` or ``"log_M"``.

    Returns
    -------
    callable
        ``f(t_obs[n_obs], patient_idx[n_obs], params) -> log_total[n_obs]`` where ``params``
        maps names to ``[n_patients]`` arrays (scalars are broadcast); differentiable with
        respect to ``params`` with :func:`jax.grad`.

    Raises
    ------
    ValueError
        If a phase is not linear in the states or depends on time.
    """
    configure_jax()
    with_defaults = getattr(model, "with_defaults", None)
    core = _jitted_core(phased_ode(model))

    def jitted(t_obs: Array, patient_idx: Array, params: Params) -> Array:
        return core(t_obs, patient_idx, params)[state]

    def linear_log_total(t_obs: Array, patient_idx: Array, params: Params) -> Array:
        full = dict(with_defaults(params)) if with_defaults is not None else dict(params)
        n_patients = max((np.shape(v)[0] for v in full.values() if np.ndim(v) > 0), default=1)
        full = {
            k: jnp.broadcast_to(jnp.asarray(v, dtype=jnp.float64), (n_patients,))
            for k, v in full.items()
        }
        t = jnp.asarray(t_obs, dtype=jnp.float64)
        idx = jnp.asarray(patient_idx, dtype=jnp.int32)
        return jitted(t, idx, full)

    return linear_log_total


def linear_solve(model: Any, t: Array, params: Params) -> dict[str, Array]:
    """Solve at times ``t`` with the exponential integrator; elementwise like ``solve``.

    Parameters
    ----------
    model : PhasedODE
        The structure (all phases linear).
    t : array
        Times since infusion (days).
    params : mapping
        Complete parameter values, scalars or arrays broadcastable with ``t``.

    Returns
    -------
    dict of jax arrays
        The structure's outputs (``log_total``, ``log_E``, ``log_M``), shaped like the
        broadcast of ``t`` and the parameters.
    """
    configure_jax()
    t = jnp.asarray(t, dtype=jnp.float64)
    p = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    shape = jnp.broadcast_shapes(t.shape, *(v.shape for v in p.values()))
    size = int(np.prod(shape))
    tb = jnp.broadcast_to(t, shape).reshape(-1)
    pb = {k: jnp.broadcast_to(v, shape).reshape(-1) for k, v in p.items()}
    out = _jitted_core(phased_ode(model))(tb, jnp.arange(size), pb)
    return {k: v.reshape(shape) for k, v in out.items()}
