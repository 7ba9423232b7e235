"""One replicate's dataset: a scenario's design and truth through ``simulate_patients``.

There is no second simulator: a scenario's design becomes a :func:`bayes_cart.make_design`
frame (patients, trials, covariates, sampling days within the follow-up) and its population a
:class:`bayes_cart.PopulationParameters`; the dataset's seed
(:func:`bayes_cart.study.seeds.dataset_seed`) is split into one stream for the covariates and
one for :func:`bayes_cart.simulate_patients`. A ``from_prior`` scenario's population is drawn
first, from the priors of its model (:func:`bayes_cart.study.prior.draw_population`, seeded by
:func:`bayes_cart.study.seeds.prior_seed`); ``SimulationResult.population`` holds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import bayes_cart as bc
from bayes_cart.study.seeds import dataset_seed, prior_seed

__all__ = ["design_frame", "simulate_replicate"]


def _counts(n: int, proportions: tuple[float, ...]) -> np.ndarray:
    """Exact counts of ``n`` by proportions (largest remainder, ties to the earlier level)."""
    raw = np.asarray(proportions, dtype=float) * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _covariate(mix: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    if mix.levels:
        k = len(mix.levels)
        props = mix.proportions or tuple([1.0 / k] * k)
        if mix.allocation == "random":
            return rng.choice(np.array(mix.levels, dtype=object), size=n, p=props)
        return np.repeat(np.array(mix.levels, dtype=object), _counts(n, props))
    if mix.distribution == "normal":
        return rng.normal(mix.mean, mix.sd, size=n)
    if mix.distribution == "lognormal":
        return mix.median * np.exp(rng.normal(0.0, mix.sd_log, size=n))
    return rng.uniform(mix.low, mix.high, size=n)


def design_frame(design: Any, rng: np.random.Generator) -> pd.DataFrame:
    """Return the planned samples of one replicate (``ID, TIME``, ``TRIAL``, covariates).

    Parameters
    ----------
    design : bayes_cart.study.spec.DesignSpec
        The scenario's design.
    rng : numpy.random.Generator
        Draws continuous (and randomly allocated) covariates.

    Examples
    --------
    >>> from bayes_cart.study.spec import DesignSpec
    >>> d = DesignSpec(trials=2, patients_per_trial=2, times=[1, 7, 400], follow_up=90,
    ...                covariates={"RESPONSE": {"levels": ["CR/PR", "PD/NR"]}})
    >>> f = design_frame(d, np.random.default_rng(0))
    >>> f.drop_duplicates("ID")[["TRIAL", "RESPONSE"]].to_numpy().tolist()
    [['T1', 'CR/PR'], ['T1', 'PD/NR'], ['T2', 'CR/PR'], ['T2', 'PD/NR']]
    >>> sorted(f["TIME"].unique().tolist())
    [1.0, 7.0]
    """
    per_trial = []
    for t in range(design.trials):
        cols: dict[str, Any] = {}
        if design.trials > 1:
            cols["TRIAL"] = np.full(design.patients_per_trial, f"T{t + 1}", dtype=object)
        for name, mix in design.covariates.items():
            cols[name] = _covariate(mix, design.patients_per_trial, rng)
        per_trial.append(pd.DataFrame(cols, index=range(design.patients_per_trial)))
    covariates = pd.concat(per_trial, ignore_index=True)
    return bc.make_design(
        design.n_patients,
        list(design.sample_times),
        covariates=covariates if len(covariates.columns) else None,
    )


def simulate_replicate(study: Any, scenario: str, replicate: int) -> Any:
    """Simulate dataset ``replicate`` of ``scenario`` (identical for every method).

    Parameters
    ----------
    study : bayes_cart.study.spec.StudySpec
        The study.
    scenario : str
        Scenario name.
    replicate : int
        Replicate number (0-based).

    Returns
    -------
    bayes_cart.simulate.SimulationResult
        ``data`` (``ID, TIME, DV, CENS`` and the covariates), ``truth`` per patient, ...
    """
    spec = study.scenarios[scenario]
    covariate_seed, simulation_seed = dataset_seed(study.seed, scenario, replicate).spawn(2)
    frame = design_frame(spec.design, np.random.default_rng(covariate_seed))
    if spec.from_prior:
        from bayes_cart.study.prior import draw_population

        population = draw_population(spec, frame, prior_seed(study.seed, scenario, replicate))
    else:
        population = spec.population_parameters()
    return bc.simulate_patients(
        frame,
        population,
        lloq=spec.design.lloq,
        stop_after_consecutive_blq=spec.design.stop_after_consecutive_blq,
        random_seed=np.random.default_rng(simulation_seed),
    )
