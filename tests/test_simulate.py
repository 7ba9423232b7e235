"""Virtual patients: statistics of the draws against the population values, censoring,
covariate and group effects, reproducibility, the dataset format and the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.data.dataset import load_dataset
from bayes_cart.errors import DataError, DataWarning, SpecError
from bayes_cart.kinetics import get_kinetics
from bayes_cart.simulate import (
    PopulationParameters,
    add_dosing_rows,
    make_design,
    simulate_patients,
    write_data_csv,
)

TYPICAL = {"C0": 50.0, "beta": 0.4, "T1": 12.0, "alpha": 0.124, "rM": 0.0015, "deltaM": 0.004}


def population(**kw) -> PopulationParameters:
    args = {
        "typical": TYPICAL,
        "omega": {"C0": 0.8, "beta": 0.39, "T1": 0.25, "alpha": 0.6},
        "correlation": {("beta", "T1"): -0.6},
        "sigma": 0.5,
    }
    args.update(kw)
    return PopulationParameters(**args)


def test_log_parameters_match_typical_omega_and_correlation():
    n = 4000
    sim = simulate_patients(make_design(n, [7.0]), population(), random_seed=11)
    truth = sim.truth
    for p, omega in {"C0": 0.8, "beta": 0.39, "T1": 0.25, "alpha": 0.6}.items():
        logs = np.log(truth[p].to_numpy())
        se_mean = omega / np.sqrt(n)
        assert abs(logs.mean() - np.log(TYPICAL[p])) < 4 * se_mean, p
        se_sd = omega / np.sqrt(2 * (n - 1))
        assert abs(logs.std(ddof=1) - omega) < 4 * se_sd, p
    # no IIV: exactly the typical value
    assert np.all(truth["rM"] == TYPICAL["rM"]) and np.all(truth["deltaM"] == TYPICAL["deltaM"])
    r = np.corrcoef(np.log(truth["beta"]), np.log(truth["T1"]))[0, 1]
    assert abs(r - (-0.6)) < 4 * (1 - 0.36) / np.sqrt(n)
    assert abs(np.corrcoef(truth["eta_C0"], truth["eta_beta"])[0, 1]) < 4 / np.sqrt(n)
    assert np.allclose(np.log(truth["beta"] / 0.4), truth["eta_beta"])


def test_logit_normal_fraction_stays_in_unit_interval_with_its_typical_and_omega():
    """A parameter listed in ``logit`` varies on the logit scale: every FB_i is in (0, 1),
    logit FB_i has the typical value's logit as mean and omega as SD, and its covariate
    effect is a log odds ratio; the list survives a round trip through to_dict."""
    from scipy.special import logit

    n = 4000
    pop = PopulationParameters(
        kinetics="stein2019",
        typical={"Cmax": 2e4, "Tmax": 9.0, "foldx": 1e3, "alpha": 0.16, "beta": 0.003, "FB": 0.3},
        omega={"FB": 1.5},
        effects={"FB": {"RESPONSE": {"CR/PR": 0.7}}},
        logit=("FB",),
        sigma=0.5,
    )
    cov = pd.DataFrame({"RESPONSE": np.where(np.arange(n) % 2 == 0, "CR/PR", "PD/NR")})
    sim = simulate_patients(make_design(n, [7.0, 30.0], covariates=cov), pop, random_seed=3)
    fb = sim.truth["FB"].to_numpy()
    assert np.all((fb > 0) & (fb < 1))
    resp = sim.truth["RESPONSE"].to_numpy() == "CR/PR"
    ref = logit(fb[~resp])
    assert abs(ref.mean() - logit(0.3)) < 4 * 1.5 / np.sqrt(ref.size)
    assert abs(ref.std(ddof=1) - 1.5) < 4 * 1.5 / np.sqrt(2 * ref.size)
    shift = logit(fb[resp]).mean() - ref.mean()
    assert abs(shift - 0.7) < 4 * 1.5 * np.sqrt(2 / (n / 2))
    assert PopulationParameters.from_dict(pop.to_dict()).logit == ("FB",)
    with pytest.raises(SpecError, match=r"typical\.FB.*\(0, 1\)"):
        PopulationParameters(**{**pop.to_dict(), "typical": {**pop.typical, "FB": 1.2}})


def test_residual_error_sd_on_log_scale():
    sim = simulate_patients(make_design(3000, [3.0, 40.0]), population(), random_seed=5)
    resid = sim.states["log_dv"] - sim.states["log_ipred"]
    assert abs(resid.std(ddof=1) - 0.5) < 4 * 0.5 / np.sqrt(2 * 6000)
    assert abs(resid.mean()) < 4 * 0.5 / np.sqrt(6000)


def test_states_are_the_registered_closed_form_of_the_truth():
    sim = simulate_patients(make_design(5, [0.0, 3.0, 12.0, 40.0, 200.0]), population(),
                            random_seed=3)  # fmt: skip
    idx = sim.states["ID"].map({pid: i for i, pid in enumerate(sim.truth["ID"])}).to_numpy()
    model = get_kinetics("liu2021")
    params = {p: sim.truth[p].to_numpy()[idx] for p in model.parameters}
    solved = model.solve(sim.states["TIME"].to_numpy(), params)
    assert np.allclose(solved["log_total"], sim.states["log_ipred"])
    assert np.allclose(sim.states["E"] + sim.states["M"], sim.states["total"])
    at_zero = sim.states[sim.states["TIME"] == 0.0]
    assert np.allclose(at_zero["total"].to_numpy(), sim.truth["C0"].to_numpy())


def test_censoring_fraction_matches_the_analytic_probability():
    # t = 5 < T1: log IPRED = log C0 + beta t, only C0 varies -> log DV ~ N(mu, omega^2+sigma^2)
    pop = PopulationParameters(typical=TYPICAL, omega={"C0": 0.8}, sigma=0.5)
    n, lloq = 20000, 200.0
    sim = simulate_patients(make_design(n, [5.0]), pop, lloq=lloq, random_seed=7)
    mu = np.log(50.0) + 0.4 * 5.0
    p = stats.norm.cdf((np.log(lloq) - mu) / np.hypot(0.8, 0.5))
    frac = sim.data["CENS"].mean()
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / n)
    blq = sim.data[sim.data["CENS"] == 1]
    assert (blq["DV"] == lloq).all()
    assert (sim.data.loc[sim.data["CENS"] == 0, "DV"] >= lloq).all()


def test_same_seed_same_data_other_seed_other_data():
    design = make_design(20, [1, 7, 14, 28, 90])
    a = simulate_patients(design, population(), lloq=30.0, random_seed=42)
    b = simulate_patients(design, population(), lloq=30.0, random_seed=42)
    c = simulate_patients(design, population(), lloq=30.0, random_seed=43)
    pd.testing.assert_frame_equal(a.data, b.data)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not np.allclose(a.data["DV"], c.data["DV"])
    g = simulate_patients(design, population(), lloq=30.0, random_seed=np.random.default_rng(42))
    pd.testing.assert_frame_equal(a.data, g.data)


def test_categorical_continuous_and_power_effects():
    n = 600
    cov = pd.DataFrame(
        {
            "ARM": np.where(np.arange(n) % 2 == 0, "A", "B"),
            "AGE": np.linspace(20, 80, n),
            "DOSE": np.geomspace(1e7, 1e9, n),
        }
    )
    pop = PopulationParameters(
        typical=TYPICAL,
        omega={"beta": 0.3},
        effects={
            "beta": {"ARM": {"B": 0.3}},
            "alpha": {"AGE": {"slope": 0.01, "center": 50}},
            "C0": {"DOSE": {"power": 0.5, "reference": 1e8}},
        },
        sigma=0.5,
    )
    truth = simulate_patients(make_design(n, [7.0], covariates=cov), pop, random_seed=1).truth
    assert np.allclose(truth["alpha"], 0.124 * np.exp(0.01 * (truth["AGE"] - 50)))
    assert np.allclose(truth["C0"], 50.0 * (truth["DOSE"] / 1e8) ** 0.5)
    log_beta = np.log(truth["beta"])
    diff = log_beta[truth["ARM"] == "B"].mean() - log_beta[truth["ARM"] == "A"].mean()
    assert abs(diff - 0.3) < 4 * 0.3 * np.sqrt(2 / (n / 2))


def test_group_effects_drawn_once_per_level_and_reported():
    design = make_design(60, [7.0])
    design["TRIAL"] = np.repeat(["T1", "T2", "T3"], 20)
    pop = population(group_effects={"TRIAL": {"beta": 0.15, "alpha": 0.15}})
    sim = simulate_patients(design, pop, random_seed=9)
    ge = sim.group_effects
    assert len(ge) == 6 and set(ge["level"]) == {"T1", "T2", "T3"}
    per_trial = sim.truth.groupby("TRIAL")["eta_TRIAL_beta"].nunique()
    assert (per_trial == 1).all()
    beta_t2 = ge[(ge["level"] == "T2") & (ge["parameter"] == "beta")]["eta"].item()
    row = sim.truth[sim.truth["TRIAL"] == "T2"].iloc[0]
    assert row["eta_TRIAL_beta"] == pytest.approx(beta_t2)
    assert row["beta"] == pytest.approx(0.4 * np.exp(beta_t2 + row["eta_beta"]))


def test_distribution_phase_for_a_subset_via_design_columns():
    design = make_design(200, [0.5, 2.0, 10.0])
    design["k"] = np.where(design["ID"] <= "P100", np.nan, 0.0)
    design["T0"] = np.where(design["ID"] <= "P100", np.nan, 0.0)
    pop = PopulationParameters(
        typical={**TYPICAL, "k": 0.6, "T0": 2.0}, omega={"k": 0.3, "T0": 0.2}, sigma=0.5
    )
    sim = simulate_patients(design, pop, random_seed=4)
    with_phase = sim.truth["ID"] <= "P100"
    assert (sim.truth.loc[with_phase, "k"] > 0).all() and (
        sim.truth.loc[~with_phase, "k"] == 0
    ).all()
    assert (sim.truth.loc[~with_phase, "T0"] == 0).all()
    assert sim.truth.loc[~with_phase, "eta_k"].isna().all()
    assert abs(np.log(sim.truth.loc[with_phase, "k"]).mean() - np.log(0.6)) < 4 * 0.3 / 10
    assert "k" not in sim.data.columns and "T0" not in sim.data.columns
    # the level falls during the distribution phase
    s = sim.states.set_index(["ID", "TIME"])["total"]
    assert s[("P001", 0.5)] < sim.truth.loc[0, "C0"]


def test_stop_after_consecutive_blq_drops_later_samples():
    times = [1, 4, 7, 14, 21, 28, 60, 90, 180, 365]
    sim = simulate_patients(make_design(300, times), population(), lloq=100.0,
                            stop_after_consecutive_blq=2, random_seed=8)  # fmt: skip
    full = simulate_patients(make_design(300, times), population(), lloq=100.0, random_seed=8)
    assert len(sim.data) == int(sim.states["sampled"].sum()) < len(full.data)
    # same draws: the samples taken are identical to the full design's
    kept = full.states[sim.states["sampled"].to_numpy()].reset_index(drop=True)
    assert np.allclose(kept["DV"], sim.data["DV"])
    for _, grp in sim.data.groupby("ID"):
        c = grp["CENS"].to_numpy()
        first_q = np.flatnonzero(c == 0)
        if len(first_q) == 0:
            continue
        after = c[first_q[0] :]
        runs = np.flatnonzero((after[:-1] == 1) & (after[1:] == 1))
        if len(runs):  # the second BLQ of the first run is the patient's last sample
            assert runs[0] + 2 == len(after)


def test_lloq_per_patient_or_column():
    design = make_design(2, [1.0, 4.0])
    sim = simulate_patients(design, population(), lloq=pd.Series({"P001": 1e9, "P002": 1e-9}),
                            random_seed=1)  # fmt: skip
    assert sim.data.groupby("ID")["CENS"].sum().to_dict() == {"P001": 2, "P002": 0}
    design["LLOQ"] = [1e9, 1e-9, 1e9, 1e-9]
    sim = simulate_patients(design, population(), random_seed=1)  # LLOQ column by default
    assert sim.data["CENS"].tolist() == [1, 0, 1, 0]
    assert "LLOQ" not in sim.data.columns
    with pytest.raises(DataError, match="no LLOQ for patient"):
        simulate_patients(design, population(), lloq={"P001": 5.0}, random_seed=1)


def test_output_loads_as_dataset_with_dosing_rows(tmp_path):
    design = make_design(10, [1, 7, 14, 28, 90])
    design["DOSE"] = np.repeat(np.geomspace(1e7, 1e8, 10), 5)
    design["ARM"] = np.repeat(["A", "B"], 25)
    sim = simulate_patients(design, population(), lloq=100.0, random_seed=2)
    frame = add_dosing_rows(sim.data, "DOSE")
    path = write_data_csv(frame, tmp_path / "sim.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("ID,TIME,EVID,AMT,MDV,DV,CENS")
    assert lines[1].split(",")[5] == "." and lines[2].split(",")[3] == "."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = load_dataset(path)
    assert ds.n_patients == 10 and ds.n_observations == len(sim.data)
    assert ds.n_censored == int(sim.data["CENS"].sum()) > 0
    assert np.allclose(ds.covariate("DOSE").to_numpy(), np.geomspace(1e7, 1e8, 10))
    assert ds.covariate("ARM").tolist() == ["A"] * 5 + ["B"] * 5
    assert np.allclose(ds.observations["DV"], sim.data["DV"])


def test_population_validation_collects_problems():
    with pytest.raises(SpecError) as err:
        PopulationParameters(
            typical={**TYPICAL, "gamma": 1.0, "beta": -0.4},
            omega={"T1": -0.1, "foo": 0.2},
            correlation={("beta", "alpha"): 1.5},
        )
    text = str(err.value)
    for needle in ("gamma", "typical.beta", "omega.T1", "omega.foo", "must be in (-1, 1)"):
        assert needle in text, needle
    with pytest.raises(SpecError, match="missing value"):
        PopulationParameters(typical={"C0": 50.0})
    with pytest.raises(SpecError, match="not positive definite"):
        PopulationParameters(
            typical=TYPICAL,
            omega={"beta": 0.3, "T1": 0.3, "alpha": 0.3},
            correlation={("beta", "T1"): 0.9, ("beta", "alpha"): 0.9, ("T1", "alpha"): -0.9},
        )


def test_population_files_round_trip(tmp_path):
    pop = population(
        effects={"beta": {"RESPONSE": {"CR/PR": 0.3}}},
        group_effects={"TRIAL": {"beta": 0.15}},
        fixed={"k": 0.0},
    )
    js = tmp_path / "pop.json"
    js.write_text(json.dumps(pop.to_dict()))
    assert PopulationParameters.from_file(js) == pop
    toml = tmp_path / "pop.toml"
    toml.write_text(
        "sigma = 0.5\n[typical]\nC0 = 50\nbeta = 0.4\nT1 = 12\nalpha = 0.124\nrM = 0.0015\n"
        "deltaM = 0.004\n[omega]\nbeta = 0.39\nT1 = 0.25\n[correlation]\nbeta = { T1 = -0.6 }\n"
    )
    loaded = PopulationParameters.from_file(toml)
    assert loaded.correlation == {("beta", "T1"): -0.6}
    assert loaded.omega_matrix()[1][0, 1] == pytest.approx(-0.6 * 0.39 * 0.25)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"typical": TYPICAL, "omegas": {}}))
    with pytest.raises(SpecError, match="omegas: unknown key"):
        PopulationParameters.from_file(bad)


def test_design_errors_name_row_and_column():
    design = make_design(2, [1.0, 7.0])
    design.loc[2, "TIME"] = -1.0
    pop = population(effects={"beta": {"ARM": {"B": 0.3}}})
    with pytest.raises(DataError) as err:
        simulate_patients(design, pop, random_seed=1)
    text = str(err.value)
    assert "row 3" in text and "'TIME'" in text and "'ARM'" in text
    design = make_design(2, [1.0, 7.0])
    design["ARM"] = ["A", "B", "B", "B"]
    with pytest.raises(DataError, match="changes within the patient"):
        simulate_patients(design, pop, random_seed=1)


def test_cli_simulate_without_and_with_design(tmp_path):
    pop_file = tmp_path / "pop.json"
    pop_file.write_text(json.dumps(population().to_dict()))
    out = tmp_path / "sim.csv"
    args = ["simulate", "--population", str(pop_file), "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--n-patients", "12", "--times", "1,4,7,14,28", "--lloq", "40", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    data = pd.read_csv(out)
    truth = pd.read_csv(tmp_path / "sim_truth.csv")
    assert len(data) == 60 and data["ID"].nunique() == 12 and len(truth) == 12
    assert (data.loc[data["CENS"] == 1, "DV"] == 40).all()
    again = CliRunner().invoke(
        app, [*args, "--n-patients", "12", "--times", "1,4,7,14,28", "--lloq", "40", "--seed", "3"]
    )
    assert again.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), data)
    design = tmp_path / "design.csv"
    make_design(3, [2, 9]).to_csv(design, index=False)
    result = CliRunner().invoke(app, [*args, "--design", str(design)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 6
    neither = CliRunner().invoke(app, args)
    assert neither.exit_code == 2 and "--n-patients" in neither.output


def test_a_dataset_serves_as_design():
    frame = pd.DataFrame(
        {
            "ID": ["a", "a", "a", "b", "b", "b"],
            "TIME": [0.0, 1.0, 7.0, 0.0, 2.0, 9.0],
            "EVID": [1, 0, 0, 1, 0, 0],
            "AMT": [1e8, None, None, 5e7, None, None],
            "DV": [None, 10.0, 50.0, None, 20.0, 300.0],
            "CENS": [0, 0, 0, 0, 0, 0],
            "ARM": ["A", "A", "A", "B", "B", "B"],
        }
    )
    pop = population(
        omega={"beta": 0.39, "T1": 0.25},
        effects={"C0": {"DOSE": {"power": 1.0, "reference": 1e8}}},
    )
    from_frame = simulate_patients(frame, pop, random_seed=1)
    assert from_frame.data["TIME"].tolist() == [1.0, 7.0, 2.0, 9.0]
    assert from_frame.truth["DOSE"].tolist() == [1e8, 5e7]
    assert np.allclose(from_frame.truth["C0"], [50.0, 25.0])
    assert not np.allclose(from_frame.data["DV"], [10.0, 50.0, 20.0, 300.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = load_dataset(frame)
    from_dataset = simulate_patients(ds, pop, random_seed=1)
    pd.testing.assert_frame_equal(
        from_dataset.truth[["ID", "C0", "beta"]], from_frame.truth[["ID", "C0", "beta"]]
    )
    bad = frame.assign(TIME=[0.0, 1.0, -7.0, 0.0, 2.0, 9.0])
    with pytest.raises(DataError, match="row 3"):  # row numbers of the input, dosing rows count
        simulate_patients(bad, pop, random_seed=1)


def test_t0_after_t1_is_capped_with_a_warning():
    pop = PopulationParameters(typical={**TYPICAL, "k": 0.5}, fixed={"T0": 20.0}, sigma=0.1)
    with pytest.warns(DataWarning, match="T0 > T1 for 2 patient"):
        sim = simulate_patients(make_design(2, [1.0, 30.0]), pop, random_seed=1)
    assert (sim.truth["T0"] == sim.truth["T1"]).all()
