"""Derived metrics against numerical integration and brute-force grids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.metrics import (
    auc,
    cmax,
    derived_metrics,
    doubling_time,
    initial_half_life,
    memory_fraction,
    terminal_half_life,
    time_below,
    tmax,
)
from bayes_cart.units import DAYS_PER_MONTH, DELTA_E_PER_DAY

LIU = get_kinetics("liu2021")


def draws(n: int = 40, seed: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    with_dist = rng.random(n) < 0.5
    return dict(
        C0=10 ** rng.uniform(-1, 3, n),
        k=np.where(with_dist, rng.uniform(0.3, 1.0, n), 0.0),
        T0=np.where(with_dist, rng.uniform(1.0, 3.0, n), 0.0),
        beta=rng.uniform(3, 30, n) / DAYS_PER_MONTH,
        T1=rng.uniform(5, 30, n),
        alpha=rng.uniform(0.5, 10, n) / DAYS_PER_MONTH,
        rM=10 ** rng.uniform(-3, 0, n) / DAYS_PER_MONTH,
        deltaM=10 ** rng.uniform(-3, 0, n) / DAYS_PER_MONTH,
    )


def one(p: dict[str, np.ndarray], i: int) -> dict[str, float]:
    return {key: float(val[i]) for key, val in p.items()}


def total(t: float | np.ndarray, p: dict[str, float]) -> np.ndarray:
    return np.exp(LIU.solve(np.asarray(t, dtype=float), p)["log_total"])


def test_cmax_tmax_against_a_fine_grid() -> None:
    p = draws()
    # one patient whose distribution loss exceeds the expansion gain: max at t = 0
    p["k"][0], p["T0"][0], p["beta"][0], p["T1"][0] = 1.0, 3.0, 0.1, 5.0
    c, tm = cmax(p), tmax(p)
    assert tm[0] == 0.0 and c[0] == pytest.approx(p["C0"][0])
    for i in range(len(p["C0"])):
        q = one(p, i)
        grid = np.unique(np.r_[np.linspace(0, 60, 60001), q["T1"]])
        y = total(grid, q)
        assert c[i] == pytest.approx(y.max(), rel=1e-12)
        assert tm[i] == pytest.approx(grid[np.argmax(y)], abs=1e-9)


@pytest.mark.parametrize(
    "window", [(0.0, 28.0), (0.0, 3.0), (2.0, 9.0), (10.0, 10.5), (28.0, 365.0), (0.0, 365.0)]
)
def test_auc_matches_quadrature(window) -> None:
    p = draws(n=25)
    a, b = window
    got = auc(p, a, b)
    for i in range(25):
        q = one(p, i)
        points = [x for x in (q["T0"], q["T1"]) if a < x < b]
        ref, err = quad(
            lambda s, q=q: float(total(s, q)),
            a,
            b,
            points=points or None,
            epsabs=0.0,
            epsrel=1e-12,
            limit=500,
        )
        assert got[i] == pytest.approx(ref, rel=1e-9), (i, window)


def test_auc_to_infinity_and_degenerate_rates() -> None:
    p = dict(C0=2.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.004)
    e1 = 2.0 * np.exp(5.0)
    lam = 0.2 + DELTA_E_PER_DAY + 0.01
    expected = 2.0 * np.expm1(5.0) / 0.5 + e1 / lam + 0.01 * e1 / (lam * 0.004)
    assert float(auc(p, 0.0, np.inf)) == pytest.approx(expected, rel=1e-12)
    # lam == deltaM exactly, 1e-10 apart, and a tiny deltaM: all against quadrature
    for delta_m in (lam, lam + 1e-10, lam - 1e-10, 1e-9):
        q = dict(p, deltaM=delta_m)
        full = LIU.with_defaults(q)
        for a, b in ((0.0, 28.0), (12.0, 12.001), (15.0, 300.0)):
            points = [10.0] if a < 10.0 < b else None
            ref, _ = quad(
                lambda s, full=full: float(total(s, full)),
                a,
                b,
                points=points,
                epsabs=0.0,
                epsrel=1e-12,
                limit=500,
            )
            assert float(auc(q, a, b)) == pytest.approx(ref, rel=1e-9), (delta_m, a, b)


def test_auc_rejects_bad_windows() -> None:
    p = dict(C0=2.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.004)
    with pytest.raises(ValueError, match="0 <= t_start <= t_end"):
        auc(p, 5.0, 1.0)


def test_time_below_is_the_crossing_after_the_peak() -> None:
    p = draws()
    lloq = np.full(len(p["C0"]), 5.0)
    tb = time_below(p, lloq)
    peak = p["C0"] * np.exp(-p["k"] * p["T0"] + p["beta"] * (p["T1"] - p["T0"]))
    assert np.all(np.isfinite(tb))
    for i in range(len(tb)):
        q = one(p, i)
        if peak[i] <= 5.0:
            assert tb[i] == q["T1"]
            continue
        assert tb[i] > q["T1"]
        assert float(total(tb[i], q)) == pytest.approx(5.0, rel=1e-9)
        # brute force: last grid time above lloq is just before the crossing
        grid = np.linspace(q["T1"], tb[i] + 50.0, 20001)
        above = grid[total(grid, LIU.with_defaults(q)) > 5.0]
        assert above.max() <= tb[i] + 1e-9
        assert tb[i] - above.max() <= grid[1] - grid[0]


def test_time_below_without_memory_death() -> None:
    p = dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=0.0)
    lam = 0.2 + DELTA_E_PER_DAY + 0.01
    plateau = np.exp(5.0) * 0.01 / lam  # M never decays: E + M -> plateau
    assert float(time_below(p, plateau * 1.01)) < np.inf
    assert float(time_below(p, plateau * 0.99)) == np.inf
    t_cross = float(time_below(p, plateau * 1.01))
    assert float(total(t_cross, LIU.with_defaults(p))) == pytest.approx(plateau * 1.01, rel=1e-9)


def test_half_lives_and_memory_fraction() -> None:
    p = dict(C0=1.0, beta=0.5, T1=10.0, alpha=0.2, rM=0.01, deltaM=np.array([0.004, 0.5]))
    lam = 0.2 + DELTA_E_PER_DAY + 0.01
    np.testing.assert_allclose(doubling_time(p), np.log(2) / 0.5)
    np.testing.assert_allclose(initial_half_life(p), np.log(2) / lam)
    np.testing.assert_allclose(terminal_half_life(p), np.log(2) / np.array([0.004, lam]))
    # terminal half-life is the slope of log(E+M) far after the peak
    q = dict(p, deltaM=0.004)
    t = np.array([1500.0, 1600.0])
    slope = np.diff(LIU.solve(t, q)["log_total"])[0] / 100.0
    assert np.log(2) / -slope == pytest.approx(float(terminal_half_life(q)[()]), rel=1e-9)
    t = np.array([5.0, 10.0, 20.0, 60.0])
    out = LIU.solve(t, q)
    mf = memory_fraction(q, t)
    np.testing.assert_array_equal(mf[:2], 0.0)
    np.testing.assert_allclose(mf[2:], np.exp(out["log_M"] - out["log_total"])[2:], rtol=1e-12)
    assert 0 < mf[2] < mf[3] < 1


def test_derived_metrics_table() -> None:
    p = draws(n=6)
    frame = pd.DataFrame(p, index=pd.Index([f"P{i}" for i in range(6)], name="patient"))
    frame["response"] = "CR"  # extra columns are ignored
    table = derived_metrics(frame, lloq=2.0, auc_window=(0, 28), memory_fraction_at=(90,))
    assert list(table.columns) == [
        "Cmax",
        "Tmax",
        "AUC_0_28",
        "doubling_time",
        "initial_half_life",
        "terminal_half_life",
        "time_below_lloq",
        "memory_fraction_90",
    ]
    assert table.index.equals(frame.index)
    np.testing.assert_allclose(table["AUC_0_28"], auc(p, 0, 28))
    np.testing.assert_allclose(table["time_below_lloq"], time_below(p, 2.0))
    np.testing.assert_allclose(table["memory_fraction_90"], memory_fraction(p, 90.0))
    single = derived_metrics(one(p, 3))
    assert len(single) == 1
    assert single["Cmax"].iloc[0] == pytest.approx(table["Cmax"].iloc[3])
    with pytest.raises(KeyError, match="Liu parameters missing: \\['deltaM'\\]"):
        derived_metrics({k: v for k, v in p.items() if k != "deltaM"})


def test_metrics_read_off_solved_curves_match_the_analytic_ones() -> None:
    """profile_metrics (for structures without a Liu equivalent) on the Liu structure."""
    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.kinetics.profile_metrics import profile_metrics
    from bayes_cart.kinetics.reference import paper_range_grid

    sets = paper_range_grid()
    params = {k: np.array([s[k] for s in sets]) for k in sets[0]}
    lloq = 5.0
    exact = derived_metrics(params, lloq=lloq, memory_fraction_at=(90.0,))
    for solver in ("closed_form", "linear"):
        num = profile_metrics(
            get_kinetics("liu2021"), params, solver=solver, lloq=lloq, memory_fraction_at=(90.0,)
        )
        np.testing.assert_allclose(num["Cmax"], exact["Cmax"], rtol=2e-3)
        np.testing.assert_allclose(num["Tmax"], exact["Tmax"], atol=2e-3)
        np.testing.assert_allclose(num["AUC_0_28"], exact["AUC_0_28"], rtol=2e-3)
        np.testing.assert_allclose(
            num["memory_fraction_90"], exact["memory_fraction_90"], rtol=1e-8, atol=1e-12
        )
        finite = np.isfinite(exact["time_below_lloq"]) & (exact["time_below_lloq"] < 700)
        np.testing.assert_allclose(
            num["time_below_lloq"][finite], exact["time_below_lloq"][finite], rtol=2e-2
        )
        assert num["doubling_time"].isna().all()  # no structure-free definition
