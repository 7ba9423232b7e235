"""The JAX ODE routes inside a PyMC model: a PyTensor op whose value and gradient come from JAX.

:func:`ode_log_total` wraps the batched solve of a JAX route
(:func:`bayes_cart.kinetics.solvers.batched_log_total`: adaptive diffrax for ``solver="ode"``,
matrix exponentials of linear phases for ``solver="linear"``) with :func:`pytensor.wrap_jax`.
The resulting op evaluates ``log(E + M)`` at every observation from per-patient parameter
vectors, and its gradient is JAX's reverse mode. It is used by
:func:`bayes_cart.model.build.build_model` with ``solver="ode"`` and ``solver="linear"``.

Which samplers can run it
-------------------------
The op is JAX code. Sample it with a JAX backend: ``sampler="nutpie-jax"`` (nutpie with
``backend="jax", gradient_backend="jax"``; recommended) or ``sampler="numpyro"``, where the
whole log density, solver included, is one jitted JAX function differentiated by JAX.
nutpie's default numba backend and PyMC's C backend also run it, through the op's ``perform``
(a Python call into the jitted function) and a second op for the vector-Jacobian product,
which solves the ODEs again (about 2x slower per gradient than nutpie-jax, see
``docs/benchmarks.md``). :func:`bayes_cart.inference.sampling.fit` warns when a JAX solver is
combined with such a sampler.

Solver settings for sampling
----------------------------
:data:`MCMC_OPTIONS` loosens the accuracy-oriented defaults of
:class:`~bayes_cart.kinetics.phases.PhasedODE` (``rtol=1e-8``, stepping to every observation):
relative tolerance 1e-6, dense interpolation to the observation times, at most 256 steps per
solve stage with every step checkpointed for the reverse pass. A solve that fails (e.g. more
than 256 steps for an extreme proposal) returns NaN and the sampler rejects the proposal.

Its accuracy (``log(E + M)`` within ~2e-6 of the closed form, far below a residual SD of
~0.5) and cost are measured in ``bench/bench_ode.py`` and recorded in ``docs/benchmarks.md``.
Use the ODE routes for structures without a closed form.

Examples
--------
>>> import numpy as np, pytensor, pytensor.tensor as pt
>>> from types import SimpleNamespace
>>> from bayes_cart.kinetics import get_kinetics
>>> md = SimpleNamespace(time=np.array([1.0, 20.0, 5.0]), patient_index=np.array([0, 0, 1]),
...                      n_patients=2)
>>> beta = pt.vector("beta", shape=(2,))
>>> values = dict(C0=pt.as_tensor(np.array([1.0, 2.0])), beta=beta, T1=pt.as_tensor(
...     np.array([10.0, 12.0])), alpha=pt.as_tensor(np.array([0.1, 0.2])),
...     rM=pt.as_tensor(np.array([0.01, 0.02])), deltaM=pt.as_tensor(np.array([0.01, 0.005])))
>>> mu = ode_log_total(get_kinetics("liu2021"), md, values)
>>> f = pytensor.function([beta], [mu, pytensor.grad(mu.sum(), beta)])
>>> value, grad = f(np.array([0.5, 0.4]))
>>> np.round(value, 4)  # the closed form gives the same
array([0.5   , 3.9284, 2.6931])
>>> np.round(grad, 3)  # d/d beta: time spent expanding (1 + 10 days, 5 days)
array([11.,  5.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import diffrax
import numpy as np
import pytensor
import pytensor.tensor as pt

from bayes_cart.kinetics.solvers import JAX_SOLVERS, batched_log_total

__all__ = ["MCMC_OPTIONS", "ode_log_total"]

_MAX_STEPS = 256

#: Solver options used inside the PyMC model (see the module docstring).
MCMC_OPTIONS: dict[str, Any] = {
    "rtol": 1e-6,
    "atol": 1e-12,
    "step_to_obs": False,
    "max_steps": _MAX_STEPS,
    "adjoint": diffrax.RecursiveCheckpointAdjoint(checkpoints=_MAX_STEPS),
}


def _per_patient(value: Any, n: int, name: str) -> pt.TensorVariable:
    """Return ``value`` as a float64 vector of length ``n`` (scalars are broadcast)."""
    var = pt.as_tensor_variable(value).astype("float64")
    if var.ndim == 0:
        var = pt.alloc(var, n)
    if var.ndim != 1:
        raise ValueError(f"parameter {name!r} must be a per-patient vector, got {var.ndim} dims")
    return pt.specify_shape(var, (n,))


def ode_log_total(
    kin: Any,
    md: Any,
    values: Mapping[str, Any],
    solver: str = "ode",
    **options: Any,
) -> pt.TensorVariable:
    """``log(E + M)`` at every observation, solved with JAX inside the PyTensor graph.

    Parameters
    ----------
    kin : KineticModel
        A registered structure with an ODE system (``kin.ode``), e.g.
        ``get_kinetics("liu2021")``.
    md : ModelData
        Uses ``time`` (days, one entry per observation), ``patient_index`` (0-based patient of
        each observation) and ``n_patients``.
    values : mapping
        Every kinetic parameter name -> per-patient PyTensor vector (length ``n_patients``) or
        scalar. Parameters with a default in ``kin.defaults`` (``k``, ``T0``, ``deltaE`` for
        liu2021) may be left out.
    solver : {"ode", "linear"}
        ``"ode"``: adaptive diffrax solves (any right-hand side). ``"linear"``: the
        exponential integrator of :mod:`bayes_cart.kinetics.engines.linear` (phases linear in
        the states only; checked, a ``ValueError`` names the phase that is not).
    **options
        diffrax solver options overriding :data:`MCMC_OPTIONS` (``rtol``, ``atol``,
        ``solver``, ``max_steps``, ``step_to_obs``, ``adjoint``...).

    Returns
    -------
    pytensor vector, shape (n_obs,)
        The log total level, in the order of ``md.time``. Differentiable: its gradient is a
        JAX vector-Jacobian product through the solver.

    Raises
    ------
    ValueError
        If the structure has no ODE system.
    KeyError
        If a parameter without default is missing from ``values``, or an unknown one given.
    """
    if kin.ode is None:
        raise ValueError(f"kinetic model {kin.name!r} has no ODE system; use solver='closed_form'")
    unknown = sorted(set(values) - set(kin.parameters))
    if unknown:
        raise KeyError(f"kinetic model {kin.name!r} has no parameter(s) {unknown}")
    missing = [p for p in kin.parameters if p not in values and p not in kin.defaults]
    if missing:
        raise KeyError(f"kinetic model {kin.name!r}: missing parameter(s) {missing}")
    n = int(md.n_patients)
    inputs = {
        name: _per_patient(values[name] if name in values else kin.defaults[name], n, name)
        for name in kin.parameters
    }
    time = np.asarray(md.time, dtype=np.float64)
    patient_index = np.asarray(md.patient_index, dtype=np.int64)
    if time.shape != patient_index.shape or time.ndim != 1:
        raise ValueError("md.time and md.patient_index must be 1-D arrays of the same length")
    if patient_index.size and (patient_index.min() < 0 or patient_index.max() >= n):
        raise ValueError(f"md.patient_index must lie in 0..{n - 1}")
    if solver not in JAX_SOLVERS:
        raise ValueError(f"ode_log_total needs a JAX solver {list(JAX_SOLVERS)}, got {solver!r}")
    if solver == "linear" and options:
        raise ValueError(f"solver='linear' takes no solver options, got {sorted(options)}")
    opts = {**MCMC_OPTIONS, **options} if solver == "ode" else {}
    batched = batched_log_total(kin, solver, **opts)

    def ode_log_total_op(params: dict[str, Any]) -> Any:
        # observation times and patient index are constants of the graph (numpy)
        return batched(time, patient_index, params)

    ode_log_total_op.__name__ = f"{kin.name}_{solver}_log_total"
    return pytensor.wrap_jax(ode_log_total_op)(inputs)
