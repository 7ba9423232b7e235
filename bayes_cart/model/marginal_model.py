"""The PyMC terms of ``covariates.missing = "marginalize"`` (see :mod:`bayes_cart.model.marginal`).

**Coordinates.** For a patient with a missing marginalised covariate, every parameter whose
formula uses that covariate (and every parameter in a correlated block with one) is sampled
*centred*, ``log p_i ~ Normal(mu_i(l), omega)``, whatever ``sampling.centered`` says for the
other patients (a per-patient change of coordinates, as ``centering = "informed"`` makes; under
``centering = "partial"`` the patient's weight becomes 1). The individual parameters, hence the
likelihood of the patient's observations, then do not depend on the level: only the densities
of the patient's sampled individual values do, and the sum over levels is a sum over those
densities. It also keeps the posterior of a missing patient's sampled values unimodal (the
data pin ``log p_i``; in non-centred coordinates ``z_i`` would have one mode per level), and the
stored ``<p>_i``, the posterior predictive draws and the pointwise log-likelihood are already
averaged over the level: no level has to be chosen for predictions.

**Density.** The model is built with the missing patients' design rows coded at the reference
level (a placeholder). With ``d_i(k)`` the log density of patient ``i``'s level-dependent
variables when its rows are coded for component ``k`` (a level, or a combination of levels
for a patient missing several covariates) and ``d_i(0)`` that at the placeholder, the
Potential ``marginal_covariates`` adds::

    sum_c sum_{i observed} log pi_c[l_ic]
      + sum_{i missing} [ logsumexp_k (log prior_ik + d_i(k)) - d_i(0) ]

so the placeholder terms that the ordinary variables already contain cancel exactly and the
model's density is the marginal one. ``d_i(k)`` is computed from the model's own graph: each
level-dependent variable's distribution is rebuilt with the design matrices of component
``k`` (every other random variable held as it is) and its ``pm.logp`` taken at the variable.
The deterministic ``p_<column>_level`` (dims ``patient_missing_<column>``, ``<column>_level``)
is the posterior probability of each level given the other parameters (the softmax of the
terms, summed over the other covariates' levels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.graph.traversal import ancestors, toposort

from bayes_cart.model.marginal import MarginalDesign

__all__ = ["POTENTIAL", "add_marginal_terms", "centre_missing_patients"]

#: Name of the Potential that holds the sums over levels.
POTENTIAL = "marginal_covariates"


def _mask_with(
    p: str, centered: set[str], masks: dict[str, np.ndarray], force: np.ndarray
) -> np.ndarray | None:
    """Patients to centre for ``p`` once the missing ones are added (None: everyone)."""
    if p not in centered:
        return force.copy()
    mask = masks.get(p)
    return None if mask is None else mask | force


def centre_missing_patients(
    spec: Any,
    marginal: MarginalDesign,
    names: list[str],
    n: int,
    centered: set[str],
    masks: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
) -> tuple[set[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Centre the level-dependent random effects of the patients with a missing covariate.

    Parameters
    ----------
    spec : ModelSpec
        The spec.
    marginal : MarginalDesign
        What is marginalised.
    names : list of str
        Parameters :func:`bayes_cart.model.build._random_effects` builds.
    n : int
        Number of patients.
    centered, masks, weights : set, dict, dict
        The parameters listed as centred, the informed-centring masks and the partial-centring
        weights before the change.

    Returns
    -------
    tuple
        ``(centered, masks, weights)`` with the missing patients centred for every parameter
        that uses a marginalised covariate and every block member of one: weight 1 under
        partial centring, otherwise in the mask (a parameter not listed as centred is added,
        centred for those patients only). The ``fold`` block and C0 in the ``cmax``/``fold``
        coordinates are centred for everyone already.
    """
    doc = spec.doc
    force = np.zeros(n, dtype=bool)
    force[marginal.patients] = True
    affected = set(marginal.parameters) & set(names)
    fold = doc.sampling.parameterisation == "fold"
    centered, masks = set(centered), dict(masks)
    weights = {p: np.asarray(w, dtype=float).copy() for p, w in weights.items()}
    in_block: set[str] = set()
    for block in doc.iiv.blocks:
        block = [b for b in block if b in names]
        if len(block) < 2:
            continue
        in_block |= set(block)
        if not affected & set(block) or (fold and {"beta", "T1"} <= set(block)):
            continue
        mask = _mask_with(block[0], centered, masks, force)
        for b in block:
            centered.add(b)
            if mask is not None:
                masks[b] = mask
    for p in sorted(affected - in_block):
        if fold and p in ("beta", "T1"):
            continue  # the diagonal fold block: centred for everyone
        if p in weights:
            weights[p][force] = 1.0
            continue
        mask = _mask_with(p, centered, masks, force)
        centered.add(p)
        if mask is not None:
            masks[p] = mask
    return centered, masks, weights


def _patient_rows(model: pm.Model, rv: Any, n: int, rows: dict[str, np.ndarray]) -> np.ndarray:
    """Patient position of each element of a per-patient variable's log density."""
    if rv.name in rows:
        return rows[rv.name]
    dims = model.named_vars_to_dims.get(rv.name) or ()
    if (dims and dims[0] == "patient") or (rv.type.shape and rv.type.shape[0] == n):
        return np.arange(n)
    raise RuntimeError(  # pragma: no cover - every level-dependent variable is per patient
        f"covariates.missing = 'marginalize': {rv.name} depends on a marginalised covariate "
        "but is not a per-patient variable"
    )


def _level_dependent(model: pm.Model, design: dict[str, Any]) -> list[Any]:
    """Free variables whose distribution uses a design matrix (other variables held fixed)."""
    targets = set(design.values())
    free = list(model.free_RVs)
    return [rv for rv in free if targets & set(ancestors(rv.owner.inputs, blockers=free))]


def _rebuild(outputs: list[Any], replace: dict[Any, Any], keep: list[Any]) -> list[Any]:
    """Copy of ``outputs`` with ``replace`` applied, new nodes only where something changed.

    The variables in ``keep`` (the model's random variables) are leaves: their own graphs are
    neither followed nor copied, so the copy uses the model's variables, and nothing of the
    model's graph is modified (pytensor's FunctionGraph-based replacement would edit the
    kept variables' graphs in place).
    """
    memo = dict(replace)
    for node in toposort(outputs, blockers=[*keep, *replace]):
        inputs = [memo.get(i, i) for i in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs, strict=True)):
            memo.update(zip(node.outputs, node.clone_with_new_inputs(inputs).outputs, strict=True))
    return [memo.get(o, o) for o in outputs]


def _with_design(rv: Any, replacements: dict[Any, Any], free: list[Any]) -> Any:
    """Rebuild the variable's distribution with the design matrices replaced, others kept."""
    node = rv.owner
    inputs = _rebuild(list(node.inputs), replacements, [v for v in free if v is not rv])
    return node.clone_with_new_inputs(inputs).outputs[node.outputs.index(rv)]


def _patient_terms(
    variables: list[tuple[Any, np.ndarray]],
    missing: np.ndarray,
    replacements: dict[Any, Any] | None,
    free: list[Any],
) -> Any:
    """Sum of the level-dependent log densities of each missing patient (one component)."""
    total = pt.zeros(len(missing))
    for rv, rows in variables:
        where = {int(p): k for k, p in enumerate(rows)}
        have = np.array([j for j, p in enumerate(missing) if int(p) in where], dtype=np.int64)
        if len(have) == 0:
            continue
        at = np.array([where[int(missing[j])] for j in have], dtype=np.int64)
        dist = rv if replacements is None else _with_design(rv, replacements, free)
        total = pt.inc_subtensor(total[have], pm.logp(dist, rv)[at])
    return total


def _log_prior(marginal: MarginalDesign, log_pi: dict[str, Any]) -> Any:
    """``log prod_c pi_c[level]`` of each component of each missing patient (missing c only)."""
    codes = marginal.codes[marginal.patients]
    out = pt.zeros(marginal.valid.shape)
    for c, col in enumerate(marginal.columns):
        missing = (codes[:, c] < 0)[:, None]
        out = out + pt.switch(missing, log_pi[col][marginal.components[:, :, c]], 0.0)
    return pt.switch(marginal.valid, out, -np.inf)


def _level_probabilities(marginal: MarginalDesign, prob: Any) -> None:
    """Deterministics ``p_<column>_level``: each level's share of the posterior weight."""
    for c, col in enumerate(marginal.columns):
        rows = marginal.missing(col)
        n_levels = len(marginal.levels[col])
        onehot = marginal.components[rows, :, c][:, :, None] == np.arange(n_levels)
        onehot = (onehot & marginal.valid[rows][:, :, None]).astype(float)
        pm.Deterministic(
            f"p_{col}_level",
            pt.sum(prob[rows][:, :, None] * onehot, axis=1),
            dims=(f"patient_missing_{col}", f"{col}_level"),
        )


def add_marginal_terms(
    model: pm.Model,
    marginal: MarginalDesign,
    design: dict[str, Any],
    rows: dict[str, np.ndarray],
) -> None:
    """Add the prevalences, the Potential and the level probabilities to ``model``.

    Call inside the model's context once every free variable exists.

    Parameters
    ----------
    model : pymc.Model
        The model being built.
    marginal : MarginalDesign
        What is marginalised.
    design : dict
        ``{parameter: design-matrix tensor}`` of the parameters in ``marginal.parameters``, the
        very tensors the means were built from.
    rows : dict
        ``{variable name: patient positions}`` of the variables that hold a subset of patients.
    """
    n = marginal.codes.shape[0]
    log_pi = {}
    observed = pt.constant(0.0)
    for col in marginal.columns:
        levels = marginal.levels[col]
        pi = pm.Dirichlet(f"prevalence_{col}", a=np.ones(len(levels)), dims=f"{col}_level")
        log_pi[col] = pt.log(pi)
        observed = observed + pt.sum(marginal.counts(col) * log_pi[col])
    free = list(model.free_RVs)
    variables = [(rv, _patient_rows(model, rv, n, rows)) for rv in _level_dependent(model, design)]
    missing = marginal.patients
    base = _patient_terms(variables, missing, None, free)
    components = []
    for k in range(marginal.n_components):
        replace = {design[p]: pt.as_tensor_variable(marginal.matrices[p][k]) for p in design}
        components.append(_patient_terms(variables, missing, replace, free))
    weights = pt.stack(components, axis=1) + _log_prior(marginal, log_pi)
    total = pt.logsumexp(weights, axis=1)
    pm.Potential(POTENTIAL, observed + pt.sum(total - base))
    _level_probabilities(marginal, pt.exp(weights - total[:, None]))
