"""The matrix-exponential route (``solver="linear"``) against SciPy and the closed form.

* :func:`expm_small` against ``scipy.linalg.expm`` on random matrices of sizes 2-4 with norms
  from 1e-3 to 1000 (decay and growth), and NaN beyond its accurate range;
* the Liu structure solved from its own right-hand sides (Jacobians taken by JAX) against the
  closed form on the shared paper-range grid: values and gradients with respect to every
  parameter, T0 and T1 included;
* an affine structure (constant influx) against its analytical solution;
* right-hand sides that are not linear, or depend on time, are refused with the phase named.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from bayes_cart.kinetics import LIU2021_ODE, LIU_PHASES, Phase, PhasedODE, get_kinetics
from bayes_cart.kinetics.engines.linear import check_linear, linear_solve, make_linear_log_total
from bayes_cart.kinetics.engines.matrix_exp import expm_small
from bayes_cart.kinetics.reference import paper_range_grid

LIU = get_kinetics("liu2021")


def test_expm_small_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    for n in (2, 3, 4):
        mats = []
        for norm in np.geomspace(1e-3, 1000.0, 25):
            a = rng.normal(size=(n, n))
            # mostly decaying, sometimes growing: shift the diagonal
            a -= np.eye(n) * rng.uniform(-0.5, 2.0)
            mats.append(a / np.abs(a).sum(axis=1).max() * norm)
        mats = np.array(mats)
        out = np.asarray(expm_small(mats))
        for m, got in zip(mats, out, strict=True):
            ref = scipy.linalg.expm(m)
            # relative to the largest entry (small entries of a stiff result carry the
            # rounding of the large ones, as in any scaling-and-squaring method)
            err = np.abs(got - ref).max() / np.abs(ref).max()
            assert err < 1e-10, (n, np.abs(m).sum(axis=1).max(), err)


def test_expm_small_lower_triangular_entries_are_relatively_accurate() -> None:
    """The Liu contraction matrix: every entry, however small, to 1e-11 relative."""
    lam, rm, dm = 0.3, 0.002, 0.004
    for t in (0.5, 10.0, 100.0, 700.0):
        m = np.array([[-lam, 0.0], [rm, -dm]]) * t
        got = np.asarray(expm_small(m[None]))[0]
        e = np.exp(-lam * t)
        ref = np.array([[e, 0.0], [rm * (np.exp(-dm * t) - e) / (lam - dm), np.exp(-dm * t)]])
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=0.0)


def test_expm_small_gives_nan_beyond_its_range_and_checks_shape() -> None:
    out = np.asarray(expm_small(np.array([[[-3000.0, 0.0], [0.0, 0.0]], [[-1.0, 0], [0, 0]]])))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    with pytest.raises(ValueError, match="square matrices"):
        expm_small(np.ones((3, 2)))


def test_expm_small_gradient_matches_scipy_frechet_derivative() -> None:
    """d sum(W * expm(A)) / dA is the Frechet derivative of expm at A^T in direction W."""
    rng = np.random.default_rng(3)
    for scale in (0.01, 3.0, 50.0):
        a = rng.normal(size=(3, 3)) * scale
        w = rng.normal(size=(3, 3))
        g = jax.grad(lambda x, w=w: jnp.sum(w * expm_small(x[None])[0]))(jnp.asarray(a))
        ref = scipy.linalg.expm_frechet(a.T, w, compute_expm=False)
        np.testing.assert_allclose(np.asarray(g), ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def _grid_problem():
    """All paper-range parameter sets as patients, each observed at 20 times over a year."""
    grid = paper_range_grid()
    times = np.linspace(0.0, 365.0, 17)
    t_obs, idx = [], []
    for i, p in enumerate(grid):
        # just after the switches (exactly on T1 the derivative with respect to T1 is
        # one-sided, and the routes take different sides of that kink)
        extra = [p["T0"] + 0.3, p["T1"] + 1e-3, p["T1"] + 0.7]
        t_i = np.sort(np.r_[times, extra])
        t_obs.append(t_i)
        idx.append(np.full(t_i.size, i))
    params = {n: jnp.asarray([p[n] for p in grid]) for n in LIU.parameters}
    return np.concatenate(t_obs), np.concatenate(idx), params


def test_linear_route_matches_closed_form_values_and_gradients() -> None:
    t_obs, idx, params = _grid_problem()
    f = make_linear_log_total(LIU)

    def closed(q):
        return LIU.solve(t_obs, {k: v[idx] for k, v in q.items()}, xp=jnp)["log_total"]

    ref = np.asarray(closed(params))
    got = np.asarray(f(t_obs, idx, params))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    w = jnp.asarray(np.random.default_rng(8).uniform(0.5, 1.5, t_obs.size))
    g_ref = jax.grad(lambda q: jnp.sum(w * closed(q)))(params)
    g = jax.grad(lambda q: jnp.sum(w * f(t_obs, idx, q)))(params)
    for name in LIU.parameters:
        scale = max(float(jnp.abs(g_ref[name]).max()), 1e-6)
        np.testing.assert_allclose(
            np.asarray(g[name]),
            np.asarray(g_ref[name]),
            rtol=1e-8,
            atol=1e-9 * scale,
            err_msg=name,
        )


def test_linear_solve_elementwise_matches_closed_form_states() -> None:
    p = paper_range_grid()[5]
    t = np.array([0.0, p["T0"], 5.0, p["T1"], 40.0, 200.0])
    out = LIU.solve(t, p, solver="linear")
    ref = LIU.solve(t, p)
    for key in ("log_total", "log_E", "log_M"):
        np.testing.assert_allclose(np.asarray(out[key]), ref[key], rtol=1e-11, atol=1e-11)


def test_affine_phase_matches_analytical_solution() -> None:
    """dE/dt = s - d E (a constant influx s): E(t) = s/d + (E0 - s/d) exp(-d t)."""

    def influx(t, y, p):
        return jnp.stack([p["s"] - p["d"] * y[0], 0.0 * y[1]])

    ode = PhasedODE(
        phases=(Phase("0", "inf", influx),), n_states=2, y0=lambda p: jnp.stack([p["E0"], 1.0])
    )
    assert check_linear(ode) == (True,)
    t = np.array([0.0, 1.0, 5.0, 30.0])
    s, d, e0 = 2.0, 0.3, 0.5
    f = make_linear_log_total(ode)
    p = {"s": np.array([s]), "d": np.array([d]), "E0": np.array([e0])}
    got = np.asarray(f(t, np.zeros(4, dtype=int), p))
    e = s / d + (e0 - s / d) * np.exp(-d * t)
    np.testing.assert_allclose(got, np.log(e + 1.0), rtol=1e-12)


def test_nonlinear_or_time_dependent_phases_are_refused() -> None:
    def saturable(t, y, p):
        return jnp.stack([p["beta"] * y[0] / (1 + y[0] / p["Emax"]), 0 * y[1]])

    def seasonal(t, y, p):
        return jnp.stack([p["beta"] * (1 + jnp.sin(t)) * y[0], 0 * y[1]])

    for rhs, why in ((saturable, "is not linear in the states"), (seasonal, "depends on time")):
        phases = (LIU_PHASES[0], Phase("T0", "T1", rhs, name="growth"), LIU_PHASES[2])
        ode = PhasedODE(phases=phases, n_states=2, y0=LIU2021_ODE.y0)
        with pytest.raises(ValueError, match=f"growth: the right-hand side {why}.*solver='ode'"):
            make_linear_log_total(ode)
        with pytest.raises(ValueError, match="growth"):
            linear_solve(ode, np.array([1.0]), {})
    assert check_linear(LIU) == (False, False, False)
