"""Approximate inference: ADVI, Pathfinder and MAP + Laplace, the fast alternatives to NUTS.

``bayes_cart.fit(..., method=...)`` and ``bayes-cart fit --method`` take one of :data:`METHODS`:

* ``"nuts"`` (default): the MCMC fit of :func:`bayes_cart.inference.sampling.sample_posterior`,
  judged by the diagnostics gate (R-hat, ESS, divergences...);
* ``"advi"``: mean-field ADVI, :func:`pymc.fit` with ``method="advi"``: at most
  :data:`ADVI_ITERATIONS` steps, stopped earlier by
  :class:`pymc.callbacks.CheckParametersConvergence` when no parameter of the approximation
  moved more than :data:`ADVI_TOLERANCE` (absolute, largest over the parameters) in
  :data:`ADVI_CHECK_EVERY` steps; the ELBO trace's last values are recorded;
* ``"pathfinder"``: multi-path Pathfinder of pymc-extras
  (:func:`pymc_extras.inference.fit_pathfinder`, :data:`PATHFINDER_PATHS` L-BFGS paths from
  the data-informed start, draws resampled by Pareto-smoothed importance sampling); its PSIS
  Pareto k is recorded;
* ``"laplace"``: the posterior mode on the unconstrained scale and a normal approximation
  there with the inverse of the exact Hessian of the log density at the mode
  (:func:`pymc_extras.inference.fit_laplace` with a trust-region Newton-CG optimiser, the
  Hessian from Hessian-vector products); the optimiser's convergence is recorded.

**Coordinates.** The approximations work on the model in *non-centred* coordinates: every
random effect (patients and trials) sampled as a standard normal times its SD, whatever the
spec's ``[sampling]`` table chose for NUTS (:func:`noncentred_spec`; the same posterior, other
coordinates). In centred coordinates the joint density of a hierarchical model grows without
bound as an IIV SD goes to zero with its random effects at their mean, so a posterior mode
does not exist: the Laplace optimiser walks down that funnel (it had not returned after 40
minutes on 40 patients), and a normal or mean-field approximation fits it badly. In
non-centred coordinates the mode is finite. The fit's spec is the one the approximation used.
Laplace also maximises the density of the *unconstrained* values (with the Jacobian of each
transform, :func:`with_jacobian`), the density its normal approximation is of.

The three approximations start from the same data-informed values as the sampler
(``model.bayes_cart_initvals``) and return a posterior group with the variables, dimensions and
coordinates of a NUTS fit (the free variables drawn from the approximation, every deterministic
computed from them by :func:`pymc.compute_deterministics`), as one chain of ``draws`` draws, so
that the predictive groups and every analysis downstream (summary, contrasts, GOF, VPC,
report) run unchanged.

**They are approximate.** The MCMC gate does not apply (there are no chains to compare): a fit
records ``method`` in ``Fit.settings``, in ``Fit.diagnostics.method`` and in the fit file, its
:class:`bayes_cart.inference.diagnostics.Diagnostics` have no R-hat or ESS (NaN), and
``Diagnostics.passed`` means *the approximation's own check passed*
(:func:`approximation_passed`): ADVI stopped by its convergence check before the iteration cap;
Pathfinder's Pareto k at most :data:`PARETO_K_MAX` and at least one path succeeded; Laplace's
optimiser converged and the Hessian at the mode was positive definite. Passing says the
algorithm did what it set out to do, not that its intervals are right: mean-field ADVI
ignores posterior correlations and a Laplace approximation at the joint mode of a
hierarchical model understates its variances, so both tend to be too narrow
(``docs/benchmarks.md``, "Session 10"); confirm with NUTS before reporting.

This module imports PyMC and pymc-extras inside its functions only, so that the option checks
(:func:`check_method`) are cheap for the command line.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bayes_cart.errors import ConvergenceWarning

if TYPE_CHECKING:  # imported on use: the CLI checks --method without ArviZ or xarray
    import xarray as xr

    from bayes_cart.inference.diagnostics import Diagnostics

__all__ = [
    "ADVI_CHECK_EVERY",
    "ADVI_ITERATIONS",
    "ADVI_TOLERANCE",
    "APPROXIMATE_METHODS",
    "METHODS",
    "METHOD_LABELS",
    "METHOD_OPTIONS",
    "PARETO_K_MAX",
    "LAPLACE_MAX_GRADIENT",
    "PATHFINDER_PATHS",
    "approximate_diagnostics",
    "approximation_passed",
    "approximation_text",
    "check_method",
    "fit_approximation",
    "is_approximate",
    "noncentred_spec",
    "with_jacobian",
]

#: Inference methods of :func:`bayes_cart.fit` (``method=``).
METHODS = ("nuts", "advi", "pathfinder", "laplace")
#: The approximate ones.
APPROXIMATE_METHODS = METHODS[1:]
#: How each is named in tables, the CLI and the report.
METHOD_LABELS = {
    "nuts": "NUTS",
    "advi": "ADVI",
    "pathfinder": "Pathfinder",
    "laplace": "Laplace",
}

#: ADVI: largest number of optimisation steps.
ADVI_ITERATIONS = 20_000
#: ADVI: the convergence check runs every this many steps ...
ADVI_CHECK_EVERY = 100
#: ... and stops when no parameter of the approximation (means and log SDs on the
#: unconstrained scale) moved more than this since the last check.
ADVI_TOLERANCE = 0.01
#: ADVI: the Adam optimiser's step size.
ADVI_LEARNING_RATE = 0.01
#: Pathfinder: independent L-BFGS paths.
PATHFINDER_PATHS = 4
#: Pathfinder: largest L-BFGS iterations per path.
PATHFINDER_MAXITER = 1000
#: Pathfinder: a Pareto k above this says the importance weights (and so the draws) are
#: unreliable (Vehtari et al., PSIS).
PARETO_K_MAX = 0.7
#: Laplace: the optimiser (scipy's trust-region Newton-CG, with Hessian-vector products).
LAPLACE_OPTIMIZER = "trust-ncg"
#: Laplace: further options of the scipy optimiser.
LAPLACE_OPTIONS: dict[str, Any] = {}
#: Laplace: largest optimiser iterations.
LAPLACE_MAXITER = 2000
#: Laplace: at a mode every component of the gradient of the log density (unconstrained scale)
#: is zero; an optimiser that stops with a larger one did not reach a mode (L-BFGS-B's
#: relative-reduction test reported success on 40 patients at a largest gradient of 5.1).
LAPLACE_MAX_GRADIENT = 0.01

#: Settings a caller may change per method (``method_options=``), with their defaults.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "advi": {
        "iterations": ADVI_ITERATIONS,
        "tolerance": ADVI_TOLERANCE,
        "learning_rate": ADVI_LEARNING_RATE,
    },
    "pathfinder": {"paths": PATHFINDER_PATHS, "maxiter": PATHFINDER_MAXITER},
    "laplace": {"maxiter": LAPLACE_MAXITER},
}

#: The PyTensor backend each approximation compiles to (None: PyTensor's default C backend).
#: JAX is the fastest by far (0.3 ms per gradient of a 19-patient model against about 20 ms in
#: C, whose LKJ block runs its triangular solves in Python, and 40 ms in Numba; a loaded
#: machine, docs/benchmarks.md), but only the Laplace optimiser's graph compiles to it: ADVI's
#: step and Pathfinder's L-BFGS graph have symbolic sizes JAX refuses.
_MODE: dict[str, str | None] = {"advi": None, "pathfinder": None, "laplace": "JAX"}


def is_approximate(method: str | None) -> bool:
    """Whether ``method`` (a fit's ``settings["method"]``; None: a NUTS fit) is approximate."""
    return (method or "nuts") in APPROXIMATE_METHODS


def noncentred_spec(spec: Any) -> Any:
    """Return ``spec`` with every random effect in non-centred coordinates, for an approximation.

    The ``[sampling]`` table changes coordinates, not the model: ``centered`` is emptied,
    ``centering`` set to ``"all"`` (so nothing is partially centred), ``centered_group`` and
    ``sigma_scaled`` switched off, and the ``"fold"`` parameterisation (which needs beta and
    T1 centred) replaced by ``"cmax"``; the rest (``cmax``, ``center_covariates``) stays.

    Parameters
    ----------
    spec : ModelSpec
        The spec asked for.

    Returns
    -------
    ModelSpec
        The same model; ``spec`` itself when it is already non-centred.

    Examples
    --------
    >>> from bayes_cart.model.spec import load_spec
    >>> noncentred_spec(load_spec("liu2021")).doc.sampling.centered
    ()
    """
    s = spec.doc.sampling
    change: dict[str, Any] = {}
    if s.centered:
        change["centered"] = []
    if s.centering != "all":
        change["centering"] = "all"
    if s.centered_group:
        change["centered_group"] = False
    if s.sigma_scaled:
        change["sigma_scaled"] = False
    if s.parameterisation == "fold":
        change["parameterisation"] = "cmax"
    return spec.replace(sampling=change) if change else spec


def check_method(
    method: str,
    *,
    sampler: str = "auto",
    low_rank: bool = False,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check an inference method and its options before anything is compiled.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    sampler : str
        The NUTS backend asked for; an approximate method takes only ``"auto"``.
    low_rank : bool
        The NUTS low-rank mass matrix; an approximate method refuses it.
    options : mapping, optional
        Settings of the approximate method (keys of :data:`METHOD_OPTIONS` for it).

    Returns
    -------
    dict
        The method's settings, defaults filled (empty for ``"nuts"``).

    Raises
    ------
    ValueError
        An unknown method, a NUTS-only option with an approximate method, an unknown or
        out-of-range setting.

    Examples
    --------
    >>> check_method("advi", options={"iterations": 500})["iterations"]
    500
    >>> check_method("advi", low_rank=True)
    Traceback (most recent call last):
    ...
    ValueError: method 'advi': --low-rank is a NUTS setting; leave it out or use method 'nuts'
    """
    if method not in METHODS:
        raise ValueError(f"unknown inference method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "nuts":
        if options:
            raise ValueError(f"method 'nuts' takes no method options, got {sorted(options)}")
        return {}
    if low_rank:
        raise ValueError(
            f"method {method!r}: --low-rank is a NUTS setting; leave it out or use method 'nuts'"
        )
    if sampler != "auto":
        raise ValueError(
            f"method {method!r}: --sampler {sampler} chooses a NUTS backend; an approximate "
            "method has none (leave --sampler out)"
        )
    defaults = METHOD_OPTIONS[method]
    unknown = sorted(set(options or {}) - set(defaults))
    if unknown:
        raise ValueError(
            f"method {method!r}: unknown option(s) {unknown}; its options are {sorted(defaults)}"
        )
    settings = {**defaults, **dict(options or {})}
    for key, value in settings.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"method {method!r}: option {key} must be a positive number")
    for key in ("iterations", "paths", "maxiter"):
        if key in settings:
            if int(settings[key]) != settings[key]:
                raise ValueError(f"method {method!r}: option {key} must be a whole number")
            settings[key] = int(settings[key])
    return settings


# --------------------------------------------------------------------------------------------
# the three approximations
# --------------------------------------------------------------------------------------------


def fit_approximation(
    model: Any,
    method: str,
    *,
    draws: int = 1000,
    random_seed: int = 0,
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Fit an approximation to the posterior of a bayes_cart model and draw from it.

    Parameters
    ----------
    model : pymc.Model
        From :func:`bayes_cart.model.build.build_model` (its ``bayes_cart_initvals`` are the
        start).
    method : {"advi", "pathfinder", "laplace"}
        The approximation.
    draws : int
        Draws from the approximation (one chain).
    random_seed : int
        Seeds the optimisation and the draws.
    options : mapping, optional
        Settings (:data:`METHOD_OPTIONS`); checked by :func:`check_method`.
    progress : bool
        Show the library's progress bar.

    Returns
    -------
    idata, timings, record
        The InferenceData (a ``posterior`` group like a NUTS fit's, no ``sample_stats``);
        ``compile_seconds`` (NaN: compiled inside the library's call) and
        ``sampling_seconds`` (the whole approximation); the method's own diagnostics (see
        :func:`approximation_passed`), ``settings`` included.
    """
    import arviz as az
    import pymc as pm

    settings = check_method(method, options=options)
    mode = _MODE[method]
    if mode == "JAX":
        from bayes_cart.jax_setup import configure_jax

        configure_jax()
    seeds = np.random.SeedSequence([int(random_seed), 11]).generate_state(2)
    init = dict(getattr(model, "bayes_cart_initvals", None) or {})
    t0 = time.perf_counter()
    runner = {"advi": _advi, "pathfinder": _pathfinder, "laplace": _laplace}[method]
    with warnings.catch_warnings():
        # the libraries' own notices (e.g. experimental features, Numba fallbacks)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        free, record = runner(model, init, draws, seeds, settings, mode, progress)
        posterior = _posterior_like_nuts(model, free, draws)
        posterior = pm.compute_deterministics(
            posterior,
            model=model,
            merge_dataset=True,
            progressbar=False,
            compile_kwargs={"mode": "FAST_COMPILE"},
        )
    record["settings"] = settings
    record["passed"] = approximation_passed(method, record)
    seconds = time.perf_counter() - t0
    idata = az.InferenceData(posterior=posterior)
    timings = {"compile_seconds": float("nan"), "sampling_seconds": seconds}
    return idata, timings, record


def _advi(
    model: Any,
    init: dict[str, Any],
    draws: int,
    seeds: np.ndarray,
    settings: dict[str, Any],
    mode: str | None,
    progress: bool,
) -> tuple[xr.Dataset, dict[str, Any]]:
    import pymc as pm

    n = settings["iterations"]
    check = pm.callbacks.CheckParametersConvergence(
        every=ADVI_CHECK_EVERY, tolerance=settings["tolerance"], diff="absolute"
    )
    from bayes_cart.errors import ApproximationError

    with model:
        try:
            approx = pm.fit(
                n=n,
                method="advi",
                start=init or None,
                random_seed=int(seeds[0]),
                obj_optimizer=pm.adam(learning_rate=settings["learning_rate"]),
                callbacks=[check],
                progressbar=progress,
                fn_kwargs={"mode": mode} if mode else {},
            )
        except FloatingPointError as exc:  # pm.fit's "NaN occurred in optimization"
            raise ApproximationError(
                f"ADVI broke down: {str(exc).splitlines()[0].rstrip('.')} (the ELBO's gradient "
                "overflowed); try a smaller learning rate (method_options={'learning_rate': "
                f"{settings['learning_rate'] / 10:g}}}) or use method 'nuts'"
            ) from None
        sample = approx.sample(draws, random_seed=int(seeds[1]), return_inferencedata=True)
    loss = np.asarray(approx.hist, dtype=float)
    windows = np.array_split(loss, min(10, max(len(loss), 1)))
    trace = [float(-np.mean(w)) for w in windows if len(w)]
    tail = loss[-ADVI_CHECK_EVERY:] if len(loss) else loss
    record = {
        "iterations": int(len(loss)),
        "max_iterations": int(n),
        "converged": bool(0 < len(loss) < n),
        "elbo_final": float(-np.mean(tail)) if len(tail) else float("nan"),
        "elbo_final_sd": float(np.std(tail)) if len(tail) else float("nan"),
        "elbo_trace": trace,
    }
    return sample.posterior, record


def _pathfinder(
    model: Any,
    init: dict[str, Any],
    draws: int,
    seeds: np.ndarray,
    settings: dict[str, Any],
    mode: str | None,
    progress: bool,
) -> tuple[xr.Dataset, dict[str, Any]]:
    import xarray as xr
    from pymc_extras.inference import fit_pathfinder

    idata = fit_pathfinder(
        model=_free_variables_only(model),
        num_paths=settings["paths"],
        num_draws=draws,
        num_draws_per_path=max(draws, 1000),
        maxiter=settings["maxiter"],
        random_seed=int(seeds[0]),
        progressbar=progress,
        concurrent=None,
        initvals=init or None,
        importance_sampling="psis",
        compile_kwargs={"mode": mode} if mode else {},
        add_pathfinder_groups=True,
        display_summary=False,
    )
    stats = next(
        (getattr(idata, g) for g in idata.groups() if "pareto_k" in getattr(idata, g)),
        xr.Dataset(),
    )

    def value(name: str, default: Any = float("nan")) -> Any:
        return stats[name].values.item() if name in stats and stats[name].ndim == 0 else default

    record = {
        "paths": int(settings["paths"]),
        "successful_paths": int(value("num_successful_paths", 0)),
        "all_paths_failed": bool(value("all_paths_failed", False)),
        "pareto_k": float(value("pareto_k")),
        "lbfgs_iterations_mean": float(value("lbfgs_niter_mean")),
    }
    return idata.posterior, record


def _laplace(
    model: Any,
    init: dict[str, Any],
    draws: int,
    seeds: np.ndarray,
    settings: dict[str, Any],
    mode: str | None,
    progress: bool,
) -> tuple[xr.Dataset, dict[str, Any]]:
    import xarray as xr
    from pymc_extras.inference import fit_laplace

    idata = fit_laplace(
        optimize_method=LAPLACE_OPTIMIZER,
        model=with_jacobian(model),
        use_grad=True,
        use_hessp=True,
        initvals=init or None,
        random_seed=int(seeds[0]),
        progressbar=progress,
        include_transformed=False,
        draws=draws,
        # one draw at a time: vectorised, a deterministic that depends on no free variable
        # (k_i without a distribution phase) keeps no draw dimension and the call fails
        vectorize_draws=False,
        compile_kwargs={"mode": mode},
        optimizer_kwargs={"options": {**LAPLACE_OPTIONS, "maxiter": settings["maxiter"]}},
    )
    result = idata.optimizer_result if "optimizer_result" in idata.groups() else xr.Dataset()

    def value(name: str, default: Any = float("nan")) -> Any:
        return result[name].values.item() if name in result and result[name].ndim == 0 else default

    cov = np.asarray(idata.fit["covariance_matrix"], dtype=float)
    eig = np.linalg.eigvalsh(cov) if np.all(np.isfinite(cov)) else np.array([np.nan])
    grad = np.asarray(result["jac"], dtype=float) if "jac" in result else np.array([np.nan])
    record = {
        "optimizer": LAPLACE_OPTIMIZER,
        "success": bool(value("success", False)),
        "message": str(value("message", "")),
        "iterations": int(value("nit", -1)),
        "log_density_at_mode": -float(value("fun")),
        "max_abs_gradient": float(np.max(np.abs(grad))),
        "hessian_positive_definite": bool(np.all(np.isfinite(eig)) and eig.min() > 0),
        "min_covariance_eigenvalue": float(np.nanmin(eig)),
    }
    return idata.posterior, record


def with_jacobian(model: Any) -> Any:
    """Return a copy of ``model`` whose log density without Jacobians is its density with them.

    pymc-extras' Laplace approximation finds the mode of ``model.logp(jacobian=False)`` (the
    density of the constrained values) and then puts a normal on the *unconstrained* scale
    there. Those are two different densities. For an IIV SD with a half-normal prior the first
    one's mode can lie at SD = 0 (log SD at minus infinity: the optimiser never returns, the
    Hessian there is singular), whereas the density of log SD, which carries the Jacobian
    SD, vanishes at 0. This copy adds each transformed free variable's log Jacobian
    determinant as a potential (``laplace_jacobian``), so the optimiser maximises the density
    of the unconstrained values, whose normal approximation the Laplace method is (as Stan's
    ``laplace`` method does by default).

    Parameters
    ----------
    model : pymc.Model
        Any PyMC model.

    Returns
    -------
    pymc.Model
        A clone with the same free variables, transforms and deterministics; the original is
        not changed. ``logp(jacobian=False)`` of the clone equals ``logp(jacobian=True)`` of
        ``model``.
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.model.fgraph import clone_model

    copy = clone_model(model)
    terms = []
    for rv in copy.free_RVs:
        transform = copy.rvs_to_transforms.get(rv)
        if transform is None:
            continue
        inputs = rv.owner.inputs
        value = transform.forward(rv, *inputs)
        terms.append(pt.sum(transform.log_jac_det(value, *inputs)))
    if terms:
        with copy:
            pm.Potential("laplace_jacobian", pt.add(*terms) if len(terms) > 1 else terms[0])
    return copy


def _free_variables_only(model: Any) -> Any:
    """Return a copy of the model without its deterministics.

    pymc-extras turns the approximation's draws into an InferenceData with every deterministic
    computed in one vectorised call, which fails on a deterministic that depends on no free
    variable (``k_i`` when no patient has a distribution phase: it keeps no draw dimension).
    The draws of the free variables are all that is needed: the deterministics are computed
    afterwards (:func:`fit_approximation`).
    """
    from pymc.model.fgraph import clone_model

    light = clone_model(model)
    light.deterministics = []
    return light


def _posterior_like_nuts(model: Any, posterior: xr.Dataset, draws: int) -> xr.Dataset:
    """Return the approximation's free variables as one chain, dims named as NUTS's.

    Only the model's free variables (constrained scale) are kept: the deterministics are
    computed again from them for every method alike. Dimensions take the model's names and
    coordinates (``patient``, ``beta_effect``...; PyMC's ``<name>_dim_<k>`` otherwise, as
    nutpie writes them).
    """
    import xarray as xr

    out = {}
    for rv in model.free_RVs:
        name = rv.name
        if name not in posterior:
            raise RuntimeError(f"the approximation returned no draws of {name!r}")
        values = np.asarray(posterior[name].values)
        values = values.reshape(-1, *values.shape[2:])[:draws][None]
        dims = model.named_vars_to_dims.get(name) or ()
        dims = tuple(
            d if d is not None else f"{name}_dim_{k}"
            for k, d in enumerate(dims or (None,) * (values.ndim - 2))
        )
        out[name] = (("chain", "draw", *dims), values)
    n = min(v[1].shape[1] for v in out.values())
    out = {k: (dims, values[:, :n]) for k, (dims, values) in out.items()}
    coords = {"chain": [0], "draw": np.arange(n)}
    for name, values in model.coords.items():
        if values is not None:
            coords[name] = list(values)
    ds = xr.Dataset(out)
    used = {d for v in ds.data_vars.values() for d in v.dims}
    return ds.assign_coords({k: v for k, v in coords.items() if k in used})


# --------------------------------------------------------------------------------------------
# what an approximate fit's diagnostics say
# --------------------------------------------------------------------------------------------


def approximation_passed(method: str, record: Mapping[str, Any]) -> bool:
    """Whether the approximation's own check passed (``Diagnostics.passed`` of such a fit).

    * ``"advi"``: the parameter-convergence check stopped the optimisation before
      ``max_iterations`` and the final ELBO is finite;
    * ``"pathfinder"``: at least one path succeeded and the PSIS Pareto k is at most
      :data:`PARETO_K_MAX`;
    * ``"laplace"``: where the optimiser stopped, the largest component of the gradient is at
      most :data:`LAPLACE_MAX_GRADIENT` (it is a mode, whatever the optimiser's own flag says)
      and the Hessian is positive definite.

    Examples
    --------
    >>> approximation_passed("pathfinder", {"pareto_k": 0.4, "all_paths_failed": False})
    True
    >>> approximation_passed("pathfinder", {"pareto_k": 1.3, "all_paths_failed": False})
    False
    """
    if method == "advi":
        return bool(record.get("converged")) and bool(np.isfinite(record.get("elbo_final", np.nan)))
    if method == "pathfinder":
        k = float(record.get("pareto_k", np.nan))
        return not record.get("all_paths_failed", True) and bool(
            np.isfinite(k) and k <= PARETO_K_MAX
        )
    if method == "laplace":
        grad = float(record.get("max_abs_gradient", np.nan))
        # the gradient decides, not the optimiser's flag: trust-ncg ends with "a bad
        # approximation caused failure to predict improvement" at a gradient of 1e-7 when
        # its own tolerance is below what floating point resolves there
        return bool(np.isfinite(grad) and grad <= LAPLACE_MAX_GRADIENT) and bool(
            record.get("hessian_positive_definite")
        )
    raise ValueError(f"not an approximate method: {method!r}")


def approximation_text(method: str, record: Mapping[str, Any]) -> str:
    """One sentence: the method, that no MCMC gate applies, and its own diagnostics.

    Examples
    --------
    >>> record = {"pareto_k": 0.92, "paths": 4, "successful_paths": 4}
    >>> text = approximation_text("pathfinder", record)
    >>> text[:55]
    'approximate inference (Pathfinder): no MCMC gate; Paret'
    >>> text[55:]
    'o k 0.92 (> 0.7: the importance weights are unreliable), 4 of 4 paths succeeded'
    """
    label = METHOD_LABELS.get(method, method)
    head = f"approximate inference ({label}): no MCMC gate; "
    if method == "advi":
        n, cap = record.get("iterations", 0), record.get("max_iterations", 0)
        stop = (
            f"converged after {n:,} of {cap:,} iterations"
            if record.get("converged")
            else f"did not converge in {cap:,} iterations"
        )
        return head + f"{stop}, final ELBO {record.get('elbo_final', float('nan')):,.1f}"
    if method == "pathfinder":
        k = float(record.get("pareto_k", float("nan")))
        verdict = (
            f"(> {PARETO_K_MAX}: the importance weights are unreliable)"
            if not k <= PARETO_K_MAX
            else f"(<= {PARETO_K_MAX})"
        )
        return (
            head + f"Pareto k {k:.2f} {verdict}, {record.get('successful_paths', 0)} of "
            f"{record.get('paths', 0)} paths succeeded"
        )
    if method == "laplace":
        ok = (
            "converged"
            if record.get("success")
            else f"stopped ({str(record.get('message', '')).rstrip('.') or 'no message'})"
        )
        pd_text = (
            "positive definite"
            if record.get("hessian_positive_definite")
            else "NOT positive definite (the mode is a saddle or a ridge)"
        )
        grad = float(record.get("max_abs_gradient", float("nan")))
        grad_text = (
            f"largest gradient {grad:.2g}"
            if grad <= LAPLACE_MAX_GRADIENT
            else f"largest gradient {grad:.2g}, above {LAPLACE_MAX_GRADIENT}: not a mode"
        )
        return (
            head + f"the optimiser {ok} in {record.get('iterations', -1)} iterations "
            f"({grad_text}); Hessian at the mode {pd_text}"
        )
    raise ValueError(f"not an approximate method: {method!r}")


def approximate_diagnostics(
    method: str, record: Mapping[str, Any], warn: bool = True
) -> Diagnostics:
    """Return the :class:`Diagnostics` of an approximate fit: the method's own check, no MCMC.

    R-hat, ESS and E-BFMI are NaN, divergences and tree depth 0 (there are no chains);
    ``method`` and ``approximation`` (the record of :func:`fit_approximation`) say what was
    done; ``passed`` is :func:`approximation_passed`; the advice always says to confirm with
    NUTS. A failed check raises a :class:`bayes_cart.errors.ConvergenceWarning`.
    """
    from bayes_cart.inference.diagnostics import Diagnostics

    passed = approximation_passed(method, record)
    label = METHOD_LABELS.get(method, method)
    advice = [approximation_text(method, record)]
    if not passed:
        advice.append(
            f"the {label} approximation failed its own check: do not use these estimates; "
            + {
                "advi": "raise the iterations (method_options={'iterations': ...}) or use NUTS.",
                "pathfinder": "the approximation is far from the posterior; use NUTS.",
                "laplace": "the mode is not well defined (a hierarchical variance at zero?); "
                "use NUTS.",
            }[method]
        )
    advice.append(
        f"{label} is approximate: posterior intervals may be too narrow (mean-field and "
        "normal approximations miss correlations and tails); confirm with method 'nuts' "
        "before reporting."
    )
    nan = float("nan")
    diag = Diagnostics(
        max_rhat=nan,
        min_ess_bulk=nan,
        min_ess_tail=nan,
        divergences=0,
        min_bfmi=nan,
        treedepth_saturation=0.0,
        passed=passed,
        advice=advice,
        method=method,
        approximation=dict(record),
    )
    if warn and not passed:
        warnings.warn(
            "the approximation failed its own check:\n  - " + "\n  - ".join(advice),
            ConvergenceWarning,
            stacklevel=2,
        )
    return diag
