"""CK metrics read off solved profiles, for structures without an analytic (Liu) equivalent.

The analytic metrics of :mod:`bayes_cart.kinetics.metrics` need Liu parameters. A structure
of a user's own (e.g. registered with :func:`bayes_cart.kinetics.register_ode_kinetics`) has
none, so its metrics are computed like an NCA of the noise-free curve: the structure is solved
on a time grid with its own route, and

* ``Cmax``, ``Tmax``: the highest grid value and its time (grid spacing :data:`FINE_STEP`
  days up to :data:`FINE_END`), refined twice on 41 points around it (to 1/400 of a step,
  about 1e-3 days);
* ``AUC_<a>_<b>``: trapezoids on 401 points of the window (linear scale);
* ``time_below_lloq``: the first time after Tmax at which the curve falls below the LLOQ
  (log-linear interpolation between grid points; past the grid, extrapolated with the
  terminal slope);
* ``terminal_half_life``: ``ln 2`` over the log-slope between the last two grid points;
* ``memory_fraction_<t>``: ``M / (E + M)`` at ``t`` where the structure has E and M;
* ``doubling_time`` and ``initial_half_life`` have no structure-free definition: NaN.

The grid ends at :data:`GRID_END` days (or later, to cover the AUC window and the memory
fraction times).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.kinetics.solvers import available_solvers, batched_log_total, output_names

#: Grid step (days) up to FINE_END.
FINE_STEP = 0.25
#: End (days) of the fine part of the grid.
FINE_END = 60.0
#: Grid step (days) after FINE_END.
COARSE_STEP = 5.0
#: Default end of the grid (days).
GRID_END = 730.0
#: Elements (parameter sets) solved per batch.
CHUNK = 2000

__all__ = ["profile_metrics", "profile_time_grid"]


def profile_time_grid(auc_window: tuple[float, float], extra: Sequence[float] = ()) -> np.ndarray:
    """Time grid (days) of :func:`profile_metrics`: fine early, coarse late, window and extras.

    Examples
    --------
    >>> g = profile_time_grid((0.0, 28.0), (90.0,))
    >>> float(g[0]), float(g[-1]), bool(np.all(np.diff(g) > 0)), 90.0 in g
    (0.0, 730.0, True, True)
    """
    a, b = auc_window
    end = max(GRID_END, b, *extra) if extra else max(GRID_END, b)
    parts = [
        np.arange(0.0, FINE_END + FINE_STEP / 2, FINE_STEP),
        np.arange(FINE_END, end + COARSE_STEP / 2, COARSE_STEP),
        np.linspace(a, b, 401),
        np.asarray(extra, dtype=float),
        [end],
    ]
    return np.unique(np.concatenate([np.asarray(p, dtype=float) for p in parts]))


def _solve(
    model: Any, solver: str, params: Mapping[str, np.ndarray], grid: np.ndarray, state: str
) -> np.ndarray:
    """Log curves (element, time) of ``state`` for every parameter set, in chunks."""
    n = len(next(iter(params.values())))
    f = batched_log_total(model, solver, state=state)
    out = np.empty((n, grid.size))
    for start in range(0, n, CHUNK):
        part = {k: v[start : start + CHUNK] for k, v in params.items()}
        m = len(next(iter(part.values())))
        pidx = np.repeat(np.arange(m), grid.size)
        t = np.tile(grid, m)
        out[start : start + m] = np.asarray(f(t, pidx, part)).reshape(m, grid.size)
    return out


def profile_metrics(
    model: Any,
    params: Mapping[str, np.ndarray],
    *,
    solver: str | None = None,
    lloq: np.ndarray | float | None = None,
    auc_window: tuple[float, float] = (0.0, 28.0),
    memory_fraction_at: Sequence[float] = (),
) -> pd.DataFrame:
    """Compute the table of :func:`bayes_cart.kinetics.metrics.derived_metrics` from curves.

    Parameters
    ----------
    model : KineticModel
        The structure.
    params : mapping
        Parameter arrays, 1-D of equal length (one element per patient or draw); the
        structure's defaults fill the rest.
    solver : str, optional
        Route (:mod:`bayes_cart.kinetics.solvers`); default the structure's first.
    lloq : float or array, optional
        Adds ``time_below_lloq``.
    auc_window : (float, float)
        AUC window (days).
    memory_fraction_at : sequence of float
        Adds ``memory_fraction_<t>`` where the structure has E and M.

    Returns
    -------
    pandas.DataFrame
        One row per element.

    Examples
    --------
    >>> from bayes_cart.kinetics import derived_metrics, get_kinetics
    >>> p = {"C0": np.array([10.0]), "beta": np.array([0.5]), "T1": np.array([10.0]),
    ...      "alpha": np.array([0.1]), "rM": np.array([0.01]), "deltaM": np.array([0.002])}
    >>> num = profile_metrics(get_kinetics("liu2021"), p)
    >>> exact = derived_metrics(p)
    >>> bool(np.isclose(num["Cmax"][0], exact["Cmax"][0])), round(float(num["Tmax"][0]), 3)
    (True, 10.0)
    >>> bool(np.isclose(num["AUC_0_28"][0], exact["AUC_0_28"][0], rtol=1e-3))
    True
    """
    route = solver or available_solvers(model)[0]
    full = model.with_defaults({k: np.asarray(v, dtype=float) for k, v in params.items()})
    n = max(np.size(v) for v in full.values())
    full = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy() for k, v in full.items()}
    grid = profile_time_grid(auc_window, memory_fraction_at)
    states = output_names(model)
    log_total = _solve(model, route, full, grid, "log_total")
    peak = np.argmax(np.where(np.isfinite(log_total), log_total, -np.inf), axis=1)
    log_cmax, t_max = _refine_peak(model, route, full, grid, peak)
    a, b = auc_window
    in_window = (grid >= a) & (grid <= b)
    level = np.exp(log_total[:, in_window])
    auc = np.trapezoid(level, grid[in_window], axis=1)
    slope = (log_total[:, -1] - log_total[:, -2]) / (grid[-1] - grid[-2])
    with np.errstate(divide="ignore", invalid="ignore"):
        terminal = np.where(slope < 0, np.log(2.0) / -slope, np.inf)
    columns: dict[str, np.ndarray] = {
        "Cmax": np.exp(log_cmax),
        "Tmax": t_max,
        f"AUC_{a:g}_{b:g}": auc,
        "doubling_time": np.full(n, np.nan),
        "initial_half_life": np.full(n, np.nan),
        "terminal_half_life": terminal,
    }
    if lloq is not None:
        log_lloq = np.log(np.broadcast_to(np.asarray(lloq, dtype=float), (n,)))
        columns["time_below_lloq"] = _first_below(grid, log_total, peak, log_lloq, slope)
    if "log_M" in states:
        log_m = _solve(model, route, full, grid, "log_M")
        for t in memory_fraction_at:
            j = int(np.searchsorted(grid, t))
            columns[f"memory_fraction_{t:g}"] = np.exp(log_m[:, j] - log_total[:, j])
    else:
        for t in memory_fraction_at:
            columns[f"memory_fraction_{t:g}"] = np.full(n, np.nan)
    return pd.DataFrame(columns)


def _refine_peak(
    model: Any,
    solver: str,
    params: Mapping[str, np.ndarray],
    grid: np.ndarray,
    peak: np.ndarray,
    n_points: int = 41,
    passes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Log peak and its time, searched on finer local grids around the grid maximum."""
    f = batched_log_total(model, solver)
    n = len(peak)
    lo = grid[np.maximum(peak - 1, 0)]
    hi = grid[np.minimum(peak + 1, grid.size - 1)]
    best_t = grid[peak]
    best = np.full(n, -np.inf)
    u = np.linspace(0.0, 1.0, n_points)
    for _ in range(passes):
        local = lo[:, None] + (hi - lo)[:, None] * u[None, :]  # (n, n_points)
        values = np.empty_like(local)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            part = {k: v[start : start + m] for k, v in params.items()}
            pidx = np.repeat(np.arange(m), n_points)
            out = f(local[start : start + m].reshape(-1), pidx, part)
            values[start : start + m] = np.asarray(out).reshape(m, n_points)
        values = np.where(np.isfinite(values), values, -np.inf)
        j = np.argmax(values, axis=1)
        better = values[np.arange(n), j] >= best
        best = np.where(better, values[np.arange(n), j], best)
        best_t = np.where(better, local[np.arange(n), j], best_t)
        width = (hi - lo) / (n_points - 1)
        lo, hi = np.maximum(best_t - width, 0.0), best_t + width
    return best, best_t


def _first_below(
    grid: np.ndarray,
    log_total: np.ndarray,
    peak: np.ndarray,
    log_lloq: np.ndarray,
    slope: np.ndarray,
) -> np.ndarray:
    """First time after the peak with ``log_total < log_lloq`` (interpolated/extrapolated)."""
    after = np.arange(grid.size)[None, :] > peak[:, None]
    below = after & (log_total < log_lloq[:, None])
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), -1)
    out = np.full(len(peak), np.nan)
    for i, j in enumerate(first):
        if j > 0:
            y0, y1 = log_total[i, j - 1], log_total[i, j]
            frac = (y0 - log_lloq[i]) / (y0 - y1) if y0 != y1 else 0.0
            out[i] = grid[j - 1] + frac * (grid[j] - grid[j - 1])
        elif slope[i] < 0:  # still above at the grid end: extrapolate the terminal slope
            out[i] = grid[-1] + (log_lloq[i] - log_total[i, -1]) / slope[i]
        else:
            out[i] = np.inf
    return out
