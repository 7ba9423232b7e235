"""The diagnostics gate: convergence, sampler health and how much the data inform each parameter.

:func:`check_fit` computes the numbers (max R-hat, min bulk/tail ESS, divergences, E-BFMI,
tree-depth saturation, prior-to-posterior contraction) over the *population* quantities and
returns them with plain-language advice. A failed gate raises a :class:`ConvergenceWarning`
(never silence).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bayes_cart.errors import ConvergenceWarning

#: Thresholds of the gate.
RHAT_MAX = 1.01
ESS_MIN = 400.0
#: Effective draws per chain (bulk) below which split R-hat of a well-mixing but slow quantity
#: stays above RHAT_MAX by chance (about 1 + 1 / ESS per chain): :func:`needs_longer_chains`.
ESS_PER_CHAIN = 150.0
BFMI_MIN = 0.3
CONTRACTION_MIN = 0.1


def divergences(idata: az.InferenceData) -> int:
    """Return the divergent transitions after warm-up over all chains (0 without the stat)."""
    stats = idata.sample_stats
    return int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else 0


def population_variables(idata: az.InferenceData) -> list[str]:
    """Names of population-level variables in the posterior (typical values, IIV, effects...).

    Per-patient variables are left out: dims ``patient``, ``obs`` or any ``patient_*``
    (``patient_dp``; ``patient_missing_<column>`` of the level probabilities of a
    marginalised covariate).
    """
    post = idata.posterior
    out = []
    for name, var in post.data_vars.items():
        dims = set(var.dims) - {"chain", "draw"}
        if "obs" in dims or any(d == "patient" or str(d).startswith("patient_") for d in dims):
            continue
        helper = name.startswith(("z_", "pc_", "m_", "log_", "logit_", "scaled_", "chol_"))
        if helper or name.endswith(("_i", "__")):
            continue
        if any(d.startswith("chol_") for d in dims):
            continue
        out.append(name)
    return out


#: A group random effect with at most this many levels is flagged when the fit diverges.
FEW_GROUPS = 10


def _few_level_group_sds(post: Any) -> list[tuple[str, int]]:
    """``(omega name, number of groups)`` for group random effects ``u_<g>_<p>`` with few levels."""
    out = []
    for name, var in post.data_vars.items():
        omega = "omega_" + name[2:]
        if not name.startswith("u_") or omega not in post:
            continue
        dims = [d for d in var.dims if d not in ("chain", "draw")]
        if len(dims) == 1 and var.sizes[dims[0]] <= FEW_GROUPS:
            out.append((omega, int(var.sizes[dims[0]])))
    return out


#: A chain is stuck when its mean log density is this many within-chain SDs (of the best
#: chain) below the best chain's, and at least :data:`STUCK_MIN_LOGP_GAP` below it ...
STUCK_LOGP_SDS = 6.0
STUCK_MIN_LOGP_GAP = 20.0
#: ... or when its adapted step size is below this fraction of the largest one.
STUCK_STEP_RATIO = 0.1
#: ... or when, for one patient, its posterior mean of a per-patient variable lies this many
#: pooled posterior SDs from the other chains' mean (healthy chains of 1,000 draws: below
#: 0.2) while its mean log density is the lowest, at least :data:`LOCAL_MODE_LOGP_GAP` below
#: the others' average: a local mode of that patient's posterior (e.g. an early small peak
#: instead of a late large one for a patient whose samples end before the peak).
LOCAL_MODE_Z = 2.0
LOCAL_MODE_LOGP_GAP = 10.0


def _stat(stats: Any, *names: str) -> np.ndarray | None:
    for name in names:
        if name in stats:
            return np.asarray(stats[name], dtype=float)
    return None


def _local_mode(idata: az.InferenceData, means: np.ndarray, c: int) -> str | None:
    """Why chain ``c`` sits in a local mode of one patient's posterior (``None`` if it does not).

    Only the chain with the lowest mean log density, :data:`LOCAL_MODE_LOGP_GAP` below the
    others' average, is examined: for each variable with a ``patient`` dimension (on the log
    scale when positive), ``|mean_c - mean_others| / sqrt(var_c + var_others)`` per patient;
    the largest above :data:`LOCAL_MODE_Z` is reported.
    """
    post = getattr(idata, "posterior", None)
    others = [k for k in range(len(means)) if k != c]
    if post is None or not others or int(np.argmin(means)) != c:
        return None
    gap = float(np.mean(means[others]) - means[c])
    if gap < LOCAL_MODE_LOGP_GAP:
        return None
    worst: tuple[float, str, int, float, float] | None = None
    for name, var in post.data_vars.items():
        if var.dims != ("chain", "draw", "patient"):
            continue
        x = np.asarray(var, dtype=float)
        positive = bool(np.all(x > 0))
        if positive:
            x = np.log(x)
        rest = x[others].reshape(-1, x.shape[2])
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(x[c].mean(0) - rest.mean(0)) / np.sqrt(x[c].var(0) + rest.var(0))
        z = np.where(np.isfinite(z), z, 0.0)
        j = int(np.argmax(z))
        if z[j] > LOCAL_MODE_Z and (worst is None or z[j] > worst[0]):
            back = np.exp if positive else (lambda v: v)
            worst = (
                float(z[j]),
                name,
                j,
                float(back(x[c, :, j].mean())),
                float(back(rest[:, j].mean())),
            )
    if worst is None:
        return None
    z, name, j, mine, theirs = worst
    patient = post[name].coords["patient"].values[j] if "patient" in post[name].coords else j
    return (
        f"a local mode of patient {patient}: {name} {mine:.3g} against {theirs:.3g} in the other "
        f"chains ({z:.1f} posterior SDs apart), mean log density {gap:,.1f} lower"
    )


def stuck_chains(idata: az.InferenceData) -> list[dict[str, Any]]:
    """Chains that never reached the region the other chains sample (a start/warm-up failure).

    Healthy chains of one posterior have nearly equal mean log densities (their difference is
    a Monte Carlo error, a fraction of the within-chain SD) and similar adapted step sizes. A
    chain is flagged when its mean log density lies more than :data:`STUCK_LOGP_SDS`
    within-chain SDs of the best chain (and at least :data:`STUCK_MIN_LOGP_GAP`) below the best
    chain's, or when its step size is below :data:`STUCK_STEP_RATIO` times the largest, or when
    it sits in a local mode of one patient's posterior (:func:`_local_mode`: that patient's
    parameters far from the other chains' and the lowest mean log density). With 1,200
    parameters the within-chain SD of the log density is about 30, so a chain 20 below the
    others is invisible to the first rule; the per-patient rule finds it (the 200-patient
    Stein trial of ``bench/bench_robustness.py``, ``docs/benchmarks.md``).

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``sample_stats`` holding the log density (``logp`` or ``lp``) and ``step_size``.

    Returns
    -------
    list of dict
        ``{"chain", "mean_logp", "best_mean_logp", "step_size", "best_step_size", "reason"}``
        per stuck chain; empty for healthy fits or a single chain.
    """
    stats = getattr(idata, "sample_stats", None)
    if stats is None:
        return []
    lp = _stat(stats, "logp", "lp")
    if lp is None or lp.shape[0] < 2:
        return []
    step = _stat(stats, "step_size")
    means = lp.mean(axis=1)
    best = int(np.argmax(means))
    gap_min = max(STUCK_LOGP_SDS * float(lp[best].std()), STUCK_MIN_LOGP_GAP)
    steps = step.mean(axis=1) if step is not None else np.full(len(means), np.nan)
    top_step = float(np.nanmax(steps)) if np.isfinite(steps).any() else np.nan
    out = []
    chains = np.asarray(stats["chain"]) if "chain" in stats.coords else np.arange(len(means))
    for c in range(len(means)):
        reasons = []
        if means[best] - means[c] > gap_min:
            reasons.append(
                f"mean log density {means[c]:,.1f} against {means[best]:,.1f} in chain {best}"
            )
        if np.isfinite(steps[c]) and steps[c] < STUCK_STEP_RATIO * top_step:
            reasons.append(f"step size {steps[c]:.2g} against {top_step:.2g}")
        if not reasons:
            local = _local_mode(idata, means, c)
            if local:
                reasons.append(local)
        if reasons:
            out.append(
                {
                    "chain": int(chains[c]),
                    "mean_logp": float(means[c]),
                    "best_mean_logp": float(means[best]),
                    "step_size": float(steps[c]),
                    "best_step_size": top_step,
                    "reason": "; ".join(reasons),
                }
            )
    return out


def replace_chains(
    idata: az.InferenceData, chains: list[int], fresh: az.InferenceData
) -> az.InferenceData:
    """Replace ``chains`` of ``idata`` by the chains of ``fresh`` (in order); other groups kept.

    Parameters
    ----------
    idata : arviz.InferenceData
        The original samples.
    chains : list of int
        Chain labels to replace.
    fresh : arviz.InferenceData
        ``len(chains)`` new chains from the same model and settings.

    Returns
    -------
    arviz.InferenceData
        The same chain labels, the replaced ones holding the new draws.
    """
    groups = {}
    for group in idata.groups():
        ds = idata[group]
        if group in fresh.groups() and "chain" in ds.dims:
            new = fresh[group]
            parts = []
            for label in ds["chain"].values:
                if int(label) in chains:
                    j = chains.index(int(label))
                    parts.append(new.isel(chain=[j]).assign_coords(chain=[label]))
                else:
                    parts.append(ds.sel(chain=[label]))
            ds = xr.concat(parts, dim="chain", combine_attrs="override")
        groups[group] = ds
    return az.InferenceData(**groups)


def gradients_per_ess(idata: az.InferenceData, min_ess_bulk: float) -> float:
    """All leapfrog steps of all chains (after warm-up) per effective draw of the worst quantity.

    The cost of a fit in gradient evaluations per effective sample: ``sum(n_steps) /
    min bulk ESS``; NaN without step counts.
    """
    stats = getattr(idata, "sample_stats", None)
    steps = _stat(stats, "n_steps", "tree_size") if stats is not None else None
    if steps is None or not np.isfinite(min_ess_bulk) or min_ess_bulk <= 0:
        return float("nan")
    return float(steps.sum() / min_ess_bulk)


@dataclass
class Diagnostics:
    """Results of the diagnostics gate.

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail : float
        Over every population quantity.
    divergences : int
        Divergent transitions after tuning.
    min_bfmi : float
        Smallest E-BFMI over chains.
    treedepth_saturation : float
        Fraction of draws that hit the maximum tree depth.
    weakly_informed : list of str
        Parameters whose posterior SD is above 90% of the prior SD (the data barely inform them).
    gradients_per_ess : float
        Leapfrog steps of all chains per effective draw of the worst population quantity
        (:func:`gradients_per_ess`): the cost of the fit.
    stuck_chains : list of dict
        Chains still stuck at the end (:func:`stuck_chains`); the gate fails on any.
    restarted_chains : list of dict
        Chains that were stuck and sampled again (filled by
        :func:`bayes_cart.inference.sampling.fit`).
    extended_chains : int
        Chains added because the first ones mixed too slowly for the gate's R-hat or ESS
        (:func:`needs_more_draws`; filled by :func:`bayes_cart.inference.sampling.fit`): the fit is
        slow, its extra cost counted in ``gradients_per_ess``.
    lengthened : dict
        Empty, or ``factor`` (draws per chain multiplied by it), ``draws`` (of the run kept)
        and ``before`` and ``after`` (the :func:`gate_numbers` of the shorter and the longer
        run; ``kept = "shorter"`` when the longer one was not better) when chains that
        mixed too slowly for R-hat were sampled again longer (:func:`needs_longer_chains`).
    retried : dict
        Empty, or ``divergences`` (of a first run that was discarded), ``target_accept`` (of
        the run kept) and ``divergences_after`` when divergences made
        :func:`bayes_cart.inference.sampling.fit` sample again with smaller steps.
    low_rank_retry : dict
        Empty, or, when the diagonal mass matrix's run (after the tries above) still failed
        the gate, ``diagonal`` and ``low_rank`` (the :func:`gate_numbers` of that run and of
        a run with nutpie's low-rank modified mass matrix) and ``kept`` (which of the two the
        fit holds: :func:`better_run`).
    sigma_scaled_retry : dict
        Empty, or, when the first run's E-BFMI was below ``BFMI_MIN`` (the funnel along the
        residual SD of a sparse design) and the model was built again with
        ``sampling.sigma_scaled = true`` and sampled with every second try above: ``plain``
        and ``sigma_scaled`` (:func:`gate_numbers` plus ``min_bfmi`` of the two runs) and
        ``kept`` (``"sigma_scaled"`` or ``"plain"``: :func:`better_with_bfmi`).
    passed : bool
        Whether every check passed. For an approximate fit (``method`` not ``"nuts"``) the
        MCMC checks do not apply: whether the approximation's own check passed
        (:func:`bayes_cart.inference.approximate.approximation_passed`).
    advice : list of str
        What failed and what to do about it.
    method : str
        The inference method: ``"nuts"`` (this gate), or an approximate one (``"advi"``,
        ``"pathfinder"``, ``"laplace"``: :mod:`bayes_cart.inference.approximate`), whose
        R-hat, ESS and E-BFMI are NaN. Fit files written before it existed read as NUTS.
    approximation : dict
        Empty for NUTS; the approximation's own diagnostics otherwise (ADVI: iterations,
        convergence and the ELBO trace's last values; Pathfinder: the PSIS Pareto k and the
        paths; Laplace: the optimiser's convergence and the Hessian at the mode).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_bfmi: float
    treedepth_saturation: float
    weakly_informed: list[str] = field(default_factory=list)
    gradients_per_ess: float = float("nan")
    stuck_chains: list[dict[str, Any]] = field(default_factory=list)
    restarted_chains: list[dict[str, Any]] = field(default_factory=list)
    extended_chains: int = 0
    retried: dict[str, Any] = field(default_factory=dict)
    lengthened: dict[str, Any] = field(default_factory=dict)
    low_rank_retry: dict[str, Any] = field(default_factory=dict)
    sigma_scaled_retry: dict[str, Any] = field(default_factory=dict)
    worst: dict[str, str] = field(default_factory=dict)
    passed: bool = True
    advice: list[str] = field(default_factory=list)
    method: str = "nuts"
    approximation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for diagnostics.json)."""
        return asdict(self)


def needs_more_draws(idata: az.InferenceData, max_factor: float = 4.0) -> int:
    """Return how many more batches of chains bring slow but healthy chains to the gate.

    A fit whose population quantities miss ``RHAT_MAX`` or ``ESS_MIN`` (bulk or tail) while
    nothing else is wrong (no divergence: more draws of a biased sampler stay biased; no stuck
    chain: :func:`stuck_chains`, handled by a restart) is slow, not wrong. ESS grows in
    proportion to the draws, so ``ceil(ESS_MIN / min ESS) - 1`` more batches of chains
    reach ``ESS_MIN`` (one batch when only R-hat misses). Returns that number, or 0 when the
    fit passes, is unhealthy, or would need more than ``max_factor`` times its draws (then
    the geometry, not the run length, is the problem).
    """
    if divergences(idata) > 0:
        return 0
    if stuck_chains(idata):
        return 0
    names = population_variables(idata)
    summ = az.summary(idata, var_names=names, kind="diagnostics")
    min_ess = float(min(summ["ess_bulk"].min(), summ["ess_tail"].min()))
    max_rhat = float(summ["r_hat"].max())
    if not np.isfinite(min_ess) or min_ess <= 0:
        return 0
    factor = max(int(np.ceil(ESS_MIN / min_ess)), 2 if max_rhat > RHAT_MAX else 1)
    return factor - 1 if factor <= max_factor else 0


def gate_numbers(idata: az.InferenceData) -> dict[str, Any]:
    """Return the gate's numbers of a run, to compare two runs of one posterior.

    Returns
    -------
    dict
        ``passed`` (R-hat, bulk and tail ESS, divergences and stuck chains within the gate),
        ``max_rhat``, ``min_ess`` (bulk and tail), ``divergences``, ``stuck`` (how many chains
        :func:`stuck_chains` flags) and ``chains``.
    """
    n_div = divergences(idata)
    summ = az.summary(idata, var_names=population_variables(idata), kind="diagnostics")
    min_ess = float(min(summ["ess_bulk"].min(), summ["ess_tail"].min()))
    max_rhat = float(summ["r_hat"].max())
    stuck = len(stuck_chains(idata))
    return {
        "passed": bool(max_rhat <= RHAT_MAX and min_ess >= ESS_MIN and not n_div and not stuck),
        "max_rhat": round(max_rhat, 4),
        "min_ess": round(min_ess, 1),
        "divergences": n_div,
        "stuck": stuck,
        "chains": int(idata.posterior.sizes["chain"]),
    }


def better_run(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether the run of ``second``'s :func:`gate_numbers` is better than ``first``'s.

    In this order: passing the gate, no stuck chain, no divergence, then the smaller max R-hat
    (differences below 0.005 are noise at 4-16 chains), then the larger min ESS.

    Examples
    --------
    >>> a = {"passed": False, "stuck": 0, "divergences": 0, "max_rhat": 1.03, "min_ess": 450}
    >>> b = {"passed": True, "stuck": 0, "divergences": 0, "max_rhat": 1.01, "min_ess": 452}
    >>> better_run(a, b), better_run(b, a)
    (True, False)
    """

    def key(g: dict[str, Any]) -> tuple:
        return (
            g["passed"],
            not g["stuck"],
            not g["divergences"],
            -round(g["max_rhat"] / 0.005),
            g["min_ess"],
        )

    return key(second) > key(first)


def lengthened_text(record: dict[str, Any]) -> str:
    """Describe a longer run of chains too short for R-hat (``Diagnostics.lengthened``).

    Examples
    --------
    >>> g = {"max_rhat": 1.02, "min_ess": 635.0, "divergences": 0, "chains": 4}
    >>> lengthened_text({"factor": 3, "draws": 3000, "before": g})  # doctest: +NORMALIZE_WHITESPACE
    'the chains mixed too slowly for R-hat (max R-hat 1.020, min ESS 635, 0 divergences,
    4 chains): every chain was sampled again with 3x the draws (3000 per chain) and the longer
    run was kept'
    """
    g = record["before"]
    kept = "shorter" if record.get("kept") == "shorter" else "longer"
    return (
        f"the chains mixed too slowly for R-hat (max R-hat {g['max_rhat']:.3f}, min ESS "
        f"{g['min_ess']:.0f}, {g['divergences']} divergences, {g['chains']} chains): every "
        f"chain was sampled again with {record['factor']}x the draws ({record['draws']} per "
        f"chain) and the {kept} run was kept"
    )


def _gate_text(g: dict[str, Any]) -> str:
    """Write one run's gate numbers (:func:`gate_numbers`) as the CLI and report print them."""
    return (
        f"max R-hat {g['max_rhat']:.3f}, min ESS {g['min_ess']:.0f}, "
        f"{g['divergences']} divergences, {g['chains']} chains"
    )


def low_rank_retry_text(record: dict[str, Any]) -> str:
    """Describe a low-rank second try (``Diagnostics.low_rank_retry``) for the CLI and report.

    Examples
    --------
    >>> g = {"max_rhat": 1.03, "min_ess": 74.0, "divergences": 0, "chains": 4}
    >>> low_rank_retry_text({"diagonal": g, "low_rank": {**g, "max_rhat": 1.01,
    ...     "min_ess": 452.0}, "kept": "low_rank"})  # doctest: +NORMALIZE_WHITESPACE
    'the run with the diagonal mass matrix failed the gate (max R-hat 1.030, min ESS 74,
    0 divergences, 4 chains); all chains were sampled again with a low-rank mass matrix (max
    R-hat 1.010, min ESS 452, 0 divergences, 4 chains) and the low-rank run was kept'
    """
    kept = "low-rank" if record.get("kept") == "low_rank" else "diagonal"
    return (
        "the run with the diagonal mass matrix failed the gate "
        f"({_gate_text(record['diagonal'])}); "
        "all chains were sampled again with a low-rank mass matrix "
        f"({_gate_text(record['low_rank'])}) and the {kept} run was kept"
    )


def min_bfmi(idata: az.InferenceData) -> float:
    """Return the smallest E-BFMI over the chains (NaN without energy in ``sample_stats``)."""
    try:
        return float(np.min(az.bfmi(idata)))
    except Exception:  # energy missing
        return float("nan")


def residual_sd_funnel(idata: az.InferenceData) -> bool:
    """Whether a run shows the energy signature of a funnel: some chain's E-BFMI < ``BFMI_MIN``.

    On a sparse design (about as many samples per patient as parameters) a smaller residual
    SD tightens every patient at once, and NUTS's energy moves too slowly along it: E-BFMI
    0.20-0.29 with the residual SD the slowest quantity on the panel (``docs/benchmarks.md``,
    session 10). :func:`bayes_cart.inference.sampling.fit` then samples again with
    ``sampling.sigma_scaled`` (:mod:`bayes_cart.model.sigma_scaling`).
    """
    bfmi = min_bfmi(idata)
    return bool(np.isfinite(bfmi) and bfmi < BFMI_MIN)


def better_with_bfmi(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """:func:`better_run` with the E-BFMI check first (``min_bfmi`` in both dicts).

    Examples
    --------
    >>> a = {"passed": True, "stuck": 0, "divergences": 0, "max_rhat": 1.00, "min_ess": 700,
    ...      "min_bfmi": 0.21}
    >>> b = {**a, "min_ess": 500, "min_bfmi": 0.55}
    >>> better_with_bfmi(a, b), better_with_bfmi(b, a)
    (True, False)
    """

    def passed(g: dict[str, Any]) -> bool:
        return bool(g["passed"] and not g["min_bfmi"] < BFMI_MIN)

    if passed(first) != passed(second):
        return passed(second)
    return better_run(first, second)


def sigma_scaled_retry_text(record: dict[str, Any]) -> str:
    """Describe the second try in sigma-scaled coordinates (``Diagnostics.sigma_scaled_retry``).

    Examples
    --------
    >>> g = {"max_rhat": 1.02, "min_ess": 499.0, "divergences": 0, "chains": 4,
    ...      "min_bfmi": 0.2}
    >>> sigma_scaled_retry_text({"plain": g, "sigma_scaled": {**g, "max_rhat": 1.01,
    ...     "min_bfmi": 0.47}, "kept": "sigma_scaled"})  # doctest: +NORMALIZE_WHITESPACE
    'the first run had E-BFMI 0.20 (max R-hat 1.020, min ESS 499, 0 divergences, 4 chains):
    the funnel along the residual SD of a sparse design; the model was built again with
    per-patient coordinates that follow the residual SD (sampling.sigma_scaled, the same
    posterior) and sampled again (E-BFMI 0.47, max R-hat 1.010, min ESS 499, 0 divergences,
    4 chains); the sigma-scaled run was kept'
    """
    p, s = record["plain"], record["sigma_scaled"]
    kept = "sigma-scaled" if record.get("kept") == "sigma_scaled" else "first"
    return (
        f"the first run had E-BFMI {p['min_bfmi']:.2f} ({_gate_text(p)}): the funnel along the "
        "residual SD of a sparse design; the model was built again with per-patient "
        "coordinates that follow the residual SD (sampling.sigma_scaled, the same posterior) "
        f"and sampled again (E-BFMI {s['min_bfmi']:.2f}, {_gate_text(s)}); the {kept} run was kept"
    )


def needs_longer_chains(idata: az.InferenceData, max_factor: float = 4.0) -> int:
    """Return by how much longer chains must run for R-hat to reach the gate (0: not this).

    Split R-hat compares the means of half-chains: with ``n`` effective draws per half-chain
    it sits near ``1 + 1 / (2 n)`` even when every chain explores the same posterior, so a
    slowly mixing quantity fails ``RHAT_MAX`` = 1.01 below about 100 effective draws per chain
    however many chains are added (16 chains of 33 effective draws each gave R-hat 1.03 on the
    sparse panel dataset). When healthy chains (no divergence, none stuck) fail on R-hat with
    fewer than ``ESS_PER_CHAIN`` effective draws per chain (bulk, the worst population
    quantity), returns ``ceil(ESS_PER_CHAIN / per-chain ESS)``, the factor on the draws per
    chain; 0 when R-hat passes, the chains are already long enough (then they disagree: more
    draws will not help), the fit is unhealthy, or the factor exceeds ``max_factor``.

    Examples
    --------
    A fit whose chains mix with 40 effective draws each needs chains 4x as long:

    >>> import math
    >>> math.ceil(ESS_PER_CHAIN / 40)
    4
    """
    if divergences(idata) > 0:
        return 0
    if stuck_chains(idata):
        return 0
    summ = az.summary(idata, var_names=population_variables(idata), kind="diagnostics")
    if float(summ["r_hat"].max()) <= RHAT_MAX:
        return 0
    per_chain = float(summ["ess_bulk"].min()) / idata.posterior.sizes["chain"]
    if not np.isfinite(per_chain) or per_chain <= 0 or per_chain >= ESS_PER_CHAIN:
        return 0
    factor = int(np.ceil(ESS_PER_CHAIN / per_chain))
    return factor if factor <= max_factor else 0


def add_chains(idata: az.InferenceData, fresh: az.InferenceData) -> az.InferenceData:
    """Append the chains of ``fresh`` (same model and settings) to ``idata``, relabelled."""
    n = idata.posterior.sizes["chain"]
    groups = {}
    for group in idata.groups():
        ds = idata[group]
        if group in fresh.groups() and "chain" in ds.dims:
            new = fresh[group].assign_coords(chain=np.arange(n, n + fresh[group].sizes["chain"]))
            groups[group] = xr.concat([ds, new], dim="chain")
        else:
            groups[group] = ds
    return az.InferenceData(**groups)


def _treedepth(stats: Any) -> float:
    for name in ("reached_max_treedepth", "maxdepth_reached"):
        if name in stats:
            return float(np.asarray(stats[name]).mean())
    return 0.0


#: Eta-shrinkage above which a slowly mixing parameter's random effect is named in the advice.
ADVICE_SHRINKAGE = 0.5


def _parameter_of(name: str) -> str:
    """Return the kinetic parameter a population quantity is about (``omega_beta``: ``beta``)."""
    base = name.split("[", 1)[0]
    for prefix in ("omega_", "b_", "log_"):
        if base.startswith(prefix):
            return base[len(prefix) :]
    return base


def shrunk_effect_advice(idata: az.InferenceData, names: list[str]) -> list[str]:
    """Advice for slowly mixing quantities whose random effect the data barely inform.

    For each of ``names`` (the quantities with the worst R-hat and ESS) that is a typical
    value, IIV SD or covariate effect of a parameter whose eta-shrinkage
    (:func:`~bayes_cart.inference.shrinkage.eta_shrinkage`) is above
    :data:`ADVICE_SHRINKAGE`, one sentence: more draws help little there, fewer random
    effects or another design do.

    Examples
    --------
    >>> import xarray as xr
    >>> post = xr.Dataset({
    ...     "eta_FB": (("chain", "draw", "patient"), np.zeros((1, 20, 5)) + [0, 0, 0, 0, 0.1]),
    ...     "omega_FB": (("chain", "draw"), np.ones((1, 20)))})
    >>> (text,) = shrunk_effect_advice(az.InferenceData(posterior=post), ["omega_FB", "sigma"])
    >>> print(text.split(":")[0])
    omega_FB mixes slowly because the data say little about each patient's FB (eta-shrinkage 96%)
    """
    from bayes_cart.inference.shrinkage import eta_shrinkage

    table = eta_shrinkage(idata).set_index("parameter")["shrinkage"]
    out, seen = [], set()
    for name in names:
        p = _parameter_of(str(name))
        if p in seen or p not in table.index or not table[p] > ADVICE_SHRINKAGE:
            continue
        seen.add(p)
        out.append(
            f"{name} mixes slowly because the data say little about each patient's {p} "
            f"(eta-shrinkage {table[p]:.0%}): its random effects are explored mostly from their "
            "prior, and more draws help little. Remove the IIV of "
            f"{p} (parameters.{p}.iiv) if the design cannot inform it, or add samples in the "
            f"phase {p} describes."
        )
    return out


def check_fit(idata: az.InferenceData, warn: bool = True) -> Diagnostics:
    """Run the diagnostics gate on a fitted InferenceData.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior`` and ``sample_stats`` (and ``prior`` for the contraction check).
    warn : bool
        Emit a :class:`ConvergenceWarning` listing the advice when the gate fails.

    Returns
    -------
    Diagnostics
        The numbers and the advice.
    """
    names = population_variables(idata)
    summ = az.summary(idata, var_names=names, kind="diagnostics")
    max_rhat = float(summ["r_hat"].max())
    min_bulk = float(summ["ess_bulk"].min())
    min_tail = float(summ["ess_tail"].min())
    stats = idata.sample_stats
    div = divergences(idata)
    bfmi = min_bfmi(idata)
    depth = _treedepth(stats)
    stuck = stuck_chains(idata)

    weak: list[str] = []
    if "prior" in idata.groups():
        for name in names:
            if name in idata.prior and not name.startswith(("corr_", "u_")):
                prior_sd = float(np.log(np.abs(idata.prior[name]) + 1e-300).std())
                post_sd = float(np.log(np.abs(idata.posterior[name]) + 1e-300).std())
                if name.startswith("b_") or name.startswith("corr_"):
                    prior_sd = float(idata.prior[name].std())
                    post_sd = float(idata.posterior[name].std())
                if prior_sd > 0 and post_sd > (1 - CONTRACTION_MIN) * prior_sd:
                    weak.append(name)

    advice: list[str] = []
    # a single chain has no R-hat (all NaN): name no variable rather than fail
    worst = {
        key: (str(getattr(summ[key].dropna(), pick)()) if summ[key].notna().any() else "n/a")
        for key, pick in (("r_hat", "idxmax"), ("ess_bulk", "idxmin"), ("ess_tail", "idxmin"))
    }
    for chain in stuck:
        advice.append(
            f"chain {chain['chain']} is stuck ({chain['reason']}): it never reached the region "
            "the other chains sample, so R-hat and ESS are meaningless; refit with another "
            "--seed, or check the data of patients whose profile the model cannot follow."
        )
    if max_rhat > RHAT_MAX:
        advice.append(
            f"max R-hat {max_rhat:.3f} > {RHAT_MAX} ({worst['r_hat']}): chains disagree; "
            "run longer "
            "(--tune/--draws), check for multimodality, or simplify the model."
        )
    if min(min_bulk, min_tail) < ESS_MIN:
        advice.append(
            f"min ESS {min(min_bulk, min_tail):.0f} < {ESS_MIN:.0f} ({worst['ess_bulk']}): "
            "draw more samples (--draws) or reparameterise (sampling.parameterisation = 'cmax' "
            "if the spec still samples C0)."
        )
        few = dict(_few_level_group_sds(idata.posterior))
        if worst["ess_bulk"] in few:
            advice.append(
                f"{worst['ess_bulk']} is estimated from {few[worst['ess_bulk']]} groups and mixes "
                "slowly; more draws help, or enter the group as a fixed effect "
                "(--trial TRIAL:fixed)."
            )
    if max_rhat > RHAT_MAX or min(min_bulk, min_tail) < ESS_MIN:
        advice.extend(shrunk_effect_advice(idata, list(worst.values())))
    if div:
        advice.append(
            f"{div} divergent transition(s): the posterior has regions the sampler cannot explore; "
            "raise target_accept (e.g. 0.95), tighten weak priors or remove a random effect the "
            "data cannot inform."
        )
        few = _few_level_group_sds(idata.posterior)
        if few:
            advice.append(
                "group-level SDs estimated from few groups ("
                + ", ".join(f"{name}: {k} levels" for name, k in few)
                + ") form a funnel, the usual source of such divergences: enter the group as a "
                "fixed effect (--trial TRIAL:fixed) or leave it out."
            )
    if np.isfinite(bfmi) and bfmi < BFMI_MIN:
        advice.append(f"E-BFMI {bfmi:.2f} < {BFMI_MIN}: heavy tails in the energy; check omegas.")
    if depth > 0.01:
        advice.append(
            f"{100 * depth:.1f}% of draws hit the maximum tree depth: strong posterior "
            "correlations; reparameterise or raise max tree depth."
        )
    if weak:
        advice.append(
            "barely informed by the data (posterior close to prior): "
            + ", ".join(weak)
            + ". Report them as prior-driven or fix them."
        )
    passed = not any(
        [max_rhat > RHAT_MAX, min(min_bulk, min_tail) < ESS_MIN, div > 0, depth > 0.01, stuck]
    ) and not (np.isfinite(bfmi) and bfmi < BFMI_MIN)
    diag = Diagnostics(
        max_rhat=max_rhat,
        min_ess_bulk=min_bulk,
        min_ess_tail=min_tail,
        divergences=div,
        min_bfmi=bfmi,
        treedepth_saturation=depth,
        weakly_informed=weak,
        gradients_per_ess=gradients_per_ess(idata, min_bulk),
        stuck_chains=stuck,
        worst=worst,
        passed=passed,
        advice=advice,
    )
    if warn and not passed:
        warnings.warn(
            "the fit failed the diagnostics gate:\n  - " + "\n  - ".join(advice),
            ConvergenceWarning,
            stacklevel=2,
        )
    return diag
