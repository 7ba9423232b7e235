"""Reference tests of the Liu et al. closed form.

* closed form vs SciPy ``solve_ivp`` (DOP853, rtol 1e-12, phase by phase, state scaled by its
  value at the phase start so that a tiny ``atol`` makes the control purely relative) on a grid
  spanning the paper's ranges: E + M, E and M (where M > 0) agree to 1e-6 relative (observed
  ~1e-10);
* one implementation, three namespaces: pytensor and jax.numpy give the numpy values;
* gradients (jax.numpy and pytensor) of log E+M w.r.t. every parameter, incl. T0 and T1,
  match central finite differences to 1e-5 relative at times off the kinks;
* gradients stay finite in extreme regions (NUTS needs this).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.closed_form import log_add_exp, log_biexp_kernel
from bayes_cart.kinetics.reference import paper_range_grid, scipy_liu_states
from bayes_cart.kinetics.structures.liu2021 import liu_log_states
from bayes_cart.units import DELTA_E_PER_DAY

jax.config.update("jax_enable_x64", True)

LIU = get_kinetics("liu2021")
NAMES = ("C0", "k", "T0", "beta", "T1", "alpha", "rM", "deltaM", "deltaE")
TIMES = np.linspace(0.0, 365.0, 74)


GRID = paper_range_grid()
scipy_reference = scipy_liu_states


def _grid_id(p: dict[str, float]) -> str:
    return "-".join(f"{key}{p[key]:.3g}" for key in ("beta", "T1", "T0", "alpha", "rM", "deltaM"))


@pytest.mark.parametrize("p", GRID, ids=[_grid_id(p) for p in GRID])
def test_closed_form_matches_scipy(p: dict[str, float]) -> None:
    t = np.unique(np.r_[TIMES, p["T1"] + 1e-3, p["T1"] + 0.5, p["T0"] + 0.2])
    out = LIU.solve(t, p)
    e_ref, m_ref = scipy_reference(t, p)
    rel_total = np.abs(np.expm1(out["log_total"] - np.log(e_ref + m_ref)))
    assert rel_total.max() <= 1e-6
    rel_e = np.abs(np.expm1(out["log_E"] - np.log(e_ref)))
    assert rel_e.max() <= 1e-6
    after = t > p["T1"]
    rel_m = np.abs(np.expm1(out["log_M"][after] - np.log(m_ref[after])))
    assert rel_m.max() <= 1e-6
    assert np.all(out["log_M"][~after] == -np.inf)


def test_biexp_kernel_limit_is_continuous() -> None:
    tau = np.array([0.1, 10.0, 300.0])
    at = log_biexp_kernel(0.05, 0.05, tau)
    assert np.allclose(np.exp(at), tau * np.exp(-0.05 * tau), rtol=1e-14)
    for gap in (1e-12, 1e-10, 1e-7, 1e-5):
        near = log_biexp_kernel(0.05, 0.05 + gap, tau)
        exact = np.log((np.exp(-0.05 * tau) - np.exp(-(0.05 + gap) * tau)) / gap)
        # the direct formula itself is only accurate to ~1e-16 / (gap * tau)
        assert np.allclose(near, at, atol=gap * tau.max())
        if gap >= 1e-7:
            assert np.allclose(near, exact, atol=1e-6)


# ---------------------------------------------------------------------------- namespaces
@pytest.fixture(scope="module")
def pytensor_fn():
    """Compiled pytensor value and gradient of sum(w * log_total) w.r.t. every parameter."""
    t = pt.vector("t")
    w = pt.vector("w")
    sym = {name: pt.scalar(name) for name in NAMES}
    out = LIU.solve(t, sym, xp=pt)
    objective = pt.sum(w * out["log_total"])
    grads = pytensor.grad(objective, [sym[name] for name in NAMES])
    return pytensor.function(
        [t, w, *[sym[name] for name in NAMES]],
        [out["log_E"], out["log_M"], out["log_total"], pt.stack(grads)],
    )


@pytest.fixture(scope="module")
def jax_jacobian():
    """jit(jacfwd) of the jax.numpy closed form: d log_total(t) / d params."""

    def log_total(x: jax.Array, t: jax.Array) -> jax.Array:
        return LIU.solve(t, dict(zip(NAMES, x, strict=True)), xp=jnp)["log_total"]

    return jax.jit(jax.jacfwd(log_total)), jax.jit(log_total)


def test_pytensor_and_jax_give_the_numpy_values(pytensor_fn, jax_jacobian) -> None:
    _, jax_value = jax_jacobian
    for p in GRID:
        t = np.sort(np.r_[TIMES, p["T1"] + 1e-3])
        ref = LIU.solve(t, p)
        le, lm, lt, _ = pytensor_fn(t, np.ones_like(t), *[p[name] for name in NAMES])
        np.testing.assert_allclose(lt, ref["log_total"], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(le, ref["log_E"], rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(np.isinf(lm), np.isinf(ref["log_M"]))
        finite = np.isfinite(ref["log_M"])
        np.testing.assert_allclose(lm[finite], ref["log_M"][finite], rtol=1e-13, atol=1e-13)
        x = jnp.array([p[name] for name in NAMES])
        np.testing.assert_allclose(jax_value(x, t), ref["log_total"], rtol=1e-13, atol=1e-13)


def fd_jacobian(p: dict[str, float], t: np.ndarray, rel_step: float = 1e-6) -> np.ndarray:
    """Central finite differences of the numpy closed form, [n_t, n_params]."""
    jac = np.zeros((t.size, len(NAMES)))
    for j, name in enumerate(NAMES):
        h = rel_step * max(abs(p[name]), 1e-2)
        up, down = dict(p), dict(p)
        up[name] += h
        down[name] -= h
        jac[:, j] = (LIU.solve(t, up)["log_total"] - LIU.solve(t, down)["log_total"]) / (2 * h)
    return jac


GRADIENT_CASES = [p for p in GRID if p["deltaM"] != p["alpha"] + p["deltaE"] + p["rM"]][::3]


@pytest.mark.parametrize("p", GRADIENT_CASES, ids=[_grid_id(p) for p in GRADIENT_CASES])
def test_gradients_match_finite_differences(p, pytensor_fn, jax_jacobian) -> None:
    jac_fn, _ = jax_jacobian
    # times off the kinks at 0, T0 and T1, in every phase
    t = np.array(
        [
            0.5 * p["T0"] if p["T0"] > 0 else 0.4,
            p["T0"] + 0.7,
            p["T1"] - 0.3,
            p["T1"] + 0.4,
            p["T1"] + 6.0,
            60.0,
            200.0,
            365.0,
        ]
    )
    fd = fd_jacobian(p, t)
    x = jnp.array([p[name] for name in NAMES])
    jac = np.asarray(jac_fn(x, t))
    scale = np.abs(fd).max()
    np.testing.assert_allclose(jac, fd, rtol=1e-5, atol=1e-7 * scale)
    w = np.linspace(0.5, 1.5, t.size)
    *_, grad = pytensor_fn(t, w, *[p[name] for name in NAMES])
    np.testing.assert_allclose(grad, w @ fd, rtol=1e-5, atol=1e-7 * scale)
    if p["T0"] > 0:  # the distribution-phase parameters really enter
        assert np.all(np.abs(jac[1:, NAMES.index("T0")]) > 0)


def test_gradient_at_lam_equal_delta_m(pytensor_fn, jax_jacobian) -> None:
    """At lam == deltaM exactly the series branch is used; FD straddles both branches."""
    jac_fn, _ = jax_jacobian
    p = [q for q in GRID if q["deltaM"] == q["alpha"] + q["deltaE"] + q["rM"]][0]
    t = np.array([p["T1"] + 0.4, 40.0, 200.0])
    x = jnp.array([p[name] for name in NAMES])
    jac = np.asarray(jac_fn(x, t))
    fd = fd_jacobian(p, t, rel_step=1e-4)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(jac, fd, rtol=1e-5, atol=1e-7 * scale)
    *_, grad = pytensor_fn(t, np.ones_like(t), *[p[name] for name in NAMES])
    np.testing.assert_allclose(grad, fd.sum(axis=0), rtol=1e-5, atol=1e-7 * scale)


EXTREMES = {
    "huge_lam": dict(alpha=50.0),
    "tiny_rM": dict(rM=1e-12),
    "tiny_deltaM": dict(deltaM=1e-12),
    "lam_eq_deltaM": dict(deltaM=0.2 + DELTA_E_PER_DAY + 0.01),
    "deltaM_gt_lam": dict(deltaM=3.0),
    "huge_beta_T1": dict(beta=3.0, T1=60.0),
    "no_distribution": dict(k=0.0, T0=0.0),
    "T0_eq_T1": dict(T0=12.0),
}


@pytest.mark.parametrize("case", sorted(EXTREMES))
def test_gradients_finite_in_extreme_regions(case, pytensor_fn, jax_jacobian) -> None:
    jac_fn, _ = jax_jacobian
    p = dict(
        C0=3.0,
        k=0.5,
        T0=2.0,
        beta=0.5,
        T1=12.0,
        alpha=0.2,
        rM=0.01,
        deltaM=0.005,
        deltaE=DELTA_E_PER_DAY,
    )
    p.update(EXTREMES[case])
    # includes the kinks (0, T0, T1) and times far beyond T1
    t = np.array([0.0, p["T0"], 1.0, p["T1"], p["T1"] + 1e-9, 20.0, 365.0, 5000.0, 1e5])
    x = jnp.array([p[name] for name in NAMES])
    jac = np.asarray(jac_fn(x, t))
    assert np.all(np.isfinite(jac)), case
    *_, lt, grad = pytensor_fn(t, np.ones_like(t), *[p[name] for name in NAMES])
    assert np.all(np.isfinite(grad)), case
    assert np.all(np.isfinite(lt)), case


def test_closed_form_broadcasts_over_patients() -> None:
    t = np.array([[1.0], [20.0], [200.0]])
    p = dict(C0=np.array([1.0, 10.0]), beta=0.3, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.005)
    out = LIU.solve(t, p)
    assert out["log_total"].shape == (3, 2)
    np.testing.assert_allclose(out["log_total"][:, 1] - out["log_total"][:, 0], np.log(10.0))
    single = liu_log_states(20.0, np.log(10.0), 0.3, 10.0, 0.2, 0.01, 0.005)[2]
    assert out["log_total"][1, 1] == pytest.approx(float(single), rel=1e-14)


def test_log_add_exp_value_and_gradient() -> None:
    a = np.array([0.0, -1000.0, 3.0, -np.inf, 5.0, -800.0])
    b = np.array([0.0, -1000.0, -2.0, 1.0, -np.inf, -801.0])
    np.testing.assert_allclose(log_add_exp(a, b), np.logaddexp(a, b), rtol=1e-15)
    x, y = pt.dscalar("x"), pt.dscalar("y")
    grad = pytensor.function([x, y], pytensor.grad(log_add_exp(x, y, xp=pt), [x, y]))
    np.testing.assert_allclose(grad(-1000.0, -1000.0), [0.5, 0.5])  # tie, both underflow
    np.testing.assert_allclose(grad(-800.0, -801.0), [1 / (1 + np.exp(-1)), 1 / (1 + np.e)])
    # rM = 0: no memory, E + M = E after the peak
    p = dict(C0=2.0, beta=0.3, T1=10.0, alpha=0.2, rM=0.0, deltaM=0.01)
    with np.errstate(divide="ignore"):
        out = LIU.solve(np.array([5.0, 50.0]), p)
    np.testing.assert_allclose(out["log_total"], out["log_E"])
