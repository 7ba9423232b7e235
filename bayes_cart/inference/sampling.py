"""Fit a model: build, sample with the chosen backend, add predictive groups, run the gate.

Backends (``sampler=``):

* ``"auto"`` (default): ``"nutpie"`` for the closed form, ``"nutpie-jax"`` for the JAX solvers
  (``solver="linear"`` or ``"ode"``); :func:`sample_posterior` reads the solver a model was
  built with from ``model.bayes_cart_solver`` (:func:`bayes_cart.model.build.build_model`);
* ``"nutpie"``: nutpie's Rust NUTS on the Numba-compiled graph: about 20 s to compile, then the
  fastest per gradient (no Python in the loop, chains truly parallel; docs/benchmarks.md);
* ``"nutpie-jax"``: nutpie on a JAX-compiled graph: compiles in seconds, about half the speed
  per gradient (every gradient is a Python call); needed for the diffrax ODE route;
* ``"pymc"``: PyMC's own NUTS;
* ``"numpyro"``: numpyro's NUTS through PyMC's JAX bridge.

``random_seed`` is threaded through every random step (sampling, prior and posterior predictive).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import xarray as xr

from bayes_cart.inference import floating_point
from bayes_cart.inference.approximate import (
    METHOD_LABELS,
    approximate_diagnostics,
    check_method,
    fit_approximation,
    is_approximate,
    noncentred_spec,
)
from bayes_cart.inference.diagnostics import (
    ESS_MIN,
    add_chains,
    better_run,
    better_with_bfmi,
    check_fit,
    gate_numbers,
    min_bfmi,
    needs_longer_chains,
    needs_more_draws,
    replace_chains,
    residual_sd_funnel,
    stuck_chains,
)

# a module attribute of its own: the tests replace it to make a run look divergent
from bayes_cart.inference.diagnostics import divergences as _divergences
from bayes_cart.inference.fit_result import Fit
from bayes_cart.inference.floating_point import flush_subnormals as _flush
from bayes_cart.inference.model_cache import ModelCache, PreparedModel, jitter_variables
from bayes_cart.inference.start_check import check_start
from bayes_cart.kinetics.solvers import JAX_SOLVERS, SOLVERS
from bayes_cart.model.build import build_model
from bayes_cart.model.model_data import ModelData, prepare_model_data
from bayes_cart.model.spec import ModelSpec

SAMPLERS = ("auto", "nutpie", "nutpie-jax", "pymc", "numpyro")


#: Samplers that run the JAX solvers (``solver="ode"`` or ``"linear"``) as native JAX code; the
#: others call the JAX op from numba / C through Python for every gradient (about half the speed).
ODE_SAMPLERS = ("nutpie-jax", "numpyro")


def resolve_sampler(sampler: str, solver: str = "closed_form") -> str:
    """Resolve ``"auto"``: Numba nutpie for the closed form, JAX nutpie for the JAX solvers.

    Parameters
    ----------
    sampler : str
        One of :data:`SAMPLERS`; any other than ``"auto"`` is returned as it is.
    solver : str
        The kinetic solver of the model, one of :data:`SOLVERS`. The JAX solvers
        (:data:`JAX_SOLVERS`) get ``"nutpie-jax"``, which runs them as native JAX code; Numba
        nutpie would call the JAX op through Python for every gradient.

    Returns
    -------
    str
        The backend.

    Raises
    ------
    ValueError
        For an unknown sampler or solver.

    Examples
    --------
    >>> resolve_sampler("auto"), resolve_sampler("auto", "ode"), resolve_sampler("pymc", "ode")
    ('nutpie', 'nutpie-jax', 'pymc')
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    if sampler != "auto":
        return sampler
    return "nutpie-jax" if solver in JAX_SOLVERS else "nutpie"


def model_solver(model: pm.Model) -> str:
    """Return the kinetic solver ``model`` was built with (``"closed_form"`` if it does not say).

    :func:`bayes_cart.model.build.build_model` records it as ``model.bayes_cart_solver``; a model
    built otherwise is taken to be closed form.
    """
    return getattr(model, "bayes_cart_solver", "closed_form")


def _one_blas_thread(cores: int) -> Any:
    """Limit BLAS to one thread while chains run in parallel.

    Each chain's gradient calls BLAS (the LKJ blocks, covariate products); with OpenBLAS's
    default of one thread per core, two parallel chains on two cores oversubscribe the machine.
    Measured on the bundled example (2 chains x 800, nutpie Numba): 89 s without the limit,
    21-29 s with it.
    """
    if cores <= 1:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


#: Predictive draws and pointwise log-likelihood are compiled with JAX: seconds instead of the
#: C backend's minute-long compile of this graph.
_FAST = {"mode": "JAX"}

#: Draws (chains x draws) a first run needs for :func:`fit` to judge its E-BFMI and, below
#: ``BFMI_MIN``, sample the model again in sigma-scaled coordinates (``Diagnostics.
#: sigma_scaled_retry``); a short exploratory run is not repeated.
SIGMA_SCALED_RETRY_MIN_DRAWS = 2000

#: target_accept of the automatic second run after divergences (``fit(..., retry=True)``).
RETRY_TARGET_ACCEPT = 0.95

#: A run shorter than this (chains x draws) is not sampled again with a low-rank mass matrix:
#: the gate's ESS at 10% sampling efficiency (4 x 1000 draws); shorter runs are exploratory.
LOW_RANK_RETRY_MIN_EFFICIENCY_DRAWS = int(10 * ESS_MIN)

#: Most extra batches of chains for a slow but healthy fit (``fit(..., extend=True)``): a fit
#: that 4x its draws would not bring to the gate has a geometry problem, not a length problem.
MAX_EXTENSIONS = 3


def _seed(random_seed: int | None, offset: int) -> int:
    base = 0 if random_seed is None else int(random_seed)
    return int(np.random.SeedSequence([base, offset]).generate_state(1)[0])


def sample_posterior(
    model: pm.Model,
    *,
    sampler: str = "auto",
    chains: int = 4,
    tune: int = 1000,
    draws: int = 1000,
    random_seed: int | None = 0,
    target_accept: float = 0.9,
    cores: int | None = None,
    progress: bool = False,
    low_rank: bool = False,
    max_treedepth: int = 10,
    max_restarts: int = 1,
    max_extensions: int = 3,
    retry_target_accept: float | None = 0.95,
    low_rank_retry: bool = False,
    solver: str | None = None,
    flush_subnormals: bool = True,
    on_progress: Callable[[Any], None] | None = None,
    compiled: Any = None,
    abandon: Callable[[az.InferenceData], bool] | None = None,
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Sample the posterior of a PyMC model with the chosen backend.

    ``sampler="auto"`` picks the backend for the model's kinetic solver
    (:func:`resolve_sampler`): ``solver``, or when it is ``None`` the solver the model was built
    with (:func:`model_solver`), so a model from ``build_model(..., solver="ode")`` or
    ``"linear"`` is sampled with ``"nutpie-jax"`` and a closed-form one with ``"nutpie"``.

    ``low_rank`` (nutpie only) adapts a low-rank modified mass matrix instead of a diagonal
    one; on the bundled example it did not shorten the trajectories and lowered ESS
    (``docs/benchmarks.md``), so it is off by default. ``max_treedepth`` caps a NUTS
    trajectory at ``2**max_treedepth`` leapfrog steps (nutpie, PyMC).

    ``flush_subnormals`` (x86-64) flushes subnormal numbers to zero in the sampler's threads
    (:func:`bayes_cart.inference.floating_point.flush_subnormals`): far from the posterior, where
    warm-up can wander, terms of the closed form underflow into subnormal numbers, whose arithmetic
    is 7x slower (``docs/benchmarks.md``). ``timings["flush_subnormals"]`` says whether it was on.

    A chain that ends far from the others (:func:`bayes_cart.inference.diagnostics.stuck_chains`:
    its mean log density or its step size far below theirs) is sampled again from a fresh start,
    with a new seed, up to ``max_restarts`` times; the compiled model is reused, and the restarts
    are reported in ``timings["restarted_chains"]``.

    Chains that are healthy but mixed too slowly for the gate's R-hat or bulk ESS
    (:func:`bayes_cart.inference.diagnostics.needs_more_draws`: no divergence, no stuck chain) are
    joined by as many batches of ``chains`` new chains (new seeds, the compiled model reused) as the
    ESS says are needed, at most ``max_extensions`` batches and only when that many suffice
    (``timings["extended_chains"]``). More draws do not fix a biased sampler, so a fit with
    divergences is never extended. Chains that fail on R-hat because each holds too few
    effective draws (:func:`bayes_cart.inference.diagnostics.needs_longer_chains`: below
    ``ESS_PER_CHAIN``, where split R-hat stays above 1.01 however many chains are added) are
    not joined by more chains: after the divergence retry below, all ``chains`` are sampled
    again with as many times the draws as needed (at most ``1 + max_extensions``; new seed,
    the compiled model reused), then extended with chains of that length if the ESS is still
    short; the better run by the gate is kept (``timings["lengthened"]``).

    A run with divergences at ``target_accept`` below ``retry_target_accept`` (in its first
    chains or in a batch added to them) is discarded and sampled again, every chain, at
    ``retry_target_accept`` (smaller steps; new seed, the compiled model reused), extended in
    turn if it needs it: what a careful user does by hand. ``timings["retried"]`` records
    the divergences of the discarded run and of the new one; ``None`` turns the retry off.

    ``low_rank_retry`` (nutpie, diagonal mass matrix): when the run still fails the gate after
    the tries above (R-hat, ESS or divergences; not for stuck chains) and was long enough to
    pass it (``chains * draws >= LOW_RANK_RETRY_MIN_EFFICIENCY_DRAWS``, i.e. the gate's ESS at
    10% efficiency; a short exploratory run is not repeated), every chain is sampled
    again with nutpie's low-rank modified mass matrix (new seed, the compiled model reused),
    restarted and extended like the first run, and the better of the two runs by the gate is
    kept (:func:`bayes_cart.inference.diagnostics.better_run`). A low-rank matrix follows a few
    collective directions a diagonal one cannot, such as the residual SD against every
    patient's parameters on a sparse design (``docs/benchmarks.md``), but costs ESS where
    there is none, so it is a second try, not the default. ``timings["low_rank_retry"]``
    records both runs' gate numbers and which one was kept.

    ``on_progress`` (nutpie backends): called a few times a second, from a background thread,
    with a :class:`bayes_cart.inference.progress.SamplerProgress` (per chain: draws done, tuning or
    sampling, divergences, step size, gradients per draw; the run's label: ``sampling``, a
    restart, the second try, added chains) instead of nutpie's own bar;
    :class:`bayes_cart.inference.progress.ProgressDisplay` shows it. The other backends ignore it
    and show their own bar when ``progress`` is true.

    ``compiled`` (nutpie backends): ``model`` already compiled, e.g. by
    :class:`bayes_cart.inference.model_cache.ModelCache` with this dataset swapped in; it is
    sampled as it is (``compile_seconds`` is then 0).

    ``abandon``: called with the first run (its stuck chains restarted); when it returns true,
    none of the tries above follow and that run is returned with ``timings["abandoned"]``
    true, for the caller to sample another model of the same posterior
    (:func:`fit`'s second try in sigma-scaled coordinates).

    Returns
    -------
    idata, timings
        The posterior InferenceData; ``compile_seconds``, ``sampling_seconds`` (restarts
        included) and ``restarted_chains`` (what was detected, per restarted chain).
    """
    sampler = resolve_sampler(sampler, solver or model_solver(model))
    seed = _seed(random_seed, 1)
    cores = cores or min(chains, os.cpu_count() or 1)
    # raised by a retry after divergences; low_rank switched on by the low-rank second try
    # draws raised by the longer run of chains too slow for R-hat
    current: dict[str, Any] = {
        "target_accept": target_accept,
        "low_rank": low_rank,
        "draws": draws,
    }
    if sampler.startswith("nutpie"):
        import nutpie

        t0 = time.perf_counter()
        if compiled is None:
            compiled = _compile_nutpie(model, sampler)
        t1 = time.perf_counter()

        def run(
            n_chains: int, run_seed: int, label: str = "sampling", first: int = 0
        ) -> az.InferenceData:
            settings = {
                "chains": n_chains,
                "tune": tune,
                "draws": current["draws"],
                "seed": run_seed,
                "target_accept": current["target_accept"],
                "cores": min(cores, n_chains),
                "save_warmup": False,
                "low_rank_modified_mass_matrix": current["low_rank"],
                "maxdepth": max_treedepth,
            }
            with _one_blas_thread(min(cores, n_chains)), _flush(flush_subnormals):
                if on_progress is not None:
                    from bayes_cart.inference.progress import sample_nutpie

                    return sample_nutpie(
                        compiled, on_progress, label=label, chain_offset=first, **settings
                    )
                return nutpie.sample(compiled, progress_bar=progress, **settings)

    else:
        t0 = t1 = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if sampler == "numpyro":
            kwargs["nuts_sampler"] = "numpyro"
        init = getattr(model, "bayes_cart_initvals", None)
        if init:
            kwargs["initvals"] = init
        if sampler == "pymc":
            kwargs["max_treedepth"] = max_treedepth
        kwargs["init"] = "adapt_diag"  # start from the data-informed point, no jitter

        def run(n_chains: int, run_seed: int, *_: Any) -> az.InferenceData:
            with model, _one_blas_thread(min(cores, n_chains)), _flush(flush_subnormals):
                return pm.sample(
                    draws=current["draws"],
                    tune=tune,
                    chains=n_chains,
                    cores=min(cores, n_chains),
                    random_seed=run_seed,
                    target_accept=current["target_accept"],
                    progressbar=progress,
                    compute_convergence_checks=False,
                    **kwargs,
                )

    check_start(model, compiled if sampler.startswith("nutpie") else None)  # StartError

    def restart_stuck(
        idata: az.InferenceData, offset: int, restarted: list, first: int = 0
    ) -> az.InferenceData:
        # stuck chains with labels >= first (judged against all chains) are sampled again
        for attempt in range(max_restarts):
            stuck = [s_ for s_ in stuck_chains(idata) if s_["chain"] >= first]
            if not stuck:
                break
            names = ", ".join(str(s_["chain"]) for s_ in stuck)
            fresh = run(
                len(stuck),
                _seed(random_seed, offset + attempt),
                f"restart of chain {names}",
                stuck[0]["chain"] if len(stuck) == 1 else 0,
            )
            idata = replace_chains(idata, [s_["chain"] for s_ in stuck], fresh)
            restarted.extend({**s_, "attempt": attempt + 1} for s_ in stuck)
        return idata

    def run_with_restarts(
        run_seed: int, offset: int, label: str | None = None
    ) -> tuple[az.InferenceData, list]:
        restarted: list[dict[str, Any]] = []
        if label is None:
            label = (
                "sampling"
                if offset == 100
                else f"second run at target_accept {current['target_accept']:g}"
            )
        idata = restart_stuck(run(chains, run_seed, label), offset, restarted)
        return idata, restarted

    def extend(
        idata: az.InferenceData, offset: int, restarted: list
    ) -> tuple[az.InferenceData, int]:
        # one batch at a time, re-checked after each: ESS only roughly doubles with the draws;
        # a stuck chain of a new batch (judged against all chains) is sampled again like one
        # of the first batch
        added = 0
        for attempt in range(max_extensions):
            allowed = (1 + max_extensions) * chains / idata.posterior.sizes["chain"]
            if needs_longer_chains(idata, 1 + max_extensions):
                break  # R-hat needs longer chains, not more of them: the longer run below
            if not needs_more_draws(idata, allowed):
                break
            old = idata.posterior.sizes["chain"]
            fresh = run(chains, _seed(random_seed, offset + attempt), "more chains", old)
            idata = add_chains(idata, fresh)
            idata = restart_stuck(idata, offset + 50 + 10 * attempt, restarted, first=old)
            added += chains
        return idata, added

    # the run at target_accept, then (if it, or a batch added to it, diverged) the whole run
    # again at retry_target_accept
    levels = [target_accept]
    if retry_target_accept is not None and retry_target_accept > target_accept:
        levels.append(retry_target_accept)
    retried: dict[str, Any] = {}
    for i, level in enumerate(levels):
        current["target_accept"] = level
        idata, restarted = run_with_restarts(
            seed if i == 0 else _seed(random_seed, 300), 100 + 300 * i
        )
        if i == 0 and abandon is not None and abandon(idata):
            return idata, {
                "compile_seconds": t1 - t0 if sampler.startswith("nutpie") else float("nan"),
                "sampling_seconds": time.perf_counter() - t1,
                "restarted_chains": restarted,
                "extended_chains": 0,
                "flush_subnormals": bool(flush_subnormals and floating_point.supported()),
                "abandoned": True,
            }
        idata, extended = extend(idata, 200 + 300 * i, restarted)
        n_div = _divergences(idata)
        if not n_div or i == len(levels) - 1:
            break
        retried = {"divergences": n_div, "target_accept": levels[i + 1]}
    if retried:
        retried["divergences_after"] = _divergences(idata)

    def rerun(offset: int, label: str) -> tuple[az.InferenceData, list, int, dict[str, Any]]:
        # every chain again with the current settings (new seed), restarted and extended like
        # the first run; returned with its gate numbers, for better_run to judge
        fresh, restarted_r = run_with_restarts(_seed(random_seed, offset), offset, label)
        fresh, extended_r = extend(fresh, offset + 100, restarted_r)
        return fresh, restarted_r, extended_r, gate_numbers(fresh)

    lengthened: dict[str, Any] = {}
    factor = needs_longer_chains(idata, 1 + max_extensions) if max_extensions else 0
    if factor:
        before = gate_numbers(idata)
        current["draws"] = draws * factor
        longer, restarted_l, extended_l, after = rerun(
            500, f"longer chains ({current['draws']} draws)"
        )
        lengthened = {
            "factor": factor,
            "draws": current["draws"],
            "before": before,
            "after": after,
        }
        if better_run(before, after):
            idata, restarted, extended = longer, restarted_l, extended_l
        else:
            lengthened["kept"] = "shorter"
            current["draws"] = draws
    low_rank_try: dict[str, Any] = {}
    long_enough = chains * draws >= LOW_RANK_RETRY_MIN_EFFICIENCY_DRAWS
    if low_rank_retry and not low_rank and sampler.startswith("nutpie") and long_enough:
        diagonal = gate_numbers(idata)
        if not diagonal["passed"] and not diagonal["stuck"]:
            current["low_rank"] = True
            candidate, restarted_lr, extended_lr, second = rerun(
                700, "second run with a low-rank mass matrix"
            )
            keep = better_run(diagonal, second)
            low_rank_try = {
                "diagonal": diagonal,
                "low_rank": second,
                "kept": "low_rank" if keep else "diagonal",
            }
            if keep:
                idata, restarted, extended = candidate, restarted_lr, extended_lr
    t2 = time.perf_counter()
    timings: dict[str, Any] = {
        # PyMC and numpyro compile inside sample(); their compile time is not separable
        "compile_seconds": t1 - t0 if sampler.startswith("nutpie") else float("nan"),
        "sampling_seconds": t2 - t1,
        "restarted_chains": restarted,
        "extended_chains": extended,
        "retried": retried,
        "lengthened": lengthened,
        "low_rank_retry": low_rank_try,
        "flush_subnormals": bool(flush_subnormals and floating_point.supported()),
    }
    return idata, timings


def compile_nutpie(model: pm.Model, sampler: str) -> Any:
    """Compile for nutpie; only population-level variables are jittered at the start.

    nutpie (like PyMC) adds U(-1, 1) jitter on the unconstrained scale to every free
    variable by default. For the per-patient variables of a centred model that moves each
    patient's peak time or peak level by a factor of up to e away from the data-informed start,
    which is how chains ended in regions they never left (issue 9). Here the per-patient
    variables start exactly at their estimates and the population ones are jittered.
    """
    import nutpie
    from pymc.model.transform.optimization import freeze_dims_and_data

    init = getattr(model, "bayes_cart_initvals", None) or None
    md = getattr(model, "bayes_cart_data", None)
    jax = sampler == "nutpie-jax"
    if jax:  # freeze here so the jittered variables are those of the compiled model
        from bayes_cart.jax_setup import configure_jax

        configure_jax()
        model = freeze_dims_and_data(model)
    jitter = jitter_variables(model, md.n_patients) if md is not None else None
    if jax:
        return nutpie.compile_pymc_model(
            model,
            backend="jax",
            gradient_backend="jax",
            initial_points=init,
            jitter_rvs=jitter,
            freeze_model=False,
        )
    return nutpie.compile_pymc_model(model, initial_points=init, jitter_rvs=jitter)


_compile_nutpie = compile_nutpie  # what sample_posterior calls (the tests replace it)


def _own_patients(idata: az.InferenceData, md: ModelData) -> az.InferenceData:
    """Label a cached model's draws with this dataset's patients (the model's are another's)."""
    dp = [p for p, m in zip(md.patient_ids, md.distribution_mask, strict=True) if m]
    labels = {"patient": list(md.patient_ids), "patient_dp": dp}
    for group in idata.groups():
        ds = idata[group]
        new = {d: v for d, v in labels.items() if d in ds.dims and ds.sizes[d] == len(v)}
        if new:
            setattr(idata, group, ds.assign_coords(new))
    return idata


def _constant_data(md: ModelData, dataset: Any) -> xr.Dataset:
    obs = {
        "time": ("obs", md.time),
        "cens": ("obs", md.cens),
        "log_limit": ("obs", md.log_limit),
        "patient_index": ("obs", md.patient_index),
        "distribution_phase": ("patient", md.distribution_mask.astype(np.int8)),
    }
    if md.group_levels:
        obs["group_index"] = ("patient", md.group_index)
    ds = xr.Dataset(obs, coords={"obs": md.obs_rows, "patient": list(md.patient_ids)})
    for col in dataset.patients.columns:
        values = dataset.patients[col]
        if values.dtype.kind in "fiub":
            ds[f"cov_{col}"] = ("patient", values.to_numpy(dtype=float))
        else:
            ds[f"cov_{col}"] = ("patient", values.astype(object).fillna("").astype(str).to_numpy())
    for name, matrix in md.design.matrices.items():
        ds[f"X_{name}"] = (("patient", f"{name}_effect"), matrix.to_numpy())
        ds = ds.assign_coords({f"{name}_effect": list(matrix.columns)})
    infusions = getattr(md, "infusions", None)
    if infusions is not None:  # several infusions: each cohort's clock start and dose ratio
        slots = np.arange(1, infusions.n_slots + 1)
        ds["infusion_start"] = (("patient", "infusion"), infusions.start)
        ds["infusion_log_ratio"] = (("patient", "infusion"), infusions.log_ratio)
        ds["infusion_count"] = ("patient", infusions.count)
        ds = ds.assign_coords(infusion=slots)
    return ds


def _warn_slow_backend(solver: str, sampler: str) -> None:
    if solver in JAX_SOLVERS and sampler not in ODE_SAMPLERS:
        warnings.warn(
            f"solver={solver!r} with sampler={sampler!r}: this solver is JAX code that this "
            "backend calls through Python for every gradient (about 2x slower); use "
            "sampler='nutpie-jax'",
            UserWarning,
            stacklevel=3,
        )


def fit(
    dataset: Any,
    spec: ModelSpec,
    *,
    sampler: str = "auto",
    chains: int = 4,
    tune: int = 1000,
    draws: int = 1000,
    random_seed: int | None = 0,
    target_accept: float = 0.9,
    solver: str = "closed_form",
    prior_draws: int = 500,
    predictive: bool = True,
    progress: bool = False,
    on_step: Callable[[str], None] | None = None,
    extend: bool = True,
    retry: bool = True,
    on_progress: Callable[[Any], None] | None = None,
    low_rank: bool = False,
    cores: int | None = None,
    cache: ModelCache | None = None,
    method: str = "nuts",
    method_options: dict[str, Any] | None = None,
) -> Fit:
    """Fit ``spec`` to ``dataset``: build, sample, add predictive groups, run the gate.

    Parameters
    ----------
    dataset : bayes_cart.data.dataset.Dataset
        Validated data (:func:`bayes_cart.data.dataset.load_dataset`).
    spec : ModelSpec
        Model spec (:func:`bayes_cart.model.spec.load_spec`).
    sampler : str
        One of :data:`SAMPLERS`; ``"auto"`` picks the backend for ``solver``
        (:func:`resolve_sampler`).
    chains, tune, draws : int
        NUTS settings.
    random_seed : int
        Seeds sampling, prior and posterior predictive draws.
    target_accept : float
        NUTS target acceptance.
    solver : {"closed_form", "linear", "ode"}
        Kinetic solver inside the model, see :data:`SOLVERS`. ``"linear"`` (matrix
        exponential of the structure's linear ODE phases) and ``"ode"`` (adaptive diffrax, any
        right-hand side) are for structures without a closed form; they are JAX code, sampled
        by default with ``"nutpie-jax"`` (other samplers work but warn that they are slower).
    prior_draws : int
        Draws of the prior / prior predictive (0 to skip).
    predictive : bool
        Store posterior predictive and pointwise log-likelihood groups.
    progress : bool
        Show the sampler's progress bar.
    on_step : callable, optional
        Called with a short message at each step (the CLI's progress display).
    on_progress : callable, optional
        Called with the sampler's per-chain progress (nutpie backends; see
        :func:`sample_posterior` and :class:`bayes_cart.inference.progress.ProgressDisplay`).
    low_rank : bool
        Adapt nutpie's low-rank modified mass matrix instead of a diagonal one (nutpie
        backends only). It follows one slow collective direction, such as the residual SD
        against every patient's parameters in a sparse design (on the sparse panel dataset
        `liu2021` passed the gate on the first try with it and not without); on the bundled
        example it did not help, so it is off by default (``docs/benchmarks.md``).
    cores : int, optional
        Chains sampled in parallel (default: one per core, at most ``chains``). A study that
        runs one fit per worker process passes 1, so that its workers do not oversubscribe
        the machine (:mod:`bayes_cart.study`).
    extend : bool
        When healthy chains mix too slowly for the gate (R-hat above 1.01 or bulk ESS below
        400, without divergences or stuck chains) and at most 4 times the draws would reach
        it, sample one to three more batches of ``chains`` chains and keep them all
        (``Diagnostics.extended_chains``); ``False`` keeps the first run.
    retry : bool
        When the run has divergences, sample it again at ``target_accept = 0.95``
        (``RETRY_TARGET_ACCEPT``) and keep the new run (``Diagnostics.retried``). Then, when
        the run still fails the gate (a nutpie sampler with the diagonal mass matrix, at least
        4 x 1000 draws, no stuck chain), sample it once more with the low-rank mass matrix and
        keep the better run by the gate (``Diagnostics.low_rank_retry``; see
        :func:`sample_posterior`). Before all that, when the first run (at least 2,000
        draws) shows some chain's E-BFMI below 0.3, the funnel along the residual SD of a
        sparse design (:func:`bayes_cart.inference.diagnostics.residual_sd_funnel`), the
        model is built again with ``sampling.sigma_scaled = true`` (the same posterior in
        per-patient coordinates that follow the residual SD,
        :mod:`bayes_cart.model.sigma_scaling`) and sampled with the tries above; the better
        run by the gate is kept, and with it the spec it was sampled with
        (``Diagnostics.sigma_scaled_retry``; not for a cached model). ``False`` keeps the
        first run.
    cache : ModelCache, optional
        Compiled models to reuse across fits of datasets of the same structure (a study
        worker's, :mod:`bayes_cart.inference.model_cache`): the model is built swappable and
        compiled once, later fits swap their data in. Used with the Numba nutpie sampler,
        ``prior_draws=0`` and ``predictive=False`` on a model the swap covers, ignored
        otherwise; ``timings["model_cache"]`` says ``"hit"``, ``"miss"`` or ``"off"``.
    method : {"nuts", "advi", "pathfinder", "laplace"}
        ``"nuts"`` (default): the MCMC fit above. The others are approximations
        (:mod:`bayes_cart.inference.approximate`): faster, but their intervals may be too
        narrow; they take ``chains * draws`` draws from the approximation (one chain), ignore
        ``chains``, ``tune``, ``target_accept``, ``extend`` and ``retry``, refuse ``sampler``
        (other than ``"auto"``) and ``low_rank``, and are judged by their own check instead
        of the MCMC gate (``Fit.settings["method"]``, ``Diagnostics.method``).
    method_options : dict, optional
        Settings of an approximate method
        (:data:`bayes_cart.inference.approximate.METHOD_OPTIONS`, e.g. ``{"iterations":
        5000}`` for ADVI).

    Returns
    -------
    Fit
        Use :func:`bayes_cart.inference.io.save_fit` to write it.

    Examples
    --------
    >>> from bayes_cart.example import load_example  # doctest: +SKIP
    >>> f = fit(load_example(), load_spec("liu2021"), draws=500)  # doctest: +SKIP
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    approx_settings = check_method(
        method, sampler=sampler, low_rank=low_rank, options=method_options
    )
    requested = sampler
    sampler = resolve_sampler(requested, solver)
    if low_rank and not sampler.startswith("nutpie"):
        raise ValueError(f"a low-rank mass matrix needs a nutpie sampler, not {sampler!r}")
    _warn_slow_backend(solver, sampler)
    step = on_step or (lambda msg: None)
    step("building the model")
    md = prepare_model_data(dataset, spec)
    use_cache = cache is not None and not prior_draws and not predictive and method == "nuts"
    with cache.lock if use_cache else contextlib.nullcontext():  # type: ignore[union-attr]
        prepared = (
            cache.prepare(dataset, spec, md, solver=solver, sampler=sampler)  # type: ignore[union-attr]
            if use_cache
            else None
        )
        return _fit(
            dataset,
            spec,
            md,
            prepared,
            sampler=sampler,
            requested=requested,
            chains=chains,
            tune=tune,
            draws=draws,
            random_seed=random_seed,
            target_accept=target_accept,
            solver=solver,
            prior_draws=prior_draws,
            predictive=predictive,
            progress=progress,
            step=step,
            extend=extend,
            retry=retry,
            on_progress=on_progress,
            low_rank=low_rank,
            cores=cores,
            method=method,
            approx_settings=approx_settings,
        )


def _fit(
    dataset: Any,
    spec: ModelSpec,
    md: ModelData,
    prepared: PreparedModel | None,
    *,
    sampler: str,
    requested: str,
    chains: int,
    tune: int,
    draws: int,
    random_seed: int | None,
    target_accept: float,
    solver: str,
    prior_draws: int,
    predictive: bool,
    progress: bool,
    step: Callable[[str], None],
    extend: bool,
    retry: bool,
    on_progress: Callable[[Any], None] | None,
    low_rank: bool,
    cores: int | None,
    method: str,
    approx_settings: dict[str, Any],
) -> Fit:
    """:func:`fit` after the model data: build (or take the prepared model), sample, judge."""
    if is_approximate(method) and noncentred_spec(spec) is not spec:
        # a finite mode: every random effect non-centred (approximate.noncentred_spec)
        spec = noncentred_spec(spec)
        md = prepare_model_data(dataset, spec)
    if prepared is None:
        model = build_model(dataset, spec, model_data=md, solver=solver)
    else:
        model = prepared.model
    # a step covariate moves a closed-form fit to an ODE route (build_model records it)
    if getattr(model, "bayes_cart_solver", solver) != solver:
        solver = model.bayes_cart_solver
        sampler = resolve_sampler(requested, solver)
        _warn_slow_backend(solver, sampler)
    approximation: dict[str, Any] = {}
    if is_approximate(method):  # ADVI, Pathfinder or Laplace instead of NUTS
        step(f"approximate inference: {METHOD_LABELS[method]}, {chains * draws} draws")
        idata, timings, approximation = fit_approximation(
            model,
            method,
            draws=chains * draws,
            random_seed=_seed(random_seed, 1),
            options=approx_settings,
            progress=progress,
        )
        timings["model_cache"] = "off"
    else:
        step(f"sampling with {sampler}: {chains} chains x ({tune} tune + {draws} draws)")

        def nuts(m: pm.Model, abandon: Callable[[az.InferenceData], bool] | None) -> tuple:
            return sample_posterior(
                m,
                sampler=sampler,
                chains=chains,
                tune=tune,
                draws=draws,
                random_seed=random_seed,
                target_accept=target_accept,
                progress=progress,
                max_extensions=MAX_EXTENSIONS if extend else 0,
                retry_target_accept=RETRY_TARGET_ACCEPT if retry else None,
                low_rank_retry=retry,
                solver=solver,
                on_progress=on_progress,
                low_rank=low_rank,
                cores=cores,
                compiled=None if prepared is None else prepared.compiled,
                abandon=abandon,
            )

        # the second try in sigma-scaled coordinates needs a model built for this dataset
        # (not a cached swappable one) and long enough chains to judge E-BFMI
        sigma_try = (
            retry
            and prepared is None
            and not spec.doc.sampling.sigma_scaled
            and chains * draws >= SIGMA_SCALED_RETRY_MIN_DRAWS
        )
        idata, timings = nuts(model, residual_sd_funnel if sigma_try else None)
        if timings.pop("abandoned", False):
            idata, timings, spec, model = _sigma_scaled_second_try(
                dataset, spec, md, model, solver, idata, timings, nuts, step
            )
        if prepared is not None:
            timings["compile_seconds"] += prepared.compile_seconds
            timings["model_cache"] = "hit" if prepared.hit else "miss"
            idata = _own_patients(idata, md)
        else:
            timings["model_cache"] = "off"
    t0 = time.perf_counter()
    if prior_draws or predictive:
        from bayes_cart.jax_setup import configure_jax

        configure_jax()  # these programs are JAX: reuse them from the persistent cache
    with model:
        if prior_draws:
            step("prior predictive")
            prior = pm.sample_prior_predictive(
                draws=prior_draws, random_seed=_seed(random_seed, 2), compile_kwargs=_FAST
            )
            idata.extend(prior)
        if predictive:
            step("posterior predictive and pointwise log-likelihood")
            pm.sample_posterior_predictive(
                idata,
                var_names=["log_dv"],
                random_seed=_seed(random_seed, 3),
                extend_inferencedata=True,
                progressbar=False,
                compile_kwargs=_FAST,
            )
            with pytensor.config.change_flags(mode=_FAST["mode"]):
                pm.compute_log_likelihood(idata, var_names=["log_dv"], progressbar=False)
    if "observed_data" not in idata.groups():
        idata.add_groups(
            observed_data=xr.Dataset({"log_dv": ("obs", md.log_dv)}, coords={"obs": md.obs_rows})
        )
    idata.add_groups(constant_data=_constant_data(md, dataset))
    timings["predictive_seconds"] = time.perf_counter() - t0
    restarted = timings.pop("restarted_chains", [])
    timings["restarts"] = len(restarted)
    extended = int(timings.get("extended_chains", 0))
    step("diagnostics")
    diag = approximate_diagnostics(method, approximation) if approximation else check_fit(idata)
    diag.restarted_chains = restarted
    diag.extended_chains = extended
    diag.retried = timings.pop("retried", {}) or {}
    diag.low_rank_retry = timings.pop("low_rank_retry", {}) or {}
    diag.lengthened = timings.pop("lengthened", {}) or {}
    diag.sigma_scaled_retry = timings.pop("sigma_scaled_retry", {}) or {}
    settings = {
        "solver": solver,
        "kinetics": getattr(model, "bayes_cart_kinetics", spec.kinetics),
        "sampler": sampler,
        "chains": chains,
        "tune": tune,
        "draws": draws,
        "target_accept": target_accept,
        "random_seed": random_seed,
        "extend": extend,
        "retry": retry,
        "low_rank": low_rank,
        "method": method,
    }
    if approximation:  # the NUTS settings did not apply
        settings.update(sampler=None, chains=1, tune=0, draws=chains * draws, target_accept=None)
        settings["method_options"] = approx_settings
    return Fit(
        idata=idata,
        spec=spec,
        dataset=dataset,
        model_data=md,
        diagnostics=diag,
        timings=timings,
        settings=settings,
    )


def _sigma_scaled_second_try(
    dataset: Any,
    spec: ModelSpec,
    md: ModelData,
    model: pm.Model,
    solver: str,
    idata: az.InferenceData,
    timings: dict[str, Any],
    nuts: Callable[[pm.Model, Any], tuple],
    step: Callable[[str], None],
) -> tuple[az.InferenceData, dict[str, Any], ModelSpec, pm.Model]:
    """Sample the model again in sigma-scaled coordinates after a first run with a funnel.

    The first run of ``model`` (``idata``, ``timings``) stopped after its first pass because
    some chain's E-BFMI was below 0.3
    (:func:`~bayes_cart.inference.diagnostics.residual_sd_funnel`). The model is built again
    with ``sampling.sigma_scaled = true`` (the same posterior, other coordinates) and sampled
    with every second try; the better of the two runs is kept
    (:func:`~bayes_cart.inference.diagnostics.better_with_bfmi`), with the spec it was sampled
    with, and both runs' gate numbers are recorded under ``timings["sigma_scaled_retry"]``.

    Returns
    -------
    tuple
        The kept run's draws and timings (compile and sampling seconds of both runs added),
        its spec and its model (``spec`` and ``model`` when the plain run is kept).
    """
    plain = {**gate_numbers(idata), "min_bfmi": round(min_bfmi(idata), 3)}
    step(
        f"E-BFMI {plain['min_bfmi']:.2f}: building the model again in coordinates "
        "that follow the residual SD (sampling.sigma_scaled)"
    )
    scaled_spec = spec.replace(sampling={"sigma_scaled": True})
    scaled_model = build_model(dataset, scaled_spec, model_data=md, solver=solver)
    scaled, scaled_timings = nuts(scaled_model, None)
    second = {**gate_numbers(scaled), "min_bfmi": round(min_bfmi(scaled), 3)}
    keep = better_with_bfmi(plain, second)
    record = {
        "plain": plain,
        "sigma_scaled": second,
        "kept": "sigma_scaled" if keep else "plain",
        "plain_seconds": round(timings["compile_seconds"] + timings["sampling_seconds"], 1),
    }
    for key in ("compile_seconds", "sampling_seconds"):
        scaled_timings[key] += timings[key]
    if keep:
        idata, spec, model = scaled, scaled_spec, scaled_model
    else:  # the plain run stays: its restarts, none of the second run's retries
        scaled_timings["restarted_chains"] = timings["restarted_chains"]
        scaled_timings.update(retried={}, lengthened={}, low_rank_retry={})
        scaled_timings["extended_chains"] = 0
    scaled_timings["sigma_scaled_retry"] = record
    return idata, scaled_timings, spec, model
