"""The bundled example: a virtual 7-trial CAR-T meta-analysis shaped like Liu et al. (2021).

218 virtual patients in seven trials (ALL adult, ALL pediatric, CLL, DLBCL, MM, GBM, NSCLC),
simulated from the Liu et al. multiphasic model with known population values, covariate effects
(response, tumour type), correlated inter-individual variability, trial-level deviations, a
distribution phase in DLBCL only, per-trial LLOQ and the "stop after two consecutive BLQ"
sampling rule. The truth is shipped next to the data, so every analysis of the example can be
checked against it. See ``docs/example-data.md``.

Examples
--------
>>> from bayes_cart.example import load_example, example_truth
>>> data = load_example()
>>> data.n_patients
218
>>> example_truth()["population"]["typical"]["beta"]
0.4
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.simulate import (
    PopulationParameters,
    SimulationResult,
    add_dosing_rows,
    simulate_patients,
    write_data_csv,
)

__all__ = [
    "EXAMPLE_POPULATION",
    "EXAMPLE_SEED",
    "EXAMPLE_TRIALS",
    "GENERATOR_VERSION",
    "TrialDesign",
    "example_truth",
    "generate_example",
    "generate_meta_analysis",
    "load_example",
    "write_example",
]

EXAMPLE_SEED = 20210509
"""Seed of the shipped example (the medRxiv posting date of Liu et al., 2020-05-09, +1 year)."""

GENERATOR_VERSION = "1"
"""Bumped whenever the generator changes the shipped files."""

DATA_FILE = "cart_meta_analysis.csv"
TRUTH_POPULATION_FILE = "truth_population.json"
TRUTH_INDIVIDUAL_FILE = "truth_individual.csv"
README_FILE = "README.md"

HEME_SCHEDULE = (1, 4, 7, 10, 14, 21, 28, 60, 90, 180, 270, 365)
PEDIATRIC_SCHEDULE = (1, 4, 7, 10, 14, 21, 28, 84, 182, 273, 365)
DLBCL_SCHEDULE = (0.1, 1, 2, 4, 7, 9, 14, 21, 28, 90, 180, 365)
SOLID_SCHEDULE = (1, 3, 7, 10, 14, 21, 28, 42, 60, 90)


@dataclass(frozen=True)
class TrialDesign:
    """Design of one virtual trial of the example.

    Parameters
    ----------
    name : str
        Trial label (column ``TRIAL``).
    id_prefix : str
        Patient IDs are ``<id_prefix>-001`` ...
    n : int
        Number of patients.
    tumor_type : str
        ``heme``, ``lymphoma`` or ``solid``.
    responder_fraction : float
        Probability that a patient is a responder (CR/PR).
    response_reported : bool
        False: RESPONSE is left empty in the data (the true status is in the truth).
    schedule : tuple of float
        Nominal sampling days; days after 2 are jittered by up to +-10% (whole days).
    lloq : float
        Lower limit of quantification (copies/ug DNA).
    dose_range : (float, float)
        Doses (CAR+ cells) are log-uniform in this range, 2 significant digits.
    age : (float, float, float, float)
        Mean, SD, minimum, maximum of the (truncated normal) age in years; for a pediatric trial
        the age is ``min + (max - min) * Beta(1.5, 2)``.
    lymphodepletion : float
        Fraction of patients given lymphodepleting chemotherapy.
    burden : (float, float)
        Beta(a, b) shape of the tumour burden (%) draw.
    distribution_phase : bool
        Whether patients have a distribution phase (k, T0).
    """

    name: str
    id_prefix: str
    n: int
    tumor_type: str
    responder_fraction: float
    response_reported: bool
    schedule: tuple[float, ...]
    lloq: float
    dose_range: tuple[float, float]
    age: tuple[float, float, float, float]
    lymphodepletion: float
    burden: tuple[float, float]
    distribution_phase: bool = False
    pediatric: bool = False


EXAMPLE_TRIALS: tuple[TrialDesign, ...] = (
    TrialDesign("ALL_adult", "ALLA", 30, "heme", 0.8, True, HEME_SCHEDULE, 20.0,
                (1e7, 1e8), (42, 14, 18, 75), 1.0, (0.8, 1.2)),
    TrialDesign("ALL_pediatric", "ALLP", 40, "heme", 0.8, False, PEDIATRIC_SCHEDULE, 100.0,
                (1e7, 1e8), (0, 0, 3, 25), 1.0, (0.8, 1.2), pediatric=True),
    TrialDesign("CLL", "CLL", 30, "heme", 0.4, True, HEME_SCHEDULE, 10.0,
                (1e7, 5e8), (64, 9, 40, 85), 0.9, (2.0, 2.0)),
    TrialDesign("DLBCL", "DLBCL", 40, "lymphoma", 0.5, True, DLBCL_SCHEDULE, 10.0,
                (5e7, 5e8), (58, 12, 22, 80), 1.0, (1.2, 3.0), distribution_phase=True),
    TrialDesign("MM", "MM", 35, "heme", 0.7, True, HEME_SCHEDULE, 50.0,
                (1e8, 5e8), (60, 9, 35, 80), 0.7, (1.2, 3.0)),
    TrialDesign("GBM", "GBM", 20, "solid", 0.2, True, SOLID_SCHEDULE, 20.0,
                (1e8, 5e8), (55, 11, 25, 78), 0.0, (1.2, 3.0)),
    TrialDesign("NSCLC", "NSCLC", 23, "solid", 0.3, True, SOLID_SCHEDULE, 50.0,
                (1e7, 1e8), (60, 9, 35, 80), 0.5, (1.2, 3.0)),
)  # fmt: skip
"""The seven virtual trials (218 patients)."""

EXAMPLE_POPULATION = PopulationParameters(
    kinetics="liu2021",
    typical={
        "C0": 50.0,
        "k": 0.6,
        "T0": 2.0,
        "beta": 0.40,
        "T1": 12.0,
        "alpha": 0.124,
        "rM": 0.0015,
        "deltaM": 0.004,
    },
    omega={
        "C0": 0.8,
        "k": 0.3,
        "T0": 0.2,
        "beta": 0.39,
        "T1": 0.25,
        "alpha": 0.6,
        "rM": 0.8,
        "deltaM": 0.7,
    },
    correlation={("beta", "T1"): -0.6},
    effects={
        "beta": {
            "RESPONSE": {"CR/PR": 0.30},
            "TUMOR_TYPE": {"lymphoma": -0.29, "solid": -0.16},
        },
        "T1": {"TUMOR_TYPE": {"lymphoma": -0.22, "solid": -0.29}},
        "alpha": {"RESPONSE": {"CR/PR": -0.29}, "TUMOR_TYPE": {"solid": 0.34}},
        "rM": {"TUMOR_TYPE": {"solid": 0.4}},
    },
    group_effects={"TRIAL": {"beta": 0.15, "alpha": 0.15}},
    sigma=0.5,
)
"""True population values of the example (per day; reference: TUMOR_TYPE=heme, RESPONSE=PD/NR).

``k`` and ``T0`` are the typical values of the DLBCL patients, the only ones with a
distribution phase; every other patient has ``k = T0 = 0``.
"""

NULL_COVARIATES = ("DOSE", "AGE", "CD4CD8", "LYMPHODEPLETION", "TUMOR_BURDEN")
DATA_COLUMNS = (
    "ID", "TIME", "EVID", "AMT", "MDV", "DV", "CENS", "TRIAL", "RESPONSE", "TUMOR_TYPE",
    "AGE", "CD4CD8", "LYMPHODEPLETION", "TUMOR_BURDEN",
)  # fmt: skip
DV_SIGNIFICANT_DIGITS = 4
TRUTH_SIGNIFICANT_DIGITS = 6


def _signif(values: Any, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (via the decimal text, so platform-independent)."""
    arr = np.asarray(values, dtype=float)
    return np.array([float(f"{v:.{digits}g}") if np.isfinite(v) else v for v in arr.ravel()])


def _schedule(trial: TrialDesign, rng: np.random.Generator) -> np.ndarray:
    nominal = np.asarray(trial.schedule, dtype=float)
    jitter = rng.uniform(0.9, 1.1, size=len(nominal))
    times = np.where(nominal > 2.0, np.round(nominal * jitter), nominal)
    return np.unique(times)


def _trial_patients(trial: TrialDesign, rng: np.random.Generator) -> pd.DataFrame:
    n = trial.n
    ids = [f"{trial.id_prefix}-{i + 1:03d}" for i in range(n)]
    responder = rng.random(n) < trial.responder_fraction
    mean, sd, lo, hi = trial.age
    if trial.pediatric:
        age = lo + (hi - lo) * rng.beta(1.5, 2.0, size=n)
    else:
        age = np.clip(rng.normal(mean, sd, size=n), lo, hi)
    cd4cd8 = np.exp(rng.normal(0.0, 0.6, size=n))
    ld = rng.random(n) < trial.lymphodepletion
    burden = 100.0 * rng.beta(*trial.burden, size=n)
    log_lo, log_hi = np.log(trial.dose_range)
    dose = np.exp(rng.uniform(log_lo, log_hi, size=n))
    phase = {"k": 0.0, "T0": 0.0} if not trial.distribution_phase else {"k": np.nan, "T0": np.nan}
    return pd.DataFrame(
        {
            "ID": ids,
            "TRIAL": trial.name,
            "RESPONSE": np.where(responder, "CR/PR", "PD/NR"),
            "TUMOR_TYPE": trial.tumor_type,
            "AGE": np.round(age).astype(int),
            "CD4CD8": np.round(cd4cd8, 2),
            "LYMPHODEPLETION": np.where(ld, "yes", "no"),
            "TUMOR_BURDEN": np.round(burden, 1),
            "DOSE": _signif(dose, 2),
            "LLOQ": trial.lloq,
            **phase,
        }
    )


def _example_design(
    rng: np.random.Generator, trials: tuple[TrialDesign, ...] = EXAMPLE_TRIALS
) -> pd.DataFrame:
    """Planned samples of every patient (patient covariates repeated on each row)."""
    parts = []
    for trial in trials:
        patients = _trial_patients(trial, rng)
        for _, patient in patients.iterrows():
            times = _schedule(trial, rng)
            rows = pd.DataFrame([patient.to_dict()] * len(times))
            rows.insert(1, "TIME", times)
            parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def _drop_out(design: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Early drop-out: a random ``fraction`` of patients leave after a random sample past day 7."""
    ids = pd.unique(design["ID"])
    leaving = ids[rng.random(len(ids)) < fraction]
    keep = np.ones(len(design), dtype=bool)
    for pid in leaving:
        rows = np.flatnonzero((design["ID"] == pid).to_numpy())
        times = design["TIME"].to_numpy()[rows]
        later = rows[times > 7.0]
        if len(later) > 1:
            last = rng.integers(0, len(later) - 1)  # keep at least one sample after day 7
            keep[later[last + 1 :]] = False
    return design.loc[keep].reset_index(drop=True)


def generate_meta_analysis(
    trials: tuple[TrialDesign, ...] = EXAMPLE_TRIALS,
    population: PopulationParameters = EXAMPLE_POPULATION,
    random_seed: int | np.random.Generator = EXAMPLE_SEED,
    *,
    dropout: float = 0.0,
    missing_response: float = 0.0,
    stop_after_consecutive_blq: int | None = 2,
) -> SimulationResult:
    """Simulate a virtual multi-trial study shaped like the example, with any trial designs.

    The bundled example is ``generate_meta_analysis()`` with the defaults; other designs (sizes,
    schedules, LLOQs, tumour types, a distribution phase, drop-out, missing responses) give the
    datasets the package was *not* tuned on (``bench/bench_robustness.py``).

    Parameters
    ----------
    trials : tuple of TrialDesign
        The trials.
    population : PopulationParameters
        True population values (any registered kinetics; a distribution phase is drawn for
        the trials that have one only if the population has ``k`` and ``T0``).
    random_seed : int or numpy.random.Generator
        Seed; covariates and schedules are drawn first, then drop-out and missing responses
        (only when asked for), then the kinetics.
    dropout : float
        Fraction of patients who leave the study early (after a random sample past day 7).
    missing_response : float
        Fraction of patients (in trials that report response) whose RESPONSE is left empty.
    stop_after_consecutive_blq : int or None
        The sampling rule of :func:`bayes_cart.simulate.simulate_patients`.

    Returns
    -------
    SimulationResult
        ``data`` in the shipped layout (NONMEM dosing rows, DV rounded to 4 significant
        digits, RESPONSE empty where unreported); ``truth`` per patient with the true
        RESPONSE, ``RESPONSE_REPORTED``, ``DOSE``, ``LLOQ``, every kinetic parameter and the
        etas; ``states`` (E, M, total per planned sample); ``group_effects`` (realised trial
        deviations).
    """
    rng = np.random.default_rng(random_seed)
    design = _example_design(rng, trials)
    if "k" not in population.typical:
        design = design.drop(columns=["k", "T0"])
    if dropout > 0:
        design = _drop_out(design, dropout, rng)
    hidden_ids: set[str] = set()
    if missing_response > 0:
        ids = pd.unique(design["ID"])
        hidden_ids = set(ids[rng.random(len(ids)) < missing_response])
    sim = simulate_patients(
        design,
        population,
        lloq="LLOQ",
        stop_after_consecutive_blq=stop_after_consecutive_blq,
        random_seed=rng,
    )
    obs = sim.data.copy()
    quantified = obs["CENS"].to_numpy() == 0
    obs.loc[quantified, "DV"] = _signif(obs.loc[quantified, "DV"], DV_SIGNIFICANT_DIGITS)
    hidden = {t.name for t in trials if not t.response_reported}
    reported = ~obs["TRIAL"].isin(hidden) & ~obs["ID"].isin(hidden_ids)
    obs["RESPONSE"] = obs["RESPONSE"].where(reported, None)
    data = add_dosing_rows(obs, "DOSE")[list(DATA_COLUMNS)]

    truth = sim.truth.copy()
    truth["RESPONSE_REPORTED"] = ~truth["TRIAL"].isin(hidden) & ~truth["ID"].isin(hidden_ids)
    if "deltaE" in truth:
        truth = truth.drop(columns=["deltaE"]).assign(deltaE=sim.truth["deltaE"])
    front = ["ID", "TRIAL", "TUMOR_TYPE", "RESPONSE", "RESPONSE_REPORTED", "DOSE"]
    rest = [c for c in truth.columns if c not in front]
    truth = truth[front + rest]
    return replace(sim, data=data, truth=truth)


def generate_example(random_seed: int | np.random.Generator = EXAMPLE_SEED) -> SimulationResult:
    """Simulate the example meta-analysis.

    With the default seed this reproduces the shipped files exactly.

    Parameters
    ----------
    random_seed : int or numpy.random.Generator
        Seed; covariates and schedules are drawn first, then the kinetics (see
        :func:`bayes_cart.simulate.simulate_patients`).

    Returns
    -------
    SimulationResult
        As :func:`generate_meta_analysis` with the example's trials and population.
    """
    return generate_meta_analysis(EXAMPLE_TRIALS, EXAMPLE_POPULATION, random_seed)


def _truth_table(truth: pd.DataFrame) -> pd.DataFrame:
    out = truth.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]) and col not in ("AGE", "CD4CD8", "TUMOR_BURDEN"):
            out[col] = _signif(out[col], TRUTH_SIGNIFICANT_DIGITS)
    return out


def _truth_population(sim: SimulationResult, random_seed: Any) -> dict[str, Any]:
    pop = EXAMPLE_POPULATION
    flat: dict[str, float] = {}
    for p, covs in pop.effects.items():
        for cov, levels in covs.items():
            for level, value in levels.items():
                flat[f"{p}:{cov}[{level}]"] = value
    trial_effects: dict[str, dict[str, float]] = {}
    for row in sim.group_effects.itertuples():
        trial_effects.setdefault(str(row.parameter), {})[str(row.level)] = round(float(row.eta), 6)
    return {
        "description": (
            "Virtual 7-trial CAR-T meta-analysis shaped like Liu et al. (2021): true values "
            "used by bayes_cart.example.generate_example"
        ),
        "generator": "bayes_cart.example.generate_example",
        "generator_version": GENERATOR_VERSION,
        "random_seed": random_seed,
        "kinetics": pop.kinetics,
        "units": {
            "TIME": "day",
            "rates": "1/day",
            "T0, T1": "day",
            "C0, DV, Cmax": "transgene copies/ug genomic DNA",
            "AMT, DOSE": "CAR+ cells",
            "AGE": "years",
            "TUMOR_BURDEN": "%",
            "iiv": "omega = SD of the log parameter",
            "sigma": "SD of the log residual (log-normal proportional error)",
        },
        "reference_levels": {"TUMOR_TYPE": "heme", "RESPONSE": "PD/NR"},
        "population": pop.to_dict(),
        "effects_flat": flat,
        "deltaE_per_day": sim.truth["deltaE"].iloc[0],
        "distribution_phase": {
            "trials": [t.name for t in EXAMPLE_TRIALS if t.distribution_phase],
            "note": "typical k, T0 and their omegas apply to these trials only; "
            "every other patient has k = 0 and T0 = 0",
        },
        "trial_effects": {
            "note": "realised trial-level deviations on the log parameter "
            "(drawn once per trial, SD in population.group_effects.TRIAL)",
            **trial_effects,
        },
        "null_covariates": {
            "names": list(NULL_COVARIATES),
            "note": "present in the data, no effect in the truth",
        },
        "trials": {
            t.name: {
                "n_patients": t.n,
                "id_prefix": t.id_prefix,
                "tumor_type": t.tumor_type,
                "responder_fraction": t.responder_fraction,
                "response_reported": t.response_reported,
                "lloq": t.lloq,
                "nominal_schedule_days": list(t.schedule),
                "dose_range_cells": list(t.dose_range),
                "lymphodepletion_fraction": t.lymphodepletion,
                "distribution_phase": t.distribution_phase,
            }
            for t in EXAMPLE_TRIALS
        },
        "sampling": {
            "jitter": "nominal days > 2 multiplied by Uniform(0.9, 1.1), rounded to whole days",
            "stopping_rule": "no further samples after two consecutive BLQ samples "
            "(counted from the first quantifiable sample on)",
            "blq": "DV = LLOQ, CENS = 1",
            "dv_rounding": f"{DV_SIGNIFICANT_DIGITS} significant digits",
        },
    }


def _write(sim: SimulationResult, out: Path, random_seed: Any) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "data": write_data_csv(sim.data, out / DATA_FILE),
        "truth_individual": out / TRUTH_INDIVIDUAL_FILE,
        "truth_population": out / TRUTH_POPULATION_FILE,
    }
    _truth_table(sim.truth).to_csv(paths["truth_individual"], index=False, lineterminator="\n")
    text = json.dumps(_truth_population(sim, random_seed), indent=2) + "\n"
    paths["truth_population"].write_text(text, encoding="utf-8")
    return paths


def _shipped(name: str) -> Any:
    return resources.files("bayes_cart.example_data") / name


def write_example(
    out_dir: str | Path,
    *,
    regenerate: bool = False,
    random_seed: int = EXAMPLE_SEED,
) -> dict[str, Path]:
    """Write the example data, its truth and its README to a folder.

    Parameters
    ----------
    out_dir : str or Path
        Folder (created if needed).
    regenerate : bool
        False (default): copy the shipped files. True: simulate them again with
        ``random_seed`` (the default seed gives the shipped files).
    random_seed : int
        Seed used when regenerating.

    Returns
    -------
    dict
        ``{"data", "truth_population", "truth_individual", "readme"}`` -> path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if regenerate:
        paths = _write(generate_example(random_seed), out, random_seed)
    else:
        paths = {}
        for key, name in (
            ("data", DATA_FILE),
            ("truth_population", TRUTH_POPULATION_FILE),
            ("truth_individual", TRUTH_INDIVIDUAL_FILE),
        ):
            paths[key] = out / name
            paths[key].write_bytes(_shipped(name).read_bytes())
    readme = out / README_FILE
    with resources.as_file(_shipped(README_FILE)) as src:
        if src.is_file() and src.resolve() != readme.resolve():
            shutil.copyfile(src, readme)
    if readme.is_file():
        paths["readme"] = readme
    return paths


def example_data_path() -> Path:
    """Path of the shipped example CSV."""
    with resources.as_file(_shipped(DATA_FILE)) as p:
        return Path(p)


def load_example() -> Any:
    """Load the shipped example as a validated :class:`~bayes_cart.data.dataset.Dataset`.

    Returns
    -------
    Dataset
        218 patients in 7 trials; covariates TRIAL, RESPONSE (empty for ALL_pediatric),
        TUMOR_TYPE, AGE, CD4CD8, LYMPHODEPLETION, TUMOR_BURDEN and DOSE (from the dosing rows).
    """
    from bayes_cart.data.dataset import load_dataset

    return load_dataset(example_data_path())


def example_truth() -> dict[str, Any]:
    """Return the true values behind the example.

    Returns
    -------
    dict
        The content of ``truth_population.json`` plus ``"individual"``: the per-patient truth
        (DataFrame: true RESPONSE, every kinetic parameter, Cmax, etas).
    """
    truth = json.loads(_shipped(TRUTH_POPULATION_FILE).read_text(encoding="utf-8"))
    with resources.as_file(_shipped(TRUTH_INDIVIDUAL_FILE)) as p:
        truth["individual"] = pd.read_csv(p, dtype={"ID": str})
    return truth


if __name__ == "__main__":  # regenerate the shipped files: python -m bayes_cart.example
    here = Path(__file__).parent / "example_data"
    for key, path in write_example(here, regenerate=True).items():
        print(f"{key}: {path}")


def truth_by_summary_name(truth: dict[str, Any] | None = None) -> dict[str, float]:
    """Return the example's true population values under the names of ``summary.csv``.

    Parameters
    ----------
    truth : dict, optional
        As returned by :func:`example_truth` (read if not given).

    Returns
    -------
    dict
        ``{"beta": 0.4, "omega_beta": 0.39, "beta:RESPONSE[CR/PR]": 0.3, "corr_beta_T1": -0.6,
        "omega_trial_beta": 0.15, "sigma": 0.5, ...}``.

    Examples
    --------
    >>> truth_by_summary_name()["beta:RESPONSE[CR/PR]"]
    0.3
    """
    truth = truth if truth is not None else example_truth()
    pop = truth["population"]
    flat: dict[str, float] = {}
    for name, value in pop["typical"].items():
        flat[name] = float(value)
    for name, value in pop.get("omega", {}).items():
        flat[f"omega_{name}"] = float(value)
    for param, covs in pop.get("effects", {}).items():
        for cov, levels in covs.items():
            for level, value in levels.items():
                flat[f"{param}:{cov}[{level}]"] = float(value)
    for a, inner in pop.get("correlation", {}).items():
        for b, value in inner.items():
            flat[f"corr_{a}_{b}"] = float(value)
    for group, params in pop.get("group_effects", {}).items():
        for param, value in params.items():
            flat[f"omega_{group.lower()}_{param}"] = float(value)
    if "sigma" in pop:
        flat["sigma"] = float(pop["sigma"])
    return flat
