"""Several infusions per patient: one cohort of cells per infusion, their levels summed.

Each infusion ``k`` of a patient starts a cohort of cells that follows the patient's own
kinetics (the same parameters for every cohort) on its own phase clock, the time since that
infusion: a re-infusion after the contraction distributes, expands and contracts again. The
cohort's starting level is dose-proportional, ``log C0_k = log C0 + log(AMT_k / AMT_1)`` (for a
structure without ``C0``, its peak level ``Cmax`` is scaled the same way), and the observed
level is the sum of the cohorts present::

    log total(t) = log sum_k exp(log total_k(t - s_k))      over the infusions with s_k < t

The first infusion's cohort starts at TIME 0 and counts at every sample (the single-infusion
model); a later one counts at the samples strictly after its TIME (a sample at the infusion
time is a pre-infusion sample). A step change (``TC``, a time on the patient's clock) acts on
cohort ``k`` at ``TC - s_k`` on its clock. For structures linear in their states (every built-in
one) the sum is the exact solution of the patient's system with one input per infusion.

The pairs (observation, cohort present) depend on the data only, so they are computed once
(:func:`infusion_pairs`); only those pairs are solved, and the per-observation sum is a
log-sum-exp over a dense (observation, infusion) table padded with a finite floor, so no
gradient ever meets a NaN or an infinity. The same functions run in numpy, PyTensor and JAX.

Examples
--------
>>> import numpy as np
>>> from bayes_cart.kinetics import get_kinetics
>>> inf = Infusions(start=np.array([[0.0, 60.0]]), log_ratio=np.array([[0.0, 0.0]]),
...                 count=np.array([2]))
>>> t = np.array([10.0, 60.0, 70.0])
>>> p = {"C0": np.array([1.0]), "beta": np.array([0.5]), "T1": np.array([10.0]),
...      "alpha": np.array([0.2]), "rM": np.array([0.01]), "deltaM": np.array([0.01])}
>>> out = superposed_solve(get_kinetics("liu2021"), t, np.zeros(3, dtype=int), p, inf)
>>> one = get_kinetics("liu2021").solve(t, {k: v[0] for k, v in p.items()})["log_total"]
>>> bool(np.allclose(out["log_total"][:2], one[:2]))  # before and at the re-infusion
True
>>> bool(out["log_total"][2] > one[2] + 3)  # 10 days after it: re-expanded
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

Array = Any

#: Filler of the (observation, infusion) table where a cohort is absent: finite, so that the
#: log-sum-exp and its gradient stay finite (exp(FLOOR - max) is exactly 0).
LOG_ABSENT = -1e30

#: Parameters scaled by the dose ratio, in order of preference.
DOSE_SCALED = ("C0", "Cmax")

#: The change-time parameter of a step change (kept in step with
#: :data:`bayes_cart.kinetics.step_change.CHANGE_TIME`).
CHANGE_TIME = "TC"

__all__ = [
    "LOG_ABSENT",
    "InfusionPairs",
    "Infusions",
    "cohort_parameters",
    "combine_cohorts",
    "dose_parameter",
    "infusion_pairs",
    "superposed_solve",
]


@dataclass(frozen=True)
class Infusions:
    """Each patient's infusions, padded to the largest number of infusions.

    Attributes
    ----------
    start : ndarray (patient, infusion)
        Start of each cohort's clock (days on the patient's TIME axis): 0 for the first
        infusion, the dosing row's TIME for the later ones; padding is ``inf``.
    log_ratio : ndarray (patient, infusion)
        ``log(AMT_k / AMT_1)``; 0 for the first infusion and the padding.
    count : ndarray (patient,)
        Number of infusions (at least 1: a patient without dosing rows has one, at TIME 0).
    """

    start: np.ndarray
    log_ratio: np.ndarray
    count: np.ndarray

    @property
    def n_slots(self) -> int:
        """Largest number of infusions of one patient."""
        return int(self.start.shape[1])

    @property
    def several(self) -> bool:
        """Whether any patient has more than one infusion."""
        return self.n_slots > 1

    def subset(self, positions: Array) -> Infusions:
        """Return the infusions of the patients at ``positions`` (in that order)."""
        pos = np.asarray(positions, dtype=np.int64)
        return Infusions(self.start[pos], self.log_ratio[pos], self.count[pos])

    @classmethod
    def single(cls, n_patients: int) -> Infusions:
        """One infusion at TIME 0 for each of ``n_patients`` patients."""
        return cls(
            start=np.zeros((n_patients, 1)),
            log_ratio=np.zeros((n_patients, 1)),
            count=np.ones(n_patients, dtype=np.int64),
        )


@dataclass(frozen=True)
class InfusionPairs:
    """The (observation, cohort) pairs at which a cohort is present, from the data only.

    Attributes
    ----------
    obs, slot : ndarray of int (pair,)
        Observation position and infusion slot of each pair.
    cohort : ndarray of int (pair,)
        Position of the pair's cohort in the cohort list (``cohort_patient``...).
    since : ndarray (pair,)
        Time since the infusion (the sample's own TIME for the first infusion).
    cohort_patient, cohort_slot : ndarray of int (cohort,)
        Patient and slot of every cohort (every real infusion of every patient).
    cohort_start, cohort_log_ratio : ndarray (cohort,)
        Its clock start and log dose ratio.
    n_obs, n_slots : int
        Shape of the (observation, infusion) table.
    """

    obs: np.ndarray
    slot: np.ndarray
    cohort: np.ndarray
    since: np.ndarray
    cohort_patient: np.ndarray
    cohort_slot: np.ndarray
    cohort_start: np.ndarray
    cohort_log_ratio: np.ndarray
    n_obs: int
    n_slots: int

    @property
    def n_cohorts(self) -> int:
        """Number of cohorts (infusions of all patients)."""
        return len(self.cohort_patient)


def infusion_pairs(infusions: Infusions, patient_index: Array, time: Array) -> InfusionPairs:
    """Pair every observation with the cohorts present at its time.

    Parameters
    ----------
    infusions : Infusions
        The patients' infusions.
    patient_index : ndarray of int (obs,)
        Position of each observation's patient.
    time : ndarray (obs,)
        Sample times (days).

    Returns
    -------
    InfusionPairs
        The first infusion's cohort is present at every observation; infusion ``k >= 2`` at
        the observations strictly after its TIME.
    """
    pidx = np.asarray(patient_index, dtype=np.int64)
    t = np.asarray(time, dtype=float)
    n_patients, n_slots = infusions.start.shape
    real = np.arange(n_slots)[None, :] < infusions.count[:, None]
    cohort_patient, cohort_slot = np.nonzero(real)
    cohort_id = np.full((n_patients, n_slots), -1, dtype=np.int64)
    cohort_id[cohort_patient, cohort_slot] = np.arange(len(cohort_patient))
    start = infusions.start[pidx]  # (obs, slot)
    present = real[pidx] & ((np.arange(n_slots)[None, :] == 0) | (t[:, None] > start))
    obs, slot = np.nonzero(present)
    since = np.where(slot == 0, t[obs], t[obs] - start[obs, slot])
    return InfusionPairs(
        obs=obs.astype(np.int64),
        slot=slot.astype(np.int64),
        cohort=cohort_id[pidx[obs], slot],
        since=since.astype(float),
        cohort_patient=cohort_patient.astype(np.int64),
        cohort_slot=cohort_slot.astype(np.int64),
        cohort_start=infusions.start[cohort_patient, cohort_slot].astype(float),
        cohort_log_ratio=infusions.log_ratio[cohort_patient, cohort_slot].astype(float),
        n_obs=len(t),
        n_slots=n_slots,
    )


def dose_parameter(parameters: tuple[str, ...] | Any) -> str:
    """Return the parameter a cohort's dose ratio scales: ``C0``, else ``Cmax``.

    Raises
    ------
    ValueError
        If the structure has neither (several infusions cannot be represented).
    """
    names = tuple(getattr(parameters, "parameters", parameters))
    for name in DOSE_SCALED:
        if name in names:
            return name
    raise ValueError(
        f"several infusions per patient need a structure with a level parameter "
        f"{' or '.join(DOSE_SCALED)} (scaled by each infusion's dose); this one has "
        f"{list(names)}"
    )


def _namespace_name(xp: ModuleType) -> str:
    return getattr(xp, "__name__", "")


def _take(value: Array, index: np.ndarray, xp: ModuleType) -> Array:
    """``value[..., index]`` of a per-patient array (scalars are kept)."""
    if getattr(value, "ndim", np.ndim(value)) == 0:
        return value
    return value[..., index]


def cohort_parameters(
    params: Mapping[str, Array],
    pairs: InfusionPairs,
    dose_name: str,
    xp: ModuleType = np,
) -> dict[str, Array]:
    """Per-cohort parameters: the patient's values, its level scaled, its change time shifted.

    Parameters
    ----------
    params : mapping
        Per-patient values (last axis: patient) or scalars.
    pairs : InfusionPairs
        From :func:`infusion_pairs`.
    dose_name : str
        The parameter the dose ratio scales (:func:`dose_parameter`).
    xp : module
        Array namespace.

    Returns
    -------
    dict
        The same names, last axis: cohort. ``dose_name`` is multiplied by
        ``AMT_k / AMT_1`` and a change time ``TC`` is moved onto the cohort's clock.
    """
    cp = pairs.cohort_patient
    out = {name: _take(v, cp, xp) for name, v in params.items()}
    if dose_name in out:
        out[dose_name] = out[dose_name] * np.exp(pairs.cohort_log_ratio)
    if CHANGE_TIME in out:
        out[CHANGE_TIME] = out[CHANGE_TIME] - pairs.cohort_start
    return out


def _scatter(values: Array, pairs: InfusionPairs, xp: ModuleType) -> Array:
    """Scatter ``values`` (..., pair) into an (..., observation, infusion) table (floor-padded)."""
    name = _namespace_name(xp)
    lead = tuple(np.shape(values)[:-1]) if name == "numpy" else ()
    if name.startswith("pytensor"):
        table = xp.full((pairs.n_obs, pairs.n_slots), LOG_ABSENT, dtype="float64")
        return xp.set_subtensor(table[pairs.obs, pairs.slot], values)
    if name.startswith("jax"):
        lead = tuple(values.shape[:-1])
        table = xp.full((*lead, pairs.n_obs, pairs.n_slots), LOG_ABSENT, dtype=values.dtype)
        return table.at[..., pairs.obs, pairs.slot].set(values)
    table = np.full((*lead, pairs.n_obs, pairs.n_slots), LOG_ABSENT)
    table[..., pairs.obs, pairs.slot] = values
    return table


def combine_cohorts(values: Array, pairs: InfusionPairs, xp: ModuleType = np) -> Array:
    """Log of the summed level per observation from the cohorts' log levels at the pairs.

    Parameters
    ----------
    values : array (..., pair)
        Log level of each pair's cohort at the pair's time since infusion.
    pairs : InfusionPairs
        From :func:`infusion_pairs`.
    xp : module
        numpy, ``pytensor.tensor`` or ``jax.numpy``.

    Returns
    -------
    array (..., obs)
        ``log sum_k exp(values)`` over the cohorts present at each observation (a stable
        log-sum-exp; an absent cohort adds exactly 0).
    """
    table = _scatter(values, pairs, xp)
    top = xp.max(table, axis=-1, keepdims=True)
    # a state that is exactly 0 in every cohort present (log_M before the peak, -inf) stays -inf
    top = xp.where(top > LOG_ABSENT, top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return top[..., 0] + xp.log(xp.sum(xp.exp(table - top), axis=-1))


def superposed_solve(
    model: Any,
    t: Array,
    patient_index: Array,
    params: Mapping[str, Array],
    infusions: Infusions,
    xp: ModuleType = np,
) -> dict[str, Array]:
    """Closed-form outputs of several infusions at each observation (numpy, PyTensor or JAX).

    Parameters
    ----------
    model : KineticModel
        A structure with a closed form.
    t : ndarray (obs,)
        Sample times (days), numpy (data).
    patient_index : ndarray of int (obs,)
        Position of each observation's patient.
    params : mapping
        Per-patient values (last axis: patient) or scalars, in the namespace ``xp``.
    infusions : Infusions
        The patients' infusions.
    xp : module
        Array namespace of the closed form.

    Returns
    -------
    dict
        Every output of the structure (``log_total``, ``log_E``, ``log_M``), last axis: obs.
    """
    pairs = infusion_pairs(infusions, patient_index, t)
    cohort = cohort_parameters(params, pairs, dose_parameter(model), xp)
    per_pair = {name: _take(v, pairs.cohort, xp) for name, v in cohort.items()}
    solved = model.solve(pairs.since, per_pair, xp=xp)
    return {name: combine_cohorts(v, pairs, xp) for name, v in solved.items()}
