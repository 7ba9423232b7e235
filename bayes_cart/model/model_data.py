"""Turn a validated dataset and a model spec into the arrays the PyMC model needs.

This is the only place where the dataset is read for model building, so what the model sees
(and what was imputed, set from data or which patients have a distribution phase) is recorded in
one :class:`ModelData` that is also saved with a fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import SpecError
from bayes_cart.kinetics.superposition import Infusions, dose_parameter
from bayes_cart.model.covariates import CovariateDesign, build_covariate_design
from bayes_cart.model.expressions import evaluate_subset
from bayes_cart.model.marginal import MarginalDesign, marginal_design
from bayes_cart.model.spec import ModelSpec
from bayes_cart.model.step_covariates import StepCovariate, find_step_covariate, split_step_terms


@dataclass(frozen=True)
class ModelData:
    """Arrays and indices for one model.

    Attributes
    ----------
    patient_ids : tuple of str
        Patients in model order (the ``patient`` coordinate).
    time, log_dv, log_limit : ndarray
        Per observation: time (days), log of DV, log of LIMIT (NaN when absent).
    cens : ndarray of int
        Per observation: 0 quantified, 1 left-censored (DV = LLOQ), -1 right-censored.
    patient_index : ndarray of int
        Per observation, the position of its patient.
    obs_rows : ndarray of int
        Source row numbers of the observations (the ``obs`` coordinate).
    design : CovariateDesign
        Covariate matrices per parameter.
    group_levels : tuple of str
        Levels of the grouping column (trials), empty when no group level.
    group_index : ndarray of int
        Per patient, the position of its group.
    distribution_mask : ndarray of bool
        Per patient, whether the distribution phase (k, T0) applies.
    from_data : dict
        ``{parameter: per-patient values}`` set from the observed profiles.
    notes : list of str
        What was imputed, set from data or excluded (shown in the fit output).
    step : StepCovariate or None
        A time-varying 0/1 column in the formulas (:mod:`bayes_cart.model.step_covariates`): which
        parameters it acts on and each patient's change time.
    marginal : MarginalDesign or None
        Patients whose missing categorical covariates the model sums over
        (``covariates.missing = "marginalize"``, :mod:`bayes_cart.model.marginal`); None otherwise.
    infusions : Infusions or None
        Each patient's infusions (clock starts, log dose ratios to the first, counts; padded
        to the largest count) when some patient has several
        (:mod:`bayes_cart.kinetics.superposition`); None when every patient has one, so that
        such data give the single-infusion model unchanged.
    """

    patient_ids: tuple[str, ...]
    time: np.ndarray
    log_dv: np.ndarray
    log_limit: np.ndarray
    cens: np.ndarray
    patient_index: np.ndarray
    obs_rows: np.ndarray
    design: CovariateDesign
    group_column: str | None
    group_levels: tuple[str, ...]
    group_index: np.ndarray
    distribution_mask: np.ndarray
    from_data: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    marginal: MarginalDesign | None = None
    step: StepCovariate | None = None
    infusions: Infusions | None = None

    def infusion_schedule(self) -> Infusions:
        """Each patient's infusions (one at TIME 0 each when ``infusions`` is None)."""
        return self.infusions if self.infusions is not None else Infusions.single(self.n_patients)

    @property
    def n_patients(self) -> int:
        """Number of patients."""
        return len(self.patient_ids)

    @property
    def n_obs(self) -> int:
        """Number of observations."""
        return len(self.time)

    @property
    def n_censored(self) -> int:
        """Number of censored observations."""
        return int(np.sum(self.cens != 0))

    def coords(self) -> dict[str, Any]:
        """Coordinates for the PyMC model."""
        coords: dict[str, Any] = {
            "patient": list(self.patient_ids),
            "obs": self.obs_rows.tolist(),
        }
        if self.group_levels:
            coords[(self.group_column or "group").lower()] = list(self.group_levels)
        dp = [p for p, m in zip(self.patient_ids, self.distribution_mask, strict=True) if m]
        if dp:
            coords["patient_dp"] = dp
        for param, m in self.design.matrices.items():
            coords[f"{param}_effect"] = list(m.columns)
        if self.marginal is not None:
            coords.update(self.marginal.coords(self.patient_ids))
        return coords


def _profile_values(obs: pd.DataFrame, what: str) -> float:
    quant = obs[obs["CENS"] == 0]
    if what == "first_sample":
        first = obs.sort_values("TIME").iloc[0]
        return float(first["DV"])  # quantified value, or the LLOQ of a BLQ sample
    if quant.empty:
        return float(obs["TIME"].median())
    peak = quant.loc[quant["DV"].idxmax()]
    if what == "peak_time":
        return float(peak["TIME"])
    if what == "nadir_time":
        before = quant[quant["TIME"] <= peak["TIME"]]
        return float(before.loc[before["DV"].idxmin(), "TIME"])
    raise ValueError(what)  # pragma: no cover


def infusion_schedule(dataset: Any) -> Infusions:
    """Each patient's infusions from ``dataset.infusions``, in patient order, padded.

    The first infusion's cohort starts at TIME 0 (TIME is the time since the first infusion,
    as for one infusion); a later one at its dosing row's TIME, with the log of its AMT over
    the first infusion's AMT. A patient without dosing rows has one infusion at TIME 0.

    Examples
    --------
    >>> import pandas as pd
    >>> from bayes_cart.data.dataset import load_dataset
    >>> frame = pd.DataFrame({"ID": [1, 1, 1, 1], "TIME": [0, 5, 60, 70],
    ...                       "DV": [None, 9.0, None, 50.0], "EVID": [1, 0, 1, 0],
    ...                       "AMT": [100.0, None, 50.0, None]})
    >>> import warnings
    >>> with warnings.catch_warnings():  # the loader reports the second infusion
    ...     warnings.simplefilter("ignore")
    ...     inf = infusion_schedule(load_dataset(frame))
    >>> inf.start.tolist(), np.round(inf.log_ratio, 3).tolist(), inf.count.tolist()
    ([[0.0, 60.0]], [[0.0, -0.693]], [2])
    """
    ids = list(dataset.patient_ids)
    table = dataset.infusions
    counts = table.groupby("ID", sort=False).size().reindex(ids).fillna(1).astype(np.int64)
    n_slots = int(max(1, counts.max() if len(counts) else 1))
    start = np.full((len(ids), n_slots), np.inf)
    start[:, 0] = 0.0
    log_ratio = np.zeros((len(ids), n_slots))
    position = {pid: i for i, pid in enumerate(ids)}
    for pid, rows in table.groupby("ID", sort=False):
        i = position.get(str(pid))
        if i is None:
            continue
        amt = rows["AMT"].to_numpy(dtype=float)
        times = rows["TIME"].to_numpy(dtype=float)
        start[i, 1 : len(rows)] = times[1:]
        log_ratio[i, : len(rows)] = np.log(amt / amt[0])
    return Infusions(start=start, log_ratio=log_ratio, count=counts.to_numpy())


def prepare_model_data(dataset: Any, spec: ModelSpec) -> ModelData:
    """Build the :class:`ModelData` of ``dataset`` under ``spec``.

    Parameters
    ----------
    dataset : bayes_cart.data.dataset.Dataset
        A validated dataset.
    spec : ModelSpec
        The model spec.

    Returns
    -------
    ModelData
        Arrays, indices and notes.

    Raises
    ------
    SpecError
        When a covariate, reference level or subset expression does not fit the data.
    """
    doc = spec.doc
    obs = dataset.observations
    patients = dataset.patients
    notes: list[str] = []
    pid = np.asarray(dataset.obs_patient_index, dtype=np.int64)

    cens = obs["CENS"].to_numpy(dtype=np.int64)
    dv = obs["DV"].to_numpy(dtype=float)
    limit = obs["LIMIT"].to_numpy(dtype=float) if "LIMIT" in obs else np.full(len(obs), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_limit = np.where(np.isfinite(limit) & (limit > 0), np.log(limit), np.nan)
    if doc.censoring.method == "drop" and (cens != 0).any():
        keep = cens == 0
        notes.append(
            f"censoring.method = 'drop': {int((~keep).sum())} censored samples left out of the "
            "likelihood (biased; use M3)"
        )
        obs = obs[keep]
        cens, dv, log_limit, pid = cens[keep], dv[keep], log_limit[keep], pid[keep]

    # covariates and the group level; a time-varying step covariate acts through the kinetics
    formulas, step_terms = split_step_terms(
        dict(doc.covariates.formulas), tuple(dataset.time_varying), spec.source
    )
    step = find_step_covariate(dataset, step_terms)
    if step is not None:
        n_on = int(np.isfinite(step.change_time).sum())
        notes.append(
            f"step covariate {step.column} on {', '.join(step.parameters)}: {n_on} patient(s) "
            "switch (from their first record with the value 1)"
        )
    extra_fixed = {}
    group_col = None
    if doc.group.mode != "none":
        lower = {c.lower(): c for c in patients.columns}
        if doc.group.column.lower() not in lower:
            raise SpecError(
                spec.source,
                f"group.column: no covariate {doc.group.column!r}; "
                f"columns: {list(patients.columns)}",
            )
        group_col = lower[doc.group.column.lower()]
        if doc.group.mode == "fixed":
            extra_fixed = {p: group_col for p in doc.group.parameters}
    design = build_covariate_design(
        patients, formulas, doc.covariates.reference, extra_fixed, missing=doc.covariates.missing
    )
    for col, (how, ids) in design.imputed.items():
        notes.append(f"covariate {col}: {len(ids)} patient(s) missing, handled as {how}")
    marginal = marginal_design(patients, design, spec)

    group_levels: tuple[str, ...] = ()
    group_index = np.zeros(len(patients), dtype=np.int64)
    if doc.group.mode == "random":
        g = patients[group_col].astype(object).where(patients[group_col].notna(), "unknown")
        cats = pd.Categorical(g.astype(str))
        group_levels = tuple(str(c) for c in cats.categories)
        group_index = cats.codes.astype(np.int64)

    # distribution phase
    mask = np.zeros(len(patients), dtype=bool)
    expr = doc.distribution_phase.enabled_if
    if expr:
        try:
            mask = evaluate_subset(expr, patients).to_numpy()
        except (KeyError, ValueError) as exc:
            raise SpecError(spec.source, f"distribution_phase.enabled_if: {exc}") from None
        notes.append(f"distribution phase ({expr}): {int(mask.sum())} patient(s)")

    # parameters set from the observed profile (of the first infusion: before the second)
    from_data: dict[str, np.ndarray] = {}
    obs_all = dataset.observations
    schedule = infusion_schedule(dataset)
    if schedule.n_slots > 1:
        second = dict(zip(dataset.patient_ids, schedule.start[:, 1], strict=True))
    else:
        second = dict.fromkeys(dataset.patient_ids, np.inf)
    for name, p in doc.parameters.items():
        if p.from_data is None:
            continue
        vals = np.array(
            [
                _profile_values(
                    obs_all[(obs_all["ID"] == i) & ~(obs_all["TIME"] > second[i])], p.from_data
                )
                for i in dataset.patient_ids
            ]
        )
        if name == "T0":
            vals = np.where(mask, vals, 0.0)
        if name == "T1":
            vals = np.maximum(vals, 1e-3)
        from_data[name] = vals
        notes.append(f"{name} set per patient from the data ({p.from_data})")

    infusions = schedule
    if infusions.several:
        from bayes_cart.kinetics import get_kinetics

        try:
            dose_parameter(get_kinetics(doc.kinetics))
        except ValueError as exc:
            raise SpecError(spec.source, f"kinetics: {exc}") from None
        n_several = int((infusions.count > 1).sum())
        notes.append(
            f"several infusions: {n_several} patient(s) with up to {infusions.n_slots} "
            "infusions, one cohort of cells per infusion (its C0 scaled by its AMT relative to "
            "the first infusion), their levels summed"
        )
    else:
        infusions = None

    return ModelData(
        patient_ids=tuple(dataset.patient_ids),
        time=obs["TIME"].to_numpy(dtype=float),
        log_dv=np.log(dv),
        log_limit=log_limit,
        cens=cens,
        patient_index=pid,
        obs_rows=obs["ROW"].to_numpy(dtype=np.int64),
        design=design,
        group_column=group_col,
        group_levels=group_levels,
        group_index=group_index,
        distribution_mask=mask,
        from_data=from_data,
        notes=notes,
        marginal=marginal,
        step=step,
        infusions=infusions,
    )
