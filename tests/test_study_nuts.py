"""A tiny real study end to end (NUTS): one-stage Bayesian model vs the two-stage test.

1 scenario x 1 replicate x 2 methods = 2 real fits (10 patients, 2 chains x (100 + 100)),
run on a local Dask cluster of two workers in two parts (as if killed after 1 task) and
summarised. Far too small for statistics:
it checks the machinery on the real path (records, gate numbers, timings, the two-stage
p-value, files, summary columns, resumption).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bayes_cart.study import StudyStore, run_study, study_from_dict, write_summary
from bayes_cart.study.summary import METRICS_COLUMNS

SAMPLER = {"chains": 2, "tune": 100, "draws": 100, "retry": False}

STUDY = {
    "study": {
        "name": "tiny_nuts",
        "seed": 11,
        "replicates": 1,
        "quantities": ["beta", "omega_beta", "sigma", "beta:RESPONSE[CR/PR]"],
        "gate": {"max_rhat": 1.1, "min_ess_bulk": 50},
    },
    "scenarios": {
        "effect": {
            "population": {
                "kinetics": "liu2021",
                "typical": {
                    "C0": 50.0,
                    "beta": 0.4,
                    "T1": 12.0,
                    "alpha": 0.124,
                    "rM": 0.0015,
                    "deltaM": 0.004,
                },
                "fixed": {"k": 0.0, "T0": 0.0},
                "omega": {"C0": 0.5, "beta": 0.3, "T1": 0.2, "alpha": 0.3},
                "effects": {"beta": {"RESPONSE": {"CR/PR": 0.4}}},
                "sigma": 0.3,
            },
            "design": {
                "patients_per_trial": 10,
                "times": [1, 4, 7, 14, 21, 28, 60],
                "lloq": 50.0,
                "covariates": {"RESPONSE": {"levels": ["CR/PR", "PD/NR"]}},
            },
        }
    },
    "methods": {
        "bayes": {
            "kind": "bayes",
            "covariates": {"beta": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            **SAMPLER,
        },
        "two_stage": {
            "kind": "two_stage",
            "parameter": "beta",
            "covariate": "RESPONSE",
            "reference": {"RESPONSE": "PD/NR"},
            **SAMPLER,
        },
    },
}


@pytest.mark.slow
def test_tiny_real_study_end_to_end(tmp_path):
    study = study_from_dict(STUDY)
    directory = tmp_path / "study"
    # on a local Dask cluster of 2 single-thread workers, killed (stopped) after 1 task
    first = run_study(study, directory, workers=2, max_tasks=1)
    assert first.ran == 1 and first.unfinished == 1
    rest = run_study(study, directory, workers=2)
    assert rest.ran == 1 and rest.skipped == 1 and rest.unfinished == 0
    assert not set(first.keys_run) & set(rest.keys_run)
    assert run_study(study, directory, workers=0).ran == 0

    records = StudyStore.existing(directory).records()
    assert len(records) == 2
    for r in records:
        assert r["status"] == "ok", r["error"]
        assert r["timings"]["compile_seconds"] > 0 and r["timings"]["sampling_seconds"] > 0
        assert {"max_rhat", "min_ess_bulk", "divergences", "package_gate_passed"} <= set(
            r["diagnostics"]
        )
        assert isinstance(r["gate_passed"], bool)
        # each random effect's eta-shrinkage, for reading the two-stage test of EBEs
        shrinkage = r["diagnostics"]["eta_shrinkage"]
        assert {"C0", "beta", "T1", "alpha"} <= set(shrinkage)
        assert all(v is None or -1.0 < v < 1.0 for v in shrinkage.values()), shrinkage
    bayes = [r for r in records if r["method"] == "bayes"]
    two = [r for r in records if r["method"] == "two_stage"]
    assert {q["quantity"] for q in bayes[0]["quantities"]} == set(STUDY["study"]["quantities"])
    (effect,) = two[0]["quantities"]
    assert effect["quantity"] == "beta:RESPONSE[CR/PR]" and 0 <= effect["p_value"] <= 1
    assert effect["covers_90"] is None and isinstance(effect["test_reject"], bool)
    # both methods of a replicate saw the same data
    for rep in (0,):
        data = [r["data"] for r in records if r["replicate"] == rep]
        assert data[0] == data[1]

    fits, metrics = write_summary(directory)
    assert list(metrics.columns) == METRICS_COLUMNS
    assert (directory / "metrics.csv").exists()
    on_disk = pd.read_csv(directory / "metrics.csv")
    assert len(on_disk) == len(metrics) == 2 * (4 + 1)  # (bayes 4 + two-stage 1) x all/passed
    row = metrics[(metrics["method"] == "bayes") & (metrics["quantity"] == "beta")].iloc[0]
    assert row["n"] == 1 and 0 <= row["coverage_90"] <= 1 and row["median_compile_seconds"] > 0
    assert len(pd.read_parquet(directory / "fits.parquet")) == len(fits) == 4 + 1
    timings = {
        r["key"]: {k: round(v, 1) if isinstance(v, float) else v for k, v in r["timings"].items()}
        for r in records
    }
    # each of the two methods compiled its own model (2 tasks, one worker cache each)
    assert {t.get("model_cache") for t in timings.values()} <= {"hit", "miss", "off"}
    print(json.dumps(timings, indent=1))  # the measured numbers, with -s
