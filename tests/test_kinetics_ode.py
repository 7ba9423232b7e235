"""The diffrax ODE route against the closed form.

Tolerance reached with the defaults (Tsit5, rtol 1e-8, atol 1e-14, stepping to every
observation): E + M and M within 1e-6 relative of the closed form on the whole parameter grid
(observed ~1e-8), E within 1e-9 (it is integrated in log space). Gradients of log E+M w.r.t.
every parameter, including the switch times T0 and T1, match central finite differences of
the closed form to 1e-5 relative.

All single-patient solves use the same number of time points, so JAX compiles once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_cart.kinetics import (
    LIU2021_ODE,
    LIU_PHASES,
    KineticModel,
    Phase,
    PhasedODE,
    get_kinetics,
    register_kinetics,
    register_ode_kinetics,
)
from bayes_cart.kinetics.engines import diffrax_ode
from bayes_cart.kinetics.engines.diffrax_ode import make_batched_log_total
from bayes_cart.kinetics.reference import paper_range_grid
from bayes_cart.units import DELTA_E_PER_DAY

LIU = get_kinetics("liu2021")
NAMES = ("C0", "k", "T0", "beta", "T1", "alpha", "rM", "deltaM", "deltaE")
N_T = 48


def times_for(p: dict[str, float]) -> np.ndarray:
    """N_T sorted times in 0-365 d, with points just after T0 and T1."""
    base = np.linspace(0.0, 365.0, N_T - 3)
    return np.sort(np.r_[base, p["T0"] + 0.3, p["T1"] + 1e-3, p["T1"] + 0.7])


def parameter_grid() -> list[dict[str, float]]:
    """The shared paper-range grid (:mod:`bayes_cart.kinetics.reference`)."""
    return paper_range_grid()


def rel_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|exp(a - b) - 1| with matching -inf counted as 0."""
    a, b = np.asarray(a), np.asarray(b)
    both_inf = np.isneginf(a) & np.isneginf(b)
    with np.errstate(invalid="ignore"):
        err = np.abs(np.expm1(np.where(both_inf, 0.0, a - b)))
    return np.where(np.isnan(err), np.inf, err)


def test_diffrax_matches_closed_form_on_grid() -> None:
    worst = {"log_total": 0.0, "log_E": 0.0, "log_M": 0.0}
    for p in parameter_grid():
        t = times_for(p)
        ref = LIU.solve(t, p)
        out = LIU.solve(t, p, solver="ode")
        for key in worst:
            worst[key] = max(worst[key], float(rel_err(out[key], ref[key]).max()))
    assert worst["log_total"] <= 1e-6, worst
    assert worst["log_M"] <= 1e-6, worst
    assert worst["log_E"] <= 1e-9, worst


def test_unsorted_times_and_zero_length_phases() -> None:
    p = dict(C0=3.0, beta=0.4, T1=11.0, alpha=0.15, rM=0.01, deltaM=0.005)  # T0 = 0
    t = times_for(LIU.with_defaults(p))
    order = np.random.default_rng(0).permutation(t.size)
    out = LIU.solve(t[order], p, solver="ode")
    ref = LIU.solve(t[order], p)
    assert rel_err(out["log_total"], ref["log_total"]).max() <= 1e-6
    # all observations before T1: the last (contraction) phase has zero length
    late = dict(p, T1=400.0)
    out = LIU.solve(t, late, solver="ode")
    np.testing.assert_allclose(out["log_total"], LIU.solve(t, late)["log_total"], rtol=1e-9)


def weighted_objective_fd(p: dict[str, float], t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Finite differences of sum(w * log_total) of the numpy closed form, per parameter.

    Central differences, except forward ones for T0 at T0 = 0 (the right-derivative, which
    is what the ODE route gives there).
    """

    def objective(q: dict[str, float]) -> float:
        return float(np.sum(w * LIU.solve(t, q)["log_total"]))

    grad = np.zeros(len(NAMES))
    for j, name in enumerate(NAMES):
        h = 1e-6 * max(abs(p[name]), 1e-2)
        up = dict(p, **{name: p[name] + h})
        if name == "T0" and p["T0"] == 0:
            grad[j] = (objective(up) - objective(p)) / h
        else:
            down = dict(p, **{name: p[name] - h})
            grad[j] = (objective(up) - objective(down)) / (2 * h)
    return grad


def test_batched_value_and_gradient_match_closed_form_and_fd() -> None:
    """jax.value_and_grad through diffrax (incl. T0, T1 and T0 = 0) vs finite differences."""
    patients = [
        dict(C0=5.0, k=0.5, T0=2.0, beta=0.4, T1=11.0, alpha=0.15, rM=0.01, deltaM=0.005),
        dict(C0=0.2, k=0.7, T0=0.0, beta=0.9, T1=6.0, alpha=0.3, rM=0.03, deltaM=0.3),
        dict(C0=30.0, k=0.0, T0=0.0, beta=0.2, T1=20.0, alpha=0.05, rM=0.002, deltaM=0.001),
        dict(C0=1.0, k=1.0, T0=3.0, beta=0.6, T1=15.0, alpha=0.2, rM=0.05, deltaM=0.1),
    ]
    for p in patients:
        p["deltaE"] = DELTA_E_PER_DAY
    rng = np.random.default_rng(3)
    counts = np.array([9, 1, 5, 7])
    patient_idx = np.repeat(np.arange(len(patients)), counts)
    # times off the kinks at T0 and T1
    t_obs = np.concatenate([np.sort(rng.uniform(0.5, 300.0, c)) for c in counts])
    for i, p in enumerate(patients):
        rows = np.flatnonzero(patient_idx == i)
        near = np.min(np.abs(t_obs[rows, None] - np.array([p["T0"], p["T1"]])), axis=1) < 0.05
        t_obs[rows[near]] += 0.1
    shuffle = rng.permutation(t_obs.size)
    t_obs, patient_idx = t_obs[shuffle], patient_idx[shuffle]
    w = rng.uniform(0.5, 1.5, t_obs.size)
    params = {name: np.array([p[name] for p in patients]) for name in NAMES}

    batched = make_batched_log_total(LIU)
    value, grad = jax.value_and_grad(lambda q: jnp.sum(w * batched(t_obs, patient_idx, q)))(params)
    ref = LIU.solve(t_obs, {k: v[patient_idx] for k, v in params.items()})["log_total"]
    assert float(value) == pytest.approx(float(np.sum(w * ref)), rel=1e-7)
    for i, p in enumerate(patients):
        rows = patient_idx == i
        fd = weighted_objective_fd(p, t_obs[rows], w[rows])
        got = np.array([grad[name][i] for name in NAMES])
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(
            got, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max(), err_msg=f"patient {i}"
        )
    # right-derivative w.r.t. T0 at T0 = 0 is -(k + beta) per observation after 0
    rows = patient_idx == 1
    expected = -(patients[1]["k"] + patients[1]["beta"]) * w[rows].sum()
    assert float(grad["T0"][1]) == pytest.approx(expected, rel=1e-6)


def test_batched_needs_max_obs_under_jit() -> None:
    batched = make_batched_log_total(LIU)
    params = dict(
        C0=np.ones(2),
        beta=np.full(2, 0.3),
        T1=np.full(2, 10.0),
        alpha=np.full(2, 0.2),
        rM=np.full(2, 0.01),
        deltaM=np.full(2, 0.01),
    )
    with pytest.raises(ValueError, match="max_obs"):
        jax.jit(batched)(np.array([1.0, 2.0]), np.array([0, 1]), params)
    with pytest.raises(ValueError, match="patient_idx goes up to 2 but the parameters have 2"):
        batched(np.array([1.0, 2.0]), np.array([0, 2]), params)


def saturable_expansion(t, y, p):
    """dE/dt = beta E / (1 + E / Emax): no closed form."""
    return jnp.stack([p["beta"] * y[0] / (1.0 + y[0] / p["Emax"]), jnp.zeros_like(y[1])])


def test_register_ode_variant_without_closed_form() -> None:
    phases = (
        LIU_PHASES[0],
        Phase("T0", "T1", saturable_expansion, log_space=True, name="saturable expansion"),
        LIU_PHASES[2],
    )
    model = register_ode_kinetics(
        "liu_saturable_test",
        parameters=(*NAMES[:4], "Emax", *NAMES[4:]),
        phases=phases,
        y0=lambda p: jnp.stack([p["C0"], jnp.zeros_like(p["C0"])]),
        n_states=2,
        defaults={"k": 0.0, "T0": 0.0, "deltaE": DELTA_E_PER_DAY},
        description="Liu model with saturable expansion",
        overwrite=True,
    )
    assert get_kinetics("liu_saturable_test") is model
    p = dict(C0=5.0, k=0.5, T0=2.0, beta=0.5, T1=12.0, alpha=0.2, rM=0.01, deltaM=0.005)
    t = times_for(model.with_defaults(dict(p, Emax=1.0)))
    with pytest.raises(ValueError, match="no closed form"):
        model.solve(t, dict(p, Emax=1.0))
    huge = model.solve(t, dict(p, Emax=1e300), solver="ode")
    ref = LIU.solve(t, p)
    assert rel_err(huge["log_total"], ref["log_total"]).max() <= 1e-6
    # saturation caps the peak: E(T1) solves log E + E/Emax = const (implicit), below Liu's
    emax = 100.0
    sat = model.solve(t, dict(p, Emax=emax), solver="ode")
    assert np.all(np.asarray(sat["log_total"]) <= ref["log_total"] + 1e-9)
    # implicit solution of the saturable phase: ln E/E0 + (E - E0)/Emax = beta (t - T0)
    e_t0 = p["C0"] * math.exp(-p["k"] * p["T0"])
    inside = (t > p["T0"]) & (t <= p["T1"])
    assert inside.sum() >= 2
    e = np.exp(np.asarray(sat["log_E"])[inside])
    lhs = np.log(e / e_t0) + (e - e_t0) / emax
    np.testing.assert_allclose(lhs, p["beta"] * (t[inside] - p["T0"]), rtol=1e-7)


def test_kinetic_model_with_ode_field_and_register_kinetics() -> None:
    """The documented manual route: KineticModel(ode=PhasedODE(...)) + register_kinetics."""
    ode = PhasedODE(
        phases=LIU_PHASES,
        n_states=2,
        y0=lambda p: jnp.stack([p["C0"], jnp.zeros_like(p["C0"])]),
        rtol=1e-6,
    )
    model = register_kinetics(
        KineticModel(
            name="liu_manual_test",
            parameters=LIU.parameters,
            description="copy",
            ode=ode,
            defaults=dict(LIU.defaults),
        ),
        overwrite=True,
    )
    p = dict(C0=5.0, beta=0.4, T1=11.0, alpha=0.15, rM=0.01, deltaM=0.005)
    t = times_for(model.with_defaults(p))
    out = model.solve(t, p, solver="ode")
    assert rel_err(out["log_total"], LIU.solve(t, p)["log_total"]).max() <= 1e-4


def test_phase_validation_and_failed_solve() -> None:
    rhs = LIU_PHASES[0].rhs
    with pytest.raises(ValueError, match="consecutive"):
        PhasedODE(
            phases=(Phase("0", "T0", rhs), Phase("T1", "inf", rhs)),
            n_states=2,
            y0=lambda p: jnp.ones(2),
        )
    with pytest.raises(ValueError, match="only the last phase"):
        PhasedODE(
            phases=(Phase("0", "inf", rhs), Phase("inf", "T1", rhs)),
            n_states=2,
            y0=lambda p: jnp.ones(2),
        )
    assert LIU2021_ODE.parameter_bounds() == ["T0", "T1"]
    # a solve that runs out of steps gives NaN (a sampler rejects it) instead of raising
    starved = LIU2021_ODE.with_options(max_steps=2, step_to_obs=False)
    p = LIU.with_defaults(dict(C0=5.0, beta=0.4, T1=11.0, alpha=0.15, rM=0.01, deltaM=0.005))
    out = diffrax_ode.solve(starved, times_for(p), p)
    assert np.all(np.isnan(np.asarray(out["log_total"])))


def test_solve_broadcasts_parameter_arrays_elementwise() -> None:
    """Array parameters: each (time, parameter) element is its own solve, like the closed form."""
    lam = 0.2 + DELTA_E_PER_DAY + 0.01
    p = dict(
        C0=np.array([1.0, 10.0, 3.0]),
        beta=0.3,
        T1=10.0,
        alpha=np.array([0.2, 50.0, 0.2]),  # the second has a huge contraction rate
        rM=0.01,
        deltaM=np.array([0.005, 0.005, lam]),  # the third has lam == deltaM
    )
    t = np.array([[1.0], [20.0], [200.0], [2000.0]])
    out = LIU.solve(t, p, solver="ode")
    ref = LIU.solve(t, p)
    assert out["log_total"].shape == (4, 3)
    assert np.all(np.isfinite(np.asarray(out["log_total"])))
    assert rel_err(out["log_total"], ref["log_total"]).max() <= 1e-6
