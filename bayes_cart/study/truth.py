"""The true value of every population quantity a scenario defines, named like the fit's.

Names follow :func:`bayes_cart.population_summary`: typical values by parameter name
(``beta``), IIV SDs ``omega_<p>``, correlations ``corr_<p>_<q>``, the residual ``sigma``, trial
SDs ``omega_<GROUP>_<p>`` and categorical covariate effects ``<p>:<COLUMN>[<level>]`` on the
log scale. An effect is relative to the levels the population does not list (they add 0), so
a method's reference level must be one of those; a level (or a whole design covariate) without
an effect has the true value 0, which is what makes a scenario a null scenario for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_effect", "truth_values"]


def is_effect(quantity: str) -> bool:
    """Whether ``quantity`` is a covariate effect (``beta:RESPONSE[CR/PR]``).

    Examples
    --------
    >>> is_effect("beta:RESPONSE[CR/PR]"), is_effect("omega_beta")
    (True, False)
    """
    return ":" in quantity


def truth_values(population: Any, design: Any) -> dict[str, float]:
    """Return the true value of each population quantity of a scenario.

    Parameters
    ----------
    population : bayes_cart.simulate.PopulationParameters
        The truth.
    design : bayes_cart.study.spec.DesignSpec
        The design (its categorical covariates give the null effects).

    Returns
    -------
    dict
        Quantity name -> true value (continuous covariate effects are not included: their
        scale in a fit depends on the fit's centring of the covariate).

    Examples
    --------
    >>> import bayes_cart as bc
    >>> from bayes_cart.study.spec import DesignSpec
    >>> pop = bc.PopulationParameters(typical={"C0": 50, "beta": 0.4, "T1": 12, "alpha": 0.1,
    ...     "rM": 0.002, "deltaM": 0.005}, omega={"beta": 0.3},
    ...     effects={"beta": {"RESPONSE": {"CR/PR": 0.4}}})
    >>> d = DesignSpec(patients_per_trial=4, times=[1, 7],
    ...     covariates={"RESPONSE": {"levels": ["CR/PR", "PD/NR"]}})
    >>> t = truth_values(pop, d)
    >>> t["beta"], t["omega_beta"], t["beta:RESPONSE[CR/PR]"], t["alpha:RESPONSE[CR/PR]"]
    (0.4, 0.3, 0.4, 0.0)
    """
    out: dict[str, float] = {p: float(v) for p, v in population.typical.items()}
    out.update({f"omega_{p}": float(v) for p, v in population.omega.items()})
    out["sigma"] = float(population.sigma)
    for (a, b), r in population.correlation.items():
        out[f"corr_{a}_{b}"] = out[f"corr_{b}_{a}"] = float(r)
    for group, sds in population.group_effects.items():
        out.update({f"omega_{group}_{p}": float(sd) for p, sd in sds.items()})
    for column, mix in design.covariates.items():
        if not mix.levels:
            continue
        for p in population.typical:
            spec = population.effects.get(p, {}).get(column, {})
            for level in mix.levels:
                out[f"{p}:{column}[{level}]"] = float(spec.get(level, 0.0))
    return out
