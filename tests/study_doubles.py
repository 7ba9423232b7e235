"""Test doubles of study methods, registered through the documented extension point.

``conjugate``: the exact conjugate normal posterior of a typical value (and of a covariate
effect) from the simulated patients' true individual parameters, whose spread (omega) is
known: with a flat prior on log theta, log theta_typical | data ~ N(mean log theta_i,
omega^2 / n). Its central intervals have exactly their nominal coverage, so the engine's
coverage, bias and power arithmetic can be checked against known answers in milliseconds.
``failing`` raises; ``sleepy`` sleeps (for timeouts); ``data_digest`` records a hash of the
dataset it was given (every method of a replicate must see the same data).
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd

from bayes_cart.study import MethodOutput, register_method, summarise_draws

DIGESTS: dict[tuple[str, int, str], str] = {}


def conjugate(ctx):
    pop = ctx.study.scenarios[ctx.scenario].population
    truth = ctx.simulation.truth
    rng = np.random.default_rng(ctx.seed)
    draws = {}
    for p, omega in pop.get("omega", {}).items():
        log_i = np.log(truth[p].to_numpy(float))
        if "RESPONSE" in truth:
            ref = truth["RESPONSE"].to_numpy() == "PD/NR"
            level = ~ref
            n_ref, n_lev = ref.sum(), level.sum()
            mean_ref = log_i[ref].mean()
            draws[p] = np.exp(rng.normal(mean_ref, omega / np.sqrt(n_ref), 4000))
            diff = log_i[level].mean() - mean_ref
            se = omega * np.sqrt(1 / n_ref + 1 / n_lev)
            draws[f"{p}:RESPONSE[CR/PR]"] = rng.normal(diff, se, 4000)
        else:
            draws[p] = np.exp(rng.normal(log_i.mean(), omega / np.sqrt(len(log_i)), 4000))
    diagnostics = {"max_rhat": 1.0, "min_ess_bulk": 4000.0, "divergences": 0}
    return MethodOutput(
        estimates=summarise_draws(draws),
        diagnostics=diagnostics,
        timings={"compile_seconds": 0.0, "sampling_seconds": 0.001},
    )


def failing(ctx):
    raise RuntimeError(f"this method always fails (replicate {ctx.replicate})")


def sleepy(ctx):
    time.sleep(float(ctx.method.options.get("seconds", 60)))
    return conjugate(ctx)


def data_digest(ctx):
    frame = ctx.simulation.data
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()
    DIGESTS[(ctx.scenario, ctx.replicate, ctx.method_name)] = digest
    out = conjugate(ctx)
    out.notes.append(digest)
    return out


for _kind, _fn in {
    "conjugate": conjugate,
    "failing": failing,
    "sleepy": sleepy,
    "data_digest": data_digest,
}.items():
    register_method(_kind, _fn, replace=True)


def study_dict(replicates: int = 4, methods: dict | None = None, **study) -> dict:
    """A small study of the doubles: a null and an effect scenario of 12 patients."""
    return {
        "study": {
            "name": "doubles",
            "seed": 7,
            "replicates": replicates,
            "quantities": ["beta", "beta:RESPONSE[CR/PR]"],
            **study,
        },
        "defaults": {
            "population": {
                "typical": {
                    "C0": 50.0,
                    "beta": 0.4,
                    "T1": 12.0,
                    "alpha": 0.12,
                    "rM": 0.0015,
                    "deltaM": 0.004,
                },
                "omega": {"beta": 0.3},
                "sigma": 0.3,
            },
            "design": {
                "patients_per_trial": 12,
                "times": [1, 7, 14, 28],
                "lloq": 20.0,
                "covariates": {"RESPONSE": {"levels": ["CR/PR", "PD/NR"]}},
            },
        },
        "scenarios": {
            "null": {},
            "effect": {"population": {"effects": {"beta": {"RESPONSE": {"CR/PR": 0.4}}}}},
        },
        "methods": methods or {"exact": {"kind": "conjugate"}, "digest": {"kind": "data_digest"}},
    }
