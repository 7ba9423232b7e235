"""Posterior contrasts: ratios of typical values, P(direction), P(ROPE), on fake posteriors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_cart.analysis.contrasts import (
    CONTRAST_COLUMNS,
    contrast,
    covariate_in_model,
    summarise_contrast,
)
from bayes_cart.errors import DataError
from bayes_cart.kinetics import auc, cmax

S = 4000
TYPICAL = {"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01}


def _effects(fit_design, param: str, values: dict[str, np.ndarray | float]) -> np.ndarray:
    names = fit_design.effect_names(param)
    out = np.zeros((S, len(names)))
    for j, name in enumerate(names):
        out[:, j] = values.get(name, 0.0)
    return out


@pytest.fixture(scope="module")
def effect_draws():
    rng = np.random.default_rng(42)
    return {
        "cr": rng.normal(0.3, 0.05, S),
        "null": rng.normal(0.0, 0.05, S),
        "u": rng.normal(0.0, 0.1, (S, 3)),
    }


@pytest.fixture(scope="module")
def fit(analysis_data, analysis_spec, effect_draws, fake_fit_factory):
    from bayes_cart.model.model_data import prepare_model_data

    data, _ = analysis_data
    design = prepare_model_data(data, analysis_spec).design
    post = {
        **TYPICAL,
        "b_beta": _effects(
            design,
            "beta",
            {"RESPONSE[CR/PR]": effect_draws["cr"], "TUMOR_TYPE[solid]": effect_draws["null"]},
        ),
        "b_alpha": _effects(design, "alpha", {"RESPONSE[CR/PR]": -0.2}),
        "u_trial_beta": effect_draws["u"],
        "omega_trial_beta": 0.1,
        "sigma": 0.3,
    }
    return fake_fit_factory(data, analysis_spec, post, n_draws=S)


def _row(table: pd.DataFrame, quantity: str, group: str) -> pd.Series:
    hit = table[(table["quantity"] == quantity) & (table["group"] == group)]
    assert len(hit) == 1, (quantity, group, table[["quantity", "group"]])
    return hit.iloc[0]


def test_ratio_quantiles_are_exp_of_the_coefficient_quantiles(fit, effect_draws):
    table = contrast(fit, "RESPONSE", rope=0.1)
    assert list(table.columns[: len(CONTRAST_COLUMNS)]) == list(CONTRAST_COLUMNS)
    row = _row(table, "beta", "CR/PR")
    b = effect_draws["cr"]
    expected = np.quantile(np.exp(b), [0.5, 0.05, 0.95])
    np.testing.assert_allclose(
        row[["ratio_q50", "ratio_q5", "ratio_q95"]].astype(float), expected, rtol=1e-10
    )
    # and close to exp of the known Normal(0.3, 0.05) quantiles
    z = stats.norm.ppf([0.5, 0.05, 0.95])
    np.testing.assert_allclose(expected, np.exp(0.3 + 0.05 * z), rtol=0.01)
    assert row["reference"] == "PD/NR"
    assert row["p_direction"] == pytest.approx(1.0)
    assert row["p_rope"] == pytest.approx(np.mean(np.abs(b) <= np.log(1.1)))
    assert row["in_model"]
    # the difference of typical values, in /day
    diff = TYPICAL["beta"] * (np.exp(b) - 1.0)
    assert row["diff_q50"] == pytest.approx(np.median(diff), rel=1e-10)
    assert row["group_q50"] == pytest.approx(TYPICAL["beta"] * np.median(np.exp(b)), rel=1e-10)
    assert row["reference_q50"] == pytest.approx(TYPICAL["beta"])


def test_null_effect_has_p_direction_near_one_half(fit):
    table = contrast(fit, "TUMOR_TYPE", parameters=["beta"], metrics=False, rope=0.1)
    row = _row(table, "beta", "solid")
    assert row["reference"] == "heme"
    assert abs(row["p_direction"] - 0.5) < 0.05
    expected_rope = stats.norm.cdf(np.log(1.1), 0, 0.05) - stats.norm.cdf(-np.log(1.1), 0, 0.05)
    assert row["p_rope"] == pytest.approx(expected_rope, abs=0.02)
    # lymphoma has a coefficient of exactly 0: ratio 1, direction undecided
    lym = _row(table, "beta", "lymphoma")
    assert lym["ratio_q5"] == lym["ratio_q95"] == 1.0
    assert lym["p_direction"] == 0.5


def test_covariate_not_in_the_model_gives_ratio_exactly_one(fit):
    table = contrast(fit, "RESPONSE", metrics=False)
    for q in ("C0", "T1", "rM", "deltaM"):
        row = _row(table, q, "CR/PR")
        assert not row["in_model"]
        assert (row["ratio_q5"], row["ratio_q50"], row["ratio_q95"]) == (1.0, 1.0, 1.0)
        assert row["diff_q50"] == 0.0
        assert row["p_direction"] == 0.5
        assert row["p_rope"] == 1.0
    alpha = _row(table, "alpha", "CR/PR")
    assert alpha["in_model"] and alpha["ratio_q50"] == pytest.approx(np.exp(-0.2))
    assert alpha["p_direction"] == 1.0


def test_unknown_response_is_its_own_level(fit):
    table = contrast(fit, "RESPONSE", parameters=["beta"], metrics=False)
    assert set(table["group"]) == {"CR/PR", "unknown"}
    assert _row(table, "beta", "unknown")["ratio_q50"] == 1.0  # coefficient 0 in this posterior


def test_trial_random_effect_contrast_uses_u_trial(fit, effect_draws):
    table = contrast(fit, "TRIAL", parameters=["beta", "alpha"], metrics=False, reference="A")
    u = effect_draws["u"]
    row = _row(table, "beta", "C")
    ratio = np.exp(u[:, 2] - u[:, 0])
    np.testing.assert_allclose(
        row[["ratio_q50", "ratio_q5", "ratio_q95"]].astype(float),
        np.quantile(ratio, [0.5, 0.05, 0.95]),
        rtol=1e-10,
    )
    assert row["p_direction"] == pytest.approx(max(np.mean(ratio > 1), np.mean(ratio < 1)))
    assert not _row(table, "alpha", "C")["in_model"]


def test_derived_metrics_follow_from_typical_parameters(fit, effect_draws):
    table = contrast(fit, "RESPONSE", metrics=["Cmax", "AUC_0_28", "doubling_time"])
    b = effect_draws["cr"]
    ref = dict(TYPICAL)
    cur = dict(TYPICAL, beta=TYPICAL["beta"] * np.exp(b), alpha=TYPICAL["alpha"] * np.exp(-0.2))
    cmax_ratio = cmax(cur) / cmax(ref)
    row = _row(table, "Cmax", "CR/PR")
    assert row["kind"] == "metric" and row["in_model"]
    assert row["ratio_q50"] == pytest.approx(np.median(cmax_ratio), rel=1e-8)
    auc_ratio = auc(cur, 0, 28) / auc(ref, 0, 28)
    assert _row(table, "AUC_0_28", "CR/PR")["ratio_q95"] == pytest.approx(
        np.quantile(auc_ratio, 0.95), rel=1e-8
    )
    # doubling time ln2/beta: the ratio is exp(-b)
    dt = _row(table, "doubling_time", "CR/PR")
    assert dt["ratio_q50"] == pytest.approx(np.median(np.exp(-b)), rel=1e-8)
    assert dt["p_direction"] == pytest.approx(1.0)


def test_rope_is_symmetric_on_the_log_scale(fit):
    wide = contrast(fit, "RESPONSE", parameters=["alpha"], metrics=False, rope=np.exp(0.21) - 1)
    narrow = contrast(fit, "RESPONSE", parameters=["alpha"], metrics=False, rope=np.exp(0.19) - 1)
    # ratio exp(-0.2) < 1: inside [1/(1+r), 1+r] for 1+r = e^0.21, outside for e^0.19
    assert _row(wide, "alpha", "CR/PR")["p_rope"] == 1.0
    assert _row(narrow, "alpha", "CR/PR")["p_rope"] == 0.0


def test_interval_columns_follow_ci(fit):
    table = contrast(fit, "RESPONSE", parameters=["beta"], metrics=False, ci=0.95)
    assert {"ratio_q2.5", "ratio_q97.5", "diff_q2.5", "diff_q97.5"} <= set(table.columns)
    text = summarise_contrast(table)
    assert text.loc[0, "ratio"].count("[") == 1


def test_covariate_in_model_reads_formulas_group_and_metrics(fit):
    assert covariate_in_model(fit, "response", "beta")
    assert covariate_in_model(fit, "TRIAL", "beta")
    assert not covariate_in_model(fit, "TRIAL", "alpha")
    assert covariate_in_model(fit, "RESPONSE", "initial_half_life")  # via alpha
    assert not covariate_in_model(fit, "TUMOR_TYPE", "terminal_half_life")
    assert not covariate_in_model(fit, "DOSE", "Cmax")


def test_bad_requests_name_the_problem(fit):
    with pytest.raises(KeyError, match="no kinetic parameter"):
        contrast(fit, "RESPONSE", parameters=["gamma"])
    with pytest.raises(DataError, match="no covariate 'AGE'"):
        contrast(fit, "AGE")
    with pytest.raises(DataError, match="continuous"):
        contrast(fit, "DOSE")
    with pytest.raises(DataError, match="'blue' not in 'RESPONSE'"):
        contrast(fit, "RESPONSE", reference="blue")
    with pytest.raises(ValueError, match="rope"):
        contrast(fit, "RESPONSE", rope=-1)


def test_continuous_covariate_not_in_model_compares_given_values(fit):
    table = contrast(fit, "DOSE", levels=[5e7, 1e8], parameters=["beta"], metrics=False)
    row = _row(table, "beta", "1e+08")
    assert row["reference"] == "5e+07" and not row["in_model"] and row["ratio_q50"] == 1.0


def test_compare_cli_writes_table_and_plot(fit, tmp_path):
    from typer.testing import CliRunner

    from bayes_cart.cli import app
    from bayes_cart.inference.io import save_fit

    path = save_fit(fit, tmp_path / "fit.nc")
    out, plot = tmp_path / "contrast.csv", tmp_path / "forest.png"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(path),
            "--by",
            "RESPONSE",
            "--param",
            "beta",
            "--no-metrics",
            "--rope",
            "0.2",
            "--out",
            str(out),
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert set(table["quantity"]) == {"beta"} and set(table["rope"]) == {0.2}
    assert plot.stat().st_size > 1000
    bad = CliRunner().invoke(app, ["compare", str(path), "--by", "NOPE"])
    assert bad.exit_code == 2 and "no covariate 'NOPE'" in bad.output
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "none.nc"), "--by", "RESPONSE"])
    assert missing.exit_code == 2 and "not found" in missing.output
