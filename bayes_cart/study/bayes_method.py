"""The one-stage Bayesian method: the hierarchical fit of a model spec to one replicate.

The spec is loaded and given the method's covariate formulas, reference levels and group
settings (:meth:`bayes_cart.model.spec.ModelSpec.with_overrides`), the replicate's samples below the
LLOQ are handled as the method says (:func:`apply_blq`), and :func:`bayes_cart.fit` samples it
without the predictive groups a study does not read. The estimates are the posterior summaries
of the study's quantities of interest.

The fits of one worker process share a compiled-model cache (:func:`worker_cache`,
:class:`bayes_cart.inference.model_cache.ModelCache`): each model structure (spec with the
method's overrides, patients, design columns...) is compiled once and every later replicate's
data are swapped in. ``BAYES_CART_MODEL_CACHE=0`` in the environment turns it off (each fit
compiles, as a single fit does); the results do not depend on it.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import pandas as pd

import bayes_cart as bc
from bayes_cart.study.methods import MethodContext, MethodOutput, summarise_draws
from bayes_cart.study.posterior import quantity_draws

__all__ = ["apply_blq", "bayes_method", "fit_replicate", "fit_diagnostics", "worker_cache"]

_CACHE: Any = None


def worker_cache() -> Any:
    """Return this process's compiled-model cache (None when ``BAYES_CART_MODEL_CACHE=0``)."""
    global _CACHE
    if os.environ.get("BAYES_CART_MODEL_CACHE", "1").strip().lower() in ("0", "false", "no"):
        return None
    if _CACHE is None:
        from bayes_cart.inference.model_cache import ModelCache

        _CACHE = ModelCache()
    return _CACHE


def apply_blq(data: pd.DataFrame, blq: str) -> pd.DataFrame:
    """Handle the samples below the LLOQ (``CENS = 1``, ``DV`` = the LLOQ) before fitting.

    ``"m3"`` keeps them censored (the M3 likelihood), ``"drop"`` removes them, ``"lloq_half"``
    replaces them by LLOQ/2 as if they were quantified.

    Examples
    --------
    >>> d = pd.DataFrame({"ID": ["a", "a"], "TIME": [1.0, 2.0], "DV": [50.0, 20.0],
    ...                   "CENS": [0, 1]})
    >>> apply_blq(d, "lloq_half")[["DV", "CENS"]].to_numpy().tolist()
    [[50.0, 0.0], [10.0, 0.0]]
    >>> len(apply_blq(d, "drop")), len(apply_blq(d, "m3"))
    (1, 2)
    """
    if blq == "m3":
        return data
    censored = data["CENS"].to_numpy() == 1
    if blq == "drop":
        return data[~censored].reset_index(drop=True)
    if blq == "lloq_half":
        out = data.copy()
        out["DV"] = out["DV"].where(~censored, out["DV"] / 2.0)
        out["CENS"] = 0
        return out
    raise ValueError(f"unknown BLQ handling {blq!r}")


def fit_replicate(
    ctx: MethodContext, *, covariates: bool = True, notes: list[str] | None = None
) -> Any:
    """Fit the method's model to the task's dataset; return the :class:`bayes_cart.Fit`.

    bayes_cart's data and convergence warnings are not printed (a study has thousands); their
    messages are appended to ``notes`` (the task record's), at most 10 distinct ones.
    """
    m = ctx.method
    spec = bc.load_spec(m.model)
    if (covariates and m.covariates) or m.reference or m.group:
        spec = spec.with_overrides(
            covariates=(m.covariates or None) if covariates else None,
            reference=m.reference or None,
            group=m.group or None,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = bc.load_dataset(apply_blq(ctx.simulation.data, m.blq))
        result = bc.fit(
            dataset,
            spec,
            sampler=m.sampler,
            chains=m.chains,
            tune=m.tune,
            draws=m.draws,
            target_accept=m.target_accept,
            random_seed=ctx.seed,
            prior_draws=0,
            predictive=False,
            extend=m.extend,
            retry=m.retry,
            cores=m.cores,
            cache=worker_cache(),
            method=m.inference,
        )
    if notes is not None:
        ours = [w for w in caught if w.category.__module__.startswith("bayes_cart")]
        for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in ours):
            if len(notes) < 10:
                notes.append(message)
    return result


def fit_diagnostics(result: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Return the gate's numbers and the timings of a fit, for a task record.

    The diagnostics include each random effect's eta-shrinkage
    (:func:`~bayes_cart.inference.shrinkage.eta_shrinkage`, ``None`` where undefined): the
    two-stage method tests EBEs, and their shrinkage is what biases that test towards 0.
    """
    from bayes_cart.inference.shrinkage import eta_shrinkage

    d = result.diagnostics
    shrinkage = eta_shrinkage(result.idata)
    diagnostics = {
        "max_rhat": float(d.max_rhat),
        "min_ess_bulk": float(d.min_ess_bulk),
        "min_ess_tail": float(d.min_ess_tail),
        "divergences": int(d.divergences),
        "package_gate_passed": bool(d.passed),
        "retried": bool(d.retried),
        "restarted_chains": len(d.restarted_chains),
        "eta_shrinkage": {
            str(p): round(float(v), 4) if math.isfinite(v) else None
            for p, v in zip(shrinkage["parameter"], shrinkage["shrinkage"], strict=True)
        },
    }
    timings = {
        "compile_seconds": float(result.timings.get("compile_seconds", float("nan"))),
        "sampling_seconds": float(result.timings.get("sampling_seconds", float("nan"))),
        "model_cache": str(result.timings.get("model_cache", "off")),
    }
    return diagnostics, timings


def bayes_method(ctx: MethodContext) -> MethodOutput:
    """``kind = "bayes"``: the one-stage hierarchical fit with the method's covariates."""
    notes: list[str] = []
    result = fit_replicate(ctx, notes=notes)
    diagnostics, timings = fit_diagnostics(result)
    draws = quantity_draws(result.idata.posterior, ctx.quantities, flat=False)
    if ctx.method.blq == "drop":
        n = int((ctx.simulation.data["CENS"] == 1).sum())
        notes.append(f"{n} BLQ sample(s) dropped")
    return MethodOutput(
        estimates=summarise_draws(draws),
        diagnostics=diagnostics,
        timings=timings,
        notes=notes,
        draws=draws,
    )
