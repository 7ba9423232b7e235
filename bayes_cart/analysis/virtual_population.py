"""Virtual patients drawn from a fit: typical patients per group and virtual populations.

Two kinds of "patients from the population" are built from a fit's posterior (through
:func:`bayes_cart.predict.population_parameters`, so the covariate, trial and IIV arithmetic is
exactly the model's):

* the **typical patient of a group** (:func:`typical_parameters`): the covariate ``by`` at one
  level, every other covariate the model uses at its reference (categorical: the reference
  level of the fit; continuous: the median over the fitted patients), no random effect. A trial
  random effect is included when ``by`` is the trial column (the fitted ``u_trial``) and left
  out (set to 0) otherwise. One value per posterior draw: the posterior of the typical value.
* a **virtual population** (:func:`simulate_virtual_population`): ``n_patients`` new patients per
  group, each paired with a *different* posterior draw (parameter uncertainty) and with new
  random effects ``eta ~ MVN(0, Omega)`` of that draw (inter-individual variability). Their
  effector, memory and total CAR-T curves on a time grid (default 0-304 d = 10 months) are
  summarised by percentiles (default 10th, 50th, 90th) per group and time, as in Liu et al.
  (2021) Fig 6 and S16.

Covariates of virtual patients (``covariates=``): ``"observed"`` (default) gives each virtual
patient the covariates of a random fitted patient of its group (so a trial's virtual patients
have that trial's mix of responders, tumour types, doses...), ``"reference"`` the typical
patient's covariates (only the random effects vary).

Examples
--------
>>> from bayes_cart.inference.io import load_fit  # doctest: +SKIP
>>> fit = load_fit("out/fit.nc")  # doctest: +SKIP
>>> bands = simulate_virtual_population(fit, by="TRIAL", random_seed=1)  # doctest: +SKIP
>>> bands["total"].sel(group="CLL", quantile=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from bayes_cart.data.column_roles import find_column
from bayes_cart.errors import DataError, Problem
from bayes_cart.model.covariates import formula_columns
from bayes_cart.predict import (
    curve_states,
    fit_kinetics,
    fit_solver,
    population_parameters,
    predict_curves,
)

__all__ = [
    "DEFAULT_TIMES",
    "PatientGroups",
    "group_levels",
    "observed_by_group",
    "simulate_virtual_population",
    "typical_parameters",
    "typical_patients",
]

#: Default simulation grid: daily from infusion to 10 months (304 days, as in the paper's Fig 6).
DEFAULT_TIMES: np.ndarray = np.arange(0.0, 305.0)

#: Label of the single group when ``by`` is None.
ALL = "all"


class PatientGroups:
    """How a fit's patients split into groups for one covariate (from :func:`group_levels`).

    Attributes
    ----------
    column : str or None
        The covariate column as spelled in the data (None: one group of everyone).
    levels : list
        Group levels in output order, the reference first.
    reference : object
        The reference level.
    numeric : bool
        Whether the column is continuous (levels are values to set, not groups of patients).
    random_group : bool
        Whether the column is the trial column of a random-effect group level.
    """

    def __init__(
        self,
        column: str | None,
        levels: list[Any],
        reference: Any,
        numeric: bool,
        random_group: bool,
    ) -> None:
        self.column = column
        self.levels = levels
        self.reference = reference
        self.numeric = numeric
        self.random_group = random_group

    @property
    def labels(self) -> list[str]:
        """Levels as text (the ``group`` coordinate)."""
        return [_label(v) for v in self.levels]

    def __repr__(self) -> str:
        return (
            f"PatientGroups(column={self.column!r}, levels={self.labels}, "
            f"reference={self.reference!r})"
        )


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _match_column(fit: Any, name: str) -> str:
    """Column of the fitted patient table named ``name`` (case-insensitive), or DataError."""
    cols = list(fit.dataset.patients.columns)
    col = find_column(cols, name)
    if col is None:
        raise DataError(
            str(getattr(fit.dataset, "source", "<fit>")),
            Problem(f"no covariate {name!r} in the fitted data; covariates: {cols}", column=name),
        )
    return col


def model_columns(fit: Any) -> list[str]:
    """Patient covariate columns in the model's design (formulas and a fixed-effect group column).

    A random-effect group column (trial) is not a covariate: the typical patient has no trial.
    """
    doc = fit.spec.doc
    cols = list(fit.dataset.patients.columns)
    lower = {c.lower(): c for c in cols}
    used: list[str] = []
    for rhs in doc.covariates.formulas.values():
        used += [lower[n.lower()] for n in sorted(formula_columns(rhs)) if n.lower() in lower]
    if doc.group.mode == "fixed" and fit.model_data.group_column:
        used.append(fit.model_data.group_column)
    return list(dict.fromkeys(used))


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _categorical_values(series: pd.Series) -> pd.Series:
    """Text values with missing values as the model's explicit ``unknown`` level."""
    from bayes_cart.model.covariates import UNKNOWN_LEVEL

    return series.astype(object).where(series.notna(), UNKNOWN_LEVEL).astype(str)


def group_levels(
    fit: Any,
    by: str | None,
    levels: Sequence[Any] | None = None,
    reference: Any = None,
) -> PatientGroups:
    """Resolve the groups of a covariate: its levels and its reference level.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str or None
        A patient covariate (case-insensitive). None: one group (``"all"``).
    levels : sequence, optional
        Levels to use (required for a continuous covariate: the values to compare, e.g.
        doses). Default: every level in the fitted data, missing values as ``"unknown"``.
    reference : optional
        Reference level. Default: the fit's reference for a covariate of the model, otherwise
        the most frequent level (for a continuous covariate: the first of ``levels``).

    Returns
    -------
    PatientGroups
        Levels with the reference first.

    Raises
    ------
    DataError
        Unknown column, a continuous column without ``levels``, or an unknown level.
    """
    if by is None:
        return PatientGroups(None, [ALL], ALL, numeric=False, random_group=False)
    col = _match_column(fit, by)
    series = fit.dataset.patients[col]
    source = str(getattr(fit.dataset, "source", "<fit>"))
    md = fit.model_data
    random_group = fit.spec.doc.group.mode == "random" and md.group_column == col
    if _is_numeric(series):
        if not levels:
            raise DataError(
                source,
                Problem(
                    f"{col!r} is continuous: give the values to compare (levels=[...], "
                    f"e.g. {series.quantile(0.25):g} and {series.quantile(0.75):g})",
                    column=col,
                ),
            )
        values = [float(v) for v in levels]
        ref = float(reference) if reference is not None else values[0]
        return PatientGroups(col, [ref] + [v for v in values if v != ref], ref, True, random_group)
    text = _categorical_values(series)
    counts = text.value_counts()
    present = sorted(counts.index)
    if random_group:
        present = list(md.group_levels)
    wanted = [str(v) for v in levels] if levels else present
    unknown = [v for v in wanted if v not in present]
    if unknown:
        raise DataError(
            source, Problem(f"level(s) {unknown} not in {col!r}; levels: {present}", column=col)
        )
    if reference is None:
        ref = md.design.reference.get(col)
        if ref is None:
            known = counts[[v for v in counts.index if v in wanted]]
            ref = str(known.index[0]) if len(known) else wanted[0]
    else:
        ref = str(reference)
        if ref not in present:
            raise DataError(
                source,
                Problem(f"reference level {ref!r} not in {col!r}; levels: {present}", column=col),
            )
    ordered = [ref] + [v for v in wanted if v != ref]
    return PatientGroups(col, ordered, ref, False, random_group)


def typical_patients(
    fit: Any,
    groups: PatientGroups,
    at: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per group: the typical patient's covariates.

    The ``by`` column takes each level; columns in ``at`` take the given value; other covariates
    the model uses are at the reference (categorical: the fit's reference level; continuous: the
    median over the fitted patients); covariates the model does not use are missing (so, e.g.,
    a distribution phase defined on an unused column does not apply).

    Parameters
    ----------
    fit : Fit
        A fit.
    groups : PatientGroups
        From :func:`group_levels`.
    at : mapping, optional
        ``{column: value}`` covariate values to fix (case-insensitive names).

    Returns
    -------
    pandas.DataFrame
        Index = group labels, columns = the fitted patient covariates.
    """
    patients = fit.dataset.patients
    used = set(model_columns(fit))
    fixed = {_match_column(fit, k): v for k, v in (at or {}).items()}
    ref = fit.model_data.design.reference
    row: dict[str, Any] = {}
    for col in patients.columns:
        s = patients[col]
        if col in fixed:
            row[col] = fixed[col]
        elif col in used:
            row[col] = float(s.median()) if _is_numeric(s) else ref.get(col, _mode(s))
        else:
            row[col] = np.nan if _is_numeric(s) else None
    rows = []
    for level in groups.levels:
        r = dict(row)
        if groups.column is not None:
            r[groups.column] = level
        rows.append(r)
    return _typed_frame(patients, rows, groups.labels)


def _mode(series: pd.Series) -> str:
    text = _categorical_values(series)
    return str(text.value_counts().index[0])


def _typed_frame(
    template: pd.DataFrame, rows: list[dict[str, Any]], index: list[str]
) -> pd.DataFrame:
    """Frame with the template's column kinds: float for numeric, object text otherwise."""
    out = pd.DataFrame(rows, index=pd.Index(index, name="group"))
    for col in template.columns:
        if _is_numeric(template[col]):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
        else:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out[list(template.columns)]


def _trial_mode(groups: PatientGroups, covariates: str = "reference") -> str:
    """Trial effect: fitted for trial groups and for resampled patients, none otherwise."""
    return "fitted" if (groups.random_group or covariates == "observed") else "none"


def typical_parameters(
    fit: Any,
    by: str | None = None,
    *,
    levels: Sequence[Any] | None = None,
    reference: Any = None,
    at: Mapping[str, Any] | None = None,
    n_draws: int | None = None,
    random_seed: int | np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], PatientGroups]:
    """Posterior draws of the typical patient's parameters for each level of ``by``.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str, optional
        Covariate defining the groups; None for the overall typical patient.
    levels, reference : optional
        See :func:`group_levels`.
    at : mapping, optional
        Covariate values to fix for every group (see :func:`typical_patients`).
    n_draws : int, optional
        Random subset of posterior draws (all if None).
    random_seed : int or Generator
        Seed for the draw subset.

    Returns
    -------
    params : dict
        ``{parameter: array (sample, group)}`` on the natural scale, every kinetic parameter.
    groups : PatientGroups
        The groups, in the column order of the arrays.

    Examples
    --------
    >>> params, groups = typical_parameters(fit, "RESPONSE")  # doctest: +SKIP
    >>> ratio = params["beta"][:, 1] / params["beta"][:, 0]  # doctest: +SKIP
    """
    groups = group_levels(fit, by, levels, reference)
    table = typical_patients(fit, groups, at)
    params = population_parameters(
        fit,
        table,
        n_draws=n_draws,
        iiv=False,
        group=_trial_mode(groups),
        random_seed=random_seed,
    )
    return params, groups


def _source_rows(
    fit: Any, groups: PatientGroups, covariates: str, at: Mapping[str, Any] | None
) -> list[pd.DataFrame]:
    """Per group, the covariate rows virtual patients are drawn from."""
    if covariates == "reference":
        typical = typical_patients(fit, groups, at)
        return [typical.iloc[[i]] for i in range(len(groups.levels))]
    patients = fit.dataset.patients
    fixed = {_match_column(fit, k): v for k, v in (at or {}).items()}
    out = []
    for level in groups.levels:
        if groups.column is None:
            rows = patients.copy()
        elif groups.numeric:
            rows = patients.copy()
            rows[groups.column] = float(level)
        else:
            mask = _categorical_values(patients[groups.column]) == level
            rows = patients[mask.to_numpy()].copy()
        for col, value in fixed.items():
            rows[col] = value
        out.append(rows)
    return out


def _pair_cells(
    n: int, n_draws: int, n_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``n`` distinct (draw, row) cells, each draw used as evenly as possible.

    Draws are used in a random order, each at most ``ceil(n / n_draws)`` times (so every
    virtual patient has its own draw when ``n <= n_draws``); the rows of one draw are distinct.
    """
    draw_order = rng.permutation(n_draws)
    j = np.arange(n)
    s_idx = draw_order[j % n_draws]
    rep = j // n_draws
    row_perm = rng.permuted(np.tile(np.arange(n_rows), (n_draws, 1)), axis=1)
    r_idx = row_perm[s_idx, rep]
    return s_idx, r_idx


def _quantiles(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles over axis 0 of linear-scale values (log -inf, i.e. 0, handled)."""
    return np.quantile(values, q, axis=0)


def simulate_virtual_population(
    fit: Any,
    by: str | None = "trial",
    *,
    n_patients: int = 1000,
    times: Sequence[float] | np.ndarray | None = None,
    levels: Sequence[Any] | None = None,
    reference: Any = None,
    at: Mapping[str, Any] | None = None,
    covariates: Literal["observed", "reference"] = "observed",
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    typical: bool = True,
    random_seed: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Simulate a virtual population per group and summarise its curves by percentiles.

    Each virtual patient gets its own posterior draw (draws are reused only when
    ``n_patients`` exceeds the number of draws) and new random effects from that draw's
    ``Omega`` (with the fitted correlations); its trial effect is the fitted one of its trial
    (a trial random effect), or none when the group has no trial.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str or None
        Grouping covariate, default ``"trial"`` (case-insensitive; falls back to one group
        when the data have no such column). None: one group of everyone.
    n_patients : int
        Virtual patients per group (the paper used 1000).
    times : array, optional
        Time grid (days), default :data:`DEFAULT_TIMES` (0-304 d, daily).
    levels, reference : optional
        Groups to simulate (see :func:`group_levels`).
    at : mapping, optional
        Covariate values to set for every virtual patient.
    covariates : {"observed", "reference"}
        Covariates of the virtual patients: resampled from the group's fitted patients, or
        those of the group's typical patient (see the module docstring). For a continuous
        ``by`` with ``"observed"``, every fitted patient's covariates with ``by`` set to the
        level.
    quantiles : sequence of float
        Percentiles of the bands (fractions), default 10th, 50th and 90th.
    typical : bool
        Also return the typical patient's curves (posterior percentiles of the curve of the
        group's typical patient: parameter uncertainty only, over at most 1000 posterior draws)
        as ``<state>_typical``.
    random_seed : int or Generator
        Seed (draw choice, covariate resampling, random effects).

    Returns
    -------
    xarray.Dataset
        Dims ``group, time, quantile``; variables ``total``, ``effector``, ``memory`` (levels in
        data units; ``effector``/``memory`` only for kinetics with E and M, e.g. liu2021) and,
        with ``typical=True``, ``total_typical`` etc. Attributes: ``by``, ``reference``,
        ``n_patients``, ``covariates``, ``kinetics``.

    Examples
    --------
    >>> ds = simulate_virtual_population(fit, by="TRIAL", random_seed=1)  # doctest: +SKIP
    >>> ds["total"].sel(quantile=0.9) / ds["total"].sel(quantile=0.1)  # doctest: +SKIP
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    if covariates not in ("observed", "reference"):
        raise ValueError(f"covariates must be 'observed' or 'reference', got {covariates!r}")
    rng = np.random.default_rng(random_seed)
    if by is not None and find_column(fit.dataset.patients.columns, by) is None:
        if by == "trial":  # the default: no trial column means one group
            by = None
        else:
            _match_column(fit, by)  # raises a DataError naming the column
    groups = group_levels(fit, by, levels, reference)
    t = DEFAULT_TIMES if times is None else np.asarray(times, dtype=float)
    q = np.asarray(quantiles, dtype=float)
    post = fit.idata.posterior
    n_total = post.sizes["chain"] * post.sizes["draw"]
    s = min(n_total, n_patients)
    m = -(-n_patients // s)  # rows needed per draw

    sources = _source_rows(fit, groups, covariates, at)
    tables, slices, start = [], [], 0
    for rows in sources:
        if len(rows) == 0:
            raise DataError(
                str(getattr(fit.dataset, "source", "<fit>")),
                Problem("a group without patients", column=groups.column),
            )
        reps = -(-m // len(rows))
        tiled = pd.concat([rows] * reps) if reps > 1 else rows
        tables.append(tiled)
        slices.append(slice(start, start + len(tiled)))
        start += len(tiled)
    table = pd.concat(tables)
    table.index = pd.RangeIndex(len(table))
    params = population_parameters(
        fit, table, n_draws=s, iiv=True, group=_trial_mode(groups, covariates), random_seed=rng
    )
    states = _state_names(fit_kinetics(fit))
    out = {name: np.empty((len(groups.levels), len(t), len(q))) for name in states.values()}
    for g, sl in enumerate(slices):
        n_rows = sl.stop - sl.start
        s_idx, r_idx = _pair_cells(n_patients, s, n_rows, rng)
        chosen = {p: v[:, sl][s_idx, r_idx][None, :] for p, v in params.items()}
        curves = predict_curves(fit_kinetics(fit), chosen, t, solver=fit_solver(fit))
        for key, name in states.items():
            out[name][g] = _quantiles(np.exp(curves[key][0]), q).T
    data_vars = {name: (("group", "time", "quantile"), values) for name, values in out.items()}
    if typical:
        tparams, _ = typical_parameters(
            fit,
            groups.column,
            levels=groups.levels,
            reference=groups.reference,
            at=at,
            n_draws=max(s, min(n_total, 1000)),
            random_seed=rng,
        )
        curves = predict_curves(fit_kinetics(fit), tparams, t, solver=fit_solver(fit))
        for key, name in states.items():
            vals = np.quantile(np.exp(curves[key]), q, axis=0)  # (q, group, time)
            data_vars[f"{name}_typical"] = (("group", "time", "quantile"), vals.transpose(1, 2, 0))
    ds = xr.Dataset(
        data_vars,
        coords={"group": groups.labels, "time": t, "quantile": q},
        attrs={
            "by": groups.column or "",
            "reference": _label(groups.reference),
            "n_patients": int(n_patients),
            "covariates": covariates,
            "kinetics": fit.spec.kinetics,
            "time_unit": "day",
        },
    )
    ds["time"].attrs["units"] = "day"
    return ds


def _state_names(kinetics: str) -> dict[str, str]:
    probe = curve_states(kinetics)
    names = {"log_total": "total"}
    if "log_E" in probe:
        names["log_E"] = "effector"
    if "log_M" in probe:
        names["log_M"] = "memory"
    return names


def observed_by_group(fit: Any, by: str | None) -> pd.DataFrame:
    """Observed samples of the fitted patients with their group label (for plot overlays).

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str or None
        Grouping covariate (missing values become ``"unknown"``); None: group ``"all"``.

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME, DV, CENS, group``.
    """
    obs = fit.dataset.observations[["ID", "TIME", "DV", "CENS"]].copy()
    if by is None:
        obs["group"] = ALL
        return obs
    col = _match_column(fit, by)
    values = fit.dataset.patients[col]
    labels = (values.map(_label) if _is_numeric(values) else _categorical_values(values)).astype(
        object
    )
    obs["group"] = obs["ID"].map(dict(zip(values.index.astype(str), labels, strict=True)))
    return obs
