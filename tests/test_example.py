"""The bundled example: shape, hidden response, distribution phase, reproducibility, realism."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.data.nca import nca, summarise_nca
from bayes_cart.errors import DataWarning
from bayes_cart.example import (
    DATA_FILE,
    EXAMPLE_TRIALS,
    TRUTH_INDIVIDUAL_FILE,
    TRUTH_POPULATION_FILE,
    example_data_path,
    example_truth,
    load_example,
    write_example,
)

N_PER_TRIAL = {"ALL_adult": 30, "ALL_pediatric": 40, "CLL": 30, "DLBCL": 40, "MM": 35,
               "GBM": 20, "NSCLC": 23}  # fmt: skip


@pytest.fixture(scope="module")
def data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_example()


@pytest.fixture(scope="module")
def truth():
    return example_truth()


@pytest.fixture(scope="module")
def raw():
    return pd.read_csv(example_data_path(), dtype={"ID": str}, keep_default_na=False)


def test_shape_218_patients_in_7_trials(data):
    assert data.n_patients == 218
    assert data.covariate("TRIAL").value_counts().to_dict() == N_PER_TRIAL
    assert set(data.covariates) >= {"TRIAL", "RESPONSE", "TUMOR_TYPE", "AGE", "CD4CD8",
                                    "LYMPHODEPLETION", "TUMOR_BURDEN", "DOSE"}  # fmt: skip
    assert data.patient_ids[0] == "ALLA-001" and "MM-007" in data.patient_ids
    tumor = data.patients.groupby("TRIAL")["TUMOR_TYPE"].unique().map(tuple).to_dict()
    assert tumor == {"ALL_adult": ("heme",), "ALL_pediatric": ("heme",), "CLL": ("heme",),
                     "MM": ("heme",), "DLBCL": ("lymphoma",), "GBM": ("solid",),
                     "NSCLC": ("solid",)}  # fmt: skip


def test_response_missing_exactly_for_all_pediatric(data, truth):
    resp = data.patients["RESPONSE"]
    missing_trials = set(data.patients.loc[resp.isna(), "TRIAL"])
    assert missing_trials == {"ALL_pediatric"}
    assert resp.isna().sum() == 40
    assert set(resp.dropna()) == {"CR/PR", "PD/NR"}
    ind = truth["individual"]
    assert ind["RESPONSE"].isin(["CR/PR", "PD/NR"]).all()  # the truth keeps every status
    ped = ind[ind["TRIAL"] == "ALL_pediatric"]
    assert not ped["RESPONSE_REPORTED"].any() and ind.loc[ind["TRIAL"] != "ALL_pediatric",
                                                          "RESPONSE_REPORTED"].all()  # fmt: skip
    assert 0.6 < (ped["RESPONSE"] == "CR/PR").mean() < 0.95
    shown = data.patients["RESPONSE"].dropna()
    assert (ind.set_index("ID").loc[shown.index, "RESPONSE"] == shown).all()


def test_distribution_phase_only_in_dlbcl(truth):
    ind = truth["individual"]
    dlbcl = ind["TRIAL"] == "DLBCL"
    assert (ind.loc[dlbcl, "k"] > 0).all() and (ind.loc[dlbcl, "T0"] > 0).all()
    assert (ind.loc[~dlbcl, "k"] == 0).all() and (ind.loc[~dlbcl, "T0"] == 0).all()
    assert ind.loc[~dlbcl, "eta_k"].isna().all()
    assert abs(np.log(ind.loc[dlbcl, "k"]).mean() - np.log(0.6)) < 4 * 0.3 / np.sqrt(40)
    assert (ind["T1"] > ind["T0"]).all()


def test_dosing_rows_and_layout(raw):
    assert raw.columns.tolist() == [
        "ID", "TIME", "EVID", "AMT", "MDV", "DV", "CENS", "TRIAL", "RESPONSE", "TUMOR_TYPE",
        "AGE", "CD4CD8", "LYMPHODEPLETION", "TUMOR_BURDEN",
    ]  # fmt: skip
    dosing = raw[raw["EVID"] == 1]
    assert len(dosing) == 218 and dosing["ID"].is_unique
    assert (
        (dosing["TIME"] == 0).all() and (dosing["MDV"] == 1).all() and (dosing["DV"] == ".").all()
    )
    amt = dosing["AMT"].astype(float)
    assert amt.min() >= 1e7 and amt.max() <= 5e8
    obs = raw[raw["EVID"] == 0]
    assert (obs["AMT"] == ".").all() and (obs["MDV"] == 0).all()
    assert set(raw.loc[raw["TRIAL"] == "GBM", "LYMPHODEPLETION"]) == {"no"}
    ped_age = raw.loc[raw["TRIAL"] == "ALL_pediatric", "AGE"].astype(int)
    assert ped_age.min() >= 3 and ped_age.max() <= 25


def test_blq_rows_hold_the_trial_lloq_and_sampling_stops(data, truth):
    obs = data.observations.merge(data.patients[["TRIAL"]], left_on="ID", right_index=True)
    lloq = {name: t["lloq"] for name, t in truth["trials"].items()}
    blq = obs[obs["CENS"] == 1]
    assert (blq["DV"] == blq["TRIAL"].map(lloq)).all()
    assert (obs.loc[obs["CENS"] == 0, "DV"] >= obs.loc[obs["CENS"] == 0, "TRIAL"].map(lloq)).all()
    frac = obs["CENS"].mean()
    assert 0.10 <= frac <= 0.25, frac
    for _, grp in obs.groupby("ID"):
        c = grp["CENS"].to_numpy()
        first_q = np.flatnonzero(c == 0)
        after = c[first_q[0] :] if len(first_q) else c[:0]
        runs = np.flatnonzero((after[:-1] == 1) & (after[1:] == 1))
        if len(runs):
            assert runs[0] + 2 == len(after)  # nothing sampled after two consecutive BLQ
    # DLBCL samples early (distribution phase), solid tumours stop at ~3 months
    assert obs.loc[obs["TRIAL"] == "DLBCL", "TIME"].min() == pytest.approx(0.1)
    assert obs.loc[obs["TRIAL"].isin(["GBM", "NSCLC"]), "TIME"].max() <= 99


def test_truth_population_holds_the_generating_values(truth):
    pop = truth["population"]
    assert truth["random_seed"] == 20210509 and truth["generator_version"]
    assert pop["typical"] == {"C0": 50.0, "k": 0.6, "T0": 2.0, "beta": 0.4, "T1": 12.0,
                              "alpha": 0.124, "rM": 0.0015, "deltaM": 0.004}  # fmt: skip
    assert pop["omega"]["beta"] == 0.39 and pop["correlation"] == {"beta": {"T1": -0.6}}
    assert pop["sigma"] == 0.5
    flat = truth["effects_flat"]
    assert flat["beta:RESPONSE[CR/PR]"] == 0.30 and flat["alpha:TUMOR_TYPE[solid]"] == 0.34
    assert set(truth["trial_effects"]["beta"]) == set(N_PER_TRIAL)
    ind = truth["individual"]
    eta = ind.groupby("TRIAL")["eta_TRIAL_beta"].first()
    assert eta.to_dict() == pytest.approx(truth["trial_effects"]["beta"], abs=1e-6)
    assert set(truth["null_covariates"]["names"]) == {"DOSE", "AGE", "CD4CD8",
                                                     "LYMPHODEPLETION", "TUMOR_BURDEN"}  # fmt: skip
    # individual values are consistent with typical x exp(effects + trial eta + eta)
    row = ind[(ind["TRIAL"] == "CLL") & (ind["RESPONSE"] == "CR/PR")].iloc[0]
    expected = 0.4 * np.exp(0.30 + row["eta_TRIAL_beta"] + row["eta_beta"])
    assert row["beta"] == pytest.approx(expected, rel=1e-5)


def test_regenerating_reproduces_the_shipped_files_exactly(tmp_path):
    paths = write_example(tmp_path, regenerate=True)
    shipped = example_data_path().parent
    for name in (DATA_FILE, TRUTH_INDIVIDUAL_FILE, TRUTH_POPULATION_FILE):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name
    assert paths["data"] == tmp_path / DATA_FILE


def test_realistic_kinetics_by_nca(data, truth):
    table = nca(data)
    assert len(table) == 218 and table["Cmax"].notna().all()
    by_type = summarise_nca(table, by="TUMOR_TYPE").set_index("TUMOR_TYPE")
    assert 5e3 <= by_type.loc["heme", "Cmax_median"] <= 5e4
    assert by_type.loc["solid", "Cmax_median"] < by_type.loc["heme", "Cmax_median"] / 3
    assert 10 <= by_type.loc["heme", "Tmax_median"] <= 15
    by_resp = summarise_nca(table[table["TUMOR_TYPE"] == "heme"], by="RESPONSE")
    by_resp = by_resp.set_index("RESPONSE")
    assert by_resp.loc["CR/PR", "Cmax_median"] > 2 * by_resp.loc["PD/NR", "Cmax_median"]
    # observed Cmax follows the true peak
    ind = truth["individual"].set_index("ID").loc[table["ID"]]
    r = np.corrcoef(np.log(table["Cmax"]), np.log(ind["Cmax"]))[0, 1]
    assert r > 0.85


def test_cli_example_writes_files(tmp_path):
    result = CliRunner().invoke(app, ["example", "--out", str(tmp_path / "ex")])
    assert result.exit_code == 0, result.output
    assert "218 patients in 7 trials" in result.output
    for name in (DATA_FILE, TRUTH_INDIVIDUAL_FILE, TRUTH_POPULATION_FILE, "README.md"):
        assert (tmp_path / "ex" / name).is_file(), name
    assert sum(t.n for t in EXAMPLE_TRIALS) == 218


def test_generate_meta_analysis_designs_other_than_the_example():
    """Other designs: trial sizes, drop-out and missing responses do what they say, and the
    defaults are the example itself."""
    from dataclasses import replace

    from bayes_cart.example import EXAMPLE_TRIALS, generate_example, generate_meta_analysis

    trials = tuple(replace(t, n=12) for t in EXAMPLE_TRIALS[:3])
    base = generate_meta_analysis(trials, random_seed=5)
    assert base.truth["ID"].nunique() == 36
    both = generate_meta_analysis(trials, random_seed=5, dropout=0.5, missing_response=0.5)
    obs = lambda sim: sim.data[sim.data["EVID"] == 0]  # noqa: E731
    last = obs(both).groupby("ID")["TIME"].max()
    last_full = obs(base).groupby("ID")["TIME"].max()
    assert (last < last_full.reindex(last.index)).sum() >= 6  # about half of 36 left early
    reported = both.truth["RESPONSE_REPORTED"]
    # ALL_pediatric never reports; in the two other trials about half are hidden
    other = both.truth["TRIAL"] != "ALL_pediatric"
    assert 4 <= (~reported[other]).sum() <= 20
    shown = obs(both).groupby("ID")["RESPONSE"].first().notna()
    assert shown.to_dict() == dict(zip(both.truth["ID"], reported, strict=True))
    ex = generate_example()
    assert ex.data.equals(generate_meta_analysis().data)
