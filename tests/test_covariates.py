"""Covariate designs: fit-data state (center/scale/median) reused for new patients (issue 10)."""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

from bayes_cart.errors import DataWarning, FormulaWarning, SpecError
from bayes_cart.model.covariates import CovariateDesign, build_covariate_design, formula_columns

TYPICAL = {"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01}
B_AGE = 0.02  # per year, on log beta
B_CR = 0.3


@pytest.fixture(scope="module")
def age_data(analysis_data):
    """The analysis dataset plus AGE (one patient missing) and WT, constant per patient."""
    from bayes_cart.data.dataset import load_dataset

    _, sim = analysis_data
    frame = sim.data.copy()
    ids = sorted(frame["ID"].unique())
    age = {pid: 30.0 + 2.5 * i for i, pid in enumerate(ids)}
    age[ids[4]] = np.nan
    wt = {pid: 50.0 + 3.0 * i for i, pid in enumerate(ids)}
    frame["AGE"] = frame["ID"].map(age)
    frame["WT"] = frame["ID"].map(wt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(frame)


@pytest.fixture(scope="module")
def patients(age_data):
    return age_data.patients


def _fit_stats(patients: pd.DataFrame) -> dict[str, float]:
    age = patients["AGE"].astype(float)
    filled = age.fillna(age.median())
    wt = patients["WT"].astype(float)
    return {
        "age_median": float(age.median()),
        "age_mean": float(filled.mean()),
        "wt_mean": float(wt.mean()),
        "wt_sd": float(wt.std(ddof=1)),
    }


def _new(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"TRIAL": ["A"] * n, "RESPONSE": ["PD/NR"] * n, "TUMOR_TYPE": ["heme"] * n}
    base.update(columns)
    frame = pd.DataFrame(base, index=[f"new{i}" for i in range(n)])
    return frame.astype({"TRIAL": object, "RESPONSE": object, "TUMOR_TYPE": object})


# --------------------------------------------------------------------------------------------
# the design itself
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_rows", [1, 2])
def test_new_rows_are_centred_and_scaled_with_the_fit_constants(patients, n_rows):
    design = build_covariate_design(patients, {"beta": "center(AGE) + scale(WT)"})
    st = _fit_stats(patients)
    ages, wts = [40.0, 66.0][:n_rows], [90.0, 55.0][:n_rows]
    X = design.evaluate(_new(AGE=ages, WT=wts))["beta"]
    assert list(X.columns) == ["center(AGE)", "scale(WT)"]
    np.testing.assert_allclose(X["center(AGE)"], np.array(ages) - st["age_mean"], rtol=1e-12)
    np.testing.assert_allclose(
        X["scale(WT)"], (np.array(wts) - st["wt_mean"]) / st["wt_sd"], rtol=1e-12
    )
    assert (X["center(AGE)"] != 0).all()


def test_evaluating_the_fit_patients_reproduces_the_fit_matrices(patients):
    formulas = {"beta": "center(AGE) + RESPONSE + TUMOR_TYPE", "alpha": "scale(log(WT)):RESPONSE"}
    design = build_covariate_design(patients, formulas, {"RESPONSE": "PD/NR"})
    again = design.evaluate(patients)
    for p, m in design.matrices.items():
        pd.testing.assert_frame_equal(again[p], m)


def test_state_survives_a_json_round_trip(patients):
    design = build_covariate_design(
        patients, {"beta": "center(AGE) + scale(WT) + RESPONSE"}, {"RESPONSE": "PD/NR"}
    )
    state = json.loads(json.dumps(design.to_state()))
    restored = CovariateDesign.from_state(state, patients)
    assert restored.reference == design.reference
    assert restored.imputed == design.imputed
    pd.testing.assert_frame_equal(restored.matrices["beta"], design.matrices["beta"])
    new = _new(AGE=[40.0], WT=[90.0], RESPONSE=["CR/PR"])
    pd.testing.assert_frame_equal(restored.evaluate(new)["beta"], design.evaluate(new)["beta"])


def test_a_restored_state_does_not_depend_on_the_data_it_is_applied_to(patients):
    design = build_covariate_design(patients, {"beta": "center(AGE)"})
    st = _fit_stats(patients)
    restored = CovariateDesign.from_state(design.to_state(), patients.iloc[:3])
    np.testing.assert_allclose(
        restored.matrices["beta"]["center(AGE)"],
        patients["AGE"].iloc[:3] - st["age_mean"],
        rtol=1e-12,
    )


def test_missing_values_of_new_patients_take_the_fit_median(patients):
    design = build_covariate_design(patients, {"beta": "AGE + center(AGE)"})
    st = _fit_stats(patients)
    assert design.imputed["AGE"][0] == "median"
    X = design.evaluate(_new(AGE=[np.nan, 61.0]))["beta"]
    # a one-row median of the new frame would be 61
    np.testing.assert_allclose(X["AGE"], [st["age_median"], 61.0])
    np.testing.assert_allclose(
        X["center(AGE)"], [st["age_median"] - st["age_mean"], 61.0 - st["age_mean"]]
    )


def test_missing_values_of_new_patients_take_the_fit_median_without_fit_missing(patients):
    design = build_covariate_design(patients, {"beta": "WT"})
    X = design.evaluate(_new(WT=[np.nan]))["beta"]
    assert X["WT"].iloc[0] == pytest.approx(float(patients["WT"].median()))


def test_new_categorical_levels_code_against_the_fit_reference(patients):
    design = build_covariate_design(
        patients, {"beta": "RESPONSE + TUMOR_TYPE"}, {"RESPONSE": "PD/NR", "TUMOR_TYPE": "heme"}
    )
    new = _new(RESPONSE=["CR/PR", None], TUMOR_TYPE=["solid", "solid"])
    X = design.evaluate(new)["beta"]
    assert list(X.columns) == design.effect_names("beta")
    assert X.loc["new0"].to_dict() == {
        "RESPONSE[CR/PR]": 1.0,
        "RESPONSE[unknown]": 0.0,
        "TUMOR_TYPE[lymphoma]": 0.0,
        "TUMOR_TYPE[solid]": 1.0,
    }
    assert X.loc["new1", "RESPONSE[unknown]"] == 1.0


# --------------------------------------------------------------------------------------------
# formula checks: columns from formulaic, the '-' warning
# --------------------------------------------------------------------------------------------


def test_formula_columns_come_from_formulaic_and_include_transform_arguments():
    assert formula_columns("center(AGE) + scale(log(WT)) + RESPONSE") == {"AGE", "WT", "RESPONSE"}
    assert formula_columns("I(log(DOSE) - log(WT))") == {"DOSE", "WT"}
    assert formula_columns("C(RESPONSE, levels=['CR/PR', 'PD/NR'])") == {"RESPONSE"}


def test_a_missing_formula_column_names_the_key_the_column_and_the_columns(patients):
    with pytest.raises(SpecError) as err:
        build_covariate_design(patients, {"beta": "center(AEG) + RESPONSE"})
    text = str(err.value)
    assert "covariates.formulas.beta: no covariate column 'AEG'" in text
    assert "'AGE'" in text  # the available columns are listed


def test_formula_columns_match_case_insensitively(patients):
    design = build_covariate_design(patients, {"beta": "center(age)"})
    assert design.effect_names("beta") == ["center(AGE)"]


def test_binary_minus_between_terms_warns(patients):
    with pytest.warns(FormulaWarning, match=r"I\(log\(DOSE\) - log\(WT\)\)") as rec:
        design = build_covariate_design(patients, {"beta": "log(DOSE) - log(WT)"})
    text = str(rec[0].message)
    assert "covariates.formulas.beta" in text and "log(DOSE / WT)" in text
    assert design.effect_names("beta") == ["log(DOSE)"]  # formula syntax dropped log(WT)


@pytest.mark.parametrize(
    "rhs", ["I(log(DOSE) - log(WT))", "log(DOSE / WT)", "RESPONSE - 1", "RESPONSE + 0"]
)
def test_no_minus_warning_for_arithmetic_inside_a_call_or_intercept_removal(patients, rhs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FormulaWarning)
        design = build_covariate_design(patients, {"beta": rhs})
    if rhs.startswith(("I(", "log(")):
        (col,) = design.effect_names("beta")
        dose, wt = patients["DOSE"].astype(float), patients["WT"].astype(float)
        np.testing.assert_allclose(design.matrices["beta"][col], np.log(dose / wt), rtol=1e-12)


def test_the_suggested_I_formula_passes_spec_validation():
    from bayes_cart.model.spec import load_spec

    spec = load_spec("liu2021").with_overrides(covariates={"beta": "I(log(DOSE) - log(WT))"})
    assert spec.doc.covariates.formulas["beta"] == "I(log(DOSE) - log(WT))"


# --------------------------------------------------------------------------------------------
# typical patients, contrasts and a saved fit
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def age_spec():
    from bayes_cart.model.spec import load_spec

    return load_spec("liu2021").with_overrides(
        covariates={"beta": "center(AGE) + RESPONSE"}, reference={"RESPONSE": "PD/NR"}
    )


@pytest.fixture(scope="module")
def age_fit(age_data, age_spec, fake_fit_factory):
    from bayes_cart.model.model_data import prepare_model_data

    design = prepare_model_data(age_data, age_spec).design
    values = {"center(AGE)": B_AGE, "RESPONSE[CR/PR]": B_CR}
    b = np.array([values.get(n, 0.0) for n in design.effect_names("beta")])
    post = {**TYPICAL, "b_beta": b, "sigma": 0.3}
    for p in TYPICAL:
        post[f"omega_{p}"] = 0.0
    return fake_fit_factory(age_data, age_spec, post, n_draws=8)


def test_typical_patient_at_a_non_mean_age_has_the_age_effect(age_fit, patients):
    from bayes_cart.predict import population_parameters

    st = _fit_stats(patients)
    new = _new(AGE=[60.0], RESPONSE=["CR/PR"])
    p = population_parameters(age_fit, new, iiv=False, n_draws=None)
    expected = TYPICAL["beta"] * np.exp(B_AGE * (60.0 - st["age_mean"]) + B_CR)
    np.testing.assert_allclose(p["beta"][:, 0], expected, rtol=1e-12)


def test_overall_typical_patient_is_at_the_median_age(age_fit, patients):
    from bayes_cart.analysis.virtual_population import typical_parameters

    st = _fit_stats(patients)
    params, groups = typical_parameters(age_fit, None)
    expected = TYPICAL["beta"] * np.exp(B_AGE * (st["age_median"] - st["age_mean"]))
    np.testing.assert_allclose(params["beta"][:, 0], expected, rtol=1e-12)


def test_contrast_at_an_age_gives_the_implied_typical_values(age_fit, patients):
    from bayes_cart.analysis.contrasts import contrast

    st = _fit_stats(patients)
    table = contrast(
        age_fit, "RESPONSE", levels=["PD/NR", "CR/PR"], at={"AGE": 65.0}, metrics=False
    )
    row = table[table["quantity"] == "beta"].iloc[0]
    ref = TYPICAL["beta"] * np.exp(B_AGE * (65.0 - st["age_mean"]))
    assert row["reference_q50"] == pytest.approx(ref, rel=1e-12)
    assert row["group_q50"] == pytest.approx(ref * np.exp(B_CR), rel=1e-12)
    assert row["ratio_q50"] == pytest.approx(np.exp(B_CR), rel=1e-12)


def test_contrast_by_age_values(age_fit, patients):
    from bayes_cart.analysis.contrasts import contrast

    st = _fit_stats(patients)
    table = contrast(age_fit, "AGE", levels=[40.0, 70.0], metrics=False)
    row = table[table["quantity"] == "beta"].iloc[0]
    assert row["reference_q50"] == pytest.approx(
        TYPICAL["beta"] * np.exp(B_AGE * (40.0 - st["age_mean"])), rel=1e-12
    )
    assert row["ratio_q50"] == pytest.approx(np.exp(B_AGE * 30.0), rel=1e-12)


def _rewrite_attrs(src, dst, change):
    """Copy a fit file, editing the posterior attributes with ``change(attrs)``."""
    idata = az.from_netcdf(str(src), engine="h5netcdf")
    idata.load()
    post = idata.posterior.copy()
    change(post.attrs)
    groups = {g: getattr(idata, g) for g in idata.groups()}
    groups["posterior"] = post
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        az.InferenceData(**groups).to_netcdf(str(dst), engine="h5netcdf")


@pytest.mark.filterwarnings("ignore::bayes_cart.errors.DataWarning")
def test_a_saved_fit_predicts_identically(age_fit, tmp_path, patients):
    from bayes_cart.inference.io import load_fit, save_fit
    from bayes_cart.predict import population_parameters

    path = save_fit(age_fit, tmp_path / "fit.nc")
    loaded = load_fit(path)
    attrs = loaded.idata.posterior.attrs
    state = json.loads(attrs["covariate_design_json"])
    st = _fit_stats(patients)
    assert state["transform_state"]["beta"]["center(AGE)"]["center"] == pytest.approx(
        st["age_mean"], rel=1e-15
    )
    assert state["medians"]["AGE"] == pytest.approx(st["age_median"])
    new = _new(AGE=[60.0, np.nan], RESPONSE=["CR/PR", "PD/NR"])
    before = population_parameters(age_fit, new, iiv=False, n_draws=None)
    after = population_parameters(loaded, new, iiv=False, n_draws=None)
    np.testing.assert_array_equal(after["beta"], before["beta"])
    pd.testing.assert_frame_equal(
        loaded.model_data.design.matrices["beta"], age_fit.model_data.design.matrices["beta"]
    )


@pytest.mark.filterwarnings("ignore::bayes_cart.errors.DataWarning")
def test_an_old_fit_file_without_the_state_recomputes_it_from_the_fitted_data(age_fit, tmp_path):
    from bayes_cart.inference.io import load_fit, save_fit
    from bayes_cart.predict import population_parameters

    path = save_fit(age_fit, tmp_path / "fit.nc")
    old = tmp_path / "old.nc"
    _rewrite_attrs(path, old, lambda attrs: attrs.pop("covariate_design_json"))
    loaded = load_fit(old)
    assert "covariate_design_json" not in loaded.idata.posterior.attrs
    new = _new(AGE=[60.0], RESPONSE=["CR/PR"])
    before = population_parameters(age_fit, new, iiv=False, n_draws=None)
    after = population_parameters(loaded, new, iiv=False, n_draws=None)
    np.testing.assert_array_equal(after["beta"], before["beta"])


@pytest.mark.filterwarnings("ignore::bayes_cart.errors.DataWarning")
def test_a_loaded_fit_codes_covariates_with_the_stored_constants(age_fit, tmp_path):
    from bayes_cart.errors import FitFileError
    from bayes_cart.inference.io import load_fit, save_fit

    path = save_fit(age_fit, tmp_path / "fit.nc")

    def set_centre(attrs):
        state = json.loads(attrs["covariate_design_json"])
        state["transform_state"]["beta"]["center(AGE)"]["center"] = 50.0
        attrs["covariate_design_json"] = json.dumps(state)

    edited = tmp_path / "edited.nc"
    _rewrite_attrs(path, edited, set_centre)
    loaded = load_fit(edited)
    X = loaded.model_data.design.evaluate(_new(AGE=[60.0]))["beta"]
    assert X["center(AGE)"].iloc[0] == pytest.approx(10.0)

    def rename_effect(attrs):
        state = json.loads(attrs["covariate_design_json"])
        state["formulas"]["beta"] = "center(AGE)"
        state["effects"]["beta"] = ["center(AGE)"]
        attrs["covariate_design_json"] = json.dumps(state)

    bad = tmp_path / "bad.nc"
    _rewrite_attrs(path, bad, rename_effect)
    with pytest.raises(FitFileError, match="does not match the posterior's beta_effect"):
        load_fit(bad)


# --- categorical covariates with many levels or single-patient levels (issue 12) -------------


def _patients(n: int, column: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame(column, index=[f"P{i}" for i in range(n)])


def test_many_levels_warn_naming_the_column_and_the_count():
    sites = [f"site {i % 12}" for i in range(36)]
    with pytest.warns(DataWarning, match=r"covariate 'SITE' has 12 levels for 36 patients"):
        build_covariate_design(_patients(36, {"SITE": sites}), {"beta": "SITE"})
    # an ID-like column: more levels than a third of the patients
    ids = [f"id{i}" for i in range(9)]
    with pytest.warns(DataWarning, match=r"'PATNO' has 9 levels for 9 patients: usually an ID"):
        build_covariate_design(_patients(9, {"PATNO": ids}), {"beta": "PATNO"})


def test_single_patient_levels_warn_naming_them():
    arms = ["a"] * 10 + ["b"] * 10 + ["c", "d"]
    with pytest.warns(DataWarning, match=r"levels 'c', 'd' have a single patient") as record:
        build_covariate_design(_patients(22, {"ARM": arms}), {"alpha": "ARM"})
    assert "covariate 'ARM'" in str(record[0].message) and "22 patients, 4 levels" in str(
        record[0].message
    )


def test_ordinary_categorical_covariates_do_not_warn():
    table = _patients(40, {"RESPONSE": ["CR/PR", "PD/NR"] * 20, "TRIAL": list("ABCDEFGH") * 5})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        build_covariate_design(table, {"beta": "RESPONSE + TRIAL"})
