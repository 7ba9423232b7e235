"""Liu <-> Stein mapping: round trips, identical curves, constraint errors."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.mapping import liu_to_stein, stein_to_liu
from bayes_cart.units import DAYS_PER_MONTH, DELTA_E_PER_DAY

LIU = get_kinetics("liu2021")
STEIN = get_kinetics("stein2019")
T = np.r_[np.linspace(0.0, 365.0, 200), 1000.0]


def liu_draws(n: int = 200, seed: int = 11) -> dict[str, np.ndarray]:
    """Random Liu parameters in the paper's ranges with deltaM < alpha + deltaE."""
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.5, 10.0, n) / DAYS_PER_MONTH
    delta_m = np.minimum(10 ** rng.uniform(-3, 0, n) / DAYS_PER_MONTH, 0.9 * alpha)
    return dict(
        C0=10 ** rng.uniform(-2, 3, n),
        beta=rng.uniform(3, 30, n) / DAYS_PER_MONTH,
        T1=rng.uniform(5, 30, n),
        alpha=alpha,
        rM=10 ** rng.uniform(-3, 0, n) / DAYS_PER_MONTH,
        deltaM=delta_m,
    )


def test_liu_stein_liu_round_trip() -> None:
    liu = liu_draws()
    back = stein_to_liu(liu_to_stein(liu))
    for name, value in liu.items():
        np.testing.assert_allclose(back[name], value, rtol=1e-10, err_msg=name)
    assert np.all(back["k"] == 0) and np.all(back["T0"] == 0)
    np.testing.assert_allclose(back["deltaE"], DELTA_E_PER_DAY)


def test_stein_liu_stein_round_trip() -> None:
    rng = np.random.default_rng(5)
    n = 100
    beta_s = rng.uniform(0.0005, 0.02, n)
    stein = dict(
        Cmax=10 ** rng.uniform(2, 6, n),
        Tmax=rng.uniform(5, 30, n),
        foldx=10 ** rng.uniform(0.5, 5, n),
        alpha=beta_s + rng.uniform(0.1, 0.5, n),
        beta=beta_s,
        FB=rng.uniform(0.001, 0.3, n),
    )
    back = liu_to_stein(stein_to_liu(stein))
    for name, value in stein.items():
        np.testing.assert_allclose(back[name], value, rtol=1e-10, err_msg=name)


def test_both_structures_give_the_same_curve() -> None:
    liu = liu_draws(n=60)
    stein = liu_to_stein(liu)
    t = T[:, None]
    liu_total = LIU.solve(t, liu)["log_total"]
    stein_total = STEIN.solve(t, stein)["log_total"]
    assert liu_total.shape == (T.size, 60)
    rel = np.abs(np.expm1(liu_total - stein_total))
    assert rel.max() <= 1e-10


def test_distribution_phase_is_refused_unless_approximated() -> None:
    liu = dict(C0=10.0, k=0.5, T0=2.0, beta=0.4, T1=12.0, alpha=0.2, rM=0.01, deltaM=0.002)
    with pytest.raises(ValueError, match="no distribution phase.*approximate_distribution"):
        liu_to_stein(liu)
    stein = liu_to_stein(liu, approximate_distribution=True)
    cmax = 10.0 * np.exp(-0.5 * 2.0 + 0.4 * 10.0)
    assert float(stein["Cmax"]) == pytest.approx(cmax, rel=1e-12)
    assert float(stein["foldx"]) == pytest.approx(cmax / 10.0, rel=1e-12)
    # same curve at t = 0 and after the peak, different in between
    t = np.array([0.0, 1.0, 12.0, 30.0, 200.0])
    a = LIU.solve(t, liu)["log_total"]
    b = STEIN.solve(t, stein)["log_total"]
    np.testing.assert_allclose(a[[0, 2, 3, 4]], b[[0, 2, 3, 4]], rtol=1e-12)
    assert abs(a[1] - b[1]) > 0.1


def test_constraints_are_named() -> None:
    base = dict(C0=1.0, beta=0.3, T1=10.0, alpha=0.2, rM=0.05)
    with pytest.raises(ValueError, match=r"deltaM < alpha \+ deltaE.*index 1"):
        liu_to_stein(dict(base, deltaM=np.array([0.01, 0.3])))
    stein = dict(Cmax=1e4, Tmax=12.0, foldx=100.0, alpha=0.3, beta=0.01, FB=0.05)
    with pytest.raises(ValueError, match="alpha \\(fast decline\\) must exceed beta"):
        stein_to_liu(dict(stein, alpha=0.005))
    with pytest.raises(ValueError, match="FB must lie strictly between 0 and 1"):
        stein_to_liu(dict(stein, FB=1.2))
    with pytest.raises(ValueError, match=r"alpha = alpha_S - deltaE - FB"):
        stein_to_liu(dict(stein, alpha=0.02, beta=0.001, FB=0.5))
    with pytest.raises(KeyError, match="Stein parameters need 'foldx'"):
        stein_to_liu({k: v for k, v in stein.items() if k != "foldx"})
