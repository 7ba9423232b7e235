"""Covariate design matrices for the log kinetic parameters, built with formulaic.

For each parameter with a formula, e.g. ``beta ~ RESPONSE + TUMOR_TYPE``, the patient-level
covariate table is turned into a treatment-coded design matrix without intercept (the intercept
is the typical value). Categorical reference levels are explicit (spec or ``--reference``) or,
if not given, the most frequent level. Column names follow the ``COLUMN[level]`` convention, so
effects read ``beta:RESPONSE[CR/PR]``.

Missing values never drop a patient:

* categorical: the missing cells become an explicit level ``unknown`` whose effect is estimated
  like any other level (strategy ``"level"``; the chosen handling is reported);
* continuous: the missing cells are set to the median of the observed values (reported).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import model_matrix

from bayes_cart.errors import SpecError
from bayes_cart.spec import formula_variables

UNKNOWN_LEVEL = "unknown"

_CONTEXT = {
    "log": np.log,
    "log10": np.log10,
    "log2": np.log2,
    "exp": np.exp,
    "sqrt": np.sqrt,
}


@dataclass(frozen=True)
class CovariateDesign:
    """Design matrices per parameter and how missing values were handled.

    Attributes
    ----------
    matrices : dict
        ``{parameter: DataFrame (patients x effect columns)}``.
    reference : dict
        Reference level used for each categorical covariate.
    imputed : dict
        ``{column: (strategy, [patient IDs])}`` for covariates with missing values.
    """

    matrices: dict[str, pd.DataFrame]
    reference: dict[str, str]
    imputed: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    def effect_names(self, parameter: str) -> list[str]:
        """Effect column names of one parameter (empty if it has no covariates)."""
        m = self.matrices.get(parameter)
        return [] if m is None else list(m.columns)


def _tidy_column(name: str) -> str:
    # formulaic writes "RESPONSE[T.CR/PR]"; the report convention is "RESPONSE[CR/PR]"
    return re.sub(r"\[T\.", "[", name)


def build_covariate_design(
    patients: pd.DataFrame,
    formulas: Mapping[str, str],
    reference: Mapping[str, str] | None = None,
    extra_fixed: Mapping[str, str] | None = None,
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

    Returns
    -------
    CovariateDesign
        The matrices, the references used and the missing-value handling.

    Raises
    ------
    SpecError
        Unknown column, unknown reference level, or a formula formulaic cannot build.

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
    for p, col in (extra_fixed or {}).items():
        all_formulas[p] = f"{all_formulas[p]} + {col}" if p in all_formulas else col

    used: set[str] = set()
    rewritten: dict[str, str] = {}
    for p, rhs in all_formulas.items():
        names, fproblems = formula_variables(rhs)
        problems += [f"covariates.formulas.{p}: {fp}" for fp in fproblems]
        new = rhs
        for n in names:
            if n.lower() not in lower:
                problems.append(
                    f"covariates.formulas.{p}: no covariate column {n!r}; "
                    f"available: {list(patients.columns)}"
                )
                continue
            used.add(lower[n.lower()])
            new = re.sub(
                rf"(?<![A-Za-z0-9_.]){re.escape(n)}(?![A-Za-z0-9_.])", lower[n.lower()], new
            )
        rewritten[p] = new
    if problems:
        raise SpecError("covariates", problems)

    table = pd.DataFrame(index=patients.index)
    imputed: dict[str, tuple[str, tuple[str, ...]]] = {}
    refs_used: dict[str, str] = {}
    for col in sorted(used):
        s = patients[col]
        missing = s.isna()
        numeric = pd.api.types.is_numeric_dtype(s)
        if numeric:
            values = s.astype(float)
            if missing.any():
                values = values.fillna(float(values.median()))
                imputed[col] = ("median", tuple(str(i) for i in s.index[missing]))
            table[col] = values.to_numpy()
        else:
            values = s.astype(object).where(~missing, UNKNOWN_LEVEL).astype(str)
            if missing.any():
                imputed[col] = ("level 'unknown'", tuple(str(i) for i in s.index[missing]))
            levels = sorted(values.unique())
            ref = ref_by_col.get(col)
            if ref is None:
                counts = values[values != UNKNOWN_LEVEL].value_counts()
                ref = str(counts.index[0]) if len(counts) else levels[0]
            elif ref not in levels:
                problems.append(
                    f"reference: level {ref!r} of {col!r} not in the data; levels: {levels}"
                )
                continue
            refs_used[col] = ref
            ordered = [ref] + [lv for lv in levels if lv != ref]
            table[col] = pd.Categorical(values.to_numpy(), categories=ordered)
    if problems:
        raise SpecError("covariates", problems)

    matrices: dict[str, pd.DataFrame] = {}
    for p, rhs in rewritten.items():
        try:
            mm = model_matrix(f"{rhs} - 1", table, context=_CONTEXT, na_action="raise")
        except Exception as exc:  # formulaic raises many types; turn into a SpecError
            raise SpecError(
                "covariates", f"covariates.formulas.{p}: cannot build {rhs!r}: {exc}"
            ) from None
        df = pd.DataFrame(np.asarray(mm, dtype=float), index=patients.index)
        df.columns = [_tidy_column(str(c)) for c in mm.columns]
        # "- 1" makes formulaic code the first categorical in full; drop the reference column
        df = df[[c for c in df.columns if not _is_reference_column(c, refs_used)]]
        if not np.isfinite(df.to_numpy()).all():
            bad = df.columns[~np.isfinite(df.to_numpy()).all(axis=0)].tolist()
            raise SpecError(
                "covariates", f"covariates.formulas.{p}: non-finite values in {bad} (log of 0?)"
            )
        matrices[p] = df
    return CovariateDesign(matrices=matrices, reference=refs_used, imputed=imputed)


def _is_reference_column(col: str, refs: Mapping[str, str]) -> bool:
    m = re.fullmatch(r"(.+)\[(.+)\]", col)
    return bool(m) and refs.get(m.group(1)) == m.group(2)
