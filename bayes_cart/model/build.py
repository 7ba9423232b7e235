"""The hierarchical PyMC model: kinetics per patient, covariates, IIV, censored likelihood.

For patient ``i`` and each estimated parameter ``p``::

    log p_i = log p_pop + X_p[i] b_p + u_p[trial(i)] + eta_p[i]

with ``eta`` non-centred (``eta = omega * z`` or, for a correlated block, ``eta = L z`` with an
LKJ prior on the block's correlation), optional trial random effects ``u`` (partial pooling) and
treatment-coded covariate effects ``b`` on the log scale. The kinetic solution is the closed form
of :mod:`bayes_cart.kinetics` evaluated in the PyTensor graph (the same function numpy uses), or
the structure's ODE system solved in JAX and wrapped as a PyTensor op: by matrix exponentials of
its linear phases (``solver="linear"``) or by adaptive diffrax solves (``solver="ode"``).

Observations: ``log DV ~ Normal(log(E + M), sigma)`` (proportional error with log-normal
residuals), with M3 censoring: a left-censored sample contributes ``log Phi((log LLOQ - mu) /
sigma)``, an interval-censored one ``log(Phi(log LLOQ) - Phi(log LIMIT))`` and a right-censored one
``log(1 - Phi)``; the combined and Student-t error models get the same terms with their own
distribution (:func:`bayes_cart.model.likelihood.censored_terms`). Variables are named after the
paper (``beta``, ``T1``...; ``omega_<p>``, ``eta_<p>``, ``sigma``) with dims ``patient``, ``obs``,
``trial`` and ``<p>_effect``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from bayes_cart.errors import SpecError
from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.initial_values import initial_values
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik, student_t_censored_loglik
from bayes_cart.model.marginal_model import add_marginal_terms, centre_missing_patients
from bayes_cart.model.model_data import ModelData, prepare_model_data
from bayes_cart.model.scales import Scale, from_scale, parameter_scale, scaled_name, to_scale
from bayes_cart.model.sigma_scaling import SigmaScaling, sigma_scaling
from bayes_cart.model.spec import ModelSpec, PriorSpec
from bayes_cart.model.step_covariates import step_solver, step_structure
from bayes_cart.model.swap import SwapLayout, padded_observations, swap_problems


def prior_dist(prior: PriorSpec, name: str | None = None, log_scale: bool = False, **kwargs: Any):
    """Create a PyMC variable (or ``.dist``) from a :class:`PriorSpec`.

    Parameters
    ----------
    prior : PriorSpec
        The prior.
    name : str, optional
        Variable name; ``None`` returns an unnamed ``.dist``.
    log_scale : bool
        For a ``LogNormal`` (``LogitNormal``) prior, create the Normal on the log (logit)
        scale instead: the typical value on the scale its variability acts on.
    **kwargs
        Passed to PyMC (``dims``, ``shape``).
    """
    if prior.dist == "LogNormal":
        cls, args = (
            (pm.Normal, {"mu": np.log(prior.median), "sigma": prior.sigma})
            if log_scale
            else (pm.LogNormal, {"mu": np.log(prior.median), "sigma": prior.sigma})
        )
    elif prior.dist == "LogitNormal":
        mu = to_scale(prior.median, "logit")
        cls, args = (
            (pm.Normal, {"mu": mu, "sigma": prior.sigma})
            if log_scale
            else (pm.LogitNormal, {"mu": mu, "sigma": prior.sigma})
        )
    elif prior.dist == "Normal":
        cls, args = pm.Normal, {"mu": prior.mu, "sigma": prior.sigma}
    elif prior.dist == "HalfNormal":
        cls, args = pm.HalfNormal, {"sigma": prior.sigma}
    elif prior.dist == "HalfStudentT":
        cls, args = pm.HalfStudentT, {"nu": prior.nu, "sigma": prior.sigma}
    elif prior.dist == "Exponential":
        cls, args = pm.Exponential, {"lam": prior.lam}
    elif prior.dist == "Uniform":
        cls, args = pm.Uniform, {"lower": prior.lower, "upper": prior.upper}
    else:  # pragma: no cover - validated by the spec
        raise SpecError("prior", f"unknown distribution {prior.dist}")
    # numpy float64, not Python floats: PyTensor casts a Python float that float32 represents
    # exactly (2.0, 1.5) to float32, so log(sigma) in the density was a float32 log
    args = {k: np.float64(v) for k, v in args.items()}
    if name is None:
        return cls.dist(**args, **kwargs)
    return cls(name, **args, **kwargs)


def _log_mean(
    name: str,
    spec: ModelSpec,
    md: ModelData,
    n_patients: int,
    label: str,
    typical: PriorSpec,
    design: dict[str, Any] | None = None,
    data: Any = None,
) -> Any:
    """Return the population mean per patient on the parameter's scale (typical, covariates, group).

    The scale is log for a log-normal parameter and logit for a logit-normal one
    (:mod:`bayes_cart.model.scales`); the typical value is ``log_<p>`` or ``logit_<p>``. With
    ``design`` (a parameter that uses a marginalised covariate) the design matrix is a
    tensor of its own, stored there as ``design[name]``, that
    :func:`bayes_cart.model.marginal_model.add_marginal_terms` replaces per level. With ``data``
    (a swappable model, :func:`build_model`'s ``swap``) the design matrix and the group index
    are ``pm.Data`` made by ``data(name, value, dims)``, and the covariate means of
    ``center_covariates`` are computed in the graph.
    """
    doc = spec.doc
    scale = parameter_scale(doc.parameters[name])
    X = md.design.matrices.get(name)
    b = Xv = None
    if X is not None and X.shape[1] > 0:
        b = prior_dist(doc.covariates.prior, f"b_{label}", dims=f"{name}_effect")
        Xv = X.to_numpy(dtype=float)
        Xd = Xv if data is None else data(f"data_X_{name}", Xv, ("patient", f"{name}_effect"))
        if doc.sampling.center_covariates:
            x_mean = Xv.mean(axis=0) if data is None else Xd.mean(axis=0)
            log_pop = _centred_typical(typical, label, x_mean, b, scale)
        else:
            log_pop = prior_dist(typical, scaled_name(scale, label), log_scale=True)
        Xt = pt.as_tensor_variable(Xd)
        if design is not None:  # a node of its own (a constant could not be replaced)
            Xt = design[name] = Xt.copy(name=f"X_{label}")
        log_mu = log_pop + pt.dot(Xt, b)
    else:
        log_pop = prior_dist(typical, scaled_name(scale, label), log_scale=True)
        log_mu = log_pop * pt.ones(n_patients)
    pm.Deterministic(label, from_scale(log_pop, scale, xp=pt))
    if doc.group.mode == "random" and name in doc.group.parameters:
        gdim = (md.group_column or "group").lower()
        omega_g = prior_dist(doc.group.prior, f"omega_{gdim}_{label}")
        if doc.sampling.centered_group == "mean":
            # hierarchical centring on the group's own mean (see _group_mean_prediction)
            pred = _group_mean_prediction(
                log_pop, b, None if design is not None else Xv, md.group_index, len(md.group_levels)
            )
            m = pm.Normal(f"m_{gdim}_{label}", pred, omega_g, dims=gdim)
            u = pm.Deterministic(f"u_{gdim}_{label}", m - pred, dims=gdim)
        elif doc.sampling.centered_group:
            u = pm.Normal(f"u_{gdim}_{label}", 0.0, omega_g, dims=gdim)
        else:
            z_g = pm.Normal(f"z_{gdim}_{label}", 0.0, 1.0, dims=gdim)
            u = pm.Deterministic(f"u_{gdim}_{label}", omega_g * z_g, dims=gdim)
        group_index = (
            md.group_index if data is None else data("data_group_index", md.group_index, "patient")
        )
        log_mu = log_mu + u[group_index]
    return log_mu


def group_level_columns(X: np.ndarray, group_index: np.ndarray, n_groups: int) -> np.ndarray:
    """Return a mask of the design columns that are constant within every group.

    Such a column (a trial's tumour type, say) is a group-level covariate: its effect and the
    group random effects explain the same group means.
    """
    if X.shape[0] == 0:
        return np.zeros(X.shape[1], dtype=bool)
    out = np.ones(X.shape[1], dtype=bool)
    for g in range(n_groups):
        rows = X[group_index == g]
        if len(rows):
            out &= np.all(rows == rows[0], axis=0)
    return out


def _group_mean_prediction(
    log_pop: Any, b: Any, X: np.ndarray | None, group_index: np.ndarray, n_groups: int
) -> Any:
    """Return each group's predicted mean (log scale) from the typical value and group covariates.

    Under ``sampling.centered_group = "mean"`` the variable sampled per group is its mean
    ``m_g = log_<p> + x_g b_G + u_g`` (hierarchical centring, Gelfand, Sahu and Carlin 1995),
    ``m_g ~ Normal(log_<p> + x_g b_G, omega_g)``, where ``b_G`` are the effects of the
    group-level columns of the design (:func:`group_level_columns`) and ``x_g`` their values in
    group ``g``. A patient's mean is still ``log_<p> + x_i b + u_g`` with ``u_g = m_g - (log_<p>
    + x_g b_G)``: a shift given the population variables (Jacobian 1), so the model is
    unchanged. What changes is the geometry: the data pin each group's mean, and with a
    group-level covariate (a tumour type seen in one or two trials) the effect and the
    non-centred ``omega z`` trade along a curved ridge that the sampled ``m_g`` removes.
    Without a design (or with a design replaced per level, ``design`` of a marginalised
    covariate) the prediction is the typical value alone.
    """
    ones = pt.ones(n_groups)
    if X is None or b is None:
        return log_pop * ones
    cols = group_level_columns(X, group_index, n_groups)
    if not cols.any():
        return log_pop * ones
    Xg = np.zeros((n_groups, X.shape[1]))
    for g in range(n_groups):
        rows = X[group_index == g]
        if len(rows):
            Xg[g, cols] = rows[0, cols]
    return log_pop + pt.dot(pt.as_tensor_variable(Xg), b)


def _centred_typical(
    typical: PriorSpec, label: str, x_mean: np.ndarray, b: Any, scale: Scale = "log"
) -> Any:
    """Log typical value (reference levels) sampled through the average patient's log value.

    With treatment coding the reference-level intercept is strongly correlated with every
    covariate effect (a small reference group moves them all together), which a diagonal mass
    matrix cannot absorb. The variable sampled is ``log_<p>_avg = log_<p> + mean(X) b``, the log
    typical value of a patient with the average design row, given the prior
    ``Normal(log median + mean(X) b, sigma)`` so that ``log_<p> = log_<p>_avg - mean(X) b``
    keeps exactly its spec prior (a shear given ``b``, Jacobian 1). The model is unchanged.
    A logit-normal parameter does the same on the logit scale (``logit_<p>_avg``).
    """
    shift = pt.dot(pt.as_tensor_variable(x_mean), b)
    name = scaled_name(scale, label)
    avg = pm.Normal(f"{name}_avg", to_scale(typical.median, scale) + shift, typical.sigma)
    return pm.Deterministic(name, avg - shift)


def _some(mask: np.ndarray | None) -> bool:
    """Return whether a centring mask leaves any patient centred (None: all of them)."""
    return mask is None or bool(mask.any())


def _random_effects(
    spec: ModelSpec,
    names: list[str],
    n: int,
    labels: dict[str, str],
    means: dict[str, Any],
    masks: dict[str, np.ndarray] | None = None,
    weights: dict[str, np.ndarray] | None = None,
    centered: set[str] | None = None,
    rows: dict[str, np.ndarray] | None = None,
    weight_omegas: dict[str, float] | None = None,
    scaling: SigmaScaling | None = None,
) -> dict[str, Any]:
    """Individual parameters ``mean + eta`` on their scales: independent etas and LKJ blocks.

    A centred variable is named by its scale: ``log_<p>_i`` (log-normal) or ``logit_<p>_i``
    (logit-normal); a centred block ``log_<p>_<q>_i`` (``logit_`` if all its parameters are
    logit-normal, ``scaled_`` if the scales are mixed).

    Each parameter (or block) is centred (``log p_i ~ Normal(mean_i, omega)``) when listed in
    ``sampling.centered`` and non-centred (``eta = omega z``, ``z ~ Normal(0, 1)``) otherwise:
    centring suits parameters the data inform well per patient, non-centring weakly informed
    ones (funnel geometry). With ``masks`` (``sampling.centering = "informed"``,
    :mod:`bayes_cart.model.centring`) a listed parameter is centred for the patients its mask
    selects and non-centred for the others: the variables ``log_<p>_i`` and ``z_<p>`` then
    hold those two subsets. With ``weights`` (``sampling.centering = "partial"``) an
    independent parameter is sampled partially centred with one weight per patient, variable
    ``pc_<p>`` (:func:`_partially_centred`). ``centered`` replaces ``sampling.centered`` (the
    marginalised patients' additions,
    :func:`bayes_cart.model.marginal_model.centre_missing_patients`); ``rows`` receives the patient
    positions of each variable that holds a subset of patients. ``weight_omegas`` (``centering =
    "partial_dynamic"``): the IIV SD each parameter's weights were computed at; the weights then
    follow the sampled IIV SD (:func:`_partially_centred`). ``scaling``
    (``sampling.sigma_scaled``): the per-patient variables over all patients are sampled in
    coordinates that follow the residual SD (:mod:`bayes_cart.model.sigma_scaling`).
    """
    masks = masks or {}
    weights = weights or {}
    weight_omegas = weight_omegas or {}
    rows = {} if rows is None else rows
    doc = spec.doc
    centered = set(doc.sampling.centered) if centered is None else set(centered)
    fold = doc.sampling.parameterisation == "fold"
    log_i: dict[str, Any] = {}
    for block in doc.iiv.blocks:
        block = [b for b in block if b in names]
        if len(block) < 2:
            continue
        sig = []
        for b in block:
            prior = doc.parameters[b].iiv
            if prior.dist != "HalfNormal":
                raise SpecError(
                    spec.source, f"parameters.{b}.iiv: correlated blocks need HalfNormal"
                )
            sig.append(prior.sigma)
        label = "_".join(labels[b] for b in block)
        prefix = scaled_name(_block_scale(spec, block), label)
        k = len(block)
        chol, corr, stds = pm.LKJCholeskyCov(
            f"chol_{label}",
            n=len(block),
            eta=doc.iiv.lkj_eta,
            sd_dist=pm.HalfNormal.dist(sigma=np.array(sig), shape=len(block)),
            compute_corr=True,
        )
        # a new variable (not the LKJ's own corr output: nutpie's expansion breaks on an
        # output registered twice); for k > 2 the upper-triangle correlations, row by row
        iu = np.triu_indices(len(block), 1)
        pm.Deterministic(f"corr_{label}", corr[0, 1] if len(block) == 2 else corr[iu])
        mean = pt.stack([means[b] for b in block], axis=1)
        if fold and {"beta", "T1"} <= set(block):
            values = _fold_block(label, block, mean, chol, n)
            eta_block = values - mean
        elif all(b in centered for b in block) and _some(masks.get(block[0])):
            mask = masks.get(block[0])
            if mask is None or mask.all():
                if scaling is not None:
                    values = scaling.mvnormal(f"{prefix}_i", mean, chol, block)
                else:
                    values = pm.MvNormal(f"{prefix}_i", mu=mean, chol=chol, shape=(n, len(block)))
            else:  # centred where the data inform the block, non-centred elsewhere
                ic, inc = np.flatnonzero(mask), np.flatnonzero(~mask)
                vc = pm.MvNormal(f"{prefix}_i", mu=mean[ic], chol=chol, shape=(len(ic), k))
                zn = pm.Normal(f"z_{label}", 0.0, 1.0, shape=(len(inc), k))
                rows[vc.name], rows[zn.name] = ic, inc
                values = pt.zeros((n, k))
                values = pt.set_subtensor(values[ic], vc)
                values = pt.set_subtensor(values[inc], mean[inc] + pt.dot(zn, chol.T))
            eta_block = values - mean
        else:
            if scaling is not None:
                z = scaling.normal(f"z_{label}", 0.0, 1.0, block, shape=(n, len(block)))
            else:
                z = pm.Normal(f"z_{label}", 0.0, 1.0, shape=(n, len(block)))
            eta_block = pt.dot(z, chol.T)
        for j, b in enumerate(block):
            pm.Deterministic(f"omega_{labels[b]}", stds[j])
            eta = pm.Deterministic(f"eta_{labels[b]}", eta_block[:, j], dims="patient")
            log_i[b] = means[b] + eta
    if fold and "beta" not in log_i:  # beta and T1 independent: a diagonal 2 x 2 block
        omegas = [prior_dist(doc.parameters[b].iiv, f"omega_{labels[b]}") for b in ("beta", "T1")]
        chol = pt.diag(pt.stack(omegas))
        mean = pt.stack([means["beta"], means["T1"]], axis=1)
        values = _fold_block("beta_T1", ["beta", "T1"], mean, chol, n)
        for j, b in enumerate(("beta", "T1")):
            pm.Deterministic(f"eta_{labels[b]}", values[:, j] - mean[:, j], dims="patient")
            log_i[b] = values[:, j]
    for b in names:
        if b in log_i:
            continue
        prior = doc.parameters[b].iiv
        if prior is None:
            log_i[b] = means[b]
            continue
        omega = prior_dist(prior, f"omega_{labels[b]}")
        if b in weights:
            values = _partially_centred(
                labels[b], means[b], omega, weights[b], weight_omegas.get(b), scaling, b
            )
            pm.Deterministic(f"eta_{labels[b]}", values - means[b], dims="patient")
            log_i[b] = values
            continue
        mask = masks.get(b)
        centred_name = scaled_name(parameter_scale(doc.parameters[b]), f"{labels[b]}_i")
        if b in centered and _some(mask) and (mask is None or mask.all()):
            if scaling is not None:
                values = scaling.normal(centred_name, means[b], omega, b, dims="patient")
            else:
                values = pm.Normal(centred_name, means[b], omega, dims="patient")
            pm.Deterministic(f"eta_{labels[b]}", values - means[b], dims="patient")
            log_i[b] = values
        elif b in centered and _some(mask):  # centred where the data inform b only
            ic, inc = np.flatnonzero(mask), np.flatnonzero(~mask)
            vc = pm.Normal(centred_name, means[b][ic], omega, shape=len(ic))
            zn = pm.Normal(f"z_{labels[b]}", 0.0, 1.0, shape=len(inc))
            rows[vc.name], rows[zn.name] = ic, inc
            values = pt.set_subtensor(pt.zeros(n)[ic], vc)
            values = pt.set_subtensor(values[inc], means[b][inc] + omega * zn)
            pm.Deterministic(f"eta_{labels[b]}", values - means[b], dims="patient")
            log_i[b] = values
        else:
            if scaling is not None:
                z = scaling.normal(f"z_{labels[b]}", 0.0, 1.0, b, dims="patient")
            else:
                z = pm.Normal(f"z_{labels[b]}", 0.0, 1.0, dims="patient")
            log_i[b] = means[b] + pm.Deterministic(f"eta_{labels[b]}", omega * z, dims="patient")
    return log_i


def _partially_centred(
    label: str,
    mean: Any,
    omega: Any,
    w: np.ndarray,
    omega_start: float | None = None,
    scaling: SigmaScaling | None = None,
    parameter: str | None = None,
) -> Any:
    """Individual values ``mean + eta`` sampled in partially centred coordinates.

    The variable sampled is ``pc_<p>_i ~ Normal(w_i mean_i, omega^w_i)`` and
    ``log p_i = mean_i + omega^(1 - w_i) (pc_<p>_i - w_i mean_i)``, so that ``log p_i ~
    Normal(mean_i, omega)`` exactly, for any weights ``w_i`` in [0, 1] that do not depend on
    the individual values (1: centred, 0: non-centred);
    :func:`bayes_cart.model.centring.partial_centring_weights` sets them at the start.

    With ``omega_start`` (``centering = "partial_dynamic"``) the weights follow the sampled
    IIV SD: ``w_i = I_i omega^2 / (1 + I_i omega^2)`` with the information ``I_i`` implied by
    the start, i.e. ``w_i(omega) = w_i r / (1 - w_i + w_i r)``, ``r = (omega / omega_start)^2``
    (equal to ``w_i`` at the start; 0 and 1 stay 0 and 1). ``w`` and ``omega_start`` may be
    tensors (``pm.Data`` of a swappable model). The map from ``pc`` to ``log p``
    is still a bijection for each ``(mean, omega)``, so the model is unchanged; what changes is
    that a patient moves towards the non-centred coordinates as ``omega`` shrinks, where a
    fixed weight would recreate the funnel.
    """
    wt = pt.as_tensor_variable(w if isinstance(w, Variable) else np.asarray(w, float))
    if omega_start is not None:
        if not isinstance(omega_start, Variable):
            omega_start = float(omega_start)
        r = (omega / omega_start) ** 2
        wt = wt * r / (1.0 - wt + wt * r)
    if scaling is not None and parameter is not None:
        tilde = scaling.normal(f"pc_{label}", wt * mean, omega**wt, parameter, dims="patient")
    else:
        tilde = pm.Normal(f"pc_{label}", wt * mean, omega**wt, dims="patient")
    return mean + omega ** (1.0 - wt) * (tilde - wt * mean)


def _partial_weights(spec: ModelSpec, md: ModelData, names: list[str]) -> dict[str, np.ndarray]:
    """Partial-centring weights of the independent random effects (``centering = "partial"``).

    Every estimated parameter with IIV outside a correlated block (and outside the ``fold``
    pair) gets weights; blocks and C0 in the ``cmax`` coordinates follow ``centered``.
    """
    doc = spec.doc
    if doc.sampling.centering not in ("partial", "partial_dynamic"):
        return {}
    from bayes_cart.model.centring import partial_centring_weights
    from bayes_cart.model.initial_values import SIGMA_START, starting_point

    start = starting_point(spec, md)
    in_block = {b for block in doc.iiv.blocks if len(block) > 1 for b in block}
    if doc.sampling.parameterisation == "fold":
        in_block |= {"beta", "T1"}
    chosen = [
        p
        for p in names
        if doc.parameters[p].iiv is not None and p not in in_block and p in start["logs"]
    ]
    if not chosen or not start["logs"]:
        return {}
    return partial_centring_weights(spec, md, start["logs"], start["omegas"], SIGMA_START, chosen)


def _partial_start_omegas(
    spec: ModelSpec, md: ModelData, weights: dict[str, np.ndarray]
) -> dict[str, float]:
    """Return the starting IIV SDs the partial-centring ``weights`` were computed at."""
    from bayes_cart.model.initial_values import starting_point

    omegas = starting_point(spec, md)["omegas"]
    return {p: float(omegas[p]) for p in weights}


def _block_scale(spec: ModelSpec, block: list[str]) -> str:
    """Scale word of a correlated block's variable: the common scale, or ``scaled`` if mixed."""
    scales = {parameter_scale(spec.doc.parameters[b]) for b in block}
    return scales.pop() if len(scales) == 1 else "scaled"


def _centring_masks(spec: ModelSpec, md: ModelData) -> dict[str, np.ndarray]:
    """Patients to centre per listed parameter (``sampling.centering = "informed"``), else {}."""
    if spec.doc.sampling.centering != "informed" or spec.doc.sampling.parameterisation == "fold":
        return {}
    from bayes_cart.model.centring import informed_patients
    from bayes_cart.model.initial_values import SIGMA_START, starting_point

    start = starting_point(spec, md)
    if not start["logs"]:
        return {}
    return informed_patients(spec, md, start["logs"], start["omegas"], SIGMA_START)


def _fold_block(label: str, block: list[str], mean: Any, chol: Any, n: int) -> Any:
    """Sample (log beta_i, log T1_i) as (log beta_i + log T1_i, log T1_i): Stein's fold coordinates.

    Per patient the data pin the peak level, the level soon after infusion and so the log
    fold expansion ``beta_i T1_i``, while beta and T1 trade off along a hyperbola. With
    ``v_i`` the block's log values and ``A`` the identity plus a 1 at (beta, T1), the variable
    sampled is ``w_i = A v_i ~ MvNormal(A mu_i, A Sigma A')``, the model's own distribution
    pushed through a linear map with determinant 1: an exact reparameterisation, in which the
    well-determined ``log(beta_i T1_i)`` is one coordinate. Returns ``v`` (n x len(block)).
    """
    k = len(block)
    a = np.eye(k)
    a[block.index("beta"), block.index("T1")] = 1.0
    a_inv = np.linalg.inv(a)
    cov = pt.dot(pt.dot(a, pt.dot(chol, chol.T)), a.T)
    w = pm.MvNormal(f"log_{label}_fold_i", mu=pt.dot(mean, a.T), cov=cov, shape=(n, k))
    return pt.dot(w, a_inv.T)


def _c0_from_peak(
    spec: ModelSpec,
    mean_log_c0: Any,
    values: dict[str, Any],
    n: int,
    scaling: SigmaScaling | None = None,
) -> Any:
    """Sample C0's random effect on the scale of the log peak level (exact reparameterisation).

    The model is unchanged: ``log C0_i ~ Normal(mu_i, omega_C0)``. With the shift
    ``s_i`` of the structure (``KineticModel.log_peak_shift``; Liu: ``beta_i (T1_i - T0_i) -
    k_i T0_i``), so that ``log Cmax_i = log C0_i + s_i``, the
    variable sampled is ``log Cmax_i ~ Normal(mu_i + s_i, omega_C0)`` and ``log C0_i =
    log Cmax_i - s_i``: a translation by terms that do not involve ``Cmax_i``, whose Jacobian is
    1. Covariates and trial effects on beta and T1 therefore still act on the peak, exactly as
    in the ``c0`` parameterisation, while the sampler moves along the peak, which the data pin
    down, instead of along C0, which is strongly correlated with beta and T1.
    """
    p = spec.doc.parameters["C0"]
    kin = get_kinetics(spec.doc.kinetics)
    if kin.log_peak_shift is None:
        raise ValueError(
            f"kinetic model {kin.name!r} has no peak identity (log_peak_shift): "
            "sampling.parameterisation = 'cmax' needs one; use 'c0'"
        )
    shift = kin.log_peak_shift(values, pt)
    omega = prior_dist(p.iiv, "omega_C0")
    if scaling is not None:
        log_cmax = scaling.normal("log_Cmax_i", mean_log_c0 + shift, omega, "C0", dims="patient")
    else:
        log_cmax = pm.Normal("log_Cmax_i", mean_log_c0 + shift, omega, dims="patient")
    log_c0 = log_cmax - shift
    pm.Deterministic("eta_C0", log_c0 - mean_log_c0, dims="patient")
    return pt.exp(log_c0)


def build_model(
    dataset: Any,
    spec: ModelSpec,
    *,
    model_data: ModelData | None = None,
    solver: str = "closed_form",
    store_individual: bool = True,
    swap: SwapLayout | None = None,
) -> pm.Model:
    """Build the hierarchical PyMC model of ``dataset`` under ``spec``.

    Parameters
    ----------
    dataset : bayes_cart.data.dataset.Dataset
        The validated dataset.
    spec : ModelSpec
        The model spec (see ``models/``).
    model_data : ModelData, optional
        Precomputed arrays (from :func:`prepare_model_data`).
    solver : {"closed_form", "linear", "ode"}
        Kinetic solver inside the graph: the structure's closed form; the matrix exponential
        of its ODE phases (:mod:`bayes_cart.kinetics.engines.linear`, linear phases only); or
        adaptive diffrax solves (:mod:`bayes_cart.kinetics.engines.diffrax_ode`, any
        right-hand side). The last two are JAX code wrapped as a PyTensor op
        (:mod:`bayes_cart.kinetics.solvers`).
    store_individual : bool
        Keep the individual parameters ``<p>_i`` (dims ``patient``) as deterministics.
    swap : SwapLayout, optional
        Build the model swappable (:mod:`bayes_cart.model.swap`): every per-dataset array
        (observations padded to the layout, with weights, the patient and group indices, the
        design matrices, the parameters set from data, the partial-centring weights) is a
        ``pm.Data`` named as in :func:`swap_data`, so that a compiled model can take another
        dataset of the same structure (:mod:`bayes_cart.inference.model_cache`). The default
        (None) bakes the data in as constants, as a single fit wants.

    Returns
    -------
    pymc.Model
        With the model data attached as ``model.bayes_cart_data`` and the solver as
        ``model.bayes_cart_solver`` (what ``sample_posterior(sampler="auto")`` reads).

    Raises
    ------
    ValueError
        With ``swap``, for a model :func:`bayes_cart.model.swap.swap_problems` refuses.

    Examples
    --------
    >>> from bayes_cart.example import load_example  # doctest: +SKIP
    >>> m = build_model(load_example(), load_spec("liu2021"))  # doctest: +SKIP
    """
    md = model_data or prepare_model_data(dataset, spec)
    doc = spec.doc
    kin = get_kinetics(doc.kinetics)
    n = md.n_patients
    cmax_mode = doc.sampling.parameterisation in ("cmax", "fold")
    swapped: dict[str, np.ndarray] | None = None
    if swap is not None:
        problems = swap_problems(spec, md, solver)
        if problems:
            raise ValueError(f"no swappable model for: {'; '.join(problems)}")
        swapped = swap_data(spec, md, swap)

    def data(name: str, value: Any, dims: Any = None) -> Any:
        # a constant, or the pm.Data of a swappable model, its shape static (the layout's):
        # the graph's rewrites then know every shape, as with constants
        if swapped is None:
            return value
        return pm.Data(name, swapped[name], dims=dims, shape=np.shape(swapped[name]))

    coords = md.coords()
    if swap is not None:
        coords["obs"] = list(range(swap.n_obs))

    marginal = md.marginal
    affected = set(marginal.parameters) if marginal is not None else set()
    design: dict[str, Any] = {}  # design-matrix tensors of the parameters marginalised over
    rows: dict[str, np.ndarray] = {}  # patients of the variables that hold a subset of them

    with pm.Model(coords=coords) as model:
        estimated = [
            name
            for name, p in doc.parameters.items()
            if p.typical is not None and not p.distribution_phase_only
        ]
        labels = {name: name for name in estimated}
        typicals = {name: doc.parameters[name].typical for name in estimated}
        means = {}
        for name in estimated:
            store = design if name in affected else None
            means[name] = _log_mean(
                name,
                spec,
                md,
                n,
                labels[name],
                typicals[name],
                store,
                None if swap is None else data,
            )
        # In the "cmax" parameterisation C0's random effect is sampled as the log peak level
        # (below), after the parameters the peak depends on.
        first = _first_parameters(spec)
        masks = _centring_masks(spec, md)
        weights = _partial_weights(spec, md, first)
        centered = set(doc.sampling.centered)
        if marginal is not None:
            centered, masks, weights = centre_missing_patients(
                spec, marginal, first, n, centered, masks, weights
            )
        weight_omegas = (
            _partial_start_omegas(spec, md, weights)
            if doc.sampling.centering == "partial_dynamic"
            else None
        )
        graph_weights: dict[str, Any] = weights
        graph_omegas: dict[str, Any] | None = weight_omegas
        if swapped is not None:  # the data's weights (and their IIV SDs) as pm.Data
            graph_weights = {
                p: data(f"data_pc_weight_{p}", w, "patient") for p, w in weights.items()
            }
            if weight_omegas is not None:
                graph_omegas = {
                    p: data(f"data_pc_omega_{p}", np.asarray(o)) for p, o in weight_omegas.items()
                }
        scaling = None
        # the residual SD first: the coordinates follow it (not yet in a swappable model,
        # whose anchors would have to be data: bayes_cart.model.sigma_scaling)
        if doc.sampling.sigma_scaled and swapped is None:
            sigma = prior_dist(doc.error.sigma, "sigma")
            scaling = sigma_scaling(spec, md, sigma, masks, weights)
        log_values = _random_effects(
            spec,
            first,
            n,
            labels,
            means,
            masks,
            graph_weights,
            centered=centered,
            rows=rows,
            weight_omegas=graph_omegas,
            scaling=scaling,
        )
        values: dict[str, Any] = {
            name: from_scale(log_values[name], parameter_scale(doc.parameters[name]), xp=pt)
            for name in first
        }
        for name, p in doc.parameters.items():
            if p.fixed is not None:
                values[name] = pt.as_tensor_variable(np.full(n, p.fixed))
            elif p.from_data is not None:
                from_data = data(f"data_{name}_from_data", md.from_data[name], "patient")
                values[name] = pt.as_tensor_variable(from_data)
        # distribution phase for a subset of patients
        dp_idx = np.flatnonzero(md.distribution_mask)
        outside = [
            name
            for name, p in doc.parameters.items()
            if p.distribution_phase_only and name not in kin.distribution_parameters
        ]
        if outside:
            raise ValueError(
                f"parameters {outside} are distribution_phase_only, but kinetic model "
                f"{kin.name!r} declares no such phase parameters (distribution_parameters)"
            )
        for name in kin.distribution_parameters:
            p = doc.parameters.get(name)
            if p is None or not p.distribution_phase_only or p.typical is None:
                if name not in values:
                    values[name] = pt.zeros(n)
                continue
            if len(dp_idx) == 0:
                values[name] = pt.zeros(n)
                continue
            log_pop = prior_dist(p.typical, f"log_{name}", log_scale=True)
            pm.Deterministic(name, pt.exp(log_pop))
            log_dp = log_pop * pt.ones(len(dp_idx))
            if p.iiv is not None and name in doc.sampling.centered:
                omega = prior_dist(p.iiv, f"omega_{name}")
                centred = pm.Normal(f"log_{name}_i", log_dp, omega, dims="patient_dp")
                pm.Deterministic(f"eta_{name}", centred - log_dp, dims="patient_dp")
                log_dp = centred
            elif p.iiv is not None:
                omega = prior_dist(p.iiv, f"omega_{name}")
                z = pm.Normal(f"z_{name}", 0.0, 1.0, dims="patient_dp")
                log_dp = log_dp + pm.Deterministic(f"eta_{name}", omega * z, dims="patient_dp")
            values[name] = pt.set_subtensor(pt.zeros(n)[dp_idx], pt.exp(log_dp))

        if cmax_mode:
            values["C0"] = _c0_from_peak(spec, means["C0"], values, n, scaling)
        if marginal is not None:  # every free variable exists: sum over the missing levels
            add_marginal_terms(model, marginal, design, rows)

        if store_individual:
            for name in kin.parameters:
                if name in values and name != "deltaE":
                    pm.Deterministic(f"{name}_i", values[name] * pt.ones(n), dims="patient")

        if md.step is not None:  # a time-varying step covariate: the kinetics' step change
            solver = step_solver(doc.kinetics, md.step, solver)
            for name in md.step.parameters:
                if parameter_scale(doc.parameters[name]) != "log":
                    raise SpecError(
                        spec.source,
                        f"covariates.formulas.{name}: a step covariate needs a log-normal "
                        f"parameter ({md.step.column} multiplies it by exp(b))",
                    )
                b = prior_dist(doc.covariates.prior, md.step.effect_name(name))
                values[f"{name}_after"] = values[name] * pt.exp(b)
                if store_individual:
                    pm.Deterministic(f"{name}_after_i", values[f"{name}_after"], dims="patient")
            values["TC"] = pt.as_tensor_variable(md.step.change_time)
            kin = step_structure(doc.kinetics, md.step.parameters)
            if solver == "closed_form":
                raise ValueError("a step covariate needs solver='linear' or 'ode'")

        if swapped is None:
            idx, t = md.patient_index, pt.as_tensor_variable(md.time)
        else:
            idx = data("data_patient_index", None, "obs")
            t = data("data_time", None, "obs")
        params_obs = {
            name: (values[name][idx] if name in values else None) for name in kin.parameters
        }
        params_obs = {k: v for k, v in params_obs.items() if v is not None}
        if md.infusions is not None and solver in ("closed_form", "ode", "linear"):
            mu = _superposed_log_total(kin, md, values, solver)
        elif solver == "closed_form":
            mu = kin.solve(t, params_obs, xp=pt)["log_total"]
        elif solver in ("ode", "linear"):
            from bayes_cart.kinetics.engines.pytensor_op import ode_log_total

            mu = ode_log_total(kin, md, values, solver=solver)
        else:
            raise ValueError(f"unknown solver {solver!r}; use 'closed_form', 'linear' or 'ode'")

        if scaling is None:
            sigma = prior_dist(doc.error.sigma, "sigma")
        sig_obs = sigma
        if doc.error.model == "combined":
            add = prior_dist(doc.error.additive, "sigma_add")
            sig_obs = pt.sqrt(sigma**2 + (add / pt.exp(mu)) ** 2)
        if swap is None:
            idx_c = CensoringIndex.from_arrays(md.cens, md.log_limit)
            lim_c = pt.as_tensor_variable(np.nan_to_num(md.log_limit, nan=0.0))
            observed, weight = md.log_dv, None
        else:  # static segments; padding rows weighted 0 (bayes_cart.model.swap)
            idx_c = swap.index()
            lim_c = data("data_log_limit", None, "obs")
            observed, weight = data("data_log_dv", None, "obs"), data("data_weight", None, "obs")

        if doc.error.model == "student_t":
            nu = prior_dist(doc.error.nu, "nu")
            _add_student_t(observed, mu, sig_obs, nu, idx_c, lim_c, weight)
        else:
            _add_normal(observed, mu, sig_obs, idx_c, lim_c, weight)
    model.bayes_cart_data = md  # type: ignore[attr-defined]
    model.bayes_cart_solver = solver  # type: ignore[attr-defined]  # for sampler="auto"
    model.bayes_cart_kinetics = kin.name  # type: ignore[attr-defined]  # with a step change
    model.bayes_cart_centring = masks  # type: ignore[attr-defined]
    model.bayes_cart_partial_weights = weights  # type: ignore[attr-defined]
    model.bayes_cart_partial_omegas = weight_omegas or {}  # type: ignore[attr-defined]
    model.bayes_cart_sigma_scaling = scaling  # type: ignore[attr-defined]
    free = {rv.name for rv in model.free_RVs}
    subsets = set()
    for p, mask in masks.items():
        if not mask.all() and mask.any():
            labels_p = [p] + ["_".join(b) for b in doc.iiv.blocks if p in b]
            centred = {f"{w}_{lab}_i" for lab in labels_p for w in ("log", "logit", "scaled")}
            subsets |= (centred | {f"z_{lab}" for lab in labels_p}) & free
    model.bayes_cart_patient_subsets = subsets  # type: ignore[attr-defined]
    init = initial_values(model, spec, md)
    if scaling is not None:  # every chain starts at u = a
        init.update({k: anchor for k, (anchor, _) in scaling.scaled.items()})
    model.bayes_cart_initvals = init  # type: ignore[attr-defined]
    model.bayes_cart_swap = swap  # type: ignore[attr-defined]
    return model


def _first_parameters(spec: ModelSpec) -> list[str]:
    """Estimated parameters whose random effects come first (C0 last in the peak coordinates)."""
    doc = spec.doc
    cmax_mode = doc.sampling.parameterisation in ("cmax", "fold")
    return [
        name
        for name, p in doc.parameters.items()
        if p.typical is not None
        and not p.distribution_phase_only
        and not (cmax_mode and name == "C0")
    ]


def swap_data(
    spec: ModelSpec, md: ModelData, layout: SwapLayout | None = None
) -> dict[str, np.ndarray]:
    """Return the values of every ``pm.Data`` of the swappable model of ``md``.

    ``data_time``, ``data_log_dv``, ``data_log_limit``, ``data_patient_index`` and
    ``data_weight`` (the observations in the layout's segments,
    :func:`bayes_cart.model.swap.padded_observations`); ``data_group_index`` (trial random
    effects), ``data_X_<p>`` (design matrices), ``data_<p>_from_data`` (parameters set from
    the profiles), ``data_pc_weight_<p>`` and ``data_pc_omega_<p>`` (partial centring, computed
    from this dataset's start, :mod:`bayes_cart.model.centring`). Without ``layout``, the
    patient-level arrays only.
    """
    doc = spec.doc
    out: dict[str, np.ndarray] = {}
    if layout is not None:
        out = {f"data_{k}": v for k, v in padded_observations(md, layout).items()}
    if doc.group.mode == "random" and md.group_levels:
        out["data_group_index"] = np.asarray(md.group_index, dtype=np.int64)
    for name, X in md.design.matrices.items():
        if X.shape[1] > 0:
            out[f"data_X_{name}"] = X.to_numpy(dtype=float)
    for name, p in doc.parameters.items():
        if p.fixed is None and p.from_data is not None:
            out[f"data_{name}_from_data"] = np.asarray(md.from_data[name], dtype=float)
    weights = _partial_weights(spec, md, _first_parameters(spec))
    for name, w in weights.items():
        out[f"data_pc_weight_{name}"] = np.asarray(w, dtype=float)
    if doc.sampling.centering == "partial_dynamic":
        for name, omega in _partial_start_omegas(spec, md, weights).items():
            out[f"data_pc_omega_{name}"] = np.asarray(omega, dtype=float)
    return out


def swap_key(spec: ModelSpec, md: ModelData) -> tuple[Any, ...]:
    """Return what a swappable model's structure depends on besides its layout (a cache key).

    The spec (its hash), the number of patients, the columns of each design matrix, the trial
    levels, the patients with a distribution phase, the informed-centring masks
    (``sampling.centering = "informed"``: which patients are centred changes the variables)
    and the names and shapes of the patient-level data arrays. Two datasets with the same key
    can share one compiled model; their observations may differ in number
    (:class:`bayes_cart.model.swap.SwapLayout`).
    """
    masks = _centring_masks(spec, md)
    arrays = {
        name: (np.shape(value), np.asarray(value).dtype.str)
        for name, value in swap_data(spec, md).items()
    }
    return (
        spec.hash,
        md.n_patients,
        tuple((p, tuple(map(str, X.columns))) for p, X in sorted(md.design.matrices.items())),
        tuple(md.group_levels),
        tuple(np.flatnonzero(md.distribution_mask).tolist()),
        tuple((p, tuple(np.flatnonzero(m).tolist())) for p, m in sorted(masks.items())),
        tuple(sorted(arrays.items())),
    )


def _add_normal(observed, mu, sigma, idx: CensoringIndex, lim, weight=None) -> None:
    """Add normal residuals on the log scale with M3 censoring; ``weight`` per row if given."""
    if weight is None:

        def logp(value, mu_, sigma_, lim_):
            return censored_loglik(value, mu_, sigma_, idx, lim_, xp=pt)

        def random(mu_, sigma_, lim_, size=None):
            return pm.Normal.dist(mu_, sigma_, size=size)

        params = (mu, sigma, lim)
    else:

        def logp(value, mu_, sigma_, lim_, w_):
            return w_ * censored_loglik(value, mu_, sigma_, idx, lim_, xp=pt)

        def random(mu_, sigma_, lim_, w_, size=None):
            return pm.Normal.dist(mu_, sigma_, size=size)

        params = (mu, sigma, lim, weight)
    pm.CustomDist("log_dv", *params, logp=logp, dist=random, observed=observed, dims="obs")


def _superposed_log_total(kin: Any, md: ModelData, values: dict[str, Any], solver: str) -> Any:
    """``log_total`` at every observation as the sum of one cohort per infusion.

    Each cohort is solved with the patient's parameters on its own clock (its level scaled by
    its dose ratio, a step change moved onto its clock): the closed form at the (observation,
    cohort) pairs, or the JAX route with one virtual patient per cohort. The pairs are data,
    so only present cohorts are solved (:mod:`bayes_cart.kinetics.superposition`).
    """
    from types import SimpleNamespace

    from bayes_cart.kinetics.superposition import (
        cohort_parameters,
        combine_cohorts,
        dose_parameter,
        infusion_pairs,
    )

    assert md.infusions is not None
    pairs = infusion_pairs(md.infusions, md.patient_index, md.time)
    n = md.n_patients
    used = {
        name: pt.as_tensor_variable(v) * pt.ones(n)
        for name, v in values.items()
        if name in kin.parameters
    }
    cohort = cohort_parameters(used, pairs, dose_parameter(kin), pt)
    if solver == "closed_form":
        per_pair = {name: v[pairs.cohort] for name, v in cohort.items()}
        since = pt.as_tensor_variable(pairs.since)
        log_pairs = kin.solve(since, per_pair, xp=pt)["log_total"]
    else:
        from bayes_cart.kinetics.engines.pytensor_op import ode_log_total

        cohort_md = SimpleNamespace(
            time=pairs.since, patient_index=pairs.cohort, n_patients=pairs.n_cohorts
        )
        log_pairs = ode_log_total(kin, cohort_md, cohort, solver=solver)
    return combine_cohorts(log_pairs, pairs, pt)


def _add_student_t(observed, mu, sigma, nu, idx: CensoringIndex, lim, weight=None) -> None:
    """Student-t residuals on the log scale (robust to outliers) with M3 censoring.

    Censored rows get the terms every error model gets (:func:`censored_terms
    <bayes_cart.model.likelihood.censored_terms>`): the Student-t log CDF at the LLOQ, the log
    probability of [LIMIT, LLOQ] for interval-censored rows and the log survival function at
    the ULOQ for right-censored rows. ``weight`` (a swappable model's padding): per row.
    """

    def logp(value, mu_, sigma_, nu_, lim_, *w_):
        terms = student_t_censored_loglik(value, mu_, sigma_, nu_, idx, lim_, xp=pt)
        return terms * w_[0] if w_ else terms

    def random(mu_, sigma_, nu_, lim_, *w_, size=None):
        return pm.StudentT.dist(nu=nu_, mu=mu_, sigma=sigma_, size=size)

    params = (mu, sigma, nu, lim) if weight is None else (mu, sigma, nu, lim, weight)
    pm.CustomDist("log_dv", *params, logp=logp, dist=random, observed=observed, dims="obs")
