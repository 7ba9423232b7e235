"""Declarative model specifications (``models/*.toml``) validated into a frozen :class:`ModelSpec`.

A spec is a metadata card *and* the full statistical model: the kinetic structure (by registry
name), the parameters with their priors in biological units, which parameters carry
inter-individual variability (IIV) and whether their random effects are correlated, covariate
formulas per parameter with reference levels, a grouping level (trial), the residual error
model and the censoring method. Nothing in a spec is executed: formulas are checked against a
whitelist before formulaic sees them, and subset expressions are parsed with :mod:`ast` into a
tiny comparison language (both in :mod:`bayes_cart.model.expressions`).

Every problem in a spec is collected and reported at once in one :class:`SpecError`, each line
naming the key at fault.

Examples
--------
>>> spec = load_spec("liu2021")
>>> spec.kinetics, spec.estimated_parameters
('liu2021', ('C0', 'beta', 'T1', 'alpha', 'rM', 'deltaM'))
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bayes_cart.errors import SpecError
from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.expressions import formula_variables, parse_subset_expression

PriorName = Literal[
    "LogNormal", "LogitNormal", "Normal", "HalfNormal", "HalfStudentT", "Exponential", "Uniform"
]

#: Ways to set a parameter from the data instead of estimating it (the paper's approach).
FROM_DATA = ("first_sample", "peak_time", "nadir_time")


#: Priors whose support is positive: the ones an SD (IIV omega, trial SD, residual sigma) or
#: Student-t's nu may take (a ``Uniform`` needs ``lower >= 0`` besides).
POSITIVE_PRIORS = ("HalfNormal", "HalfStudentT", "Exponential", "LogNormal", "Uniform")

#: Priors an IIV SD may take. ``LogNormal`` is zero-avoiding: it keeps omega away from the
#: neck of the funnel where a barely informed IIV otherwise diverges (``docs/model.md``).
IIV_PRIORS = ("HalfNormal", "HalfStudentT", "Exponential", "LogNormal")


def iiv_prior_scale(prior: PriorSpec | None) -> float:
    """Return the typical size of an IIV SD under its prior (0 without IIV).

    ``sigma`` of a half-normal or half-Student-t, ``1 / lam`` of an exponential, the median of
    a log-normal: the spread the starting estimates allow around the typical value.

    Examples
    --------
    >>> iiv_prior_scale(PriorSpec(dist="LogNormal", median=0.6, sigma=0.5))
    0.6
    >>> iiv_prior_scale(PriorSpec(dist="Exponential", lam=2.0)), iiv_prior_scale(None)
    (0.5, 0.0)
    """
    if prior is None:
        return 0.0
    if prior.dist == "LogNormal":
        return float(prior.median)
    if prior.dist == "Exponential":
        return 1.0 / float(prior.lam)
    return float(prior.sigma) if prior.sigma is not None else 0.0


class _Frozen(BaseModel):
    # inf and nan are refused everywhere (TOML has both literals): "Input should be a finite
    # number" with the key
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PriorSpec(_Frozen):
    """A prior distribution, named and parameterised in plain terms.

    ``LogNormal`` takes ``median`` (natural scale) and ``sigma`` (log scale); ``LogitNormal``
    (a fraction in (0, 1), see :mod:`bayes_cart.model.scales`) ``median`` (natural scale) and
    ``sigma`` (logit scale); ``Normal`` takes
    ``mu`` and ``sigma``; ``HalfNormal`` ``sigma``; ``HalfStudentT`` ``nu`` and ``sigma``;
    ``Exponential`` ``lam``; ``Uniform`` ``lower`` and ``upper``.

    Checked on construction: exactly the arguments of ``dist``, every number finite,
    ``sigma``, ``nu``, ``lam`` > 0, a ``LogNormal`` median > 0, a ``LogitNormal`` median in
    (0, 1), ``Uniform`` ``lower < upper``. Where the prior sits decides its support:
    :data:`IIVPrior` for an IIV SD, :data:`PositivePrior` for the other SDs and ``nu``.

    Examples
    --------
    >>> PriorSpec(dist="Uniform", lower=1.0, upper=0.5)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for PriorSpec
    ...
    """

    dist: PriorName
    median: float | None = None
    mu: float | None = None
    sigma: float | None = Field(default=None, gt=0)
    nu: float | None = Field(default=None, gt=0)
    lam: float | None = Field(default=None, gt=0)
    lower: float | None = None
    upper: float | None = None

    def required(self) -> tuple[str, ...]:
        """Names of the arguments this distribution needs."""
        return {
            "LogNormal": ("median", "sigma"),
            "LogitNormal": ("median", "sigma"),
            "Normal": ("mu", "sigma"),
            "HalfNormal": ("sigma",),
            "HalfStudentT": ("nu", "sigma"),
            "Exponential": ("lam",),
            "Uniform": ("lower", "upper"),
        }[self.dist]

    def describe(self) -> str:
        """Human-readable form, e.g. ``LogNormal(median=0.4, sigma=1)``."""
        args = ", ".join(f"{k}={getattr(self, k):g}" for k in self.required())
        return f"{self.dist}({args})"

    @model_validator(mode="after")
    def _check_arguments(self) -> PriorSpec:
        """Refuse a prior that cannot be built: arguments missing, unused or impossible.

        Runs inside pydantic, so these problems are listed together with every other
        problem of the spec (a wrong key elsewhere does not hide them).
        """
        problems = []
        needed = self.required()
        missing = [a for a in needed if getattr(self, a) is None]
        if missing:
            problems.append(f"{self.dist} needs {missing}")
        names = ("median", "mu", "sigma", "nu", "lam", "lower", "upper")
        unused = [a for a in names if a not in needed and getattr(self, a) is not None]
        if unused:
            problems.append(f"{self.dist} takes {list(needed)}, not {unused}")
        if self.dist == "LogNormal" and self.median is not None and not self.median > 0:
            problems.append(f"a LogNormal median must be positive (got {self.median:g})")
        if self.dist == "LogitNormal" and self.median is not None and not 0 < self.median < 1:
            problems.append(f"a LogitNormal median is a fraction in (0, 1) (got {self.median:g})")
        if self.dist == "Uniform" and None not in (self.lower, self.upper):
            if not self.lower < self.upper:
                problems.append(
                    f"Uniform needs lower < upper (got lower={self.lower:g}, upper={self.upper:g})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _positive_support(prior: PriorSpec | None) -> PriorSpec | None:
    """Refuse a prior that can be negative where a standard deviation (or nu) is sampled."""
    if prior is None:
        return None
    if prior.dist not in POSITIVE_PRIORS:
        raise ValueError(
            f"an SD needs a prior on (0, inf): one of {list(POSITIVE_PRIORS[:4])} or Uniform "
            f"with lower >= 0, not {prior.dist}"
            + (" (it can be negative)" if prior.dist == "Normal" else "")
        )
    if prior.dist == "Uniform" and prior.lower is not None and prior.lower < 0:
        raise ValueError(
            f"an SD is positive; a Uniform prior needs lower >= 0 (got {prior.lower:g})"
        )
    return prior


def _iiv_support(prior: PriorSpec | None) -> PriorSpec | None:
    """Refuse an IIV prior that is not one of :data:`IIV_PRIORS`."""
    if prior is not None and prior.dist not in IIV_PRIORS:
        raise ValueError(
            f"an IIV SD (omega) needs a positive prior: one of {list(IIV_PRIORS)}, not {prior.dist}"
        )
    return prior


#: A prior on a standard deviation (or Student-t's nu): support on the positive half-line.
PositivePrior = Annotated[PriorSpec, AfterValidator(_positive_support)]
#: The prior of an IIV SD (omega).
IIVPrior = Annotated[PriorSpec, AfterValidator(_iiv_support)]


class ParameterSpec(_Frozen):
    """One kinetic parameter.

    Exactly one of ``typical`` (estimated typical value with this prior), ``fixed`` (a constant)
    or ``from_data`` (set per patient from the observed profile, as Liu et al. did) is given.
    """

    description: str = ""
    unit: str = ""
    typical: PriorSpec | None = None
    iiv: IIVPrior | None = None
    fixed: float | None = None
    from_data: str | None = None
    distribution_phase_only: bool = False

    @field_validator("from_data")
    @classmethod
    def _check_from_data(cls, v: str | None) -> str | None:
        if v is not None and v not in FROM_DATA:
            raise ValueError(f"must be one of {list(FROM_DATA)}")
        return v

    @field_validator("fixed")
    @classmethod
    def _check_fixed(cls, v: float | None) -> float | None:
        # every kinetic parameter is a level, a rate, a time or a fraction: never negative
        if v is not None and v < 0:
            raise ValueError(
                f"a fixed value must be >= 0 (levels, rates and times are not negative; got {v:g})"
            )
        return v


class IIVSpec(_Frozen):
    """Correlation of random effects: blocks of parameters with an LKJ prior on each block."""

    blocks: tuple[tuple[str, ...], ...] = ()
    lkj_eta: float = Field(default=2.0, gt=0)


class CovariateSpec(_Frozen):
    """Covariate formulas (right-hand sides) per parameter and the categorical reference levels.

    ``missing`` says what a missing categorical value is: ``"level"`` (default) codes it as
    its own level ``unknown``; ``"marginalize"`` sums the patient's density over the observed
    levels with an estimated prevalence (:mod:`bayes_cart.model.marginal`). Missing continuous
    values get the median either way.
    """

    formulas: dict[str, str] = Field(default_factory=dict)
    reference: dict[str, str] = Field(default_factory=dict)
    prior: PriorSpec = PriorSpec(dist="Normal", mu=0.0, sigma=0.5)
    missing: Literal["level", "marginalize"] = "level"


class GroupSpec(_Frozen):
    """A second level of variability (patients within trials)."""

    column: str | None = None
    mode: Literal["random", "fixed", "none"] = "none"
    parameters: tuple[str, ...] = ()
    prior: PositivePrior = PriorSpec(dist="HalfNormal", sigma=0.3)


class ErrorSpec(_Frozen):
    """Residual error model on the log scale."""

    model: Literal["proportional", "combined", "student_t"] = "proportional"
    sigma: PositivePrior = PriorSpec(dist="HalfNormal", sigma=1.0)
    additive: PositivePrior | None = None
    nu: PositivePrior | None = None


class DistributionPhaseSpec(_Frozen):
    """Which patients have a distribution phase (k, T0): an expression on patient covariates."""

    enabled_if: str | None = None


class CensoringSpec(_Frozen):
    """How censored samples enter the likelihood."""

    method: Literal["M3", "drop"] = "M3"


class SamplingSpec(_Frozen):
    """Parameterisation choices that change sampling speed but not the model."""

    parameterisation: Literal["c0", "cmax", "fold"] = "c0"
    centered: tuple[str, ...] = ()
    centering: Literal["all", "informed", "partial", "partial_dynamic"] = "all"
    center_covariates: bool = False
    centered_group: bool | Literal["mean"] = False
    sigma_scaled: bool = False


class DataSpec(_Frozen):
    """How to read the data file a spec is fitted to: column roles and the unit of TIME.

    ``columns`` maps a role (``ID``, ``TIME``, ``DV``, ... of
    :data:`bayes_cart.data.column_roles.ROLE_NAMES`) to a header of the file, or ``IGNORE``,
    ``COVARIATE``, ``CAT``, ``CONT`` to a list of headers, exactly like
    ``load_dataset(columns=...)`` and ``--columns ROLE=NAME``. ``time_unit`` is the unit of
    TIME in the file (``day``, ``hour``, ``week``, ``month``); None leaves it to the caller
    (``day`` by default). Used when the data are loaded with the spec
    (``load_dataset(path, spec=spec)``, ``bayes-cart fit --model``); ``--columns`` and
    ``--time-unit`` take precedence (:func:`bayes_cart.data.column_roles.merge_declarations`).

    Checked on construction: every role known, a single-column role given one name, no column
    given two roles (all problems at once, each with its key). That the columns exist is
    checked against the file when it is loaded.

    Examples
    --------
    >>> DataSpec(columns={"DV": "CONC", "ignore": ["NOTE"]}).declaration()
    {'DV': 'CONC', 'IGNORE': ('NOTE',)}
    """

    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    time_unit: str | None = None

    @model_validator(mode="after")
    def _check_columns(self) -> DataSpec:
        from bayes_cart.data.column_roles import declaration_problems
        from bayes_cart.units import to_days

        problems = [
            (f"columns.{role}", message) for role, message in declaration_problems(self.columns)
        ]
        if self.time_unit is not None:
            try:
                to_days(self.time_unit)
            except ValueError as exc:
                problems.append(("time_unit", str(exc)))
        if problems:
            raise KeyedProblems(problems)
        return self

    def declaration(self) -> dict[str, str | tuple[str, ...]]:
        """Return the column declaration (upper-case roles; tuples for the list roles)."""
        from bayes_cart.data.column_roles import normalise_columns

        return normalise_columns(self.columns)


class KeyedProblems(ValueError):
    """Several problems of one table, each under its own key (expanded by ``spec_from_dict``).

    Parameters
    ----------
    problems : list of (str, str)
        ``(key inside the table, message)`` pairs.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = problems


class _SpecDocument(_Frozen):
    name: str
    description: str
    reference: str = ""
    kinetics: str
    time_unit: str = "day"
    dv_unit: str = ""
    parameters: dict[str, ParameterSpec]
    iiv: IIVSpec = IIVSpec()
    covariates: CovariateSpec = CovariateSpec()
    group: GroupSpec = GroupSpec()
    error: ErrorSpec = ErrorSpec()
    distribution_phase: DistributionPhaseSpec = DistributionPhaseSpec()
    censoring: CensoringSpec = CensoringSpec()
    sampling: SamplingSpec = SamplingSpec()
    data: DataSpec = DataSpec()
    notes: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A validated, immutable model specification.

    Attributes
    ----------
    doc : _SpecDocument
        The validated content.
    source : str
        Where it was read from.
    text : str
        Canonical JSON of the content (saved inside fits).
    """

    doc: _SpecDocument
    source: str
    text: str

    @property
    def name(self) -> str:
        """Spec name."""
        return self.doc.name

    @property
    def kinetics(self) -> str:
        """Registry name of the kinetic structure."""
        return self.doc.kinetics

    @property
    def parameters(self) -> dict[str, ParameterSpec]:
        """Parameter specs by name."""
        return dict(self.doc.parameters)

    @property
    def estimated_parameters(self) -> tuple[str, ...]:
        """Parameters with an estimated typical value, in spec order (excluding k/T0)."""
        return tuple(
            n
            for n, p in self.doc.parameters.items()
            if p.typical is not None and not p.distribution_phase_only
        )

    @property
    def distribution_parameters(self) -> tuple[str, ...]:
        """Parameters that only apply to patients with a distribution phase."""
        return tuple(n for n, p in self.doc.parameters.items() if p.distribution_phase_only)

    @property
    def iiv_parameters(self) -> tuple[str, ...]:
        """Parameters that carry IIV."""
        return tuple(n for n, p in self.doc.parameters.items() if p.iiv is not None)

    @property
    def data(self) -> DataSpec:
        """How to read the data file (the ``[data]`` table: column roles, unit of TIME)."""
        return self.doc.data

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical content: the model id stored in saved fits."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def with_overrides(
        self,
        covariates: Mapping[str, str] | None = None,
        reference: Mapping[str, str] | None = None,
        group: Mapping[str, Any] | None = None,
    ) -> ModelSpec:
        """Return a new spec with covariate formulas / reference levels / group replaced.

        Parameters
        ----------
        covariates : mapping, optional
            ``{parameter: "RESPONSE + TUMOR_TYPE"}``; replaces that parameter's formula.
        reference : mapping, optional
            ``{column: level}`` reference levels.
        group : mapping, optional
            Fields of the ``[group]`` table to replace.

        Returns
        -------
        ModelSpec
            Validated again, so a bad override gives a SpecError naming the key.
        """
        cov = json.loads(self.text).get("covariates", {})
        changes: dict[str, Any] = {}
        if covariates:
            changes["formulas"] = {**cov.get("formulas", {}), **dict(covariates)}
        if reference:
            changes["reference"] = {**cov.get("reference", {}), **dict(reference)}
        return self.replace(
            source=f"{self.source} (with overrides)",
            covariates=changes or None,
            group=dict(group) if group else None,
        )

    def replace(self, *, source: str | None = None, **tables: Any) -> ModelSpec:
        """Return a new spec with some top-level tables or fields changed, validated again.

        The one way to edit a spec from Python (instead of a round trip through its JSON).
        Each keyword names a top-level table of the spec (``parameters``, ``error``,
        ``sampling``, ``covariates``, ``group``, ``distribution_phase``, ``data``...) or field
        (``name``, ``kinetics``). A mapping is merged into the table one level deep (its keys
        replace the table's keys, so ``parameters={"rE": {...}}`` adds or replaces one
        parameter and keeps the others); any other value replaces the field; None leaves it
        as it is.

        Parameters
        ----------
        source : str, optional
            Where the new spec comes from, for its messages (default: this spec's source).
        **tables
            ``table=mapping`` or ``field=value``.

        Returns
        -------
        ModelSpec
            Validated again: an unknown key or a bad value is a SpecError naming it.

        Examples
        --------
        >>> spec = load_spec("liu2021").replace(sampling={"parameterisation": "c0"})
        >>> spec.doc.sampling.parameterisation, load_spec("liu2021").doc.sampling.parameterisation
        ('c0', 'cmax')
        """
        raw = json.loads(self.text)
        for key, value in tables.items():
            if value is None:
                continue
            if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
                raw[key] = {**raw[key], **dict(value)}
            else:
                raw[key] = dict(value) if isinstance(value, Mapping) else value
        return spec_from_dict(raw, source=self.source if source is None else source)


def parse_covariate_option(text: str) -> tuple[str, str]:
    """Parse ``"beta ~ RESPONSE + TUMOR_TYPE"`` into ``("beta", "RESPONSE + TUMOR_TYPE")``.

    Examples
    --------
    >>> parse_covariate_option("alpha ~ RESPONSE")
    ('alpha', 'RESPONSE')
    """
    if "~" not in text:
        raise SpecError("--covariates", f"{text!r}: expected 'parameter ~ terms'")
    lhs, rhs = text.split("~", 1)
    return lhs.strip(), rhs.strip()


def _semantic_problems(doc: _SpecDocument) -> list[str]:
    problems: list[str] = []
    try:
        kin = get_kinetics(doc.kinetics)
    except KeyError as exc:
        return [f"kinetics: {exc.args[0]}"]
    for name, p in doc.parameters.items():
        key = f"parameters.{name}"
        if name not in kin.parameters:
            problems.append(
                f"{key}: {doc.kinetics!r} has no parameter {name!r}; it has {list(kin.parameters)}"
            )
        given = [x for x in ("typical", "fixed", "from_data") if getattr(p, x) is not None]
        if len(given) != 1:
            problems.append(
                f"{key}: give exactly one of typical, fixed, from_data (got {given or 'none'})"
            )
        if p.iiv is not None and p.typical is None:
            problems.append(f"{key}.iiv: IIV needs an estimated typical value")
        # the arguments of each prior and the support of an IIV prior are checked by pydantic
        # (PriorSpec._check_arguments, IIVPrior), finite numbers everywhere too
        if p.typical is not None and p.typical.dist not in ("LogNormal", "LogitNormal"):
            problems.append(
                f"{key}.typical: typical values are positive; use LogNormal "
                "(or LogitNormal for a fraction in (0, 1))"
            )
        if p.typical is not None and p.typical.dist == "LogitNormal":
            if p.distribution_phase_only:
                problems.append(f"{key}.typical: k and T0 are rates; use LogNormal")
            if name in ("C0", "beta", "T1") and doc.sampling.parameterisation != "c0":
                problems.append(
                    f"{key}.typical: the '{doc.sampling.parameterisation}' coordinates need "
                    f"{name} log-normal; use LogNormal or sampling.parameterisation = 'c0'"
                )
        if p.distribution_phase_only and name not in ("k", "T0"):
            problems.append(f"{key}.distribution_phase_only: only k and T0 belong to that phase")
    required = set(kin.parameters) - set(kin.defaults)
    for name in sorted(required - set(doc.parameters)):
        problems.append(f"parameters.{name}: {doc.kinetics!r} needs this parameter")
    iiv_names = {n for n, p in doc.parameters.items() if p.iiv is not None}
    seen: set[str] = set()
    for i, block in enumerate(doc.iiv.blocks):
        if len(block) < 2:
            problems.append(f"iiv.blocks[{i}]: a correlation block needs at least two parameters")
        for n in block:
            if n not in iiv_names:
                problems.append(f"iiv.blocks[{i}]: {n!r} has no IIV (add parameters.{n}.iiv)")
            elif doc.parameters[n].iiv.dist != "HalfNormal":
                problems.append(
                    f"parameters.{n}.iiv: a parameter in a correlation block (iiv.blocks[{i}]) "
                    f"needs a HalfNormal IIV prior (the LKJ's SD prior), not "
                    f"{doc.parameters[n].iiv.dist}"
                )
            if n in seen:
                problems.append(f"iiv.blocks[{i}]: {n!r} appears in more than one block")
            seen.add(n)
    for name, rhs in doc.covariates.formulas.items():
        key = f"covariates.formulas.{name}"
        if name not in doc.parameters or doc.parameters[name].typical is None:
            problems.append(f"{key}: {name!r} is not an estimated parameter of this spec")
        _, fproblems = formula_variables(rhs)
        problems += [f"{key}: {fp}" for fp in fproblems]
    for name in doc.group.parameters:
        if name not in doc.parameters or doc.parameters[name].typical is None:
            problems.append(f"group.parameters: {name!r} is not an estimated parameter")
    if doc.group.mode != "none" and not doc.group.column:
        problems.append("group.column: needed when group.mode is not 'none'")
    if doc.distribution_phase.enabled_if:
        try:
            parse_subset_expression(doc.distribution_phase.enabled_if)
        except ValueError as exc:
            problems.append(f"distribution_phase.enabled_if: {exc}")
        for n in ("k", "T0"):
            if n not in doc.parameters:
                problems.append(f"parameters.{n}: needed when distribution_phase.enabled_if is set")
    if doc.error.model == "combined" and doc.error.additive is None:
        problems.append(
            "error.additive: the combined error model needs a prior for the additive SD"
        )
    if doc.error.model == "student_t" and doc.error.nu is None:
        problems.append("error.nu: the student_t error model needs a prior for nu")
    for name in doc.sampling.centered:
        if name not in iiv_names:
            problems.append(f"sampling.centered: {name!r} has no IIV to centre")
    for i, block in enumerate(doc.iiv.blocks):
        inside = [b in doc.sampling.centered for b in block]
        if any(inside) and not all(inside):
            problems.append(
                f"sampling.centered: block iiv.blocks[{i}] {list(block)} must be centred as a whole"
            )
    if doc.sampling.parameterisation == "fold":
        for n in ("beta", "T1"):
            p = doc.parameters.get(n)
            if p is None or p.typical is None or p.iiv is None:
                problems.append(
                    f"sampling.parameterisation: 'fold' needs {n} estimated with IIV "
                    "(it samples log(beta T1) and log T1 per patient)"
                )
            if n not in doc.sampling.centered:
                problems.append(f"sampling.parameterisation: 'fold' needs {n} in sampling.centered")
        for block in doc.iiv.blocks:
            if ("beta" in block) != ("T1" in block):
                problems.append(
                    "sampling.parameterisation: 'fold' needs beta and T1 in the same iiv block "
                    f"or in none (block {block})"
                )
    if doc.sampling.parameterisation in ("cmax", "fold"):
        c0 = doc.parameters.get("C0")
        if c0 is not None and c0.iiv is None:
            problems.append(
                f"sampling.parameterisation: '{doc.sampling.parameterisation}' needs IIV on C0 "
                "(parameters.C0.iiv)"
            )
        if any("C0" in block for block in doc.iiv.blocks):
            problems.append(
                "sampling.parameterisation: 'cmax' samples C0's random effect as the peak; "
                "C0 cannot also be in an iiv block"
            )
        # beta and T1 may be estimated, fixed or set from data: the shift from log C0 to the
        # log peak is computed from whatever they are
        c0 = doc.parameters.get("C0")
        if c0 is not None and c0.typical is None:
            problems.append("sampling.parameterisation: 'cmax' needs an estimated C0")
    return problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the pydantic model of the table that holds the key at ``loc`` (None if unknown)."""
    model: Any = _SpecDocument
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]  # a dict's values (parameters.<name>)
        else:
            return None
        while typing.get_origin(model) in (typing.Union, typing.Annotated, types.UnionType):
            model = next(a for a in typing.get_args(model) if a is not type(None))
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _pydantic_problems(err: Mapping[str, Any]) -> list[str]:
    """Return the problem lines of a pydantic error (several for :class:`KeyedProblems`)."""
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, KeyedProblems):
        key = ".".join(str(x) for x in err["loc"])
        return [
            f"{key}.{sub}: {message}" if key else f"{sub}: {message}"
            for sub, message in error.problems
        ]
    return [_pydantic_problem(err)]


def _pydantic_problem(err: Mapping[str, Any]) -> str:
    """Return one problem line from a pydantic error: the dotted key, then what is wrong."""
    loc = tuple(err["loc"])
    key = ".".join(str(x) for x in loc) or "<root>"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        msg = "unknown key"
        if model is not None:
            allowed = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key{hint} (allowed here: {', '.join(allowed)})"
    elif err["type"] == "finite_number":
        msg = f"must be a finite number (got {err.get('input')!r})"
    return f"{key}: {msg}"


def spec_from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> ModelSpec:
    """Validate a spec given as a mapping (the parsed TOML).

    Raises
    ------
    SpecError
        Listing every problem, each with the key at fault.
    """
    raw = dict(raw)
    # TOML nests [model] metadata; accept both flat and nested layouts
    if "model" in raw and isinstance(raw["model"], Mapping):
        meta = dict(raw.pop("model"))
        raw = {**meta, **raw}
    try:
        doc = _SpecDocument.model_validate(raw)
    except ValidationError as exc:
        problems = [line for err in exc.errors() for line in _pydantic_problems(err)]
        raise SpecError(source, problems) from None
    problems = _semantic_problems(doc)
    if problems:
        raise SpecError(source, problems)
    return ModelSpec(doc=doc, source=source, text=canonical_text(doc))


def canonical_text(doc: _SpecDocument) -> str:
    """Canonical JSON of a validated spec: sorted keys, every default filled in.

    A ``[data]`` table that is empty (no column mapping, no time unit) is left out, so that a
    spec without one has the text, hence the hash, it had before ``[data]`` existed (fit files
    written then still load: :func:`bayes_cart.inference.io.load_fit` compares the stored hash).
    ``sampling.sigma_scaled`` likewise appears only when true.
    """
    content = doc.model_dump(mode="json")
    if doc.data == DataSpec():
        del content["data"]
    if not doc.sampling.sigma_scaled:
        del content["sampling"]["sigma_scaled"]
    return json.dumps(content, sort_keys=True)


def list_specs() -> list[str]:
    """Names of the specs that ship with bayes_cart (``models/*.toml``)."""
    folder = resources.files("bayes_cart.models")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """Load a model spec by shipped name (``"liu2021"``) or from a TOML file.

    Parameters
    ----------
    name_or_path : str or Path
        A name from :func:`list_specs` or a path to a ``.toml`` file.

    Returns
    -------
    ModelSpec
        The validated spec.

    Raises
    ------
    SpecError
        If the file cannot be read or the content is invalid (all problems at once).
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        name = str(name_or_path)
        if name not in list_specs():
            raise SpecError(
                name, f"no shipped spec named {name!r} and no such file; shipped: {list_specs()}"
            )
        res = resources.files("bayes_cart.models").joinpath(f"{name}.toml")
        text, source = res.read_text(encoding="utf-8"), f"models/{name}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, f"not valid TOML: {exc}") from None
    return spec_from_dict(raw, source=source)
