"""Population values of a kinetic model for the simulator: :class:`PopulationParameters`.

Typical values, IIV SDs and correlations, covariate and group effects and fixed values, checked
against the registered structure, from Python, a dict, or a TOML / JSON file
(``bayes-cart simulate --population``). The model they describe is in :mod:`bayes_cart.simulate`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayes_cart.errors import SpecError
from bayes_cart.kinetics import get_kinetics

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
