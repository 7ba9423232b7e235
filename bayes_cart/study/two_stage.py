"""The two-stage method of Liu et al.: fit without covariates, then test the patients' estimates.

Stage 1 fits the model without covariates (:func:`bayes_cart.study.bayes_method.fit_replicate`)
and takes each patient's posterior median of the tested parameter (``<parameter>_i``), the
Bayesian analogue of an empirical-Bayes estimate (EBE). Stage 2 compares the EBEs between the
groups of a categorical covariate with a two-sided Wilcoxon rank-sum test (two groups,
:func:`scipy.stats.mannwhitneyu`) or a Kruskal-Wallis test (more, :func:`scipy.stats.kruskal`).

Its estimate of the effect of level ``L`` against the reference ``R`` is the difference of the
groups' median log EBEs (the log ratio of the group medians), the two-stage analogue of the
one-stage ``<parameter>:<COLUMN>[L]``; shrinkage of the EBEs towards the population value
biases it towards 0. It has no interval: coverage is not defined for it, its decision is
``p < alpha``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayes_cart.study.bayes_method import fit_diagnostics, fit_replicate
from bayes_cart.study.methods import MethodContext, MethodOutput

__all__ = ["group_test", "two_stage_method"]


def group_test(values: pd.Series, groups: pd.Series, test: str = "auto") -> tuple[str, float]:
    """Test whether ``values`` differ between ``groups``; return (test name, p-value).

    Examples
    --------
    >>> v = pd.Series([1.0, 2, 3, 10, 11, 12])
    >>> g = pd.Series(["a", "a", "a", "b", "b", "b"])
    >>> name, p = group_test(v, g)
    >>> name, round(p, 3)
    ('wilcoxon', 0.1)
    """
    samples = [values[groups == level].to_numpy(float) for level in pd.unique(groups)]
    samples = [s for s in samples if len(s)]
    if len(samples) < 2:
        return test, float("nan")
    if test == "wilcoxon" or (test == "auto" and len(samples) == 2):
        if len(samples) != 2:
            raise ValueError(f"a Wilcoxon rank-sum test compares two groups, not {len(samples)}")
        return "wilcoxon", float(stats.mannwhitneyu(*samples, alternative="two-sided").pvalue)
    return "kruskal", float(stats.kruskal(*samples).pvalue)


def _reference(ctx: MethodContext, levels: list[str]) -> str:
    m = ctx.method
    if m.covariate in m.reference:
        return m.reference[m.covariate]
    listed = ctx.study.scenarios[ctx.scenario].population.get("effects", {})
    listed = set(listed.get(m.parameter, {}).get(m.covariate, {}))
    unlisted = [lv for lv in levels if lv not in listed]
    return (unlisted or levels)[-1]


def two_stage_method(ctx: MethodContext) -> MethodOutput:
    """``kind = "two_stage"``: EBEs of a fit without covariates, then a rank test."""
    m = ctx.method
    notes: list[str] = []
    result = fit_replicate(ctx, covariates=False, notes=notes)
    diagnostics, timings = fit_diagnostics(result)
    individual = result.idata.posterior[f"{m.parameter}_i"]
    ebe = individual.median(("chain", "draw")).to_series()
    ebe.index = ebe.index.astype(str)
    patients = ctx.simulation.truth.assign(ID=lambda t: t["ID"].astype(str)).set_index("ID")
    group = patients[m.covariate].astype(str).reindex(ebe.index)
    log_ebe = np.log(ebe.astype(float))
    test, p_value = group_test(log_ebe, group, m.test)
    levels = [
        str(lv) for lv in ctx.study.scenarios[ctx.scenario].design.covariates[m.covariate].levels
    ]
    reference = _reference(ctx, levels)
    ref_median = float(log_ebe[group == reference].median())
    rows: list[dict[str, Any]] = []
    for level in levels:
        if level == reference:
            continue
        estimate = float(log_ebe[group == level].median()) - ref_median
        rows.append(
            {
                "quantity": f"{m.parameter}:{m.covariate}[{level}]",
                "mean": estimate,
                "median": estimate,
                "p_value": p_value,
                "test_reject": bool(p_value < m.alpha) if np.isfinite(p_value) else None,
            }
        )
    notes.insert(0, f"{test} test of {m.parameter} EBEs by {m.covariate} (reference {reference})")
    return MethodOutput(estimates=rows, diagnostics=diagnostics, timings=timings, notes=notes)
