"""Study specifications (``studies/*.toml``) validated into a frozen :class:`StudySpec`.

A study is a grid of **scenarios** (the data-generating truth and the design) by **methods**
(how each simulated dataset is analysed), repeated over **replicates**. Like a model spec, a
study spec is data only: nothing in it is executed, every problem is collected and reported at
once in one :class:`~bayes_cart.errors.SpecError`, each line naming the key at fault
(``scenarios.null.population.typical.beta: ...``).

Layout (see ``docs/studies.md``)::

    [study]                    name, seed, replicates, quantities, gate, timeout_s
    [defaults.population]      merged under every scenario's population (optional)
    [defaults.design]          merged under every scenario's design (optional)
    [scenarios.<name>]         population (PopulationParameters layout) + design, or
                               from_prior = true + model (+ covariates, sbc): SBC
    [methods.<name>]           kind = "bayes" | "two_stage" | a registered kind

Examples
--------
>>> study = load_study("tiny_two_stage")
>>> study.name, sorted(study.scenarios), sorted(study.methods)
('tiny_two_stage', ['effect', 'null'], ['bayes_m3', 'two_stage'])
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import bayes_cart as bc

__all__ = [
    "BLQ_HANDLING",
    "CovariateMix",
    "DesignSpec",
    "GateSpec",
    "MethodSpec",
    "SBC_DEGENERATE",
    "SbcSpec",
    "ScenarioSpec",
    "StudySpecError",
    "StudySpec",
    "list_studies",
    "load_study",
    "study_from_dict",
]

#: What a method does with samples below the LLOQ before fitting: M3 likelihood (the samples
#: kept as censored), dropped, or replaced by LLOQ/2 as if quantified.
BLQ_HANDLING = ("m3", "drop", "lloq_half")

#: What an SBC scenario does with a degenerate dataset (:class:`SbcSpec`): fit it like any
#: other (the default: SBC stays exact), or skip it (recorded with status ``"degenerate"``).
SBC_DEGENERATE = ("fit", "skip")


class StudySpecError(bc.SpecError):
    """A study specification is invalid (a :class:`bayes_cart.SpecError` about a study).

    Parameters
    ----------
    source : str
        The study file or name.
    problems : list of str
        Every problem found, each naming the key at fault.
    """

    def __init__(self, source: str, problems: list[str] | str):
        super().__init__(source, problems)
        lines = [f"study spec {source}: {len(self.problems)} problem(s) found"]
        lines += [f"  - {p}" for p in self.problems]
        self.args = ("\n".join(lines),)

    def __str__(self) -> str:
        return str(self.args[0])


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class GateSpec(_Frozen):
    """The per-fit convergence gate a study counts failures with.

    A fit passes when its largest R-hat is at most ``max_rhat``, its smallest bulk ESS at
    least ``min_ess_bulk`` and it has at most ``max_divergences`` divergent transitions, all
    over the population quantities (:func:`bayes_cart.inference.diagnostics.check_fit`). The
    package's own gate (which also looks at stuck chains, E-BFMI and tree depth) is recorded
    beside it.
    """

    max_rhat: float = Field(default=1.01, gt=1.0)
    min_ess_bulk: float = Field(default=400.0, ge=0)
    max_divergences: int = Field(default=0, ge=0)


class StudyTable(_Frozen):
    """The ``[study]`` table."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(ge=0)
    replicates: int = Field(ge=1)
    quantities: tuple[str, ...] = Field(min_length=1)
    gate: GateSpec = GateSpec()
    timeout_s: float | None = Field(default=None, gt=0)


class CovariateMix(_Frozen):
    """One patient covariate of a design.

    Categorical: ``levels`` with ``proportions`` (default equal), allocated within each trial
    by exact counts (largest remainder) in the order of the levels, so every replicate has the
    same mix; ``allocation = "random"`` draws each patient's level instead. Continuous:
    ``distribution`` ``normal`` (``mean``, ``sd``), ``lognormal`` (``median``, ``sd_log``) or
    ``uniform`` (``low``, ``high``), drawn per patient from the dataset's seed.
    """

    levels: tuple[str, ...] = ()
    proportions: tuple[float, ...] = ()
    allocation: Literal["balanced", "random"] = "balanced"
    distribution: Literal["normal", "lognormal", "uniform"] | None = None
    mean: float | None = None
    sd: float | None = Field(default=None, ge=0)
    median: float | None = Field(default=None, gt=0)
    sd_log: float | None = Field(default=None, ge=0)
    low: float | None = None
    high: float | None = None

    def problems(self) -> list[tuple[str, str]]:
        """Inconsistent fields, as ``(key, message)`` pairs."""
        out: list[tuple[str, str]] = []
        if bool(self.levels) == (self.distribution is not None):
            out.append(("", "give either levels (categorical) or distribution (continuous)"))
            return out
        if self.levels:
            if len(set(self.levels)) != len(self.levels):
                out.append(("levels", "levels repeat"))
            if self.proportions:
                if len(self.proportions) != len(self.levels):
                    out.append(("proportions", "needs one proportion per level"))
                elif any(p < 0 for p in self.proportions) or abs(sum(self.proportions) - 1) > 1e-6:
                    out.append(("proportions", "must be >= 0 and sum to 1"))
            return out
        needed = {
            "normal": ("mean", "sd"),
            "lognormal": ("median", "sd_log"),
            "uniform": ("low", "high"),
        }[self.distribution or "normal"]
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            out.append(("", f"distribution {self.distribution!r} needs {missing}"))
        if self.distribution == "uniform" and not missing and not self.low < self.high:
            out.append(("high", "must be above low"))
        return out


class DesignSpec(_Frozen):
    """How one replicate's patients are sampled (:func:`bayes_cart.simulate.make_design`).

    ``trials`` x ``patients_per_trial`` patients (a ``TRIAL`` column ``T1``, ``T2``... when
    there are several trials), each sampled at ``times`` (days) up to ``follow_up`` days,
    censored at ``lloq`` and not sampled after ``stop_after_consecutive_blq`` BLQ samples in a
    row.
    """

    trials: int = Field(default=1, ge=1)
    patients_per_trial: int = Field(ge=1)
    times: tuple[float, ...] = Field(min_length=1)
    follow_up: float | None = Field(default=None, gt=0)
    lloq: float | None = Field(default=None, gt=0)
    stop_after_consecutive_blq: int | None = Field(default=None, ge=1)
    covariates: dict[str, CovariateMix] = Field(default_factory=dict)

    @property
    def n_patients(self) -> int:
        """Patients per replicate."""
        return self.trials * self.patients_per_trial

    @property
    def sample_times(self) -> tuple[float, ...]:
        """The sampling days within the follow-up."""
        return tuple(sorted(t for t in self.times if self.follow_up is None or t <= self.follow_up))

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """Patient columns of the simulated data (``TRIAL`` first when there are trials)."""
        return (("TRIAL",) if self.trials > 1 else ()) + tuple(self.covariates)


class SbcSpec(_Frozen):
    """Settings of a simulation-based calibration scenario (``from_prior = true``).

    ``draws`` is ``L``: the rank of each truth is taken among ``L`` posterior draws thinned
    by the ESS (:func:`bayes_cart.analysis.sbc.thinned_draws`). A replicate's dataset is
    *degenerate* when any DV is not finite or fewer than ``min_informed`` of its patients have
    two or more quantified samples (e.g. a prior draw whose levels are all below the LLOQ);
    ``degenerate = "fit"`` fits it anyway and flags it (SBC stays exact: the prior is not
    truncated), ``"skip"`` records it unfitted with status ``"degenerate"`` (counted; it
    conditions the ranks on non-degenerate data, which biases SBC, see ``docs/studies.md``).
    """

    draws: int = Field(default=100, ge=1)
    degenerate: Literal["fit", "skip"] = "fit"
    min_informed: float = Field(default=0.5, ge=0, le=1)


#: Scenario keys of simulation-based calibration, left out of the hash when unused (so the
#: study directories made before SBC existed keep their hash).
_SBC_KEYS = ("from_prior", "covariates", "reference", "sbc")


class ScenarioSpec(_Frozen):
    """One data-generating scenario: the truth and the design.

    ``population`` is laid out as :meth:`bayes_cart.simulate.PopulationParameters.to_dict`
    and validated by it; ``model`` (optional) names the model spec whose kinetic structure the
    truth uses (``population.kinetics`` otherwise, default ``liu2021``).

    ``from_prior = true`` (simulation-based calibration): no ``population``; each replicate's
    truth is drawn from the priors of ``model`` (required) with the covariate formulas
    ``covariates`` and ``reference`` levels (categorical design covariates only), by
    :func:`bayes_cart.study.prior.draw_population`; ``sbc`` holds the rank settings.
    """

    description: str = ""
    model: str | None = None
    population: dict[str, Any] = Field(default_factory=dict)
    design: DesignSpec
    from_prior: bool = False
    covariates: dict[str, str] = Field(default_factory=dict)
    reference: dict[str, str] = Field(default_factory=dict)
    sbc: SbcSpec = SbcSpec()

    def population_parameters(self) -> Any:
        """Return the scenario's truth as :class:`bayes_cart.simulate.PopulationParameters`.

        Raises
        ------
        ValueError
            For a ``from_prior`` scenario, whose truth is drawn per replicate
            (:func:`bayes_cart.study.prior.draw_population`).
        """
        if self.from_prior:
            raise ValueError("a from_prior scenario has no fixed truth: it is drawn per replicate")
        raw = dict(self.population)
        if self.model is not None and "kinetics" not in raw:
            raw["kinetics"] = bc.load_spec(self.model).kinetics
        return bc.PopulationParameters.from_dict(raw)


class MethodSpec(_Frozen):
    """One analysis method (arm) of a study.

    ``kind = "bayes"``: the one-stage hierarchical fit of ``model`` with ``covariates``
    (``{parameter: "RESPONSE + ..."}``), ``reference`` levels and ``group`` overrides, sampled
    with ``chains``, ``tune``, ``draws``, ``target_accept`` (``sampler`` as in
    :func:`bayes_cart.fit`; ``cores`` chains at a time, default 1 so that parallel workers
    do not oversubscribe the machine). ``blq`` is one of :data:`BLQ_HANDLING`.

    ``kind = "two_stage"``: the paper's method. The same fit without covariates, each
    patient's posterior median of ``parameter`` (the empirical-Bayes estimate), then a
    Wilcoxon rank-sum (two groups) or Kruskal-Wallis test (more) of it between the groups of
    ``covariate`` at level ``alpha``.

    ``inference`` (both kinds): ``"nuts"`` (default), or an approximation passed to
    :func:`bayes_cart.fit` as ``method=`` (``"advi"``, ``"pathfinder"``, ``"laplace"``:
    :mod:`bayes_cart.inference.approximate`), which draws ``chains * draws`` from the
    approximation and ignores the NUTS settings (a ``sampler`` other than ``"auto"`` is
    refused). Such a fit has no R-hat or ESS: the study's gate counts it as failed when the
    approximation's own check failed (:func:`bayes_cart.study.task.gate_passed`).

    Other kinds are methods registered with :func:`bayes_cart.study.register_method`; their
    own settings go in ``options``.
    """

    kind: str = "bayes"
    description: str = ""
    model: str = "liu2021"
    covariates: dict[str, str] = Field(default_factory=dict)
    reference: dict[str, str] = Field(default_factory=dict)
    group: dict[str, Any] = Field(default_factory=dict)
    blq: Literal["m3", "drop", "lloq_half"] = "m3"
    sampler: str = "auto"
    chains: int = Field(default=4, ge=1)
    tune: int = Field(default=1000, ge=1)
    draws: int = Field(default=1000, ge=1)
    target_accept: float = Field(default=0.9, gt=0, lt=1)
    cores: int = Field(default=1, ge=1)
    retry: bool = True
    extend: bool = False
    parameter: str | None = None
    covariate: str | None = None
    test: Literal["auto", "wilcoxon", "kruskal"] = "auto"
    alpha: float = Field(default=0.05, gt=0, lt=1)
    inference: Literal["nuts", "advi", "pathfinder", "laplace"] = "nuts"
    options: dict[str, Any] = Field(default_factory=dict)


class _StudyDocument(_Frozen):
    study: StudyTable
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    scenarios: dict[str, ScenarioSpec] = Field(min_length=1)
    methods: dict[str, MethodSpec] = Field(min_length=1)


@dataclass(frozen=True)
class StudySpec:
    """A validated, immutable study specification.

    Attributes
    ----------
    doc : _StudyDocument
        The validated content.
    source : str
        Where it was read from.
    text : str
        The file's own text (copied into the study directory), or canonical JSON.
    """

    doc: _StudyDocument
    source: str
    text: str

    @property
    def name(self) -> str:
        """Study name."""
        return self.doc.study.name

    @property
    def seed(self) -> int:
        """Study seed: every dataset's and fit's seed derives from it."""
        return self.doc.study.seed

    @property
    def replicates(self) -> int:
        """Replicates per scenario."""
        return self.doc.study.replicates

    @property
    def quantities(self) -> tuple[str, ...]:
        """Quantities of interest, named as in :func:`bayes_cart.population_summary`."""
        return self.doc.study.quantities

    @property
    def gate(self) -> GateSpec:
        """The convergence gate failures are counted with."""
        return self.doc.study.gate

    @property
    def timeout_s(self) -> float | None:
        """Wall-clock limit of one task (Dask runner only), or None."""
        return self.doc.study.timeout_s

    @property
    def scenarios(self) -> dict[str, ScenarioSpec]:
        """Scenarios by name (defaults merged in)."""
        return dict(self.doc.scenarios)

    @property
    def methods(self) -> dict[str, MethodSpec]:
        """Methods by name."""
        return dict(self.doc.methods)

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical content except ``replicates``: the study directory's id.

        Raising the number of replicates keeps every existing task's data and seeds, so a study
        directory accepts it (the study is extended); any other change is a different study.
        """
        content = self.doc.model_dump(mode="json")
        content["study"].pop("replicates")
        for scenario in content["scenarios"].values():
            if not scenario["from_prior"]:
                for key in _SBC_KEYS:
                    scenario.pop(key)
        for method in content["methods"].values():  # keys added later, at their default,
            if method.get("inference") == "nuts":  # keep the hashes of existing studies
                method.pop("inference")
        text = json.dumps(content, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_replicates(self, replicates: int) -> StudySpec:
        """Return the study with another number of replicates (same hash)."""
        raw = self.doc.model_dump(mode="json")
        raw["study"]["replicates"] = replicates
        return study_from_dict(raw, source=self.source, text=self.text)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _with_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``[defaults.population]`` / ``[defaults.design]`` under every scenario."""
    raw = dict(raw)
    defaults = raw.get("defaults") or {}
    scenarios = raw.get("scenarios")
    if not isinstance(defaults, Mapping) or not isinstance(scenarios, Mapping):
        return raw
    merged = {}
    for name, scenario in scenarios.items():
        if not isinstance(scenario, Mapping):
            merged[name] = scenario
            continue
        s = dict(scenario)
        for table in ("population", "design"):
            if table == "population" and s.get("from_prior") is True:
                continue  # the truth is drawn from the priors: no population to merge into
            base = defaults.get(table)
            if isinstance(base, Mapping):
                over = s.get(table, {})
                s[table] = _deep_merge(base, over) if isinstance(over, Mapping) else over
        merged[name] = s
    raw["scenarios"] = merged
    return raw


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = _StudyDocument
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return None
        if part in fields:
            annotation = fields[part].annotation
            args = _typing_args(annotation)
            model = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None
            )
            if model is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
            if model is None:
                return None
        # a dict key (a scenario or method name): stay on the value model found above
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _typing_args(annotation: Any) -> tuple[Any, ...]:
    """Every type inside an annotation (``dict[str, X]`` -> ``(str, X)``, unions flattened)."""
    out: list[Any] = []
    for a in typing.get_args(annotation):
        out += [a, *_typing_args(a)]
    return tuple(out)


def _pydantic_problem(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(x) for x in loc) or "<root>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        if model is not None:
            allowed = sorted(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key{hint} (allowed here: {', '.join(allowed)})"
        else:
            msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required"
    return f"{key}: {msg}"


def _semantic_problems(doc: _StudyDocument) -> list[str]:
    """Check across tables: model specs, truths, covariates, quantities, method kinds."""
    from bayes_cart.study.methods import registered_methods
    from bayes_cart.study.truth import truth_values

    problems: list[str] = []
    specs: dict[str, Any] = {}

    def spec(name: str, key: str) -> Any:
        if name not in specs:
            try:
                specs[name] = bc.load_spec(name)
            except bc.SpecError as exc:
                problems.extend(f"{key}: {p}" for p in exc.problems)
                specs[name] = None
        return specs[name]

    truths: dict[str, dict[str, float]] = {}
    for sname, scenario in doc.scenarios.items():
        key = f"scenarios.{sname}"
        for cname, mix in scenario.design.covariates.items():
            problems += [
                f"{key}.design.covariates.{cname}{'.' + k if k else ''}: {m}"
                for k, m in mix.problems()
            ]
            if cname in ("ID", "TIME", "DV", "CENS", "TRIAL"):
                problems.append(f"{key}.design.covariates.{cname}: a reserved column name")
        if not scenario.design.sample_times:
            problems.append(f"{key}.design.follow_up: no sampling time within the follow-up")
        if any(t < 0 for t in scenario.design.times):
            problems.append(f"{key}.design.times: sampling days must be >= 0")
        if scenario.model is not None and spec(scenario.model, f"{key}.model") is None:
            continue
        if scenario.from_prior or scenario.covariates or scenario.reference:
            truth = _prior_scenario(scenario, key, specs, problems)
            if truth is not None:
                truths[sname] = truth
            continue
        if not scenario.population:
            problems.append(
                f"{key}.population: required (the true population values), or from_prior = true"
            )
            continue
        try:
            pop = scenario.population_parameters()
        except bc.SpecError as exc:
            problems.extend(f"{key}.population.{p}" for p in exc.problems)
            continue
        if scenario.model is not None and specs.get(scenario.model) is not None:
            if pop.kinetics != specs[scenario.model].kinetics:
                problems.append(
                    f"{key}.population.kinetics: {pop.kinetics!r} is not the kinetics of model "
                    f"{scenario.model!r} ({specs[scenario.model].kinetics!r})"
                )
        columns = set(scenario.design.covariate_names)
        for p, covs in pop.effects.items():
            for c in covs:
                if c not in columns:
                    problems.append(
                        f"{key}.population.effects.{p}.{c}: {c!r} is not a design covariate "
                        f"(design columns: {sorted(columns)})"
                    )
        for g in pop.group_effects:
            if g not in columns:
                problems.append(
                    f"{key}.population.group_effects.{g}: {g!r} is not a design column "
                    f"({sorted(columns)}; TRIAL exists when design.trials > 1)"
                )
        truths[sname] = truth_values(pop, scenario.design)

    kinds = registered_methods()
    for mname, method in doc.methods.items():
        key = f"methods.{mname}"
        if method.kind not in kinds:
            close = difflib.get_close_matches(method.kind, list(kinds), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"{key}.kind: unknown method kind {method.kind!r}{hint} ({list(kinds)})"
            )
            continue
        if method.inference != "nuts" and method.sampler != "auto":
            problems.append(
                f"{key}.sampler: {method.sampler!r} chooses a NUTS backend; inference = "
                f"{method.inference!r} has none (leave sampler out)"
            )
        if method.kind in ("bayes", "two_stage"):
            model = spec(method.model, f"{key}.model")
            if model is not None and (method.covariates or method.reference or method.group):
                if method.kind == "two_stage" and method.covariates:
                    problems.append(
                        f"{key}.covariates: the two-stage method fits without covariates "
                        "(name the tested column in covariate =)"
                    )
                else:
                    try:
                        model.with_overrides(
                            covariates=method.covariates or None,
                            reference=method.reference or None,
                            group=method.group or None,
                        )
                    except bc.SpecError as exc:
                        problems.extend(f"{key}: {p}" for p in exc.problems)
            used = set()
            for rhs in method.covariates.values():
                variables, _ = bc.formula_variables(rhs)
                used |= set(variables)
            for sname, scenario in doc.scenarios.items():
                absent = sorted(used - set(scenario.design.covariate_names))
                if absent:
                    problems.append(
                        f"{key}.covariates: {absent} not simulated in scenario {sname!r} "
                        f"(its columns: {list(scenario.design.covariate_names)})"
                    )
        if method.kind == "two_stage":
            if method.parameter is None:
                problems.append(f"{key}.parameter: required (the individual parameter tested)")
            elif specs.get(method.model) is not None:
                if method.parameter not in specs[method.model].estimated_parameters:
                    problems.append(
                        f"{key}.parameter: {method.parameter!r} is not estimated by "
                        f"{method.model!r} ({list(specs[method.model].estimated_parameters)})"
                    )
            if method.covariate is None:
                problems.append(f"{key}.covariate: required (the grouping column tested)")
            else:
                for sname, scenario in doc.scenarios.items():
                    mix = scenario.design.covariates.get(method.covariate)
                    if mix is None or not mix.levels:
                        problems.append(
                            f"{key}.covariate: {method.covariate!r} is not a categorical design "
                            f"covariate of scenario {sname!r}"
                        )
                    elif len(mix.levels) < 2:
                        problems.append(f"{key}.covariate: {method.covariate!r} has one level")

    for q in doc.study.quantities:
        absent = [s for s, t in truths.items() if q not in t]
        if absent:
            known = sorted(set().union(*(set(t) for t in truths.values())))
            close = difflib.get_close_matches(q, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"study.quantities: {q!r} has no true value in scenario(s) {absent}{hint} "
                f"(known: {known})"
            )
    return problems


def _prior_scenario(
    scenario: ScenarioSpec, key: str, specs: dict[str, Any], problems: list[str]
) -> dict[str, float] | None:
    """Check a ``from_prior`` scenario; return its truth's quantity names (placeholder values)."""
    from bayes_cart.study.prior import placeholder_truth, prior_problems

    if not scenario.from_prior:
        for k in ("covariates", "reference"):
            if getattr(scenario, k):
                problems.append(
                    f"{key}.{k}: only with from_prior = true (the covariate formulas of the "
                    "prior the truth is drawn from); give population.effects instead"
                )
        return None
    found = False
    if scenario.population:
        problems.append(
            f"{key}.population: not allowed with from_prior = true (the truth is drawn from "
            f"the priors of model {scenario.model!r}; remove population, or from_prior)"
        )
        found = True
    if scenario.model is None:
        problems.append(
            f"{key}.model: required with from_prior = true (the model spec whose priors the "
            "truth is drawn from)"
        )
        return None
    model = specs.get(scenario.model)
    if model is None:
        return None
    if scenario.covariates or scenario.reference:
        try:
            model = model.with_overrides(
                covariates=scenario.covariates or None, reference=scenario.reference or None
            )
        except bc.SpecError as exc:
            problems.extend(f"{key}: {p}" for p in exc.problems)
            return None
    found_here = [f"{key}.{k}: {m}" for k, m in prior_problems(model, scenario)]
    problems.extend(found_here)
    if found or found_here:
        return None
    return placeholder_truth(model, scenario.design)


def study_from_dict(
    raw: Mapping[str, Any], source: str = "<dict>", text: str | None = None
) -> StudySpec:
    """Validate a study given as a mapping (the parsed TOML).

    Raises
    ------
    StudySpecError
        Listing every problem, each with the key at fault.
    """
    merged = _with_defaults(raw)
    try:
        doc = _StudyDocument.model_validate(merged)
    except ValidationError as exc:
        raise StudySpecError(source, [_pydantic_problem(e) for e in exc.errors()]) from None
    problems = _semantic_problems(doc)
    if problems:
        raise StudySpecError(source, problems)
    if text is None:
        text = json.dumps(doc.model_dump(mode="json"), sort_keys=True, indent=1)
    return StudySpec(doc=doc, source=source, text=text)


def _shipped_folder() -> Any:
    """Return the folder of the shipped study specs (the installed ``bayes_cart.studies``).

    In a source tree whose install predates ``studies/`` (an editable install of another
    checkout), the package is not importable: the tree's own ``studies/`` folder is used.
    """
    try:
        return resources.files("bayes_cart.studies")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "studies"


def list_studies() -> list[str]:
    """Names of the studies that ship with bayes_cart (``studies/*.toml``)."""
    folder = _shipped_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_study(name_or_path: str | Path) -> StudySpec:
    """Load a study spec by shipped name (``"tiny_two_stage"``) or from a TOML file.

    Raises
    ------
    StudySpecError
        If the file cannot be read or the content is invalid (all problems at once).
    """
    path = Path(name_or_path)
    if path.is_dir():
        raise StudySpecError(str(path), "is a folder, not a study TOML file")
    if path.is_file():
        if path.suffix != ".toml":
            raise StudySpecError(str(path), f"a study file must end in .toml (got {path.suffix!r})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StudySpecError(str(path), f"cannot be read ({exc})") from None
        source = str(path)
    else:
        name = str(name_or_path)
        if name not in list_studies():
            raise StudySpecError(
                name, f"no shipped study named {name!r} and no such file; shipped: {list_studies()}"
            )
        text = _shipped_folder().joinpath(f"{name}.toml").read_text(encoding="utf-8")
        source = f"studies/{name}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudySpecError(source, f"not valid TOML: {exc}") from None
    return study_from_dict(raw, source=source, text=text)
