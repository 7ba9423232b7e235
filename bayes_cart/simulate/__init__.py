"""Virtual patients: simulate CAR-T kinetics data from population values.

For patient *i* and kinetic parameter *p* with a log-normal distribution::

    log p_i = log p_typical + sum of covariate shifts + group deviation (e.g. per TRIAL) + eta_pi

with ``eta_i ~ MVN(0, Omega)``, ``Omega = diag(omega) R diag(omega)`` (``omega`` the SDs of the
log parameters, ``R`` their correlation matrix). Parameters in ``fixed`` are the same for
everyone (e.g. ``k = T0 = 0`` when there is no distribution phase) unless a design column of
the same name sets them per patient. Curves come from the registered kinetic model
(:func:`bayes_cart.kinetics.get_kinetics`), so simulation and fitting share one implementation.
Observations follow a log-normal proportional error, ``log DV = log IPRED + sigma eps``,
and values below the LLOQ are reported as ``DV = LLOQ, CENS = 1``.

Parameters listed in ``logit`` (fractions such as Stein's ``FB``) are logit-normal instead:
the same sum on the logit scale. Covariate effects act on the log (logit) scale:

* categorical: ``{"RESPONSE": {"CR/PR": 0.30}}`` adds 0.30 for that level; levels not listed
  (the reference) add 0;
* continuous, linear: ``{"AGE": {"slope": 0.01, "center": 40}}`` adds ``0.01 (AGE - 40)``;
* continuous, power: ``{"DOSE": {"power": 0.5, "reference": 1e8}}`` adds
  ``0.5 log(DOSE / 1e8)``.
"""

from __future__ import annotations

import json
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import DataError, DataWarning, Problem, SpecError
from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.solvers import available_solvers, batched_log_total, output_names
from bayes_cart.model.scales import from_scale, to_scale

__all__ = [
    "PopulationParameters",
    "SimulationResult",
    "add_dosing_rows",
    "add_infusion_rows",
    "make_design",
    "make_infusions",
    "simulate_patients",
    "write_data_csv",
]

_CONTINUOUS_KEYS = ({"slope", "center"}, {"power", "reference"})


def _level(value: Any) -> str:
    """Canonical string of a categorical level (1.0 and 1 both give "1")."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _normalise_correlation(raw: Any) -> tuple[dict[tuple[str, str], float], list[str]]:
    """Accept ``{(a, b): r}``, ``{"a,b": r}``, ``{a: {b: r}}`` or ``[[a, b, r], ...]``."""
    out: dict[tuple[str, str], float] = {}
    problems: list[str] = []
    items: list[tuple[Any, Any, Any]] = []
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            if isinstance(value, Mapping):
                items += [(key, other, r) for other, r in value.items()]
            elif isinstance(key, tuple) and len(key) == 2:
                items.append((key[0], key[1], value))
            elif isinstance(key, str) and key.count(",") == 1:
                a, b = (s.strip() for s in key.split(","))
                items.append((a, b, value))
            else:
                problems.append(
                    f"correlation: key {key!r} must be a pair of parameter names, e.g. "
                    "('beta', 'T1'), 'beta,T1' or a nested table beta = {T1 = -0.6}"
                )
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        for entry in raw:
            if isinstance(entry, Sequence) and len(entry) == 3:
                items.append(tuple(entry))  # type: ignore[arg-type]
            else:
                problems.append(f"correlation: entry {entry!r} must be [param_a, param_b, rho]")
    else:
        problems.append("correlation: must be a table of parameter pairs")
    for a, b, r in items:
        try:
            out[(str(a), str(b))] = float(r)
        except (TypeError, ValueError):
            problems.append(f"correlation[{a},{b}]: {r!r} is not a number")
    return out, problems


@dataclass(frozen=True, kw_only=True)
class PopulationParameters:
    """Population values of a kinetic model, as used to simulate virtual patients.

    Parameters
    ----------
    typical : dict
        Typical values of the log-normally distributed parameters (days, /day), e.g.
        ``{"C0": 50, "beta": 0.4, "T1": 12, "alpha": 0.12, "rM": 0.0015, "deltaM": 0.004}``.
        Values are those of the reference patient (reference levels of every covariate).
    omega : dict
        SD of the log-normal inter-individual variability per parameter (absent or 0: none).
    correlation : dict
        Correlations between the etas of two parameters, e.g. ``{("beta", "T1"): -0.6}``
        (also ``"beta,T1"`` keys or nested ``{"beta": {"T1": -0.6}}``).
    effects : dict
        ``parameter -> covariate -> spec`` with spec ``{level: log-shift}`` (categorical),
        ``{"slope": b, "center": c}`` or ``{"power": p, "reference": r}`` (continuous).
    group_effects : dict
        ``grouping covariate -> parameter -> SD``: one normal deviation on the log parameter
        per level of the grouping covariate (e.g. ``{"TRIAL": {"beta": 0.15}}``).
    sigma : float
        SD of the log-normal proportional residual error (log scale).
    fixed : dict
        Parameters that are the same for everyone (e.g. ``{"k": 0, "T0": 0}``). Kinetic
        parameters in neither ``typical`` nor ``fixed`` take the model's defaults
        (``deltaE = 0.435 /month``).
    kinetics : str
        Registered kinetic model name.
    logit : tuple of str
        Parameters in ``typical`` that are fractions in (0, 1) varying logit-normally
        (Stein's ``FB``): their IIV, covariate effects and group deviations act on the logit
        scale, ``logit p_i = logit p_typical + ...`` (:mod:`bayes_cart.model.scales`).

    Examples
    --------
    >>> pop = PopulationParameters(typical={"C0": 50, "beta": 0.4, "T1": 12, "alpha": 0.12,
    ...                                     "rM": 0.0015, "deltaM": 0.004},
    ...                            omega={"beta": 0.4, "T1": 0.25},
    ...                            correlation={("beta", "T1"): -0.6})
    >>> pop.random_parameters
    ('beta', 'T1')
    """

    typical: Mapping[str, float]
    omega: Mapping[str, float] = field(default_factory=dict)
    correlation: Mapping[tuple[str, str], float] = field(default_factory=dict)
    effects: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    group_effects: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    sigma: float = 0.5
    fixed: Mapping[str, float] = field(default_factory=dict)
    kinetics: str = "liu2021"
    logit: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "logit", tuple(self.logit))
        corr, problems = _normalise_correlation(self.correlation)
        object.__setattr__(self, "correlation", corr)
        object.__setattr__(self, "typical", {k: float(v) for k, v in self.typical.items()})
        object.__setattr__(self, "omega", {k: float(v) for k, v in self.omega.items()})
        object.__setattr__(self, "fixed", {k: float(v) for k, v in self.fixed.items()})
        problems += self._problems()
        if problems:
            raise SpecError("population parameters", problems)

    def _problems(self) -> list[str]:
        problems: list[str] = []
        try:
            model = get_kinetics(self.kinetics)
        except KeyError as err:
            return [f"kinetics: {err.args[0]}"]
        names = set(model.parameters)
        for key in ("typical", "fixed"):
            unknown = sorted(set(getattr(self, key)) - names)
            if unknown:
                problems.append(
                    f"{key}: {unknown} not parameter(s) of {self.kinetics!r} "
                    f"({list(model.parameters)})"
                )
        both = sorted(set(self.typical) & set(self.fixed))
        if both:
            problems.append(f"typical/fixed: {both} given in both")
        missing = [
            p
            for p in model.parameters
            if p not in self.typical and p not in self.fixed and p not in model.defaults
        ]
        if missing:
            problems.append(f"typical: missing value(s) for {missing}")
        for p in self.logit:
            if p not in self.typical:
                problems.append(f"logit: {p!r} is not in typical (only typical values vary)")
        for p, v in self.typical.items():
            if p in self.logit and not (np.isfinite(v) and 0 < v < 1):
                problems.append(f"typical.{p}: {v} must be in (0, 1) (logit-normal parameter)")
            elif not (np.isfinite(v) and v > 0):
                problems.append(f"typical.{p}: {v} must be > 0 (log-normal parameter)")
        for p, v in self.omega.items():
            if p not in self.typical:
                problems.append(f"omega.{p}: not in typical (only typical parameters vary)")
            elif not (np.isfinite(v) and v >= 0):
                problems.append(f"omega.{p}: {v} must be >= 0")
        for (a, b), r in self.correlation.items():
            for p in (a, b):
                if self.omega.get(p, 0.0) <= 0:
                    problems.append(f"correlation[{a},{b}]: {p} has no IIV (omega.{p} > 0 needed)")
            if a == b:
                problems.append(f"correlation[{a},{b}]: a parameter with itself")
            if not -1 < r < 1:
                problems.append(f"correlation[{a},{b}]: {r} must be in (-1, 1)")
        if not problems and self.correlation:
            _, cov = self.omega_matrix()
            if np.linalg.eigvalsh(cov).min() <= 0:
                problems.append("correlation: the correlation matrix is not positive definite")
        for p, covs in self.effects.items():
            if p not in self.typical:
                problems.append(f"effects.{p}: not in typical (effects act on log parameters)")
            for cov, spec in covs.items():
                if not isinstance(spec, Mapping) or not spec:
                    problems.append(f"effects.{p}.{cov}: must be a table")
                    continue
                keys = set(spec)
                if keys & {"slope", "power"}:
                    if not any(keys <= allowed and keys & allowed for allowed in _CONTINUOUS_KEYS):
                        problems.append(
                            f"effects.{p}.{cov}: continuous effects are {{slope, center}} or "
                            f"{{power, reference}}, got {sorted(keys)}"
                        )
                    if "power" in keys and float(spec.get("reference", 0)) <= 0:
                        problems.append(f"effects.{p}.{cov}: power effect needs reference > 0")
                for level, v in spec.items():
                    if not np.isfinite(float(v)):
                        problems.append(f"effects.{p}.{cov}.{level}: {v} is not finite")
        for grp, sds in self.group_effects.items():
            for p, sd in sds.items():
                if p not in self.typical:
                    problems.append(f"group_effects.{grp}.{p}: not in typical")
                if not (np.isfinite(sd) and sd >= 0):
                    problems.append(f"group_effects.{grp}.{p}: {sd} must be >= 0")
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            problems.append(f"sigma: {self.sigma} must be >= 0")
        return problems

    @property
    def random_parameters(self) -> tuple[str, ...]:
        """Parameters with inter-individual variability, in the kinetic model's order."""
        order = get_kinetics(self.kinetics).parameters
        return tuple(p for p in order if self.omega.get(p, 0.0) > 0)

    def omega_matrix(self) -> tuple[tuple[str, ...], np.ndarray]:
        """Names and covariance matrix of the etas (``diag(omega) R diag(omega)``)."""
        names = self.random_parameters
        sd = np.array([self.omega[p] for p in names])
        corr = np.eye(len(names))
        index = {p: i for i, p in enumerate(names)}
        for (a, b), r in self.correlation.items():
            if a in index and b in index:
                corr[index[a], index[b]] = corr[index[b], index[a]] = r
        return names, corr * np.outer(sd, sd)

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-friendly dict (correlations as nested tables); inverse of from_dict."""
        corr: dict[str, dict[str, float]] = {}
        for (a, b), r in self.correlation.items():
            corr.setdefault(a, {})[b] = r
        return {
            "kinetics": self.kinetics,
            "typical": dict(self.typical),
            "omega": dict(self.omega),
            "correlation": corr,
            "effects": {p: {c: dict(s) for c, s in cs.items()} for p, cs in self.effects.items()},
            "group_effects": {g: dict(s) for g, s in self.group_effects.items()},
            "sigma": self.sigma,
            "fixed": dict(self.fixed),
            # only when used, so files written before logit-normal parameters existed match
            **({"logit": list(self.logit)} if self.logit else {}),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<dict>") -> PopulationParameters:
        """Build from a dict such as :meth:`to_dict` returns (unknown keys are an error)."""
        allowed = {
            "kinetics",
            "typical",
            "omega",
            "correlation",
            "effects",
            "group_effects",
            "sigma",
            "fixed",
            "logit",
        }
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise SpecError(
                source, [f"{k}: unknown key (allowed: {sorted(allowed)})" for k in unknown]
            )
        if "typical" not in raw:
            raise SpecError(source, "typical: required (typical parameter values)")
        try:
            return cls(**dict(raw))
        except SpecError as err:
            raise SpecError(source, err.problems) from None
        except (TypeError, ValueError, AttributeError) as err:
            raise SpecError(source, f"malformed population parameters: {err}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> PopulationParameters:
        """Read a ``.json`` or ``.toml`` file laid out as :meth:`to_dict`."""
        p = Path(path)
        if not p.exists():
            raise SpecError(str(p), "file not found")
        try:
            if p.suffix.lower() == ".toml":
                raw = tomllib.loads(p.read_text(encoding="utf-8"))
            else:
                raw = json.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
            raise SpecError(str(p), f"cannot parse: {err}") from None
        return cls.from_dict(raw, source=str(p))


@dataclass(frozen=True)
class SimulationResult:
    """Simulated data together with the truth that generated it.

    Attributes
    ----------
    data : pandas.DataFrame
        Dataset-format rows (one per sample taken): ``ID, TIME, DV, CENS`` and the design's
        covariate columns. BLQ rows have ``DV = LLOQ, CENS = 1``.
    truth : pandas.DataFrame
        One row per patient: ``ID``, patient covariates, every kinetic parameter, ``Cmax`` (for
        ``liu2021``), ``eta_<param>`` and ``eta_<GROUP>_<param>`` (the group deviation applied).
    states : pandas.DataFrame
        One row per planned sample: ``ID, TIME, E, M, total, log_ipred, log_dv, LLOQ, DV, CENS,
        sampled`` (``sampled`` is False for samples dropped by the stopping rule).
    population : PopulationParameters
        The population values used.
    group_effects : pandas.DataFrame
        Realised group deviations: ``group, level, parameter, eta``.
    """

    data: pd.DataFrame
    truth: pd.DataFrame
    states: pd.DataFrame
    population: PopulationParameters
    group_effects: pd.DataFrame


def make_design(
    n_patients: int,
    times: Sequence[float],
    *,
    covariates: pd.DataFrame | None = None,
    id_prefix: str = "P",
) -> pd.DataFrame:
    """Build a design with the same sampling times for every patient.

    Parameters
    ----------
    n_patients : int
        Number of patients; IDs are ``<id_prefix>001``, ``<id_prefix>002``, ...
    times : sequence of float
        Sampling times (days).
    covariates : pandas.DataFrame, optional
        ``n_patients`` rows of patient covariates (in patient order).
    id_prefix : str
        Prefix of the generated IDs.

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME`` (+ covariates), one row per planned sample.

    Examples
    --------
    >>> make_design(2, [1, 7]).to_dict("list")
    {'ID': ['P001', 'P001', 'P002', 'P002'], 'TIME': [1.0, 7.0, 1.0, 7.0]}
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    t = sorted(float(x) for x in times)
    if not t:
        raise ValueError("times must not be empty")
    width = max(3, len(str(n_patients)))
    ids = [f"{id_prefix}{i + 1:0{width}d}" for i in range(n_patients)]
    design = pd.DataFrame({"ID": np.repeat(ids, len(t)), "TIME": np.tile(t, n_patients)})
    if covariates is not None:
        if len(covariates) != n_patients:
            raise ValueError(f"covariates has {len(covariates)} rows, expected {n_patients}")
        cov = covariates.reset_index(drop=True)
        cov = cov.loc[np.repeat(np.arange(n_patients), len(t))].reset_index(drop=True)
        design = pd.concat([design, cov.drop(columns=["ID", "TIME"], errors="ignore")], axis=1)
    return design


_DATASET_COLUMNS = ("DV", "CENS", "LIMIT", "MDV", "EVID", "AMT", "ROW")


def _design_frame(design: Any) -> pd.DataFrame:
    """Turn a Dataset into its sample times with the patient covariates (incl. DOSE)."""
    if hasattr(design, "observations") and hasattr(design, "patients"):
        covs = design.patients.reset_index()
        return design.observations[["ID", "TIME"]].merge(covs, on="ID", how="left")
    if not isinstance(design, pd.DataFrame):
        raise TypeError(f"design must be a DataFrame or a Dataset, got {type(design).__name__}")
    return design


def _sample_rows(design: pd.DataFrame) -> pd.DataFrame:
    """Return the planned samples of a design (dataset-format frames lose dosing rows, DV).

    NONMEM dosing rows (``EVID=1``) give the covariate ``DOSE`` (the first infusion's ``AMT``,
    as the loader does) unless there is one; the columns ``DV, CENS, LIMIT, MDV, EVID, AMT,
    ROW`` are dropped. The 1-based row number of each kept row in the input is in column
    ``_row``.
    """
    d = design.reset_index(drop=True).copy()
    d["_row"] = np.arange(1, len(d) + 1)
    if "EVID" in d.columns:
        evid = pd.to_numeric(d["EVID"], errors="coerce").fillna(0).to_numpy()
        if "AMT" in d.columns and "DOSE" not in d.columns and (evid == 1).any():
            first = _design_infusions(d)
            first = first[first["INFUSION"] == 1].set_index("ID")["AMT"]
            d["DOSE"] = d["ID"].astype(str).map(first).to_numpy(float)
        d = d[evid == 0]
    return d.drop(columns=[c for c in _DATASET_COLUMNS if c in d.columns]).reset_index(drop=True)


def _design_infusions(design: Any) -> pd.DataFrame:
    """Return the infusions of a design: ``ID, INFUSION, TIME, AMT`` (empty without doses)."""
    from bayes_cart.data.checks import infusion_table

    if hasattr(design, "infusions") and hasattr(design, "patients"):
        return design.infusions
    d = design
    if not isinstance(d, pd.DataFrame) or "EVID" not in d.columns or "AMT" not in d.columns:
        return infusion_table(pd.DataFrame())
    evid = pd.to_numeric(d["EVID"], errors="coerce").fillna(0).to_numpy()
    rows = d[evid == 1]
    doses = pd.DataFrame(
        {
            "ID": rows["ID"].astype(str).to_numpy(),
            "TIME": pd.to_numeric(rows["TIME"], errors="coerce").to_numpy(float),
            "AMT": pd.to_numeric(rows["AMT"], errors="coerce").to_numpy(float),
            "ROW": np.arange(1, len(d) + 1)[evid == 1],
        }
    )
    order = {p: i for i, p in enumerate(pd.unique(d["ID"].astype(str)))}
    doses = doses.assign(_p=doses["ID"].map(order)).sort_values(["_p", "TIME"], kind="stable")
    return infusion_table(doses.drop(columns="_p").reset_index(drop=True))


def make_infusions(
    ids: Sequence[str],
    amount: float | Mapping[str, float] = 1.0,
    *,
    reinfused: Sequence[str] = (),
    day: float | Mapping[str, float] = 60.0,
    reinfusion_amount: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Build an infusion table: one infusion at TIME 0 per patient, a re-infusion for some.

    Parameters
    ----------
    ids : sequence of str
        Patients.
    amount : float or mapping
        First infusion's AMT (one value, or per patient).
    reinfused : sequence of str
        Patients infused a second time.
    day : float or mapping
        Day of the re-infusion (one value, or per re-infused patient).
    reinfusion_amount : float or mapping, optional
        AMT of the re-infusion (default the first infusion's).

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME, AMT``, one row per infusion: the ``infusions=`` of
        :func:`simulate_patients` and of :func:`add_infusion_rows`.

    Examples
    --------
    >>> make_infusions(["a", "b"], 2.0, reinfused=["b"], day=75.0).to_dict("list")
    {'ID': ['a', 'b', 'b'], 'TIME': [0.0, 0.0, 75.0], 'AMT': [2.0, 2.0, 2.0]}
    """

    def per(value: Any, pid: str) -> float:
        return float(value[pid]) if isinstance(value, Mapping) else float(value)

    again = {str(p) for p in reinfused}
    unknown = sorted(again - {str(i) for i in ids})
    if unknown:
        raise ValueError(f"reinfused patients {unknown[:8]} are not in ids")
    rows = []
    for pid in (str(i) for i in ids):
        first = per(amount, pid)
        rows.append((pid, 0.0, first))
        if pid in again:
            second = first if reinfusion_amount is None else per(reinfusion_amount, pid)
            when = per(day, pid)
            if not when > 0 or not second > 0:
                raise ValueError(f"patient {pid}: re-infusion day and AMT must be > 0")
            rows.append((pid, when, second))
    return pd.DataFrame(rows, columns=["ID", "TIME", "AMT"])


def add_infusion_rows(data: pd.DataFrame, infusions: pd.DataFrame) -> pd.DataFrame:
    """Add one NONMEM dosing row (EVID=1, AMT, MDV=1) per infusion to dataset-format rows.

    Parameters
    ----------
    data : pandas.DataFrame
        Dataset-format rows (``ID, TIME, DV, CENS``, covariates), e.g. ``sim.data``.
    infusions : pandas.DataFrame
        ``ID, TIME, AMT`` (:func:`make_infusions`).

    Returns
    -------
    pandas.DataFrame
        Columns ``ID, TIME, EVID, AMT, MDV, DV, CENS`` and the covariates; each dosing row
        comes before the samples at or after its TIME (a sample at the TIME of a later
        infusion is a pre-infusion sample either way).
    """
    obs = data.copy()
    obs["ID"] = obs["ID"].astype(str)
    inf = infusions.copy()
    inf["ID"] = inf["ID"].astype(str)
    covs = [c for c in obs.columns if c not in ("ID", "TIME", "DV", "CENS")]
    first = obs.groupby("ID", sort=False)[covs].first() if covs else None
    dosing = pd.DataFrame(
        {
            "ID": inf["ID"].to_numpy(),
            "TIME": inf["TIME"].to_numpy(float),
            "EVID": 1,
            "AMT": inf["AMT"].to_numpy(float),
            "MDV": 1,
            "DV": np.nan,
            "CENS": 0,
        }
    )
    if first is not None:
        dosing = dosing.join(first, on="ID")
    obs["EVID"], obs["AMT"], obs["MDV"] = 0, np.nan, 0
    columns = ["ID", "TIME", "EVID", "AMT", "MDV", "DV", "CENS", *covs]
    dosing["_order"], obs["_order"] = 0, 1
    order = {p: i for i, p in enumerate(pd.unique(obs["ID"]))}
    out = pd.concat([dosing[[*columns, "_order"]], obs[[*columns, "_order"]]], ignore_index=True)
    out["_p"] = out["ID"].map(order)
    out = out[out["_p"].notna()].sort_values(["_p", "TIME", "_order"], kind="stable")
    return out.drop(columns=["_p", "_order"]).reset_index(drop=True)


def _infusion_schedule(table: pd.DataFrame, ids: Sequence[str]) -> Any:
    """Per-patient :class:`~bayes_cart.kinetics.superposition.Infusions` of a table."""
    from bayes_cart.kinetics.superposition import Infusions

    if table.empty:
        return Infusions.single(len(ids))
    grouped = {str(k): v for k, v in table.groupby(table["ID"].astype(str), sort=False)}
    n_slots = max([1] + [len(v) for v in grouped.values()])
    start = np.full((len(ids), n_slots), np.inf)
    start[:, 0] = 0.0
    log_ratio = np.zeros((len(ids), n_slots))
    count = np.ones(len(ids), dtype=np.int64)
    for i, pid in enumerate(ids):
        rows = grouped.get(str(pid))
        if rows is None:
            continue
        rows = rows.sort_values("TIME", kind="stable")
        amt = rows["AMT"].to_numpy(float)
        count[i] = len(rows)
        start[i, 1 : len(rows)] = rows["TIME"].to_numpy(float)[1:]
        log_ratio[i, : len(rows)] = np.log(amt / amt[0])
    return Infusions(start=start, log_ratio=log_ratio, count=count)


def _check_design(
    design: pd.DataFrame, population: PopulationParameters, lloq_column: str | None
) -> pd.DataFrame:
    problems: list[Problem] = []
    for col in ("ID", "TIME"):
        if col not in design.columns:
            problems.append(Problem("required column missing", column=col))
    if problems:
        raise DataError("design", problems)
    d = _sample_rows(design)
    d["ID"] = d["ID"].astype("string")
    row_numbers = d.pop("_row").to_numpy()

    def rows(mask: Any) -> tuple[int, ...]:
        return tuple(int(r) for r in row_numbers[np.asarray(mask, dtype=bool)])

    if d["ID"].isna().any():
        problems.append(Problem("missing patient ID", row=rows(d["ID"].isna()), column="ID"))
    time = pd.to_numeric(d["TIME"], errors="coerce")
    bad = time.isna() | ~np.isfinite(time.fillna(0.0)) | (time < 0)
    if bad.any():
        problems.append(Problem("TIME must be a number >= 0 (days)", row=rows(bad), column="TIME"))
    d["TIME"] = time
    used = {c for covs in population.effects.values() for c in covs} | set(population.group_effects)
    if lloq_column is not None:
        used.add(lloq_column)
        if lloq_column not in d.columns:
            problems.append(Problem("LLOQ column not in the design", column=lloq_column))
    for cov in sorted(used - {lloq_column}):
        if cov not in d.columns:
            problems.append(Problem("covariate used by the population is missing", column=cov))
            continue
        if d[cov].isna().any():
            problems.append(Problem("missing value", row=rows(d[cov].isna()), column=cov))
            continue
        varying = d.groupby("ID", sort=False)[cov].nunique() > 1
        for pid in varying[varying].index:
            problems.append(
                Problem("covariate changes within the patient", column=cov, patient=str(pid))
            )
    for p, covs in population.effects.items():
        for cov, spec in covs.items():
            if cov in d.columns and set(spec) & {"slope", "power"}:
                x = pd.to_numeric(d[cov], errors="coerce")
                if x.isna().any():
                    problems.append(
                        Problem(f"continuous covariate of {p} must be numeric", column=cov)
                    )
                elif "power" in spec and (x <= 0).any():
                    problems.append(
                        Problem(
                            f"power effect on {p} needs values > 0", row=rows(x <= 0), column=cov
                        )
                    )
    if problems:
        raise DataError("design", problems)
    return d


def _covariate_shift(values: pd.Series, spec: Mapping[str, float]) -> np.ndarray:
    if "slope" in spec:
        x = pd.to_numeric(values).to_numpy(float)
        return float(spec["slope"]) * (x - float(spec.get("center", 0.0)))
    if "power" in spec:
        x = pd.to_numeric(values).to_numpy(float)
        return float(spec["power"]) * np.log(x / float(spec["reference"]))
    shifts = {str(k): float(v) for k, v in spec.items()}
    return np.array([shifts.get(_level(v), 0.0) for v in values], dtype=float)


def _row_lloq(
    d: pd.DataFrame, lloq: float | pd.Series | Mapping[str, float] | str | None
) -> tuple[np.ndarray, str | None]:
    if lloq is None:
        if "LLOQ" in d.columns:
            return pd.to_numeric(d["LLOQ"], errors="coerce").to_numpy(float), "LLOQ"
        return np.full(len(d), np.nan), None
    if isinstance(lloq, str):
        return pd.to_numeric(d[lloq], errors="coerce").to_numpy(float), lloq
    if isinstance(lloq, pd.Series | Mapping):
        m = {str(k): float(v) for k, v in dict(lloq).items()}
        absent = sorted(set(d["ID"]) - set(m))
        if absent:
            raise DataError("lloq", Problem(f"no LLOQ for patient(s) {absent[:8]}", column="LLOQ"))
        return d["ID"].map(m).to_numpy(float), None
    return np.full(len(d), float(lloq)), None


def simulate_patients(
    design: pd.DataFrame | Any,
    population: PopulationParameters,
    *,
    lloq: float | pd.Series | Mapping[str, float] | str | None = None,
    stop_after_consecutive_blq: int | None = None,
    random_seed: int | np.random.Generator | None = None,
    solver: str | None = None,
    infusions: pd.DataFrame | None = None,
) -> SimulationResult:
    """Simulate virtual patients on a sampling design.

    Random numbers are drawn in a fixed order from one generator: the group deviations
    (per grouping covariate, per parameter, over the sorted levels), then the etas (patients x
    random parameters), then one residual per planned sample. The same seed and inputs give
    the same result.

    Parameters
    ----------
    design : pandas.DataFrame or Dataset
        One row per planned sample: ``ID``, ``TIME`` (days) and patient covariates. A dataset
        (or a dataset-format frame) can serve as design: its sample times and covariates are
        used, dosing rows give ``DOSE``, and DV/CENS/EVID/AMT/MDV/LIMIT are ignored. A column
        named after a kinetic parameter (e.g. ``k``, ``T0``) sets that parameter per patient
        where it is not missing (its first value per patient); missing cells take the
        population distribution. This is how a distribution phase is given to a subset only.
    population : PopulationParameters
        Population values.
    lloq : float, Series, dict, str or None
        Lower limit of quantification: one number, per patient (Series/dict indexed by ID),
        or the name of a design column (per sample). None: the design's ``LLOQ`` column if
        there is one, otherwise no censoring.
    stop_after_consecutive_blq : int, optional
        Sampling rule: after this many consecutive BLQ samples (counted from the first
        quantifiable sample on) a patient's later samples are not taken. They are absent
        from ``data`` and flagged ``sampled=False`` in ``states``. None: everything sampled.
    random_seed : int or numpy.random.Generator, optional
        Seed or generator.
    solver : {"closed_form", "linear", "ode"}, optional
        Route that solves the structure (:mod:`bayes_cart.kinetics.solvers`); default the
        first the structure has (its closed form, else ``linear``).
    infusions : pandas.DataFrame, optional
        ``ID, TIME, AMT``, one row per infusion (:func:`make_infusions`); default the
        design's own dosing rows (a dataset or dataset-format frame), else one infusion at
        TIME 0. With several for a patient, its curve is the sum of one cohort per infusion
        (:mod:`bayes_cart.kinetics.superposition`); the rows of ``data`` are samples only
        (:func:`add_infusion_rows` adds the dosing rows).

    Returns
    -------
    SimulationResult
        ``data``, ``truth``, ``states``, ``population`` and ``group_effects``.

    Examples
    --------
    >>> pop = PopulationParameters(typical={"C0": 50, "beta": 0.4, "T1": 12, "alpha": 0.12,
    ...                                     "rM": 0.0015, "deltaM": 0.004}, omega={"beta": 0.3})
    >>> sim = simulate_patients(make_design(3, [1, 7, 14, 28]), pop, lloq=20, random_seed=1)
    >>> sim.data.columns.tolist(), len(sim.truth)
    (['ID', 'TIME', 'DV', 'CENS'], 3)
    """
    if stop_after_consecutive_blq is not None and stop_after_consecutive_blq < 1:
        raise ValueError("stop_after_consecutive_blq must be >= 1 or None")
    given_infusions = _design_infusions(design) if infusions is None else infusions
    design = _design_frame(design)
    lloq_column = lloq if isinstance(lloq, str) else None
    if lloq is None and "LLOQ" in design.columns:
        lloq_column = "LLOQ"
    d = _check_design(design, population, lloq_column)
    model = get_kinetics(population.kinetics)
    rng = np.random.default_rng(random_seed)

    ids = pd.unique(d["ID"])
    n = len(ids)
    pidx = {pid: i for i, pid in enumerate(ids)}
    d["_p"] = d["ID"].map(pidx).astype(int)
    d = d.sort_values(["_p", "TIME"], kind="stable").reset_index(drop=True)
    first = d.groupby("_p", sort=True).head(1).set_index("_p").sort_index()

    # group deviations, then etas, then residuals
    shift = {p: np.zeros(n) for p in population.typical}  # log-scale deviation from typical
    group_rows = []
    group_eta_cols: dict[str, np.ndarray] = {}
    for grp, sds in population.group_effects.items():
        labels = first[grp].map(_level)
        levels = sorted(labels.unique())
        for p, sd in sds.items():
            draws = rng.normal(0.0, sd, size=len(levels))
            realised = dict(zip(levels, draws, strict=True))
            group_rows += [
                {"group": grp, "level": lv, "parameter": p, "eta": float(realised[lv])}
                for lv in levels
            ]
            per_patient = labels.map(realised).to_numpy(float)
            group_eta_cols[f"eta_{grp}_{p}"] = per_patient
            shift[p] = shift[p] + per_patient
    names, cov = population.omega_matrix()
    eta = np.zeros((n, len(names)))
    if names:
        chol = np.linalg.cholesky(cov)
        eta = rng.standard_normal((n, len(names))) @ chol.T
    eps = rng.standard_normal(len(d))

    for p, covs in population.effects.items():
        for cov_name, spec in covs.items():
            shift[p] = shift[p] + _covariate_shift(first[cov_name], spec)
    for j, p in enumerate(names):
        shift[p] = shift[p] + eta[:, j]
    # log-normal: v exp(shift), exactly v without a shift; logit-normal: expit(logit v + shift)
    theta = {
        p: from_scale(to_scale(v, "logit") + shift[p], "logit")
        if p in population.logit
        else v * np.exp(shift[p])
        for p, v in population.typical.items()
    }
    theta.update({p: np.full(n, v) for p, v in population.fixed.items()})
    theta = model.with_defaults(theta)
    theta = {p: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy() for p, v in theta.items()}
    eta_cols = {f"eta_{p}": eta[:, j].copy() for j, p in enumerate(names)}
    for p in model.parameters:
        if p in d.columns:
            override = pd.to_numeric(first[p], errors="coerce").to_numpy(float)
            given = ~np.isnan(override)
            theta[p][given] = override[given]
            if f"eta_{p}" in eta_cols:
                eta_cols[f"eta_{p}"][given] = np.nan
    if "T0" in theta and "T1" in theta:
        late = theta["T0"] > theta["T1"]
        if late.any():
            warnings.warn(
                f"T0 > T1 for {int(late.sum())} patient(s) ({list(ids[late][:5])}); T0 set to T1",
                DataWarning,
                stacklevel=2,
            )
            theta["T0"] = np.minimum(theta["T0"], theta["T1"])

    t = d["TIME"].to_numpy(float)
    route = solver or available_solvers(model)[0]
    schedule = _infusion_schedule(given_infusions, [str(i) for i in ids])
    if schedule.several:
        from bayes_cart.kinetics.superposition import (
            cohort_parameters,
            combine_cohorts,
            dose_parameter,
            infusion_pairs,
        )

        pairs = infusion_pairs(schedule, d["_p"].to_numpy(), t)
        cohort = cohort_parameters(theta, pairs, dose_parameter(model))
        solved = {
            state: combine_cohorts(
                np.asarray(
                    batched_log_total(model, route, state=state)(pairs.since, pairs.cohort, cohort),
                    dtype=float,
                ),
                pairs,
            )
            for state in output_names(model)
        }
    else:
        solved = {
            state: np.asarray(
                batched_log_total(model, route, state=state)(t, d["_p"].to_numpy(), theta),
                dtype=float,
            )
            for state in output_names(model)
        }
    log_ipred = solved["log_total"]
    log_dv = log_ipred + population.sigma * eps
    dv = np.exp(log_dv)
    row_lloq, _ = _row_lloq(d, lloq)
    blq = np.nan_to_num(dv < row_lloq, nan=False).astype(bool) & ~np.isnan(row_lloq)
    obs_dv = np.where(blq, row_lloq, dv)
    sampled = np.ones(len(d), dtype=bool)
    if stop_after_consecutive_blq is not None:
        sampled = _sampled_mask(d["_p"].to_numpy(), blq, stop_after_consecutive_blq)

    states = pd.DataFrame(
        {
            "ID": d["ID"],
            "TIME": t,
            "E": np.exp(np.asarray(solved.get("log_E", log_ipred), dtype=float)),
            "M": np.exp(np.asarray(solved.get("log_M", np.full(len(d), -np.inf)), dtype=float)),
            "total": np.exp(log_ipred),
            "log_ipred": log_ipred,
            "log_dv": log_dv,
            "LLOQ": row_lloq,
            "DV": obs_dv,
            "CENS": blq.astype(int),
            "sampled": sampled,
        }
    )
    drop = {"_p", "ID", "TIME"} | ({lloq_column} if lloq_column else set())
    drop |= {p for p in model.parameters if p in d.columns}
    cov_cols = [c for c in d.columns if c not in drop]
    data = pd.concat(
        [states[["ID", "TIME", "DV", "CENS"]], d[cov_cols]],
        axis=1,
    )[sampled].reset_index(drop=True)

    truth = first[["ID", *cov_cols]].reset_index(drop=True)
    for p in model.parameters:
        truth[p] = theta[p]
    if model.log_peak_shift is not None and "C0" in theta:  # the peak level of each patient
        truth["Cmax"] = theta["C0"] * np.exp(model.log_peak_shift(theta, np))
    for name, values in {**eta_cols, **group_eta_cols}.items():
        truth[name] = values
    group_table = pd.DataFrame(group_rows, columns=["group", "level", "parameter", "eta"])
    return SimulationResult(
        data=data,
        truth=truth,
        states=states,
        population=population,
        group_effects=group_table,
    )


def _sampled_mask(patient: np.ndarray, blq: np.ndarray, n_stop: int) -> np.ndarray:
    """Flag the samples taken under "stop after ``n_stop`` consecutive BLQ" (rows sorted)."""
    sampled = np.ones(len(blq), dtype=bool)
    for p in np.unique(patient):
        rows = np.flatnonzero(patient == p)
        seen_quantifiable, run = False, 0
        for pos, r in enumerate(rows):
            if not blq[r]:
                seen_quantifiable, run = True, 0
            elif seen_quantifiable:
                run += 1
                if run >= n_stop:
                    sampled[rows[pos + 1 :]] = False
                    break
    return sampled


def add_dosing_rows(
    data: pd.DataFrame,
    amount: pd.Series | Mapping[str, float] | str,
    *,
    time: float = 0.0,
) -> pd.DataFrame:
    """Add NONMEM-style dosing rows (EVID=1, AMT, MDV=1) before each patient's samples.

    Parameters
    ----------
    data : pandas.DataFrame
        Dataset-format rows (``ID, TIME, DV, CENS``, covariates).
    amount : Series, dict or str
        Dose per patient (indexed by ID), or the name of a data column holding it (that column
        is then removed, since the dose is carried by AMT).
    time : float
        Time of the dose (days).

    Returns
    -------
    pandas.DataFrame
        Columns ``ID, TIME, EVID, AMT, MDV, DV, CENS`` and the covariates. Dosing rows have DV
        missing and CENS 0; observation rows have AMT missing (both written as "." by
        :func:`write_data_csv`).
    """
    obs = data.copy()
    if isinstance(amount, str):
        doses = obs.groupby("ID", sort=False)[amount].first()
        obs = obs.drop(columns=[amount])
    else:
        doses = pd.Series(dict(amount))
    doses.index = doses.index.astype(str)
    ids = pd.unique(obs["ID"].astype(str))
    absent = [p for p in ids if p not in doses.index]
    if absent:
        raise DataError("doses", Problem(f"no dose for patient(s) {absent[:8]}", column="AMT"))
    covs = [c for c in obs.columns if c not in ("ID", "TIME", "DV", "CENS")]
    dosing = obs.groupby("ID", sort=False)[covs].first().reset_index() if covs else None
    if dosing is None:
        dosing = pd.DataFrame({"ID": ids})
    dosing["TIME"] = float(time)
    dosing["EVID"] = 1
    dosing["AMT"] = doses.reindex(dosing["ID"].astype(str)).to_numpy(float)
    dosing["MDV"] = 1
    dosing["DV"] = np.nan
    dosing["CENS"] = 0
    obs["EVID"] = 0
    obs["AMT"] = np.nan
    obs["MDV"] = 0
    dosing["_order"], obs["_order"] = 0, 1
    columns = ["ID", "TIME", "EVID", "AMT", "MDV", "DV", "CENS", *covs]
    order = {p: i for i, p in enumerate(ids)}
    out = pd.concat([dosing[[*columns, "_order"]], obs[[*columns, "_order"]]], ignore_index=True)
    out["_p"] = out["ID"].astype(str).map(order)
    out = out.sort_values(["_p", "_order", "TIME"], kind="stable")
    return out.drop(columns=["_p", "_order"]).reset_index(drop=True)


def write_data_csv(data: pd.DataFrame, path: str | Path) -> Path:
    """Write a dataset-format frame to CSV, with NONMEM conventions for dosing rows.

    When the frame has an ``EVID`` column, missing ``DV`` (dosing rows) and missing ``AMT``
    (observation rows) are written as ``"."``. Other missing values are written empty.

    Parameters
    ----------
    data : pandas.DataFrame
        Rows to write.
    path : str or Path
        Output file.

    Returns
    -------
    Path
        The path written.
    """
    out = data.copy()
    if "EVID" in out.columns:
        for col in ("DV", "AMT"):
            if col in out.columns:
                values = pd.to_numeric(out[col])
                out[col] = ["." if pd.isna(v) else repr(float(v)) for v in values]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(p, index=False, lineterminator="\n")
    return p
