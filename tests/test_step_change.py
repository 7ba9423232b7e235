"""A step change of rates at a per-patient time (time-varying covariates in the kinetics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.solvers import batched_log_total
from bayes_cart.kinetics.step_change import with_step_change
from bayes_cart.units import DELTA_E_PER_DAY

LIU = get_kinetics("liu2021")
STEP = with_step_change(LIU, ["alpha", "rM"])
BASE = dict(C0=20.0, k=0.3, T0=2.0, beta=0.45, T1=12.0, alpha=0.12, rM=0.004, deltaM=0.006)
TIMES = np.array([0.5, 1.9, 2.0, 5.0, 11.9, 12.0, 14.0, 20.0, 30.0, 60.0, 120.0, 365.0])


def _reference(t: np.ndarray, p: dict, tc: float, after: dict) -> np.ndarray:
    """log(E + M) by SciPy (DOP853, rtol 1e-12), integrating piece by piece."""
    t0, t1 = min(p["T0"], p["T1"]), p["T1"]
    cuts = sorted({0.0, t0, t1, min(tc, 1e6), float(t.max())})

    def rates(s: float) -> dict:
        q = dict(p, **after) if s >= tc else p
        return q

    def rhs(s, y, mid):
        q = rates(mid)
        e, m = y
        if mid < t0:
            return [-q["k"] * e, 0.0]
        if mid < t1:
            return [q["beta"] * e, 0.0]
        lam = q["alpha"] + DELTA_E_PER_DAY + q["rM"]
        return [-lam * e, q["rM"] * e - q["deltaM"] * m]

    y = np.array([p["C0"], 0.0])
    out = np.empty(len(t))
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if b <= a:
            continue
        inside = (t >= a) & (t < b) if b < cuts[-1] else (t >= a) & (t <= b)
        mid = 0.5 * (a + b)
        sol = solve_ivp(
            rhs,
            (a, b),
            y,
            args=(mid,),
            method="DOP853",
            rtol=1e-12,
            atol=1e-30,
            t_eval=np.sort(t[inside]),
        )
        order = np.argsort(t[inside])
        vals = np.log(sol.y[0] + sol.y[1])
        idx = np.flatnonzero(inside)[order]
        out[idx] = vals
        y = solve_ivp(rhs, (a, b), y, args=(mid,), method="DOP853", rtol=1e-12, atol=1e-30).y[:, -1]
    return out


@pytest.mark.parametrize("solver", ["linear", "ode"])
def test_no_change_is_the_original_structure(solver: str) -> None:
    ref = LIU.solve(TIMES, BASE)["log_total"]
    never = STEP.solve(TIMES, dict(BASE, TC=np.inf, alpha_after=0.5), solver=solver)
    unchanged = STEP.solve(TIMES, dict(BASE, TC=15.0), solver=solver)  # _after left NaN
    rtol = 1e-10 if solver == "linear" else 1e-6
    np.testing.assert_allclose(never["log_total"], ref, rtol=rtol)
    np.testing.assert_allclose(unchanged["log_total"], ref, rtol=rtol)


@pytest.mark.parametrize(
    "tc",
    [20.0, 12.0, 5.0, 1.0],
    ids=["in contraction", "at the peak", "in expansion", "in distribution"],
)
@pytest.mark.parametrize("solver", ["linear", "ode"])
def test_step_change_matches_a_piecewise_scipy_integration(tc: float, solver: str) -> None:
    after = {"alpha": 0.35, "rM": 0.0015}
    ref = _reference(TIMES, BASE, tc, after)
    out = STEP.solve(
        TIMES, dict(BASE, TC=tc, alpha_after=after["alpha"], rM_after=after["rM"]), solver=solver
    )["log_total"]
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-9 if solver == "linear" else 1e-5)
    # the change shows only from TC on (times before it equal the original structure)
    before = TIMES < max(tc, BASE["T1"])
    np.testing.assert_allclose(
        np.asarray(out)[before], LIU.solve(TIMES, BASE)["log_total"][before], rtol=1e-8
    )


def test_per_patient_change_times_in_a_batch() -> None:
    """Patients with and without a change, solved together, equal their own solves."""
    f = batched_log_total(STEP, "linear")
    params = {k: np.full(3, v) for k, v in BASE.items()}
    params["TC"] = np.array([np.inf, 20.0, 6.0])
    params["alpha_after"] = np.array([0.3, 0.3, 0.05])
    params["rM_after"] = np.full(3, np.nan)
    pidx = np.repeat(np.arange(3), TIMES.size)
    batched = np.asarray(f(np.tile(TIMES, 3), pidx, params)).reshape(3, TIMES.size)
    for i in range(3):
        own = STEP.solve(TIMES, {k: v[i] for k, v in params.items()}, solver="linear")
        np.testing.assert_allclose(batched[i], own["log_total"], rtol=1e-12)
    assert batched[2, -1] > batched[0, -1]  # a slower contraction from day 6 stays higher


def test_step_change_refuses_unknown_parameters() -> None:
    with pytest.raises(ValueError, match="step change needs parameters"):
        with_step_change(LIU, ["gamma"])
    with pytest.raises(ValueError, match="no ODE system"):
        with_step_change(get_kinetics("stein2019"), ["alpha"])


@pytest.mark.parametrize("solver", ["linear", "ode"])
def test_gradients_stay_finite_for_patients_without_a_change(solver: str) -> None:
    """TC = inf must not leak NaN into the gradients (it once did through expm(A * inf))."""
    import jax
    import jax.numpy as jnp

    f = batched_log_total(STEP, solver)
    params = {k: jnp.full(2, v) for k, v in BASE.items()}
    params.update(
        TC=jnp.array([np.inf, 20.0]), alpha_after=jnp.full(2, 0.3), rM_after=jnp.full(2, 0.002)
    )
    pidx = np.repeat(np.arange(2), TIMES.size)
    t = np.tile(TIMES, 2)

    def total(alpha):
        return jnp.sum(f(t, pidx, {**params, "alpha": alpha}))

    grad = np.asarray(jax.grad(total)(jnp.full(2, BASE["alpha"])))
    assert np.all(np.isfinite(grad)) and np.all(grad < 0)  # a faster decline lowers the level
