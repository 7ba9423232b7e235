"""Missing categorical covariates summed over their levels (``covariates.missing = "marginalize"``).

A categorical covariate ``c`` with levels ``l = 1..L`` (the observed ones, reference first) gets
a prevalence ``pi_c ~ Dirichlet(1, ..., 1)``. A patient whose value is observed contributes its
usual terms plus ``log pi_c[l_i]``; a patient whose value is missing contributes::

    log sum_l pi_c[l] p(random effects_i, data_i | level l)

jointly over every parameter whose formula uses ``c`` (the same level in all of them). A
patient missing several marginalised covariates sums over the product of their levels, with
prior weight ``prod_c pi_c[l_c]`` (at most :data:`MAX_COMPONENTS` combinations per patient).

This module holds the data side: which patients miss what, the level combinations
(*components*) of each such patient, and the design rows of every affected parameter under
each component (coded by :meth:`bayes_cart.model.covariates.CovariateDesign.evaluate`, so
interactions and transforms are coded exactly as in the fit). The PyMC terms are in
:mod:`bayes_cart.model.marginal_model`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import SpecError
from bayes_cart.model.covariates import CovariateDesign, formula_columns

#: Most level combinations summed over for one patient (the product of the levels of the
#: marginalised covariates it misses); more is refused with a SpecError.
MAX_COMPONENTS = 64

__all__ = [
    "MAX_COMPONENTS",
    "MarginalDesign",
    "component_tables",
    "enumerate_components",
    "marginal_design",
]


@dataclass(frozen=True)
class MarginalDesign:
    """Patients with a missing marginalised covariate and their level combinations.

    Attributes
    ----------
    columns : tuple of str
        Marginalised categorical columns with at least one missing value and two levels.
    levels : dict
        ``{column: levels}``, reference first (the order of ``prevalence_<column>``).
    codes : ndarray of int, shape (patients, columns)
        Level index of every patient in every column, -1 where missing.
    patients : ndarray of int
        Positions (model order) of the patients missing at least one of ``columns``.
    components : ndarray of int, shape (missing patients, K, columns)
        Level index of each column in each component; observed columns keep their level.
        Patients with fewer than ``K`` components repeat their first (``valid`` False).
    valid : ndarray of bool, shape (missing patients, K)
        Which components are real.
    parameters : tuple of str
        Estimated parameters whose formula uses one of ``columns``.
    matrices : dict
        ``{parameter: ndarray (K, patients, effects)}``: the fit's design matrix with the
        missing patients' rows coded for component ``k``.
    """

    columns: tuple[str, ...]
    levels: dict[str, tuple[str, ...]]
    codes: np.ndarray
    patients: np.ndarray
    components: np.ndarray
    valid: np.ndarray
    parameters: tuple[str, ...]
    matrices: dict[str, np.ndarray]

    @property
    def n_components(self) -> int:
        """Number of components ``K`` (the most of any missing patient)."""
        return int(self.components.shape[1])

    def missing(self, column: str) -> np.ndarray:
        """Rows of :attr:`patients` (positions into it) whose ``column`` is missing."""
        c = self.columns.index(column)
        return np.flatnonzero(self.codes[self.patients, c] < 0)

    def counts(self, column: str) -> np.ndarray:
        """Count the patients observed at each level of ``column``."""
        codes = self.codes[:, self.columns.index(column)]
        return np.bincount(codes[codes >= 0], minlength=len(self.levels[column]))

    def coords(self, patient_ids: Sequence[str]) -> dict[str, list[str]]:
        """Model coordinates: ``<column>_level`` and ``patient_missing_<column>``."""
        out: dict[str, list[str]] = {}
        for c in self.columns:
            out[f"{c}_level"] = list(self.levels[c])
            out[f"patient_missing_{c}"] = [patient_ids[self.patients[j]] for j in self.missing(c)]
        return out


def enumerate_components(
    codes: np.ndarray, n_levels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Every combination of levels of the missing cells of each row.

    Parameters
    ----------
    codes : ndarray of int, shape (rows, columns)
        Level indices, -1 where missing.
    n_levels : sequence of int
        Levels per column.

    Returns
    -------
    components : ndarray of int, shape (rows, K, columns)
        Observed cells keep their level; a row with fewer than ``K`` combinations repeats its
        first.
    valid : ndarray of bool, shape (rows, K)

    Examples
    --------
    >>> comps, valid = enumerate_components(np.array([[-1, 0], [1, -1]]), [2, 3])
    >>> comps[1].tolist(), valid.tolist()
    ([[1, 0], [1, 1], [1, 2]], [[True, True, False], [True, True, True]])
    """
    codes = np.asarray(codes, dtype=np.int64)
    per_row = [
        list(itertools.product(*[range(n_levels[c]) if x < 0 else (x,) for c, x in enumerate(row)]))
        for row in codes
    ]
    k = max((len(r) for r in per_row), default=1)
    components = np.zeros((len(codes), k, codes.shape[1]), dtype=np.int64)
    valid = np.zeros((len(codes), k), dtype=bool)
    for j, combos in enumerate(per_row):
        components[j, : len(combos)] = combos
        components[j, len(combos) :] = combos[0]
        valid[j, : len(combos)] = True
    return components, valid


def component_tables(
    patients: pd.DataFrame,
    rows: np.ndarray,
    columns: Sequence[str],
    levels: dict[str, tuple[str, ...]],
    components: np.ndarray,
) -> list[pd.DataFrame]:
    """Copy the patient table once per component, the missing cells of ``rows`` filled in.

    Only missing cells are written: observed values stay as they are.

    Parameters
    ----------
    patients : DataFrame
        One row per patient.
    rows : ndarray of int
        Positions of the rows to fill.
    columns : sequence of str
        The columns of ``components`` (spelled as in ``patients``).
    levels : dict
        ``{column: levels}``.
    components : ndarray of int, shape (len(rows), K, len(columns))

    Returns
    -------
    list of DataFrame
        ``K`` tables.
    """
    out = []
    for k in range(components.shape[1]):
        table = patients.copy()
        for c, col in enumerate(columns):
            values = table[col].astype(object).to_numpy().copy()
            gap = pd.isna(values[rows])
            values[rows[gap]] = [levels[col][i] for i in components[gap, k, c]]
            table[col] = values
        out.append(table)
    return out


def _codes(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    text = values.astype(object).where(values.notna(), None)
    return np.array([-1 if v is None else levels.index(str(v)) for v in text], dtype=np.int64)


def _affected(design: CovariateDesign, columns: Sequence[str], spec: Any) -> tuple[str, ...]:
    """Estimated parameters (not k or T0) whose formula uses one of ``columns``."""
    out = []
    for p, rhs in design.formulas.items():
        prm = spec.doc.parameters.get(p)
        if prm is None or prm.typical is None or prm.distribution_phase_only:
            continue
        if formula_columns(rhs) & set(columns):
            out.append(p)
    return tuple(out)


def _problems(
    spec: Any,
    patient_ids: Sequence[str],
    columns: Sequence[str],
    codes: np.ndarray,
    levels: dict[str, tuple[str, ...]],
    parameters: Sequence[str],
    formulas: dict[str, str],
) -> list[str]:
    """List what ``"marginalize"`` cannot do with these data: too many combinations, no IIV."""
    problems = []
    n_levels = np.array([len(levels[c]) for c in columns])
    for i, row in enumerate(codes):
        k = int(np.prod(n_levels[row < 0]))
        if k > MAX_COMPONENTS:
            gone = [c for c, x in zip(columns, row, strict=True) if x < 0]
            problems.append(
                f"covariates.missing: 'marginalize': patient {patient_ids[i]} misses "
                f"{', '.join(gone)}: {k} level combinations to sum over, more than "
                f"{MAX_COMPONENTS}; give some of these values or use missing = 'level'"
            )
    for p in parameters:
        if spec.doc.parameters[p].iiv is None:
            used = sorted(formula_columns(formulas[p]) & set(columns))
            problems.append(
                f"covariates.missing: 'marginalize' needs IIV on parameters that use a "
                f"marginalised covariate: {p} uses {', '.join(used)} and has "
                f"none (add parameters.{p}.iiv); without a random effect its value differs by "
                "level only inside the likelihood, which is not summed over"
            )
    return problems


def marginal_design(
    patients: pd.DataFrame, design: CovariateDesign, spec: Any
) -> MarginalDesign | None:
    """Find what the model sums over: None when nothing is marginalised.

    Parameters
    ----------
    patients : DataFrame
        One row per patient in model order (the covariates as given, missing values as NaN).
    design : CovariateDesign
        The fit's design (built with ``missing = "marginalize"``).
    spec : ModelSpec
        The spec (IIV of the affected parameters, the source named in errors).

    Returns
    -------
    MarginalDesign or None
        None when ``covariates.missing`` is not ``"marginalize"`` or no categorical covariate
        with two or more levels has a missing value.

    Raises
    ------
    SpecError
        A patient with more than :data:`MAX_COMPONENTS` level combinations, or an affected
        parameter without IIV; the message names ``covariates.missing``.
    """
    if design.missing != "marginalize":
        return None
    columns = tuple(
        c for c in sorted(design.levels) if len(design.levels[c]) > 1 and patients[c].isna().any()
    )
    if not columns:
        return None
    levels = {c: design.levels[c] for c in columns}
    codes = np.column_stack([_codes(patients[c], levels[c]) for c in columns])
    parameters = _affected(design, columns, spec)
    ids = [str(i) for i in patients.index]
    problems = _problems(spec, ids, columns, codes, levels, parameters, design.formulas)
    if problems:
        raise SpecError(spec.source, problems)
    rows = np.flatnonzero((codes < 0).any(axis=1))
    components, valid = enumerate_components(codes[rows], [len(levels[c]) for c in columns])
    tables = component_tables(patients, rows, columns, levels, components)
    coded = [design.evaluate(t) for t in tables]
    matrices = {}
    for p in parameters:
        fitted = design.matrices[p].to_numpy(dtype=float)
        per_k = []
        for k in range(len(tables)):
            x = fitted.copy()
            x[rows] = coded[k][p].to_numpy(dtype=float)[rows]
            per_k.append(x)
        matrices[p] = np.stack(per_k)
    return MarginalDesign(
        columns=columns,
        levels=levels,
        codes=codes,
        patients=rows,
        components=components,
        valid=valid,
        parameters=parameters,
        matrices=matrices,
    )
