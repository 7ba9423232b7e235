"""The truth of a simulation-based calibration replicate, drawn from the fitted model's prior.

A ``from_prior = true`` scenario has no population values: each replicate draws them (typical
values, IIV SDs, the correlations of the IIV blocks, categorical covariate effects, the
residual SD) from the priors of the scenario's model spec, then simulates its design with
:func:`bayes_cart.simulate_patients` like any other scenario.

**One source of truth for the prior: the built PyMC model.** The draws are PyMC's forward
sampling (:func:`pymc.draw`) of the population variables of the very model
:func:`bayes_cart.model.build.build_model` builds for the fit, on a placeholder dataset of the
replicate's design (the population priors do not depend on the DV values). So the truth comes
from exactly the prior the sampler conditions on: the spec's priors as the model maps them
(``LogNormal`` typical values, the LKJ-Cholesky block with its ``HalfNormal`` SDs, the
centring shear of the covariate intercepts, the covariate-effect prior), with no second
reading of the spec through scipy that could drift from it. The cost is one model build and
one small forward graph (about 1 s; compiled with ``FAST_COMPILE``, no C compiler) per
scenario and process: the compiled draw is kept (:data:`_DRAWERS`) and reseeded for each
replicate, so a worker's later replicates draw in milliseconds.

The seed is :func:`bayes_cart.study.seeds.prior_seed` of (study seed, scenario, replicate):
the same study gives the same truths, and every method of a replicate sees the same truth and
data. :func:`degenerate_reason` flags datasets that barely inform the kinetics (see
:class:`bayes_cart.study.spec.SbcSpec` for what is done with them).

Supported: log- and logit-normal parameters with IIV (independent or in blocks), categorical
covariate effects (treatment coding), the proportional error model, no distribution phase, no
trial random effects, no parameters set from the data: what :func:`prior_problems` does not
refuse.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

import bayes_cart as bc
from bayes_cart.study.truth import truth_values

__all__ = [
    "degenerate_reason",
    "draw_population",
    "placeholder_truth",
    "population_variables",
    "prior_problems",
    "prior_spec",
]

_TERM = re.compile(r"^(?P<column>[^\[]+)\[(?P<level>.+)\]$")
_PLAIN_SUM = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*(\s*\+\s*[A-Za-z_][A-Za-z0-9_]*)*\s*$")


def prior_spec(scenario: Any) -> Any:
    """Return the model spec of a ``from_prior`` scenario, with its covariates and references."""
    spec = bc.load_spec(scenario.model)
    if scenario.covariates or scenario.reference:
        spec = spec.with_overrides(
            covariates=scenario.covariates or None, reference=scenario.reference or None
        )
    return spec


def prior_problems(spec: Any, scenario: Any) -> list[tuple[str, str]]:
    """List what the simulator cannot generate of a spec's prior, as ``(key, message)`` pairs.

    Parameters
    ----------
    spec : bayes_cart.model.spec.ModelSpec
        The scenario's model spec with its covariate overrides.
    scenario : bayes_cart.study.spec.ScenarioSpec
        The scenario (its design's covariates).
    """
    doc = spec.doc
    out: list[tuple[str, str]] = []
    name = spec.doc.name
    if doc.error.model != "proportional":
        out.append(
            (
                "model",
                f"{name!r} has error model {doc.error.model!r}: from_prior simulates the "
                "proportional error model only",
            )
        )
    if doc.group.mode != "none":
        out.append(
            (
                "model",
                f"{name!r} has group effects (mode {doc.group.mode!r}): not "
                "supported with from_prior yet",
            )
        )
    if doc.distribution_phase.enabled_if:
        out.append(
            ("model", f"{name!r} has a distribution phase: not supported with from_prior yet")
        )
    from_data = [n for n, p in doc.parameters.items() if p.from_data is not None]
    if from_data:
        out.append(("model", f"{name!r} sets {from_data} from the data: a prior draw cannot"))
    for p, rhs in doc.covariates.formulas.items():
        variables, _ = bc.formula_variables(rhs)
        if not _PLAIN_SUM.match(rhs):
            out.append((f"covariates.{p}", f"{rhs!r}: from_prior takes a sum of columns only"))
        for v in variables:
            mix = scenario.design.covariates.get(v)
            if mix is None or not mix.levels:
                out.append(
                    (
                        f"covariates.{p}",
                        f"{v!r} is not a categorical design covariate "
                        "(from_prior draws categorical effects only)",
                    )
                )
    return out


def population_variables(spec: Any) -> dict[str, str]:
    """Model variable -> quantity name of every population quantity a prior draw gives.

    Covariate effects are the vectors ``b_<p>`` (one quantity per coordinate), named here by
    the vector.
    """
    doc = spec.doc
    out = {p: p for p in spec.estimated_parameters}
    out.update(
        {
            f"omega_{p}": f"omega_{p}"
            for p in spec.estimated_parameters
            if doc.parameters[p].iiv is not None
        }
    )
    for block in doc.iiv.blocks:
        block = [b for b in block if b in spec.estimated_parameters]
        if len(block) >= 2:
            label = "_".join(block)
            out[f"corr_{label}"] = f"corr_{label}"
    out["sigma"] = "sigma"
    out.update({f"b_{p}": f"b_{p}" for p in doc.covariates.formulas})
    return out


def _population(spec: Any, values: dict[str, Any], effect_labels: dict[str, list[str]]) -> Any:
    """Return the :class:`bayes_cart.PopulationParameters` of one prior draw."""
    doc = spec.doc
    kin = bc.get_kinetics(spec.kinetics)
    typical = {p: float(values[p]) for p in spec.estimated_parameters}
    omega = {p: float(values[f"omega_{p}"]) for p in typical if f"omega_{p}" in values}
    correlation: dict[tuple[str, str], float] = {}
    for block in doc.iiv.blocks:
        block = [b for b in block if b in typical]
        if len(block) < 2:
            continue
        r = np.atleast_1d(np.asarray(values[f"corr_{'_'.join(block)}"], dtype=float))
        pairs = list(zip(*np.triu_indices(len(block), 1), strict=True))
        for (i, j), rho in zip(pairs, r, strict=True):
            correlation[(block[i], block[j])] = float(rho)
    effects: dict[str, dict[str, dict[str, float]]] = {}
    for p, labels in effect_labels.items():
        b = np.atleast_1d(np.asarray(values[f"b_{p}"], dtype=float))
        for label, v in zip(labels, b, strict=True):
            m = _TERM.match(label)
            if m is None:  # pragma: no cover - refused by prior_problems
                raise ValueError(f"covariate term {label!r} is not COLUMN[level]")
            effects.setdefault(p, {}).setdefault(m["column"], {})[m["level"]] = float(v)
    fixed = {n: float(p.fixed) for n, p in doc.parameters.items() if p.fixed is not None}
    fixed.update({n: 0.0 for n in kin.distribution_parameters if n not in fixed})
    logit = tuple(p for p in typical if doc.parameters[p].typical.dist == "LogitNormal")
    return bc.PopulationParameters(
        typical=typical,
        omega=omega,
        correlation=correlation,
        effects=effects,
        sigma=float(values["sigma"]),
        fixed={k: v for k, v in fixed.items() if k in kin.parameters},
        kinetics=spec.kinetics,
        logit=logit,
    )


def placeholder_truth(spec: Any, design: Any) -> dict[str, float]:
    """Return the quantity names of a ``from_prior`` scenario's truth (values: placeholders).

    Used to validate a study's ``quantities`` without PyMC; the values mean nothing.
    """
    doc = spec.doc
    values: dict[str, Any] = {}
    for p in spec.estimated_parameters:
        typical = doc.parameters[p].typical
        values[p] = typical.median if typical.median is not None else 0.5
        if doc.parameters[p].iiv is not None:
            values[f"omega_{p}"] = 0.1
    for block in doc.iiv.blocks:
        block = [b for b in block if b in spec.estimated_parameters]
        if len(block) >= 2:
            values[f"corr_{'_'.join(block)}"] = np.zeros(len(block) * (len(block) - 1) // 2)
    values["sigma"] = 0.1
    labels: dict[str, list[str]] = {}
    for p, rhs in doc.covariates.formulas.items():
        variables, _ = bc.formula_variables(rhs)
        labels[p] = []
        for v in variables:
            mix = design.covariates[v]
            ref = doc.covariates.reference.get(v, mix.levels[0])
            labels[p] += [f"{v}[{lev}]" for lev in mix.levels if lev != ref]
        values[f"b_{p}"] = np.zeros(len(labels[p]))
    return truth_values(_population(spec, values, labels), design)


def _placeholder_dataset(frame: pd.DataFrame) -> Any:
    """Return a dataset of the design's patients and samples (DV = 1, nothing censored)."""
    data = frame.copy()
    data["DV"] = 1.0
    data["CENS"] = 0
    return bc.load_dataset(data)


#: Compiled prior draws per (scenario, covariate levels present), one process's worth:
#: ``(model spec, variable names, compiled function, its random generators, effect labels)``.
_DRAWERS: dict[tuple[Any, ...], tuple[Any, list[str], Any, list[Any], dict[str, list[str]]]] = {}


def _drawer(scenario: Any, frame: pd.DataFrame) -> tuple[Any, list[str], Any, list[Any], Any]:
    """Return the compiled forward draw of a scenario's population prior (built once)."""
    levels = tuple(
        (c, tuple(sorted(frame[c].astype(str).unique())))
        for c, mix in scenario.design.covariates.items()
        if mix.levels
    )
    key = (scenario.model_dump_json(), levels)
    if key not in _DRAWERS:
        from pymc.pytensorf import compile as compile_draws
        from pytensor.tensor.random.type import RandomGeneratorType

        spec = prior_spec(scenario)
        model = bc.build_model(_placeholder_dataset(frame), spec, store_individual=False)
        names = [v for v in population_variables(spec) if v in model.named_vars]
        fn = compile_draws(inputs=[], outputs=[model[v] for v in names], mode="FAST_COMPILE")
        rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
        labels = {
            p: [str(c) for c in model.coords[f"{p}_effect"]]
            for p in spec.doc.covariates.formulas
            if f"b_{p}" in names
        }
        if len(_DRAWERS) >= 8:
            _DRAWERS.clear()
        _DRAWERS[key] = (spec, names, fn, rngs, labels)
    return _DRAWERS[key]


def draw_population(scenario: Any, frame: pd.DataFrame, seed: int) -> Any:
    """Draw one replicate's truth from the priors of a ``from_prior`` scenario's model.

    Parameters
    ----------
    scenario : bayes_cart.study.spec.ScenarioSpec
        A ``from_prior`` scenario.
    frame : DataFrame
        The replicate's design (:func:`bayes_cart.study.datasets.design_frame`): the model is
        built on it with placeholder DVs, so its covariate levels are the replicate's.
    seed : int
        :func:`bayes_cart.study.seeds.prior_seed` of the replicate.

    Returns
    -------
    bayes_cart.PopulationParameters
    """
    from pymc.pytensorf import reseed_rngs

    spec, names, fn, rngs, labels = _drawer(scenario, frame)
    reseed_rngs(rngs, seed)  # the draw depends on the seed only, not on earlier draws
    values = dict(zip(names, fn(), strict=True))
    return _population(spec, values, labels)


def degenerate_reason(data: pd.DataFrame, min_informed: float) -> str | None:
    """Why a simulated dataset barely informs the kinetics, or None.

    Degenerate: a DV that is not finite, or fewer than ``min_informed`` of the patients with
    two or more quantified (non-BLQ) samples.

    Examples
    --------
    >>> d = pd.DataFrame({"ID": ["a", "a", "b", "b"], "DV": [5.0, 5.0, 20.0, 30.0],
    ...                   "CENS": [1, 1, 0, 0]})
    >>> degenerate_reason(d, 0.5) is None, degenerate_reason(d, 0.75)
    (True, '1 of 2 patients (50%) have 2 or more quantified samples (< 75%)')
    """
    dv = pd.to_numeric(data["DV"], errors="coerce").to_numpy(float)
    if not np.isfinite(dv).all():
        return f"{int((~np.isfinite(dv)).sum())} DV value(s) not finite"
    quantified = data[data["CENS"].to_numpy() == 0].groupby("ID").size()
    n = int(data["ID"].nunique())
    informed = int((quantified >= 2).sum())
    if n == 0 or informed < min_informed * n:
        share = informed / n if n else 0.0
        return (
            f"{informed} of {n} patients ({share:.0%}) have 2 or more quantified samples "
            f"(< {min_informed:.0%})"
        )
    return None
