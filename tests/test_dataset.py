"""bayes_cart.data.dataset: rejections name row, column, patient and reason; edge cases kept."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from bayes_cart.data.dataset import Dataset, load_dataset
from bayes_cart.errors import DataError, DataWarning

H = "ID,TIME,DV\n"
HC = "ID,TIME,DV,CENS,LIMIT\n"

# (case id, file content, load_dataset kwargs, message fragment, row, column, patient)
REJECTIONS = [
    ("missing_column", "ID,TIME\n1,0\n", {}, "missing required column 'DV'", None, "DV", None),
    ("missing_column_hint", "ID,TIME,CONC\n1,0,5\n", {}, "rename column 'CONC' to 'DV'", None,
     "DV", None),
    ("dv_text", H + "1,0,5\n1,1,abc\n", {}, "DV is not a number: 'abc'", 2, "DV", "1"),
    ("dv_inf", H + "1,0,5\n1,1,inf\n", {}, "DV is not finite", 2, "DV", "1"),
    ("time_text", H + "1,day1,5\n", {}, "TIME is not a number: 'day1'", 1, "TIME", "1"),
    ("time_inf", H + "1,0,5\n2,-inf,5\n", {}, "TIME is not finite", 2, "TIME", "2"),
    ("time_missing", H + "1,.,5\n", {}, "TIME is missing", 1, "TIME", "1"),
    ("negative_dose_time", "ID,TIME,DV,EVID,AMT\n1,-3,.,1,5\n1,1,5,0,.\n", {},
     "dosing row at negative TIME -3", 1, "TIME", "1"),
    ("dv_zero", H + "1,0,5\n1,2,0\n", {}, "DV 0 <= 0 in a quantified row", 2, "DV", "1"),
    ("dv_negative", H + "7,2,-1.5\n", {}, "DV -1.5 <= 0", 1, "DV", "7"),
    ("dv_missing", H + "7,2,.\n", {}, "DV is missing in a quantified row", 1, "DV", "7"),
    ("cens_code", HC + "1,0,5,2,\n", {}, "invalid CENS code '2'", 1, "CENS", "1"),
    ("cens_text", HC + "1,0,5,BLQ,\n", {}, "invalid CENS code 'BLQ'", 1, "CENS", "1"),
    ("duplicate_sample", H + "1,0,5\n1,2,6\n1,2,7\n", {}, "duplicate sample: 2 observation rows",
     (2, 3), "TIME", "1"),
    ("censored_no_limit", HC + "1,0,5,0,\n1,3,.,1,\n", {},
     "censored row (CENS=1) without a limit: DV must hold the LLOQ", 2, "DV", "1"),
    ("limit_above_lloq", HC + "1,3,5,1,5\n", {}, "LIMIT 5 is not below the LLOQ in DV (5)", 1,
     "LIMIT", "1"),
    ("limit_negative", HC + "1,3,5,1,-1\n", {}, "LIMIT must be > 0", 1, "LIMIT", "1"),
    ("limit_right", HC + "1,3,5,-1,4\n", {}, "LIMIT 4 is not above DV (5)", 1, "LIMIT", "1"),
    ("lloq_zero", HC + "1,3,0,1,\n", {}, "the limit in DV of a censored row must be > 0", 1, "DV",
     "1"),
    ("header_only", H, {}, "no data rows", None, None, None),
    ("blank_only", "\n\n  \n", {}, "file is empty", None, None, None),
    ("wrong_delimiter_semicolon", "ID;TIME;DV\n1;0;5\n", {"delimiter": ","},
     "looks like ';'-separated; use delimiter=';'", None, "ID;TIME;DV", None),
    ("wrong_delimiter_tab", "ID\tTIME\tDV\n1\t0\t5\n", {"delimiter": ","},
     "looks like '\\t'-separated; use delimiter='\\t'", None, "ID\tTIME\tDV", None),
    ("decimal_comma", "ID;TIME;DV\n1;0;1,5\n", {}, "(a decimal comma? write numbers with '.')",
     1, "DV", "1"),
    ("duplicate_columns", "ID,TIME,DV,id\n1,0,5,1\n", {},
     "duplicate column names (names are case-insensitive): 'ID' (column 1) and 'id' (column 4)",
     None, "ID", None),
    ("missing_id", H + "1,0,5\n.,1,5\n", {}, "ID is missing", 2, "ID", None),
    ("ragged_row", H + "1,0,5\n1,1,5,9\n", {}, "row has 4 fields but the header has 3 columns",
     2, None, None),
    ("unnamed_column", ",ID,TIME,DV\n0,1,0,5\n1,1,1,6\n", {},
     "column 1 has no name (a row index written by pandas? save with index=False)", None, "#1",
     None),
    ("covariate_changes", "ID,TIME,DV,WT\n1,0,5,70\n1,1,6,70\n1,2,7,72\n", {},
     "time-invariant covariate changes within the patient: 70 (rows 1, 2); 72 (row 3)",
     (1, 2, 3), "WT", "1"),
    ("dose_without_amt", "ID,TIME,DV,EVID,AMT\n1,0,.,1,.\n1,1,5,0,.\n", {},
     "dosing row without AMT", 1, "AMT", "1"),
    ("dose_no_amt_column", "ID,TIME,DV,EVID\n1,0,.,1\n1,1,5,0\n", {},
     "dosing rows (EVID=1) but no AMT column", 1, "AMT", None),
    ("dose_amt_negative", "ID,TIME,DV,EVID,AMT\n1,0,.,1,-2\n1,1,5,0,.\n", {},
     "AMT of a dosing row must be > 0, got -2", 1, "AMT", "1"),
    ("amt_text", "ID,TIME,DV,EVID,AMT\n1,0,.,1,1e6 cells\n1,1,5,0,.\n", {},
     "AMT is not a number: '1e6 cells'", 1, "AMT", "1"),
    ("amt_and_dv", "ID,TIME,DV,AMT\n1,0,5,100\n", {}, "row has both AMT and DV", 1, "AMT", "1"),
    ("evid_text", "ID,TIME,DV,EVID\n1,0,5,dose\n", {}, "invalid EVID 'dose'", 1, "EVID", "1"),
    ("mdv_code", "ID,TIME,DV,MDV\n1,0,5,3\n", {}, "invalid MDV '3' (0 or 1)", 1, "MDV", "1"),
    ("time_varying_unknown", H + "1,0,5\n", {"time_varying": ["CRP"]},
     "time-varying covariate 'CRP' is not a column", None, "CRP", None),
    ("only_doses", "ID,TIME,DV,EVID,AMT\n1,0,.,1,5\n", {}, "no observation rows", None, None,
     None),
]  # fmt: skip


def _find(problems, fragment):
    hits = [p for p in problems if fragment in str(p)]
    assert hits, f"{fragment!r} not in {[str(p) for p in problems]}"
    return hits[0]


@pytest.mark.parametrize(
    ("content", "kwargs", "fragment", "row", "column", "patient"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTIONS],
)
def test_rejection_names_row_column_patient(
    write_csv, content, kwargs, fragment, row, column, patient
):
    path = write_csv(content)
    with pytest.raises(DataError) as info:
        load_dataset(path, **kwargs)
    err = info.value
    assert err.source == str(path)
    assert str(path) in str(err)
    problem = _find(err.problems, fragment)
    assert problem.row == row
    assert problem.column == column
    assert problem.patient == patient
    if row is not None:
        first = row if isinstance(row, int) else row[0]
        assert f"row{'s' if isinstance(row, tuple) else ''} {first}" in str(problem)
    if patient is not None:
        assert f"patient {patient}" in str(problem)


BINARY = [
    ("empty_file", b"", "file is empty (0 bytes)"),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not a text file: it looks like a PNG image"),
    ("gzip_renamed", gzip.compress(b"ID,TIME,DV\n1,0,5\n"), "gzip-compressed"),
    ("xlsx_renamed", b"PK\x03\x04" + b"\x00" * 40, "export the sheet as CSV"),
    ("nul_bytes", b"ID,TIME,DV\n1,0,\x00\x00\x00\n", "contains NUL bytes"),
    ("latin1", "ID,TIME,DV,SITE\n1,0,5,Paris\n2,0,5,Orléans\n".encode("latin-1"),
     "not valid UTF-8 text (byte 0xe9 on line 3)"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "fragment"), [pytest.param(c, f, id=i) for i, c, f in BINARY])
def test_rejection_of_non_text_files(write_csv, content, fragment):
    path = write_csv(content)
    with pytest.raises(DataError, match="problem") as info:
        load_dataset(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_corrupt_parquet(write_csv):
    path = write_csv(b"PAR1 not really parquet", name="data.parquet")
    with pytest.raises(DataError, match="could not read the Parquet file"):
        load_dataset(path)


def test_missing_file_and_bad_options(tmp_path, write_csv):
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_dataset(tmp_path / "nope.csv")
    path = write_csv(H + "1,0,5\n")
    with pytest.raises(ValueError, match="unknown time unit"):
        load_dataset(path, time_unit="fortnight")
    with pytest.raises(ValueError, match="one character"):
        load_dataset(path, delimiter=";;")


def test_all_problems_collected_in_one_error(write_csv):
    text = HC + "1,0,5,0,\n1,x,5,0,\n2,1,abc,0,\n2,2,5,7,\n3,1,.,1,\n3,1,4,0,\n3,1,4,0,\n"
    with pytest.raises(DataError) as info:
        load_dataset(write_csv(text))
    messages = [str(p) for p in info.value.problems]
    assert len(messages) == 5, messages
    assert "5 problem(s) found" in str(info.value)
    for fragment in ("TIME is not a number", "DV is not a number", "invalid CENS code",
                     "without a limit", "duplicate sample"):  # fmt: skip
        _find(info.value.problems, fragment)


def test_many_bad_rows_are_grouped(write_csv):
    text = H + "".join(f"{i},{i},x\n" for i in range(30))
    with pytest.raises(DataError) as info:
        load_dataset(write_csv(text))
    problems = info.value.problems
    assert len(problems) == 21
    assert problems[-1].row == tuple(range(21, 31))
    assert "10 more rows with the same kind of problem" in str(problems[-1])


def test_dataframe_source_errors_name_dataframe():
    frame = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, np.nan], "DV": [5.0, 6.0]})
    with pytest.raises(DataError) as info:
        load_dataset(frame)
    assert info.value.source == "<DataFrame>"
    problem = _find(info.value.problems, "TIME is missing")
    assert (problem.row, problem.patient) == (2, "1")


# --------------------------------------------------------------------------------- edge cases


def _load(path, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(path, **kwargs)


def test_valid_edge_cases_are_kept(write_csv):
    text = (
        "ID,TIME,DV,CENS,SEX\n"
        "B,14,30,0,M\n"
        "A,0,1.5,0,F\n"  # observation at time 0
        "C,3,0.5,1,F\n"  # all-BLQ patient
        "B,7,80,0,M\n"  # unsorted rows
        "C,10,0.5,1,F\n"
        "D,28,4,0,\n"  # single-sample patient with a missing covariate
    )
    with pytest.warns(DataWarning) as record:
        data = load_dataset(write_csv(text))
    assert data.patient_ids == ("B", "A", "C", "D")
    obs = data.observations
    assert obs["ID"].tolist() == ["B", "B", "A", "C", "C", "D"]
    assert obs["TIME"].tolist() == [7.0, 14.0, 0.0, 3.0, 10.0, 28.0]
    assert obs["ROW"].tolist() == [4, 1, 2, 3, 5, 6]
    assert data.obs_patient_index.tolist() == [0, 0, 1, 2, 2, 3]
    assert data.n_censored == 2
    assert data.report.missing_covariates == {"SEX": ("D",)}
    assert data.patients.loc["D", "SEX"] is None
    shown = " | ".join(str(w.message) for w in record)
    assert "1 patient with only BLQ (CENS=1) samples: C" in shown
    assert "covariate 'SEX' is missing for 1 of 4 patients: D" in shown
    assert data.report.warnings and all(w in shown for w in data.report.warnings)


def test_dtypes_of_the_tables(write_csv):
    data = _load(write_csv("ID,TIME,DV,WT,ARM\n001,1,5,70,A\n001,2,6,70,A\n2,1,7,80.5,B\n"))
    obs = data.observations
    assert list(obs.columns) == ["ID", "TIME", "DV", "CENS", "LIMIT", "ROW"]
    assert [str(obs[c].dtype) for c in ("TIME", "DV", "CENS", "LIMIT", "ROW")] == [
        "float64", "float64", "int64", "float64", "int64",
    ]  # fmt: skip
    assert data.patient_ids == ("001", "2")  # IDs are text: leading zeros kept
    assert data.patients.index.name == "ID"
    assert data.patients["WT"].dtype == np.float64
    assert data.patients["ARM"].tolist() == ["A", "B"]
    assert data.is_categorical("arm") and not data.is_categorical("WT")
    assert data.covariate("wt").tolist() == [70.0, 80.5]
    with pytest.raises(KeyError, match="available: WT, ARM"):
        data.covariate("AGE")
    assert data.doses.empty and list(data.doses.columns) == ["ID", "TIME", "AMT", "ROW"]


def test_mixed_numbers_and_text_is_categorical(write_csv):
    data = _load(write_csv("ID,TIME,DV,GRADE\n1,1,5,1\n2,1,5,3b\n3,1,5,.\n"))
    assert data.is_categorical("GRADE")
    assert data.patients["GRADE"].tolist() == ["1", "3b", None]


@pytest.mark.parametrize(("unit", "factor"), [("hour", 1 / 24), ("week", 7.0), ("month", 30.4375)])
def test_time_unit_conversion(write_csv, unit, factor):
    data = _load(write_csv(H + "1,0,5\n1,48,6\n"), time_unit=unit)
    assert data.observations["TIME"].tolist() == pytest.approx([0.0, 48 * factor])
    assert data.time_unit == unit


def test_nonmem_dosing_rows_and_dot_missing(write_csv):
    text = (
        "ID,TIME,DV,EVID,AMT,MDV,CMT,WT\n"
        "1,0,.,1,50,1,1,70\n"
        "1,1,10,0,.,0,2,.\n"
        "1,7,100,0,.,0,2,70\n"
        "1,8,.,2,.,1,2,70\n"  # other event: excluded, listed
        "1,9,90,0,.,1,2,70\n"  # MDV=1 observation: excluded, listed
        "2,0,.,1,20,1,1,60\n"  # patient with doses only: excluded, listed
        "3,0,.,1,10,1,1,.\n"
        "3,0,.,1,15,1,1,.\n"  # two dosing rows: summed
        "3,2,5,0,.,0,2,.\n"
    )
    with pytest.warns(DataWarning) as record:
        data = load_dataset(write_csv(text))
    assert any("without observation rows excluded: 2" in str(w.message) for w in record)
    assert data.patient_ids == ("1", "3")
    assert data.covariates == ("WT", "DOSE")  # CMT is a NONMEM item, not a covariate
    assert data.patients["DOSE"].tolist() == [50.0, 25.0]
    assert data.patients["WT"].tolist()[0] == 70.0 and np.isnan(data.patients["WT"].iloc[1])
    assert data.observations["ROW"].tolist() == [2, 3, 9]
    assert data.doses["ROW"].tolist() == [1, 7, 8]
    assert data.doses["AMT"].tolist() == [50.0, 10.0, 15.0]
    excluded = data.report.excluded
    assert excluded["ROW"].tolist() == [4, 5, 6]
    assert excluded["ID"].tolist() == ["1", "1", "2"]
    reasons = excluded["reason"].tolist()
    assert reasons[0].startswith("EVID=2 (other-type event)")
    assert reasons[1].startswith("MDV=1")
    assert reasons[2] == "patient has no observation rows"
    assert any("CMT" in w for w in data.report.warnings)


def test_nonmem_doses_without_evid_column(write_csv):
    data = _load(write_csv("ID,TIME,DV,AMT,MDV\n1,0,.,100,1\n1,3,8,.,0\n"))
    assert data.doses["AMT"].tolist() == [100.0]
    assert data.n_observations == 1


def test_dose_column_kept_and_disagreement_warned(write_csv):
    text = "ID,TIME,DV,EVID,AMT,Dose\n1,0,.,1,50,50\n1,1,5,0,.,50\n2,0,.,1,30,20\n2,1,5,0,.,20\n"
    with pytest.warns(DataWarning) as record:
        data = load_dataset(write_csv(text))
    shown = [str(w.message) for w in record]
    assert any(
        "'Dose' disagrees with the summed AMT" in m and "2 (Dose=20, AMT=30)" in m for m in shown
    ), shown
    assert data.covariates == ("Dose",)
    assert data.covariate("DOSE").tolist() == [50.0, 20.0]


def test_case_insensitive_headers(write_csv):
    data = _load(write_csv("id,Time,dv,Cens,limit,Age\n1,0,5,0,.,60\n1,2,1,1,0.2,60\n"))
    assert data.n_observations == 2
    assert data.observations["LIMIT"].iloc[1] == 0.2
    assert data.covariates == ("Age",)


def test_limit_interval(write_csv):
    text = HC + "1,1,50,0,3\n1,2,1,1,0.2\n1,3,1,1,0\n1,4,1,1,.\n1,5,1000,-1,5000\n"
    data = _load(write_csv(text))
    obs = data.observations
    assert obs["CENS"].tolist() == [0, 1, 1, 1, -1]
    # LIMIT of a quantified row is ignored; LIMIT=0 means no lower bound (Monolix).
    assert obs["LIMIT"].tolist() == pytest.approx([np.nan, 0.2, np.nan, np.nan, 5000], nan_ok=True)
    assert data.summary()["censored"] == {"n": 4, "fraction": 0.8, "left": 3, "right": 1}


def test_time_varying_covariate_stays_in_observations(write_csv):
    text = "ID,TIME,DV,CRP,SEX\n1,0,5,10,F\n1,1,6,40,F\n2,1,7,.,M\n"
    data = _load(write_csv(text), time_varying=["crp"])
    assert data.time_varying == ("CRP",)
    assert data.covariates == ("SEX",)
    assert data.observations["CRP"].tolist() == pytest.approx([10.0, 40.0, np.nan], nan_ok=True)
    assert not data.is_categorical("CRP")


def test_delimiters_encodings_and_layout(write_csv):
    expected = _load(write_csv(H + "1,0,5\n1,2,6\n"))
    semicolon = _load(write_csv("ID;TIME;DV\n1;0;5\n1;2;6\n", name="semi.csv"))
    tab = _load(write_csv("ID\tTIME\tDV\n1\t0\t5\n1\t2\t6\n", name="t.txt"), delimiter="tab")
    bom = _load(write_csv("\ufeffID,TIME,DV\r\n1,0,5\r\n1,2,6\r\n", name="bom.csv"))
    utf16 = _load(write_csv("ID\tTIME\tDV\n1\t0\t5\n1\t2\t6\n".encode("utf-16"), name="u.txt"))
    gz = _load(write_csv(gzip.compress((H + "1,0,5\n1,2,6\n").encode()), name="d.csv.gz"))
    for data in (semicolon, tab, bom, utf16, gz):
        pdt.assert_frame_equal(data.observations, expected.observations)


def test_blank_lines_and_trailing_commas(write_csv):
    data = _load(write_csv(H + "1,0,5\n\n1,2,6,,\n"))
    # Row numbers follow the file's lines (line n + 1 = row n), blank lines included.
    assert data.observations["ROW"].tolist() == [1, 3]


def test_dataframe_and_parquet_sources(tmp_path, write_csv):
    frame = pd.DataFrame(
        {"ID": [1, 1, 2], "TIME": [0, 2, 1], "DV": [5.0, 6.0, 7.0], "ARM": ["A", "A", None]}
    )
    from_frame = _load(frame)
    assert from_frame.source == "<DataFrame>"
    assert from_frame.patient_ids == ("1", "2")
    assert from_frame.report.missing_covariates == {"ARM": ("2",)}
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    from_parquet = _load(path)
    assert from_parquet.source == str(path)
    pdt.assert_frame_equal(from_parquet.observations, from_frame.observations)
    pdt.assert_frame_equal(from_parquet.patients, from_frame.patients)


def test_parquet_round_trip_of_to_frame(tmp_path, write_csv):
    text = "ID,TIME,DV,CENS,LIMIT,EVID,AMT,WT,ARM\n1,0,.,0,.,1,5,70,A\n1,1,5,0,.,0,.,70,A\n" \
           "2,3,0.1,1,0.01,0,.,.,B\n"  # fmt: skip
    data = _load(write_csv(text))
    path = tmp_path / "rt.parquet"
    data.to_frame().to_parquet(path)
    _assert_same(_load(path), data)


def _assert_same(new: Dataset, old: Dataset) -> None:
    pdt.assert_frame_equal(
        new.observations.drop(columns="ROW"), old.observations.drop(columns="ROW")
    )
    pdt.assert_frame_equal(new.patients, old.patients)
    pdt.assert_frame_equal(new.doses.drop(columns="ROW"), old.doses.drop(columns="ROW"))
    assert new.covariates == old.covariates
    assert new.time_varying == old.time_varying


def test_to_frame_round_trip_through_csv(tmp_path, write_csv):
    text = (
        "ID,TIME,DV,CENS,LIMIT,EVID,AMT,CRP,WT,ARM\n"
        "B,0,.,0,.,1,5,.,70,x\n"
        "B,24,5,0,.,0,.,3,70,x\n"
        "A,48,0.1,1,0.01,0,.,4,.,y\n"
        "A,24,2,0,.,0,.,2,.,y\n"
    )
    data = _load(write_csv(text), time_unit="hour", time_varying=["CRP"])
    frame = data.to_frame()
    assert list(frame.columns[:7]) == ["ID", "TIME", "DV", "CENS", "LIMIT", "EVID", "AMT"]
    assert frame["TIME"].tolist() == [0.0, 1.0, 1.0, 2.0]  # days, dose first
    path = tmp_path / "round.csv"
    frame.to_csv(path, index=False)
    _assert_same(_load(path, time_varying=["CRP"]), data)


def test_subset_and_summary(write_csv):
    text = "ID,TIME,DV,CENS,WT,ARM\n1,1,5,0,70,A\n1,2,1,1,70,A\n2,1,5,0,.,B\n3,4,8,0,90,B\n"
    data = _load(write_csv(text))
    small = data.subset(["3", "1"])
    assert small.patient_ids == ("1", "3")
    assert small.n_observations == 3
    assert small.obs_patient_index.tolist() == [0, 0, 1]
    assert small.report.missing_covariates == {}
    with pytest.raises(KeyError, match="unknown patient IDs: 9"):
        data.subset(["9"])
    info = data.summary()
    assert (info["patients"], info["observations"]) == (3, 4)
    assert info["censored"]["fraction"] == 0.25
    assert info["time_range"] == (1.0, 4.0)
    assert info["covariates"]["WT"] == {
        "type": "numeric", "min": 70.0, "median": 80.0, "max": 90.0, "missing": 1,
    }  # fmt: skip
    assert info["covariates"]["ARM"] == {"type": "categorical", "levels": {"A": 1, "B": 2},
                                         "missing": 0}  # fmt: skip
    assert info["samples_per_patient"] == {"min": 1, "median": 1.0, "max": 2}


def test_find_column_is_the_one_case_insensitive_lookup():
    from bayes_cart.data.column_roles import find_column

    assert find_column(["ID", "Trial"], "TRIAL") == "Trial"
    assert find_column(["trial", "TRIAL"], "TRIAL") == "TRIAL"  # an exact match first
    assert find_column(["ID"], "AGE") is None
    assert find_column(pd.Index(["ID", "Age"]), "age") == "Age"
