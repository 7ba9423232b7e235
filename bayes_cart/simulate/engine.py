"""The simulation engine: :func:`simulate_patients` on a design, with the truth it used.

Group deviations, random effects and residuals drawn in a fixed order from one generator;
curves from the registered structure's own route (:mod:`bayes_cart.kinetics.solvers`), the
infusions superposed; LLOQ censoring and the stopping rule. The model is described in
:mod:`bayes_cart.simulate`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import DataError, DataWarning, Problem
from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.solvers import available_solvers, batched_log_total, output_names
from bayes_cart.model.scales import from_scale, to_scale
from bayes_cart.simulate.design import _check_design, _design_frame, _design_infusions
from bayes_cart.simulate.population import PopulationParameters, _level


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
    >>> from bayes_cart.simulate import make_design
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
