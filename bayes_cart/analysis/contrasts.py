"""Posterior contrasts between covariate groups: ratios of typical values, P(direction), P(ROPE).

The question "do responders expand faster than non-responders?" becomes, in the fitted model,
a statement about the **typical patient** of each group
(:func:`bayes_cart.analysis.virtual_population.typical_parameters`: the covariate at the group's
level, every other covariate at its reference, no random effect; for the trial column of a trial
random effect, the fitted trial effect ``u_trial``). For every posterior draw ``s`` and quantity
``Q`` (a kinetic parameter, or a derived metric such as Cmax or AUC0-28 computed from the typical
patient's parameters by :mod:`bayes_cart.analysis.ck_metrics`)::

    ratio_s = Q_s(group) / Q_s(reference)          diff_s = Q_s(group) - Q_s(reference)

For a parameter with a log-linear covariate model the ratio is ``exp(b)`` of that level's
coefficient. Reported per quantity and group:

* ``ratio_q50``, ``ratio_q5``, ``ratio_q95``: posterior median and central 90% interval
  (``ci``) of the ratio; ``diff_*`` the same for the difference (in the quantity's unit, e.g.
  days for T1 and Tmax, where a difference reads more naturally than a ratio);
* ``p_direction``: the probability of direction, ``max(P(ratio > 1), P(ratio < 1))`` (draws
  with a ratio of exactly 1 count half to each side, so a quantity the covariate does not
  affect has 0.5); it lies between 0.5 (no evidence of a direction) and 1;
* ``p_rope``: the posterior probability that the ratio lies in the region of practical
  equivalence ``[1/(1 + rope), 1 + rope]``, i.e. ``|log ratio| <= log(1 + rope)`` (symmetric on
  the log scale; ``rope = 0.1`` means "within 10%"), computed over all draws;
* ``in_model``: whether the covariate enters the model for that quantity (its formula, the
  trial random effect, or the distribution-phase condition). When it does not, the ratio is
  exactly 1 and the difference 0 by construction, not by evidence.

Because responder status is observed after infusion, contrasts by response are associations,
not effects of response on kinetics.

Examples
--------
>>> from bayes_cart.inference.io import load_fit  # doctest: +SKIP
>>> table = contrast(load_fit("out/fit.nc"), by="RESPONSE", rope=0.1)  # doctest: +SKIP
>>> table[["quantity", "group", "ratio_q50", "p_direction"]]  # doctest: +SKIP
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.analysis.ck_metrics import interval_columns, metric_draws
from bayes_cart.analysis.virtual_population import PatientGroups, typical_parameters
from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.covariates import formula_columns
from bayes_cart.model.expressions import parse_subset_expression
from bayes_cart.predict import fit_kinetics, fit_solver

__all__ = ["CONTRAST_COLUMNS", "contrast", "covariate_in_model", "summarise_contrast"]

#: Leading columns of a contrast table (for ``ci = 0.9``).
CONTRAST_COLUMNS = (
    "quantity",
    "group",
    "reference",
    "ratio_q50",
    "ratio_q5",
    "ratio_q95",
    "p_direction",
    "p_rope",
)

#: Which kinetic parameters each derived metric depends on (liu2021).
METRIC_PARAMETERS: dict[str, tuple[str, ...]] = {
    "Cmax": ("C0", "beta", "T1", "k", "T0"),
    "Tmax": ("C0", "beta", "T1", "k", "T0"),
    "AUC": ("C0", "beta", "T1", "k", "T0", "alpha", "rM", "deltaM"),
    "persistence": ("C0", "beta", "T1", "k", "T0", "alpha", "rM", "deltaM"),
    "doubling_time": ("beta",),
    "initial_half_life": ("alpha", "rM"),
    "terminal_half_life": ("alpha", "rM", "deltaM"),
    "memory_fraction": ("C0", "beta", "T1", "k", "T0", "alpha", "rM", "deltaM"),
}


def _expression_columns(expr: str) -> set[str]:
    tree = parse_subset_expression(expr)
    return {node.id.lower() for node in ast.walk(tree) if isinstance(node, ast.Name)}


def covariate_in_model(fit: Any, column: str | None, quantity: str) -> bool:
    """Whether covariate ``column`` can change ``quantity`` in the fitted model.

    Parameters
    ----------
    fit : Fit
        A fit.
    column : str or None
        Patient covariate (case-insensitive).
    quantity : str
        A kinetic parameter or a metric name (``Cmax``, ``AUC_0_28``, ``memory_fraction_90``...).

    Returns
    -------
    bool
        True if the covariate is in the parameter's formula, is the trial column of a trial
        random or fixed effect on it, or selects the distribution phase (k, T0); for a metric,
        if any parameter it depends on is affected.
    """
    if column is None:
        return False
    doc = fit.spec.doc
    col = column.lower()
    base = next((m for m in METRIC_PARAMETERS if quantity.startswith(m)), None)
    if base is not None and quantity not in doc.parameters:
        if fit.spec.kinetics != "liu2021":
            return any(covariate_in_model(fit, column, p) for p in doc.parameters)
        return any(covariate_in_model(fit, column, p) for p in METRIC_PARAMETERS[base])
    rhs = doc.covariates.formulas.get(quantity)
    if rhs and col in {n.lower() for n in formula_columns(rhs)}:
        return True
    group_col = (fit.model_data.group_column or "").lower()
    if doc.group.mode != "none" and group_col == col and quantity in doc.group.parameters:
        return True
    expr = doc.distribution_phase.enabled_if
    phase = get_kinetics(doc.kinetics).distribution_parameters
    return bool(expr) and quantity in phase and col in _expression_columns(expr)


def _p_direction(log_ratio: np.ndarray) -> float:
    finite = log_ratio[~np.isnan(log_ratio)]
    if finite.size == 0:
        return float("nan")
    above, below = np.mean(finite > 0), np.mean(finite < 0)
    return float(max(above, below) + 0.5 * np.mean(finite == 0))


def _rows_for(
    name: str,
    kind: str,
    values: np.ndarray,
    groups: PatientGroups,
    in_model: bool,
    rope: float,
    ci: float,
) -> list[dict[str, Any]]:
    lo_name, hi_name = interval_columns(ci)
    probs = [0.5, 0.5 * (1 - ci), 1 - 0.5 * (1 - ci)]
    ref = values[:, 0]
    rows = []
    for g, label in enumerate(groups.labels[1:], start=1):
        cur = values[:, g]
        with np.errstate(divide="ignore", invalid="ignore"):
            if in_model:
                ratio = cur / ref
                diff = cur - ref
            else:  # not in the model: identical by construction
                ratio = np.where(np.isnan(cur), np.nan, 1.0)
                diff = np.where(np.isnan(cur), np.nan, 0.0)
            log_ratio = np.log(ratio)
        ok = ~np.isnan(ratio)
        rq = np.nanquantile(ratio, probs) if ok.any() else [np.nan] * 3
        dq = np.nanquantile(diff, probs) if ok.any() else [np.nan] * 3
        inside = np.abs(log_ratio[ok]) <= np.log1p(rope)
        rows.append(
            {
                "quantity": name,
                "group": label,
                "reference": groups.labels[0],
                "ratio_q50": rq[0],
                f"ratio_{lo_name}": rq[1],
                f"ratio_{hi_name}": rq[2],
                "p_direction": _p_direction(log_ratio),
                "p_rope": float(inside.mean()) if ok.any() else np.nan,
                "in_model": in_model,
                "diff_q50": dq[0],
                f"diff_{lo_name}": dq[1],
                f"diff_{hi_name}": dq[2],
                "group_q50": float(np.nanmedian(cur)) if ok.any() else np.nan,
                "reference_q50": float(np.nanmedian(ref)) if ok.any() else np.nan,
                "kind": kind,
                "covariate": groups.column,
                "rope": rope,
                "ci": ci,
                "n_draws": int(ok.sum()),
            }
        )
    return rows


def contrast(
    fit: Any,
    by: str,
    *,
    parameters: Sequence[str] | None = None,
    metrics: bool | Sequence[str] = True,
    levels: Sequence[Any] | None = None,
    reference: Any = None,
    at: Mapping[str, Any] | None = None,
    rope: float = 0.1,
    ci: float = 0.9,
    lloq: float | None = None,
    auc_window: tuple[float, float] = (0.0, 28.0),
    memory_fraction_at: Sequence[float] = (90.0,),
    n_draws: int | None = None,
    random_seed: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Compare the typical patients of the levels of a covariate with its reference level.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str
        Covariate to compare (case-insensitive), e.g. ``"RESPONSE"``, ``"TUMOR_TYPE"`` or the
        trial column.
    parameters : sequence of str, optional
        Kinetic parameters to compare; default every estimated parameter of the spec.
    metrics : bool or sequence of str
        Also compare derived metrics of the typical patients (True: all of Cmax, Tmax,
        AUC_<a>_<b>, doubling_time, initial_half_life, terminal_half_life,
        memory_fraction_<t>, plus persistence when ``lloq`` is given), or only those named.
    levels : sequence, optional
        Levels to compare (required for a continuous covariate: the values, e.g. doses).
    reference : optional
        Reference level (default: the fit's reference; for the trial column of a random
        effect, the largest trial).
    at : mapping, optional
        Values of other covariates for the typical patients (default: their references).
    rope : float
        Half-width of the region of practical equivalence on the ratio scale: ratios in
        ``[1/(1 + rope), 1 + rope]`` count as equivalent.
    ci : float
        Probability of the central interval (0.9 gives ``ratio_q5``/``ratio_q95``).
    lloq : float, optional
        LLOQ (data units) for a ``persistence`` contrast.
    auc_window : (float, float)
        AUC window (days).
    memory_fraction_at : sequence of float
        Days of the memory-fraction metrics.
    n_draws : int, optional
        Random subset of posterior draws (all if None).
    random_seed : int or Generator
        Seed of the subset.

    Returns
    -------
    pandas.DataFrame
        One row per quantity and non-reference level, columns :data:`CONTRAST_COLUMNS` then
        ``in_model, diff_q50, diff_q5, diff_q95, group_q50, reference_q50, kind, covariate,
        rope, ci, n_draws``.

    Examples
    --------
    >>> table = contrast(fit, "RESPONSE", rope=0.1)  # doctest: +SKIP
    >>> table.query("quantity == 'beta'")[["group", "ratio_q50", "p_direction"]]  # doctest: +SKIP
    """
    if rope < 0:
        raise ValueError(f"rope must be >= 0, got {rope}")
    params, groups = typical_parameters(
        fit,
        by,
        levels=levels,
        reference=reference,
        at=at,
        n_draws=n_draws,
        random_seed=random_seed,
    )
    if len(groups.levels) < 2:
        raise ValueError(
            f"{groups.column!r} has only one level ({groups.labels}); nothing to compare"
        )
    names = list(parameters) if parameters is not None else list(fit.spec.estimated_parameters)
    unknown = [p for p in names if p not in params]
    if unknown:
        raise KeyError(f"no kinetic parameter(s) {unknown}; the model has {sorted(params)}")
    rows: list[dict[str, Any]] = []
    for p in names:
        in_model = covariate_in_model(fit, groups.column, p)
        rows += _rows_for(p, "parameter", params[p], groups, in_model, rope, ci)
    if metrics:
        ds = metric_draws(
            params,
            fit_kinetics(fit),
            lloq=None if lloq is None else np.full(len(groups.levels), float(lloq)),
            auc_window=auc_window,
            memory_fraction_at=memory_fraction_at,
            dims=("sample", "group"),
            solver=fit_solver(fit),
        )
        wanted = list(ds.data_vars) if metrics is True else list(metrics)
        missing = [m for m in wanted if m not in ds]
        if missing:
            raise KeyError(f"unknown metric(s) {missing}; available: {list(ds.data_vars)}")
        for m in wanted:
            in_model = covariate_in_model(fit, groups.column, m)
            rows += _rows_for(m, "metric", ds[m].to_numpy(), groups, in_model, rope, ci)
    table = pd.DataFrame(rows)
    table.attrs.update(covariate=groups.column, reference=groups.labels[0], rope=rope, ci=ci)
    return table


def summarise_contrast(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Readable version of a contrast table: ``median [interval]`` strings for the ratio.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`contrast`.
    digits : int
        Significant digits.

    Returns
    -------
    pandas.DataFrame
        ``quantity, group, reference, ratio, p_direction, p_rope, in_model``.
    """
    ci = float(table["ci"].iloc[0]) if len(table) else 0.9
    lo_name, hi_name = interval_columns(ci)

    def fmt(x: float) -> str:
        return "-" if not np.isfinite(x) else f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.2e}"

    text = [
        f"{fmt(r['ratio_q50'])} [{fmt(r[f'ratio_{lo_name}'])}, {fmt(r[f'ratio_{hi_name}'])}]"
        for r in table.to_dict("records")
    ]
    out = table[["quantity", "group", "reference"]].copy()
    out["ratio"] = text
    out["p_direction"] = table["p_direction"].round(3)
    out["p_rope"] = table["p_rope"].round(3)
    out["in_model"] = table["in_model"]
    return out
