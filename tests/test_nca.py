"""NCA: hand-computed trapezoids (linear up / log down), BLQ rules, Tmax ties, summaries."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.data.dataset import load_dataset
from bayes_cart.data.nca import auc_column, auc_linear_up_log_down, nca, nca_profile, summarise_nca
from bayes_cart.errors import DataWarning


def log_down(c1: float, c2: float, dt: float) -> float:
    return (c1 - c2) * dt / math.log(c1 / c2)


def lin(c1: float, c2: float, dt: float) -> float:
    return 0.5 * (c1 + c2) * dt


def test_auc_linear_up_log_down_by_hand():
    assert auc_linear_up_log_down([0, 2, 3], [0, 10, 5]) == pytest.approx(10 + 5 / math.log(2))
    # a flat segment uses the linear rule (no 0/0)
    assert auc_linear_up_log_down([0, 1], [7, 7]) == pytest.approx(7.0)


def test_profile_linear_up_log_down():
    r = nca_profile([1, 7, 14, 28], [100, 1000, 500, 20], [0, 0, 0, 0])
    expected = lin(100, 1000, 6) + log_down(1000, 500, 7) + log_down(500, 20, 14)
    assert r["AUC"] == pytest.approx(expected, rel=1e-12)
    assert (r["Cmax"], r["Tmax"], r["Tlast"], r["Clast"]) == (1000.0, 7.0, 28.0, 20.0)
    assert r["AUC_complete"] is True
    assert (r["n_obs"], r["n_blq"], r["reason"]) == (4, 0, None)


def test_window_end_interpolated_log_linear_when_declining():
    r = nca_profile([1, 7, 21, 35], [100, 1000, 400, 100], [0, 0, 0, 0])
    c28 = 400 * (100 / 400) ** 0.5  # = 200, log-linear half-way
    expected = lin(100, 1000, 6) + log_down(1000, 400, 14) + log_down(400, c28, 7)
    assert r["AUC"] == pytest.approx(expected, rel=1e-12)
    assert r["AUC_complete"] is True
    assert r["Tlast"] == 35.0  # Tlast is not cut by the window


def test_window_interpolated_linearly_when_rising():
    r = nca_profile([1, 20, 40], [10, 1010, 100], [0, 0, 0], auc_window=(0, 10))
    c10 = 10 + 1000 * 9 / 19
    assert r["AUC"] == pytest.approx(lin(10, c10, 9), rel=1e-12)
    # window starting after the first sample: interpolated start
    r = nca_profile([1, 20, 40], [10, 1010, 100], [0, 0, 0], auc_window=(10, 20))
    assert r["AUC"] == pytest.approx(lin(c10, 1010, 10), rel=1e-12)


def test_profile_starts_at_first_sample_without_extrapolation():
    r = nca_profile([4, 7], [100, 400], [0, 0], auc_window=(0, 7))
    assert r["AUC"] == pytest.approx(lin(100, 400, 3))
    r0 = nca_profile([0, 4, 7], [0, 100, 400], [0, 0, 0], auc_window=(0, 7))
    assert r0["AUC"] == pytest.approx(lin(0, 100, 4) + lin(100, 400, 3))


def test_auc_up_to_tlast_and_flagged_when_profile_ends_before_window_end():
    r = nca_profile([1, 7, 14], [50, 1000, 300], [0, 0, 0])
    assert r["AUC"] == pytest.approx(lin(50, 1000, 6) + log_down(1000, 300, 7))
    assert r["AUC_complete"] is False


def test_leading_blq_count_as_zero():
    r = nca_profile([1, 4, 7, 14], [20, 20, 500, 100], [1, 1, 0, 0])
    expected = 0.0 + lin(0, 500, 3) + log_down(500, 100, 7)
    assert r["AUC"] == pytest.approx(expected)
    assert (r["Cmax"], r["Tmax"], r["n_blq"]) == (500.0, 7.0, 2)


def test_trailing_blq_end_the_profile():
    r = nca_profile([1, 7, 14, 21, 28], [50, 1000, 100, 20, 20], [0, 0, 0, 1, 1])
    assert (r["Tlast"], r["Clast"]) == (14.0, 100.0)
    assert r["AUC"] == pytest.approx(lin(50, 1000, 6) + log_down(1000, 100, 7))
    assert r["AUC_complete"] is False
    assert r["n_blq"] == 2


def test_intermediate_blq_half_lloq_or_excluded():
    t, dv, cens = [1, 7, 14, 21], [50, 1000, 20, 300], [0, 0, 1, 0]
    half = nca_profile(t, dv, cens)
    expected = lin(50, 1000, 6) + log_down(1000, 10, 7) + lin(10, 300, 7)
    assert half["AUC"] == pytest.approx(expected)
    assert half["Tlast"] == 21.0
    excl = nca_profile(t, dv, cens, intermediate_blq="exclude")
    assert excl["AUC"] == pytest.approx(lin(50, 1000, 6) + log_down(1000, 300, 14))
    assert excl["AUC"] > half["AUC"]


def test_stop_after_two_consecutive_blq_rule():
    t = [1, 7, 14, 21, 28, 60]
    dv = [50, 1000, 20, 20, 200, 20]
    cens = [0, 0, 1, 1, 0, 1]
    default = nca_profile(t, dv, cens)
    assert default["Tlast"] == 28.0  # the late quantifiable sample is used
    assert default["AUC"] == pytest.approx(
        lin(50, 1000, 6) + log_down(1000, 10, 7) + lin(10, 10, 7) + lin(10, 200, 7)
    )
    protocol = nca_profile(t, dv, cens, blq_rule="stop_after_two_consecutive_blq")
    assert (protocol["Tlast"], protocol["Clast"]) == (7.0, 1000.0)
    assert protocol["AUC"] == pytest.approx(lin(50, 1000, 6))
    assert protocol["AUC_complete"] is False
    # two BLQ before the first quantifiable sample do not stop the profile
    lead = nca_profile([1, 4, 7, 14], [20, 20, 500, 100], [1, 1, 0, 0],
                       blq_rule="stop_after_two_consecutive_blq")  # fmt: skip
    assert lead["Tlast"] == 14.0


def test_tmax_ties_take_first_occurrence_even_unsorted():
    r = nca_profile([14, 7, 1, 21], [500, 800, 100, 800], [0, 0, 0, 0])
    assert (r["Cmax"], r["Tmax"]) == (800.0, 7.0)


def test_right_censored_used_at_dv():
    r = nca_profile([1, 7, 14], [10, 5000, 100], [0, -1, 0])
    assert (r["Cmax"], r["Tmax"], r["n_blq"]) == (5000.0, 7.0, 0)


def test_all_blq_patient_gets_nan_and_reason():
    r = nca_profile([1, 7], [20, 20], [1, 1])
    assert np.isnan(r["Cmax"]) and np.isnan(r["AUC"]) and np.isnan(r["Tlast"])
    assert r["reason"] == "all samples BLQ"
    assert r["AUC_complete"] is False


def test_bad_options_name_the_choices():
    with pytest.raises(ValueError, match="stop_after_last_quantifiable"):
        nca_profile([1], [1], [0], blq_rule="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end > start"):
        nca_profile([1], [1], [0], auc_window=(28, 0))


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": ["a"] * 4 + ["b"] * 3 + ["c"] * 2,
            "TIME": [1, 7, 14, 28, 1, 7, 14, 1, 7],
            "DV": [100, 1000, 500, 20, 50, 1000, 300, 20, 20],
            "CENS": [0, 0, 0, 0, 0, 0, 0, 1, 1],
            "ARM": ["x"] * 4 + ["x"] * 3 + ["y"] * 2,
        }
    )


def test_nca_table_on_a_dataset():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        table = nca(load_dataset(_frame()))
    assert list(table.columns[:10]) == [
        "ID", "Cmax", "Tmax", "AUC_0_28", "AUC_0_28_complete", "Tlast", "Clast", "n_obs",
        "n_blq", "reason",
    ]  # fmt: skip
    assert table["ID"].tolist() == ["a", "b", "c"]
    assert table["ARM"].tolist() == ["x", "x", "y"]
    a = table.iloc[0]
    assert a["AUC_0_28"] == pytest.approx(
        lin(100, 1000, 6) + log_down(1000, 500, 7) + log_down(500, 20, 14)
    )
    assert table["AUC_0_28_complete"].tolist() == [True, False, False]
    assert table.loc[2, "reason"] == "all samples BLQ" and pd.isna(table.loc[0, "reason"])
    assert np.isnan(table.loc[2, "Cmax"])
    # a DataFrame is loaded through load_dataset; window names the column
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        table14 = nca(_frame(), auc_window=(0, 14))
    assert "AUC_0_14" in table14.columns and table14["AUC_0_14_complete"].tolist()[:2] == [
        True,
        True,
    ]


def test_auc_column_names():
    assert auc_column((0, 28)) == "AUC_0_28"
    assert auc_column((7.0, 14.5)) == "AUC_7_14.5"


def test_summarise_nca_median_range_per_group():
    table = pd.DataFrame(
        {
            "ID": list("abcde"),
            "Cmax": [1.0, 3.0, 10.0, 5.0, np.nan],
            "Tmax": [7.0, 14.0, 10.0, 9.0, np.nan],
            "AUC_0_28": [5.0, 9.0, 40.0, 7.0, np.nan],
            "AUC_0_28_complete": [True, True, False, True, False],
            "Tlast": [28.0, 90.0, 60.0, 30.0, np.nan],
            "ARM": ["x", "x", "x", "y", None],
        }
    )
    s = summarise_nca(table, by="ARM").set_index("ARM")
    assert s.index.tolist() == ["(missing)", "x", "y"]
    assert s.loc["x", "n"] == 3 and s.loc["x", "percent"] == pytest.approx(60.0)
    assert (s.loc["x", "Cmax_median"], s.loc["x", "Cmax_min"], s.loc["x", "Cmax_max"]) == (
        3.0,
        1.0,
        10.0,
    )
    assert s.loc["x", "AUC_0_28_median"] == 9.0 and s.loc["x", "Tlast_max"] == 90.0
    assert s.loc["(missing)", "n_quantifiable"] == 0
    overall = summarise_nca(table)
    assert len(overall) == 1 and overall.loc[0, "Cmax_median"] == pytest.approx(4.0)
    with pytest.raises(KeyError, match="FOO"):
        summarise_nca(table, by=["ARM", "FOO"])


def test_cli_nca_prints_summary_and_writes_table(tmp_path):
    data = tmp_path / "d.csv"
    _frame().to_csv(data, index=False)
    out = tmp_path / "nca.csv"
    result = CliRunner().invoke(app, ["nca", str(data), "--by", "ARM", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "NCA summary" in result.output and "ARM" in result.output
    written = pd.read_csv(out)
    assert written["ID"].tolist() == ["a", "b", "c"]
    assert written.loc[0, "Cmax"] == 1000.0
    missing = CliRunner().invoke(app, ["nca", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "not found" in missing.output
    bad = CliRunner().invoke(app, ["nca", str(data), "--by", "FOO"])
    assert bad.exit_code == 2 and "FOO" in bad.output
