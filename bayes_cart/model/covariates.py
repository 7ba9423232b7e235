"""Covariate design matrices for the log kinetic parameters, built with formulaic.

For each parameter with a formula, e.g. ``beta ~ RESPONSE + TUMOR_TYPE``, the patient-level
covariate table is turned into a treatment-coded design matrix without intercept (the intercept
is the typical value). Categorical reference levels are explicit (spec or ``--reference``) or,
if not given, the most frequent level. Column names follow the ``COLUMN[level]`` convention, so
effects read ``beta:RESPONSE[CR/PR]``.

Missing values never drop a patient:

* categorical, ``covariates.missing = "level"`` (default): the missing cells become an explicit
  level ``unknown`` whose effect is estimated like any other level;
* categorical, ``"marginalize"``: the levels are the observed ones only and a missing cell is
  coded as the reference level in the design (a placeholder: the model sums such a patient's
  density over every level, :mod:`bayes_cart.model.marginal`);
* continuous: the missing cells are set to the median of the observed values (either way).

The chosen handling is reported (:attr:`CovariateDesign.imputed`, the fit's notes).

Everything the fit data decide is kept in the :class:`CovariateDesign` and reused for new
patients (:meth:`CovariateDesign.evaluate`): the mean and SD of ``center(...)`` /
``scale(...)`` (formulaic's stateful-transform state), the median used for missing continuous
values and the levels of each categorical column. A prediction frame of one typical patient is
therefore coded exactly as that patient would have been coded in the fit. The state is plain
JSON (:meth:`CovariateDesign.to_state`), stored with a saved fit.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, ModelSpec, model_matrix
from formulaic.parser import DefaultFormulaParser
from formulaic.parser.types import Factor, Token
from formulaic.transforms import TRANSFORMS
from formulaic.utils.variables import Variable, get_required_variables

from bayes_cart.errors import DataWarning, FormulaWarning, SpecError
from bayes_cart.model.expressions import formula_variables

UNKNOWN_LEVEL = "unknown"

#: A categorical covariate with more levels than this gets a warning (usually an ID-like
#: column such as a site or a patient number, see :func:`level_warnings`).
MAX_LEVELS = 10

#: Version of the JSON state written by :meth:`CovariateDesign.to_state`.
STATE_VERSION = 1

_CONTEXT = {
    "log": np.log,
    "log10": np.log10,
    "log2": np.log2,
    "exp": np.exp,
    "sqrt": np.sqrt,
}

Imputed = dict[str, tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class CovariateDesign:
    """Design matrices per parameter, how missing values were handled, and the fit's constants.

    Attributes
    ----------
    matrices : dict
        ``{parameter: DataFrame (patients x effect columns)}``.
    reference : dict
        Reference level used for each categorical covariate.
    imputed : dict
        ``{column: (strategy, [patient IDs])}`` for covariates with missing values.
    formulas : dict
        ``{parameter: right-hand side}`` as evaluated: column names spelled as in the data,
        the trial column of a fixed group effect included, without the ``- 1``.
    transform_state : dict
        ``{parameter: formulaic transform state}`` learnt on the fit data, e.g.
        ``{"center(AGE)": {"center": 51.9, "scale": None, "ddof": 1}}`` (JSON values).
    medians : dict
        ``{column: median}`` of every continuous column the formulas use, over the fit data's
        observed values: the value given to a missing cell, in the fit and for new patients.
    levels : dict
        ``{column: levels}`` of every categorical column the formulas use, reference first
        (``unknown`` included when the fit data had missing cells and ``missing`` is
        ``"level"``).
    missing : {"level", "marginalize"}
        How missing categorical cells were coded (``covariates.missing``).
    """

    matrices: dict[str, pd.DataFrame]
    reference: dict[str, str]
    imputed: Imputed = field(default_factory=dict)
    formulas: dict[str, str] = field(default_factory=dict)
    transform_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    missing: str = "level"

    def effect_names(self, parameter: str) -> list[str]:
        """Effect column names of one parameter (empty if it has no covariates)."""
        m = self.matrices.get(parameter)
        return [] if m is None else list(m.columns)

    def model_spec(self, parameter: str) -> ModelSpec:
        """Formulaic model spec of one parameter carrying the fit data's transform state.

        Parameters
        ----------
        parameter : str
            A parameter with a formula.

        Returns
        -------
        formulaic.ModelSpec
            ``spec.get_model_matrix(table, context=...)`` codes a prepared table (see
            :meth:`evaluate`) with the fit's means and SDs.
        """
        return ModelSpec(
            formula=Formula(f"{self.formulas[parameter]} - 1"),
            na_action="raise",
            transform_state=copy.deepcopy(self.transform_state.get(parameter, {})),
        )

    def evaluate(self, patients: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Design matrices of new patients, coded with the fit data's constants.

        ``center``/``scale`` use the fit data's mean and SD, a missing continuous value the fit
        data's median, a missing categorical value the level ``unknown``; a categorical value
        the fit did not see (``unknown`` included, when the fit had no missing value or
        marginalised its missing values) is coded as the reference level (no effect).
        Predictions that should average over a marginalised covariate's levels do so
        themselves (:func:`bayes_cart.predict.population_parameters`).

        Parameters
        ----------
        patients : DataFrame
            One row per new patient with the covariate columns the formulas use (matched
            case-insensitively).

        Returns
        -------
        dict
            ``{parameter: DataFrame (patients x the fit's effect columns)}``, indexed like
            ``patients``.

        Raises
        ------
        SpecError
            A column the formulas use is absent or not numeric where the fit's was, or a
            transform gives non-finite values (log of 0).

        Examples
        --------
        >>> fit_pts = pd.DataFrame({"AGE": [40.0, 60.0, 80.0]}, index=["1", "2", "3"])
        >>> d = build_covariate_design(fit_pts, {"beta": "center(AGE)"})
        >>> d.evaluate(pd.DataFrame({"AGE": [50.0]}))["beta"]["center(AGE)"].tolist()
        [-10.0]
        """
        table = _prediction_table(patients, self)
        out = {}
        for p, fitted in self.matrices.items():
            if len(table) == 0:
                out[p] = pd.DataFrame(0.0, index=patients.index, columns=fitted.columns)
                continue
            df = self._matrix(p, table, patients.index)
            missing = [c for c in fitted.columns if c not in df.columns]
            if missing:  # pragma: no cover - the levels are the fit's, so this is a bug
                raise RuntimeError(f"covariates.formulas.{p}: new design lacks {missing}")
            out[p] = df[list(fitted.columns)]
        return out

    def _matrix(self, parameter: str, table: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
        try:
            mm = self.model_spec(parameter).get_model_matrix(table, context=_CONTEXT)
        except Exception as exc:  # formulaic raises many types; turn into a SpecError
            raise SpecError(
                "covariates",
                f"covariates.formulas.{parameter}: cannot build {self.formulas[parameter]!r} "
                f"for new patients: {exc}",
            ) from None
        return _tidy_matrix(parameter, mm, index, self.reference)

    def to_state(self) -> dict[str, Any]:
        """Everything needed to code new patients as the fit did, as plain JSON values.

        Returns
        -------
        dict
            ``version``, ``formulas``, ``reference``, ``transform_state``, ``medians``,
            ``levels``, ``missing`` and ``effects`` (the effect columns per parameter).
        """
        return {
            "version": STATE_VERSION,
            "formulas": dict(self.formulas),
            "reference": dict(self.reference),
            "transform_state": _jsonable(self.transform_state),
            "medians": {c: float(v) for c, v in self.medians.items()},
            "levels": {c: list(v) for c, v in self.levels.items()},
            "missing": self.missing,
            "effects": {p: list(m.columns) for p, m in self.matrices.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], patients: pd.DataFrame) -> CovariateDesign:
        """Rebuild a design from :meth:`to_state` and the fitted patients' covariates.

        The matrices of ``patients`` are computed with the stored constants (not with the
        patients' own mean, SD or median), so a loaded fit codes its patients as the fit did.

        Parameters
        ----------
        state : mapping
            Output of :meth:`to_state` (after a JSON round trip).
        patients : DataFrame
            The fitted patients (index = patient ID).

        Returns
        -------
        CovariateDesign
            With ``matrices`` and ``imputed`` for ``patients``.

        Raises
        ------
        ValueError
            A state of an unknown version.
        """
        if int(state.get("version", 0)) != STATE_VERSION:
            raise ValueError(f"covariate design state version {state.get('version')!r}")
        effects = {p: list(cols) for p, cols in state.get("effects", {}).items()}
        shell = cls(
            matrices={p: pd.DataFrame(columns=cols, dtype=float) for p, cols in effects.items()},
            reference=dict(state["reference"]),
            formulas=dict(state["formulas"]),
            transform_state=copy.deepcopy(dict(state["transform_state"])),
            medians={c: float(v) for c, v in state["medians"].items()},
            levels={c: tuple(v) for c, v in state["levels"].items()},
            missing=str(state.get("missing", "level")),  # absent before marginalize existed
        )
        return cls(
            matrices=shell.evaluate(patients),
            reference=shell.reference,
            imputed=_imputed(patients, shell.medians, shell.levels, shell.missing),
            formulas=shell.formulas,
            transform_state=shell.transform_state,
            medians=shell.medians,
            levels=shell.levels,
            missing=shell.missing,
        )


def _tidy_column(name: str) -> str:
    # formulaic writes "RESPONSE[T.CR/PR]"; the report convention is "RESPONSE[CR/PR]"
    return re.sub(r"\[T\.", "[", name)


def _jsonable(value: Any) -> Any:
    """Formulaic transform state as JSON values (numpy scalars and arrays to Python)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store transform state of type {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# formula checks
# ---------------------------------------------------------------------------------------------


def formula_columns(rhs: str) -> set[str]:
    """Return the data columns a formula needs, as formulaic reads it.

    formulaic's ``required_variables`` of the parsed formula, plus the arguments of its
    stateful transforms (formulaic 1.2 reports ``center(AGE)`` as needing no variable), read
    with the same function context the design uses. A term removed with ``-`` needs nothing.

    Parameters
    ----------
    rhs : str
        A formula right-hand side.

    Returns
    -------
    set of str
        Column names as spelled in the formula.

    Raises
    ------
    formulaic.errors.FormulaSyntaxError
        When formulaic cannot parse the formula.

    Examples
    --------
    >>> sorted(formula_columns("center(AGE) + log(DOSE / WT) + RESPONSE"))
    ['AGE', 'DOSE', 'RESPONSE', 'WT']
    """
    formula = Formula(rhs)
    names = {str(v) for v in formula.required_variables if Variable.Role.VALUE in v.roles}
    for term in formula:
        for factor in term.factors:
            if factor.eval_method is Factor.EvalMethod.PYTHON:
                names |= {
                    str(v.root)
                    for v in get_required_variables(factor.expr, _CONTEXT)
                    if Variable.Role.VALUE in v.roles
                }
    return names - set(_CONTEXT) - set(TRANSFORMS)


_ADDITIVE = ("+", "-", "+-")


def _is_additive(token: Token) -> bool:
    return token.kind is Token.Kind.OPERATOR and str(token.token) in _ADDITIVE


def _chunk(tokens: list[Token], start: int, step: int) -> list[Token]:
    """Tokens of the term next to ``start`` (``step`` +1: after it, -1: before it)."""
    out: list[Token] = []
    depth = 0
    i = start
    while 0 <= i < len(tokens):
        tok = tokens[i]
        if tok.kind is Token.Kind.CONTEXT:
            depth += (1 if str(tok.token) == "(" else -1) * step
        if depth < 0 or (depth == 0 and _is_additive(tok)):
            break
        out.append(tok)
        i += step
    return out if step > 0 else out[::-1]


def _text(tokens: list[Token]) -> str:
    return "".join(str(t.token) for t in tokens)


def _single_operand(tokens: list[Token]) -> str | None:
    if len(tokens) == 1 and tokens[0].kind in (Token.Kind.NAME, Token.Kind.PYTHON):
        return str(tokens[0].token)
    return None


def minus_warnings(rhs: str) -> list[str]:
    """Explain each ``-`` of a formula that removes a term (formula syntax, not arithmetic).

    ``log(DOSE) - log(WT)`` is the formula ``log(DOSE)``: the ``-`` removes the term
    ``log(WT)``. Removing the intercept (``- 1``, ``+ 0``) is not reported (the design never
    has one), nor is arithmetic inside a call such as ``I(log(DOSE) - log(WT))``. A deliberate
    removal such as ``AGE*SEX - AGE:SEX`` is reported too (it is rarely meant in this package).

    Parameters
    ----------
    rhs : str
        A formula right-hand side.

    Returns
    -------
    list of str
        One message per term-removing ``-`` (empty if none).

    Examples
    --------
    >>> minus_warnings("I(log(DOSE) - log(WT)) + RESPONSE - 1")
    []
    >>> len(minus_warnings("log(DOSE) - log(WT)"))
    1
    """
    try:
        tokens = list(DefaultFormulaParser().get_tokens(rhs))
    except Exception:  # noqa: BLE001 - a formula formulaic cannot read is reported later
        return []
    out = []
    for i, tok in enumerate(tokens):
        if tok.kind is not Token.Kind.OPERATOR or "-" not in str(tok.token):
            continue
        after = _chunk(tokens, i + 1, 1)
        if not after or (
            len(after) == 1
            and after[0].kind is Token.Kind.VALUE
            and str(after[0].token) in ("0", "1")
        ):
            continue
        removed = _text(after)
        before = _single_operand(_chunk(tokens, i - 1, -1)) if str(tok.token) == "-" else None
        hint = _minus_hint(before, _single_operand(after))
        out.append(f"'-' removes {removed} from the formula, it does not subtract; {hint}")
    return out


def _minus_hint(before: str | None, removed: str | None) -> str:
    if before is None or removed is None:
        return (
            "to subtract, wrap the arithmetic in I(...), e.g. I(log(DOSE) - log(WT)), "
            "or write log(DOSE / WT)"
        )
    hint = f"to subtract write I({before} - {removed})"
    a, b = (re.fullmatch(r"log\((.+)\)", s) for s in (before, removed))
    return f"{hint} or log({a.group(1)} / {b.group(1)})" if a and b else hint


def _warn_minus(parameter: str, rhs: str) -> None:
    for message in minus_warnings(rhs):
        warnings.warn(
            f"covariates.formulas.{parameter}: {rhs!r}: {message}", FormulaWarning, stacklevel=3
        )


def _resolve_formulas(
    formulas: Mapping[str, str], columns: pd.Index
) -> tuple[dict[str, str], set[str], list[str]]:
    """Formulas with column names spelled as in the data, the columns used, and problems."""
    lower = {c.lower(): c for c in columns}
    used: set[str] = set()
    rewritten: dict[str, str] = {}
    problems: list[str] = []
    for p, rhs in formulas.items():
        _, fproblems = formula_variables(rhs)  # the whitelist of functions and characters
        problems += [f"covariates.formulas.{p}: {fp}" for fp in fproblems]
        if fproblems:  # formulaic's parser may evaluate parts of a formula: whitelist first
            continue
        try:
            names = formula_columns(rhs)
        except Exception as exc:  # formulaic's parser errors
            problems.append(f"covariates.formulas.{p}: cannot parse {rhs!r}: {exc}")
            continue
        new = rhs
        for n in sorted(names):
            if n.lower() not in lower:
                problems.append(
                    f"covariates.formulas.{p}: no covariate column {n!r}; "
                    f"available: {list(columns)}"
                )
                continue
            used.add(lower[n.lower()])
            new = re.sub(
                rf"(?<![A-Za-z0-9_.]){re.escape(n)}(?![A-Za-z0-9_.])", lower[n.lower()], new
            )
        rewritten[p] = new
    return rewritten, used, problems


# ---------------------------------------------------------------------------------------------
# the covariate table
# ---------------------------------------------------------------------------------------------


def _categorical_text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), UNKNOWN_LEVEL).astype(str)


def _imputed(
    patients: pd.DataFrame,
    medians: Mapping[str, float],
    levels: Mapping[str, tuple[str, ...]],
    strategy: str = "level",
) -> Imputed:
    """Which patients' cells were filled in (or marginalised), per column of the design."""
    out: Imputed = {}
    for col in sorted([*medians, *levels]):
        missing = patients[col].isna()
        if missing.any():
            ids = tuple(str(i) for i in patients.index[missing])
            out[col] = (_handling(col, medians, levels, strategy), ids)
    return out


def _handling(
    col: str, medians: Mapping[str, float], levels: Mapping[str, tuple[str, ...]], strategy: str
) -> str:
    """How the missing cells of one column are handled, in words (the fit's notes)."""
    if col in medians:
        if strategy == "marginalize":
            return "median (covariates.missing = 'marginalize' applies to categorical covariates)"
        return "median"
    if strategy != "marginalize":
        return f"level {UNKNOWN_LEVEL!r}"
    if len(levels[col]) < 2:
        return f"its only observed level {levels[col][0]!r} (nothing to marginalise)"
    return (
        f"marginalised over the levels {list(levels[col])} with an estimated prevalence "
        f"(prevalence_{col}; posterior level probabilities p_{col}_level)"
    )


def _fit_table(
    patients: pd.DataFrame,
    used: set[str],
    ref_by_col: Mapping[str, str],
    missing: str = "level",
) -> tuple[pd.DataFrame, dict[str, float], dict[str, tuple[str, ...]], list[str]]:
    """Build the fit's covariate table; return it with its medians and levels.

    With ``missing = "marginalize"`` a categorical column's levels are its observed values and
    a missing cell is coded as the reference (a placeholder the model marginalises over).
    """
    table = pd.DataFrame(index=patients.index)
    medians: dict[str, float] = {}
    levels: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    marginalise = missing == "marginalize"
    for col in sorted(used):
        s = patients[col]
        if pd.api.types.is_numeric_dtype(s):
            values = s.astype(float)
            medians[col] = float(values.median())
            table[col] = values.fillna(medians[col]).to_numpy()
            continue
        values = _categorical_text(s)
        observed = values[s.notna().to_numpy()] if marginalise else values
        present = sorted(observed.unique())
        if not present:
            problems.append(
                f"covariates.missing: 'marginalize' needs observed values of {col!r}; every "
                "patient's is missing (leave it out of the formulas or use 'level')"
            )
            continue
        ref = ref_by_col.get(col)
        if ref is None:
            counts = observed[observed != UNKNOWN_LEVEL].value_counts()
            ref = str(counts.index[0]) if len(counts) else present[0]
        elif ref not in present:
            problems.append(
                f"reference: level {ref!r} of {col!r} not in the data; levels: {present}"
            )
            continue
        levels[col] = (ref, *[lv for lv in present if lv != ref])
        if marginalise:
            values = values.where(s.notna().to_numpy(), ref)
        table[col] = pd.Categorical(values.to_numpy(), categories=list(levels[col]))
    return table, medians, levels, problems


def level_warnings(table: pd.DataFrame, levels: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Warnings about categorical covariates with many levels or levels of a single patient.

    A column with more than :data:`MAX_LEVELS` levels, or with at least 5 levels and more
    levels than a third of the patients, is usually an ID-like column (site, batch, patient
    number) that was not meant as a covariate; a level held by a single patient has its
    effect estimated from that patient alone.

    Parameters
    ----------
    table : DataFrame
        The fit's covariate table (one row per patient; categorical columns coded).
    levels : mapping
        ``{column: levels}`` of the categorical columns.

    Returns
    -------
    list of str
        One message per column at fault, naming it and the counts.

    Examples
    --------
    >>> t = pd.DataFrame({"SITE": pd.Categorical(["a", "a", "b"])})
    >>> level_warnings(t, {"SITE": ("a", "b")})  # doctest: +NORMALIZE_WHITESPACE
    ["covariate 'SITE': level 'b' has a single patient (3 patients, 2 levels); its effect is
    estimated from that patient alone"]
    """
    out = []
    n = len(table)
    for col, lv in levels.items():
        counts = table[col].value_counts()
        used = [x for x in lv if counts.get(x, 0) > 0]
        many = len(used) > MAX_LEVELS or (len(used) >= 5 and len(used) > n / 3)
        if many:
            out.append(
                f"covariate {col!r} has {len(used)} levels for {n} patients: usually an ID-like "
                "column (site, batch, patient number); each level gets its own effect. Leave it "
                "out of the formulas, or group its levels"
            )
            continue
        single = [x for x in used if counts.get(x, 0) == 1]
        if single and len(used) > 1:
            shown = ", ".join(repr(x) for x in single[:5])
            shown += f", ... ({len(single)} levels)" if len(single) > 5 else ""
            has = "has" if len(single) == 1 else "have"
            out.append(
                f"covariate {col!r}: level{'s' if len(single) > 1 else ''} {shown} {has} a "
                f"single patient ({n} patients, {len(used)} levels); "
                f"{'its effect is' if len(single) == 1 else 'their effects are'} estimated "
                "from that patient alone"
            )
    return out


def _mentions(rhs: str, column: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_.]){re.escape(column)}(?![A-Za-z0-9_.])", rhs) is not None


def _prediction_table(patients: pd.DataFrame, design: CovariateDesign) -> pd.DataFrame:
    """Build new patients' covariate table with the fit's medians and levels."""
    lower = {c.lower(): c for c in patients.columns}
    table = pd.DataFrame(index=patients.index)
    problems: list[str] = []
    for col in sorted([*design.medians, *design.levels]):
        src = lower.get(col.lower())
        if src is None:
            users = [p for p, rhs in design.formulas.items() if _mentions(rhs, col)]
            problems.append(
                f"covariates.formulas.{','.join(users) or '?'}: no covariate column {col!r} "
                f"in the new patients; columns: {list(patients.columns)}"
            )
            continue
        s = patients[src]
        if col in design.medians:
            try:
                values = pd.to_numeric(s, errors="raise").astype(float)
            except (TypeError, ValueError):
                problems.append(f"covariate {col!r}: the fit's column is numeric, got {s.dtype}")
                continue
            table[col] = values.fillna(design.medians[col]).to_numpy()
        else:
            cats = list(design.levels[col])
            text = _categorical_text(s)
            text = text.where(text.isin(cats), cats[0])  # unseen levels: the reference
            table[col] = pd.Categorical(text.to_numpy(), categories=cats)
    if problems:
        raise SpecError("covariates", problems)
    return table


def _tidy_matrix(parameter: str, mm: Any, index: pd.Index, refs: Mapping[str, str]) -> pd.DataFrame:
    """Formulaic matrix as effect columns: tidy names, reference columns dropped, finite."""
    df = pd.DataFrame(np.asarray(mm, dtype=float), index=index)
    df.columns = [_tidy_column(str(c)) for c in mm.columns]
    # "- 1" makes formulaic code the first categorical in full; drop the reference column
    df = df[[c for c in df.columns if not _is_reference_column(c, refs)]]
    if not np.isfinite(df.to_numpy()).all():
        bad = df.columns[~np.isfinite(df.to_numpy()).all(axis=0)].tolist()
        raise SpecError(
            "covariates",
            f"covariates.formulas.{parameter}: non-finite values in {bad} (log of 0?)",
        )
    return df


def build_covariate_design(
    patients: pd.DataFrame,
    formulas: Mapping[str, str],
    reference: Mapping[str, str] | None = None,
    extra_fixed: Mapping[str, str] | None = None,
    missing: str = "level",
) -> CovariateDesign:
    """Build treatment-coded design matrices for every parameter formula.

    Parameters
    ----------
    patients : DataFrame
        One row per patient (index = patient ID), covariate columns.
    formulas : mapping
        ``{parameter: right-hand side}``, e.g. ``{"beta": "RESPONSE + log(DOSE)"}``.
    reference : mapping, optional
        ``{column: reference level}``; column names matched case-insensitively.
    extra_fixed : mapping, optional
        ``{parameter: column}`` extra categorical fixed effects (trial as a fixed effect).
    missing : {"level", "marginalize"}
        ``covariates.missing``: a missing categorical cell is the level ``unknown``, or coded
        as the reference level as a placeholder for the model's sum over the observed levels.

    Returns
    -------
    CovariateDesign
        The matrices, the references used, the missing-value handling and the constants
        (means, SDs, medians, levels) that code new patients the same way.

    Raises
    ------
    SpecError
        Unknown column, unknown reference level, or a formula formulaic cannot build.

    Warns
    -----
    FormulaWarning
        A ``-`` that removes a term, e.g. ``log(DOSE) - log(WT)`` (see :func:`minus_warnings`).
    DataWarning
        A categorical covariate with many levels, or levels of a single patient (see
        :func:`level_warnings`).

    Examples
    --------
    >>> pts = pd.DataFrame({"RESPONSE": ["CR/PR", "PD/NR", None]}, index=["1", "2", "3"])
    >>> d = build_covariate_design(pts, {"beta": "RESPONSE"}, {"RESPONSE": "PD/NR"})
    >>> d.effect_names("beta")
    ['RESPONSE[CR/PR]', 'RESPONSE[unknown]']
    """
    reference = dict(reference or {})
    lower = {c.lower(): c for c in patients.columns}
    ref_by_col = {}
    problems: list[str] = []
    for col, level in reference.items():
        if col.lower() not in lower:
            problems.append(
                f"reference: no covariate column {col!r}; columns: {list(patients.columns)}"
            )
        else:
            ref_by_col[lower[col.lower()]] = str(level)

    all_formulas = {p: rhs for p, rhs in formulas.items() if rhs and rhs.strip() not in ("", "1")}
    for p, rhs in all_formulas.items():
        _warn_minus(p, rhs)
    for p, col in (extra_fixed or {}).items():
        all_formulas[p] = f"{all_formulas[p]} + {col}" if p in all_formulas else col

    rewritten, used, fproblems = _resolve_formulas(all_formulas, patients.columns)
    problems += fproblems
    if problems:
        raise SpecError("covariates", problems)

    table, medians, levels, problems = _fit_table(patients, used, ref_by_col, missing)
    if problems:
        raise SpecError("covariates", problems)
    for message in level_warnings(table, levels):
        warnings.warn(message, DataWarning, stacklevel=2)
    refs_used = {col: lv[0] for col, lv in levels.items()}

    matrices: dict[str, pd.DataFrame] = {}
    states: dict[str, dict[str, Any]] = {}
    for p, rhs in rewritten.items():
        try:
            mm = model_matrix(f"{rhs} - 1", table, context=_CONTEXT, na_action="raise")
        except Exception as exc:  # formulaic raises many types; turn into a SpecError
            raise SpecError(
                "covariates", f"covariates.formulas.{p}: cannot build {rhs!r}: {exc}"
            ) from None
        matrices[p] = _tidy_matrix(p, mm, patients.index, refs_used)
        states[p] = _jsonable(mm.model_spec.transform_state)
    return CovariateDesign(
        matrices=matrices,
        reference=refs_used,
        imputed=_imputed(patients, medians, levels, missing),
        formulas=rewritten,
        transform_state=states,
        medians=medians,
        levels=levels,
        missing=missing,
    )


def _is_reference_column(col: str, refs: Mapping[str, str]) -> bool:
    m = re.fullmatch(r"(.+)\[(.+)\]", col)
    return bool(m) and refs.get(m.group(1)) == m.group(2)
