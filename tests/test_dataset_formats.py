"""Monolix and NONMEM datasets load unchanged (issue 12, part 1).

One test per input class, each with a small file written into ``tmp_path``; the assertions are
on the text users see: the file, row, column and patient of every error and warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.data.column_roles import normalise_columns, parse_column_options
from bayes_cart.data.dataset import Dataset, load_dataset
from bayes_cart.errors import DataError, DataWarning
from bayes_cart.example import example_data_path, load_example

WIDE = {"COLUMNS": "200"}
runner = CliRunner()


def _load(path, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(path, **kwargs)


def _error(path, **kwargs) -> DataError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError) as info:
            load_dataset(path, **kwargs)
    err = info.value
    assert err.source == str(path) and str(path) in str(err)
    return err


def _problem(err: DataError, fragment: str):
    hits = [p for p in err.problems if fragment in str(p)]
    assert hits, f"{fragment!r} not in {[str(p) for p in err.problems]}"
    return hits[0]


def _warning(data: Dataset, fragment: str) -> str:
    hits = [w for w in data.report.warnings if fragment in w]
    assert hits, f"{fragment!r} not in {data.report.warnings}"
    return hits[0]


# ------------------------------------------------------------------------------ column roles


def test_monolix_lower_case_headers_are_roles(write_csv):
    text = (
        "id,time,y,cens,limit,amt,evid,mdv,ytype,occ,sex\n"
        "1,0,.,0,.,5e7,1,1,.,1,F\n"
        "1,1,40,0,.,.,0,0,1,1,F\n"
        "1,7,900,0,.,.,0,0,1,1,F\n"
        "1,90,10,1,0,.,0,0,1,1,F\n"
        "2,1,15,0,.,.,0,0,1,1,M\n"
        "2,14,10,1,2,.,0,0,1,1,M\n"
    )
    path = write_csv(text)
    with pytest.warns(DataWarning, match=f"{path}: columns read by their role: 'y' as DV"):
        data = load_dataset(path)
    assert data.covariates == ("sex", "DOSE")
    assert data.observations["CENS"].tolist() == [0, 0, 1, 0, 1]
    assert data.observations["LIMIT"].isna().tolist() == [True, True, True, True, False]
    note = _warning(data, "columns not used as covariates")
    assert "ytype (observation type)" in note and "occ (occasion)" in note


def test_declared_columns_map_any_header(write_csv):
    path = write_csv(
        "SUBJECT,DAY_REL,CONC,BELOW,SITE,NOTE\na,1,5,0,1,x\na,7,80,0,1,y\nb,3,10,1,2,z\n"
    )
    columns = {"ID": "SUBJECT", "time": "day_rel", "DV": "CONC", "BLQ": "BELOW",
               "CAT": ["SITE"], "IGNORE": "NOTE"}  # fmt: skip
    data = _load(path, columns=columns)
    assert data.patient_ids == ("a", "b")
    assert data.observations["CENS"].tolist() == [0, 0, 1]
    assert data.covariates == ("SITE",)
    assert data.patients["SITE"].tolist() == ["1", "2"]  # CAT: categorical though numeric
    assert "NOTE (declared IGNORE)" in _warning(data, "columns not used as covariates")


def test_declared_column_missing_from_the_file(write_csv):
    path = write_csv("ID,TIME,DV\n1,1,5\n")
    err = _error(path, columns={"DV": "CONC"})
    problem = _problem(err, "column 'CONC' declared as DV (--columns DV=CONC) is not a column")
    assert problem.column == "CONC"
    assert "(columns found: ID, TIME, DV)" in str(problem)


def test_bad_declarations_are_value_errors():
    with pytest.raises(ValueError, match="unknown column role 'DOSAGE'"):
        normalise_columns({"DOSAGE": "AMT"})
    with pytest.raises(ValueError, match=r"column 'X' is given two roles \(DV, TIME\)"):
        normalise_columns({"DV": "X", "TIME": "X"})
    with pytest.raises(ValueError, match="expected ROLE=NAME"):
        parse_column_options(["DV"])
    with pytest.raises(ValueError, match=r"role DV given twice \('A' and 'B'\)"):
        parse_column_options(["DV=A", "dv=B"])
    assert parse_column_options(["ignore=A,B", "IGNORE=C"]) == {"IGNORE": ("A", "B", "C")}


@pytest.mark.parametrize(
    ("text", "first", "second", "role"),
    [
        ("ID,TIME,DV,Y\n1,1,5,6\n", "DV", "Y", "DV"),
        ("ID,TIME,DV,BLQ,BQL\n1,1,5,0,0\n", "BLQ", "BQL", "BLQ"),
    ],
)
def test_two_columns_claiming_one_role(write_csv, text, first, second, role):
    path = write_csv(text)
    problem = _problem(_error(path), f"columns '{first}' and '{second}' both name the {role}")
    assert problem.column == first
    assert f"--columns {role}=NAME" in str(problem)
    # a declaration settles it; the other column is reported, not silently dropped
    data = _load(path, columns={role: second})
    assert f"{first} ({role} is the declared column '{second}')" in _warning(data, "not used")


def test_cens_and_blq_columns_together(write_csv):
    path = write_csv("ID,TIME,DV,CENS,BLQ\n1,1,5,0,0\n")
    problem = _problem(_error(path), "columns 'CENS' (CENS) and 'BLQ' (BLQ) both say which rows")
    assert problem.column == "BLQ"


def test_cont_declaration_needs_numbers(write_csv):
    path = write_csv("ID,TIME,DV,WT\n1,1,5,70\n2,1,6,heavy\n")
    problem = _problem(_error(path, columns={"CONT": ["WT"]}), "'heavy' is not a number")
    assert (problem.row, problem.column, problem.patient) == (2, "WT", "2")


def test_time_after_dose_clock_is_not_a_covariate(write_csv):
    path = write_csv("ID,TIME,TAD,DV\n1,1,1,5\n1,7,7,9\n")
    data = _load(path)
    assert data.covariates == ()
    assert "TAD (another clock than TIME" in _warning(data, "columns not used as covariates")
    # declared as TIME it is used, and TIME is then only a clock too
    assert _load(path, columns={"TIME": "TAD"}).n_observations == 2


# ------------------------------------------------------------------------ NONMEM BLQ / LLOQ


def test_blq_flag_with_dv_zero_and_lloq_column(write_csv):
    path = write_csv("ID,TIME,DV,BLQ,LLOQ\n1,1,40,0,10\n1,90,0,1,10\n2,2,.,1,20\n2,7,30,0,20\n")
    obs = _load(path).observations
    assert obs["CENS"].tolist() == [0, 1, 1, 0]
    assert obs["DV"].tolist() == [40.0, 10.0, 20.0, 30.0]  # DV holds the LLOQ: M3 uses it


def test_blq_flag_with_dv_equal_to_lloq(write_csv):
    obs = _load(write_csv("ID,TIME,BQL,DV\n1,1,0,40\n1,9,1,10\n")).observations
    assert obs["CENS"].tolist() == [0, 1] and obs["DV"].tolist() == [40.0, 10.0]


def test_blq_flag_without_any_limit(write_csv):
    path = write_csv("ID,TIME,DV,BLQ\n1,1,40,0\n7,9,0,1\n")
    problem = _problem(_error(path), "row flagged below the LLOQ (BLQ=1) with DV '0' and no LLOQ")
    assert (problem.row, problem.column, problem.patient) == (2, "BLQ", "7")
    assert "[row 2; patient 7; column 'BLQ']" in str(problem)
    assert len(_error(path).problems) == 1  # not reported again by the DV checks


def test_blq_row_above_its_lloq(write_csv):
    path = write_csv("ID,TIME,DV,BLQ,LLOQ\n1,1,40,0,10\n1,9,25,1,10\n")
    problem = _problem(_error(path), "DV 25 is above the LLOQ 10 on a row flagged below")
    assert (problem.row, problem.column, problem.patient) == (2, "DV", "1")


def test_invalid_blq_flag_and_lloq(write_csv):
    err = _error(write_csv("ID,TIME,DV,BLQ,LLOQ\n1,1,40,yes,10\n1,9,0,1,-1\n"))
    flag = _problem(err, "invalid BLQ flag 'yes'")
    assert (flag.row, flag.column, flag.patient) == (1, "BLQ", "1")
    lloq = _problem(err, "LLOQ must be a finite number > 0, got '-1'")
    assert (lloq.row, lloq.column, lloq.patient) == (2, "LLOQ", "1")


def test_lloq_column_without_a_flag(write_csv):
    data = _load(write_csv("ID,TIME,DV,LLOQ\n1,1,40,10\n1,9,0,10\n1,20,4,10\n"))
    assert data.observations["CENS"].tolist() == [0, 1, 1]
    assert data.observations["DV"].tolist() == [40.0, 10.0, 10.0]
    note = _warning(data, "2 rows with DV below the 'LLOQ' column taken as below the LLOQ")
    assert "rows 2, 3 (patients 1)" in note


def test_quantified_below_lloq_and_blq_marked_missing(write_csv):
    text = "ID,TIME,DV,MDV,BLQ,LLOQ\n1,1,40,0,0,10\n1,5,6,0,0,10\n1,9,0,1,1,10\n"
    data = _load(write_csv(text))
    assert "1 quantified row (BLQ=0) with DV below the LLOQ kept" in _warning(data, "row 2 ")
    note = _warning(data, "flagged below the LLOQ (BLQ=1) also have MDV=1")
    assert "set MDV=0 on them to fit them as censored (M3): row 3 (patients 1)" in note
    assert data.report.excluded["ROW"].tolist() == [3]


# ----------------------------------------------------------------- NONMEM dosing record items

NM = "ID,TIME,DV,EVID,AMT,MDV,{item}\n"


def test_cmt_of_one_dose_and_one_observed_compartment(write_csv):
    text = NM.format(item="CMT") + "1,0,.,1,5,1,1\n1,1,40,0,.,0,2\n1,7,90,0,.,0,2\n"
    data = _load(write_csv(text))
    assert data.n_observations == 2 and "CMT (compartment)" in _warning(data, "not used")


def test_cmt_of_several_observed_compartments(write_csv):
    text = NM.format(item="CMT") + "1,0,.,1,5,1,1\n1,1,40,0,.,0,2\n1,7,90,0,.,0,2\n2,1,9,0,.,0,3\n"
    problem = _problem(_error(write_csv(text)), "CMT '3' differs from the CMT 2 of most")
    assert (problem.row, problem.column, problem.patient) == (4, "CMT", "2")
    assert "only one observed compartment is modelled" in str(problem)


def test_rate_short_infusion_is_taken_as_given(write_csv):
    text = NM.format(item="RATE") + "1,0,.,1,5e7,1,2.4e9\n1,1,40,0,.,0,0\n"
    data = _load(write_csv(text))
    assert "1 dosing row with RATE > 0 (infusions of at most 0.5 h) taken as given" in (
        _warning(data, "RATE")
    )


@pytest.mark.parametrize(
    ("item", "dose", "obs", "fragment", "row"),
    [
        ("RATE", "1e6", "0", "RATE 1e+06 makes an infusion of 50 days (AMT/RATE)", 1),
        ("RATE", "-2", "0", "RATE -2: a rate or duration estimated by the model", 1),
        ("RATE", "0", "3", "RATE 3 on an observation row", 2),
        ("ADDL", "2", "0", "ADDL 2 (additional doses) is not supported", 1),
        ("II", "28", "0", "II 28 (interdose interval) is not supported", 1),
        ("SS", "1", "0", "SS 1 (steady-state dosing) is not supported", 1),
    ],
)
def test_dosing_items_the_kinetics_cannot_represent(write_csv, item, dose, obs, fragment, row):
    path = write_csv(NM.format(item=item) + f"9,0,.,1,5e7,1,{dose}\n9,1,40,0,.,0,{obs}\n")
    problem = _problem(_error(path), fragment)
    assert (problem.row, problem.column, problem.patient) == (row, item, "9")
    assert f"[row {row}; patient 9; column '{item}']" in str(problem)


def test_several_observation_types_and_occasions(write_csv):
    path = write_csv("ID,TIME,DV,YTYPE,OCC\n1,1,40,1,1\n1,7,90,2,1\n1,9,80,1,2\n")
    err = _error(path)
    ytype = _problem(err, "YTYPE '2' differs from the YTYPE 1 of most observation rows")
    assert (ytype.row, ytype.column, ytype.patient) == (2, "YTYPE", "1")
    occ = _problem(err, "several occasions for one patient (OCC 1: rows 1, 2; OCC 2: row 3)")
    assert (occ.row, occ.column, occ.patient) == ((1, 2, 3), "OCC", "1")


# ----------------------------------------------------------------------------- time and IDs


def test_negative_times_are_baseline_samples(write_csv):
    path = write_csv("ID,TIME,DV,CENS\nP1,-1,10,1\nP1,1,40,0\nP1,7,90,0\nP2,-0.5,12,0\nP2,2,8,0\n")
    with pytest.warns(DataWarning) as record:
        data = load_dataset(path)
    text = [str(w.message) for w in record]
    assert any(
        t.startswith(f"{path}: 2 pre-infusion baseline samples (TIME < 0) of 2 patients kept in "
                     "Dataset.baseline and not fitted") and "P1 (1 sample from TIME -1)" in t
        for t in text
    ), text  # fmt: skip
    assert data.observations["TIME"].min() >= 0 and data.n_observations == 3
    assert data.baseline[["ID", "TIME", "ROW"]].values.tolist() == [
        ["P1", -1.0, 1],
        ["P2", -0.5, 4],
    ]
    excluded = data.report.excluded
    assert excluded["ROW"].tolist() == [1, 4]
    assert excluded["reason"].str.contains("pre-infusion baseline sample").all()
    again = _load(data.to_frame())  # the baseline travels with the data (fit files)
    pdt.assert_frame_equal(again.baseline.drop(columns="ROW"), data.baseline.drop(columns="ROW"))


def test_only_baseline_samples(write_csv):
    path = write_csv("ID,TIME,DV\nP1,-1,5\n")
    problem = _problem(_error(path), "no observation rows at TIME >= 0")
    assert (problem.row, problem.column, problem.patient) == (1, "TIME", "P1")
    assert "negative TIME" in str(problem)


@pytest.mark.parametrize(
    ("unit_cell", "time_unit", "fragment"),
    [
        ("h", "day", "the 'TIMEUNIT' column says TIME is in 'h' but TIME is read in 'day'"),
        ("fortnight", "day", "unknown time unit 'fortnight'"),
    ],
)
def test_time_unit_column(write_csv, unit_cell, time_unit, fragment):
    path = write_csv(f"ID,TIME,DV,TIMEUNIT\n1,24,5,{unit_cell}\n1,168,6,{unit_cell}\n")
    problem = _problem(_error(path, time_unit=time_unit), fragment)
    assert problem.column == "TIMEUNIT"
    if unit_cell == "h":
        assert "pass time_unit='hour' (--time-unit hour)" in str(problem)
    else:
        assert (problem.row, problem.patient) == (1, "1")


def test_time_unit_column_that_agrees_or_mixes(write_csv):
    ok = _load(write_csv("ID,TIME,DV,TIMEU\n1,24,5,hours\n1,168,6,hours\n"), time_unit="hour")
    assert ok.observations["TIME"].tolist() == [1.0, 7.0]
    mixed = write_csv("ID,TIME,DV,TIMEUNIT\n1,24,5,h\n1,7,6,d\n", name="mixed.csv")
    problem = _problem(_error(mixed), "TIME is in several units ('h': 1 row; 'd': 1 row)")
    assert problem.column == "TIMEUNIT"


def test_hours_read_as_days_are_detected(write_csv):
    hours = "".join(f"{p},{t},{50 + t / 24}\n" for p in (1, 2) for t in (24, 72, 168, 336, 672))
    path = write_csv("ID,TIME,DV\n" + hours)
    note = _warning(_load(path), "TIME looks like hours read as days: 100% of the sample times")
    assert note.startswith("column 'TIME'") and "patient 1, row 5" in note
    assert "pass time_unit='hour' (--time-unit hour)" in note
    assert not [w for w in _load(path, time_unit="hour").report.warnings if "hours" in w]
    # a long follow-up with few early samples, sampled at odd hours
    sparse = "".join(f"1,{t},5\n" for t in (3, 30, 330, 1500, 8000, 17000))
    long = write_csv("ID,TIME,DV\n" + sparse, name="long.csv")
    note = _warning(_load(long), "the last sample is at 17000 days (46.5 years")
    assert "only 17% of the samples lie in the first 28 days" in note


def test_days_read_as_hours_are_detected(write_csv):
    path = write_csv("ID,TIME,DV\n1,1,5\n1,7,50\n1,28,8\n")
    note = _warning(_load(path, time_unit="hour"), "TIME read as hours ends at 28 h")
    assert "drop time_unit='hour'" in note


def test_the_bundled_example_raises_no_format_warning():
    data = load_example()
    assert len(data.report.warnings) == 1  # the missing RESPONSE of the pediatric trial
    assert data.baseline.empty


def test_samples_before_the_first_dose_and_a_late_dose(write_csv):
    path = write_csv(
        "ID,TIME,DV,EVID,AMT\nA,3,.,1,5\nA,1,7,0,.\nA,7,40,0,.\nB,0,.,1,5\nB,2,9,0,.\n"
    )
    data = _load(path)
    assert "the first dosing row of 1 patient is not at TIME 0: A (TIME 3 days)" in (
        _warning(data, "first dosing row")
    )
    assert "1 patient with samples before their first dosing row: A (1 sample before TIME 3)" in (
        _warning(data, "before their first dosing row")
    )


def test_every_sample_at_one_time(write_csv):
    data = _load(write_csv("ID,TIME,DV\n1,0,5\n2,0,6\n3,0,7\n"))
    assert "column 'TIME': every sample is at TIME 0 days" in _warning(data, "every sample")


def test_ids_that_differ_by_case_space_or_number_format(write_csv):
    path = write_csv("ID,TIME,DV\n101,1,5\n101.0,2,6\nab 1,1,5\nAB1,2,6\nx,1,5\n")
    data = _load(path)
    assert data.n_patients == 5  # kept apart, as written, but named
    note = _warning(data, "IDs that differ only by case, spaces or number format")
    assert "'101' and '101.0'; 'ab 1' and 'AB1'" in note


# ------------------------------------------------------------------------------------ CLI


def test_cli_columns_option(write_csv):
    path = write_csv("SUBJ,TIME,CONC\n1,1,5\n1,7,50\n")
    result = runner.invoke(
        app, ["validate", str(path), "--columns", "ID=SUBJ", "--columns", "DV=CONC"], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert "columns read by their role: 'SUBJ' as ID, 'CONC' as DV" in result.output
    bad = runner.invoke(app, ["validate", str(path), "--columns", "DOSAGE=CONC"], env=WIDE)
    assert bad.exit_code == 2 and "unknown column role 'DOSAGE'" in bad.output
    nca = runner.invoke(app, ["nca", str(path), "--columns", "ID=SUBJ", "--columns", "DV=CONC"])
    assert nca.exit_code == 0, nca.output


def test_fit_refuses_a_bad_columns_option_before_compiling(write_csv, tmp_path):
    path = write_csv("ID,TIME,DV\n1,1,5\n")
    args = ["fit", str(path), "--out", str(tmp_path / "o"), "--columns", "DV"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 2 and "expected ROLE=NAME" in result.output
    args = ["fit", str(path), "--out", str(tmp_path / "o"), "--columns", "DV=CONC"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 1 and "column 'CONC' declared as DV" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------- round trip of the example

COVARIATES = ["TRIAL", "RESPONSE", "TUMOR_TYPE", "AGE", "CD4CD8", "LYMPHODEPLETION",
              "TUMOR_BURDEN"]  # fmt: skip


def _native() -> pd.DataFrame:
    return pd.read_csv(example_data_path(), dtype=str, keep_default_na=False)


def _same_dataset(a: Dataset, b: Dataset) -> None:
    pdt.assert_frame_equal(a.observations, b.observations)
    pdt.assert_frame_equal(a.patients, b.patients)
    pdt.assert_frame_equal(a.doses, b.doses)
    assert (a.covariates, a.n_censored) == (b.covariates, b.n_censored)


def test_monolix_export_of_the_example_loads_to_the_same_dataset(tmp_path):
    native = _native()
    dose = native["EVID"] == "1"
    hours = (native["TIME"].astype(float) * 24).map(lambda t: f"{t:.10g}")
    monolix = pd.DataFrame(
        {
            "id": native["ID"],
            "time": hours,
            "y": native["DV"],
            "cens": native["CENS"],
            "limit": np.where(native["CENS"] == "1", "0", "."),
            "amt": native["AMT"],
            "evid": native["EVID"],
            "mdv": native["MDV"],
            "ytype": np.where(dose, ".", "1"),
            "occ": "1",
            **{c: native[c] for c in COVARIATES},
        }
    )
    path = tmp_path / "monolix.txt"
    monolix.to_csv(path, sep="\t", index=False)
    exported = _load(path, time_unit="hour")
    _same_dataset(exported, load_example())


def test_nonmem_export_of_the_example_loads_to_the_same_dataset(tmp_path):
    native = _native()
    dose = native["EVID"] == "1"
    blq = native["CENS"] == "1"
    lloq = native.loc[blq].groupby("TRIAL")["DV"].first()
    nonmem = pd.DataFrame(
        {
            "ID": native["ID"],
            "TIME": native["TIME"],
            "TAD": native["TIME"],
            "DV": np.where(blq, "0", native["DV"].where(~dose, "0")),
            "MDV": native["MDV"],
            "EVID": native["EVID"],
            "AMT": native["AMT"].where(dose, "0"),
            "CMT": np.where(dose, "1", "2"),
            "RATE": "0",
            "ADDL": "0",
            "II": "0",
            "SS": "0",
            "BLQ": native["CENS"],
            "LLOQ": native["TRIAL"].map(lloq),
            **{c: native[c] for c in COVARIATES},
        }
    )
    path = tmp_path / "nonmem.csv"
    nonmem.to_csv(path, index=False)
    with pytest.warns(DataWarning) as record:
        exported = load_dataset(path)
    _same_dataset(exported, load_example())
    text = " | ".join(str(w.message) for w in record)
    assert "CMT (compartment)" in text and "LLOQ (lower limit of quantification)" in text
    assert "TAD (another clock than TIME" in text


def test_a_covariate_named_like_a_role_survives_to_frame(write_csv):
    from bayes_cart.data.dataset import native_columns

    path = write_csv("ID,TIME,DV,OCC,Y\n1,1,5,A,3\n1,7,50,A,3\n2,2,9,B,4\n")
    data = _load(path, columns={"DV": "DV", "COVARIATE": ["OCC", "Y"]})
    assert data.covariates == ("OCC", "Y")
    frame = data.to_frame()
    again = _load(frame, columns=native_columns(frame))
    _same_dataset_values(again, data)


def _same_dataset_values(a: Dataset, b: Dataset) -> None:
    cols = ["ID", "TIME", "DV", "CENS", "LIMIT"]
    pdt.assert_frame_equal(a.observations[cols], b.observations[cols])
    pdt.assert_frame_equal(a.patients, b.patients)


def test_validate_shows_baseline_samples(write_csv):
    path = write_csv("ID,TIME,DV\nP1,-1,10\nP1,1,40\nP1,7,90\n")
    result = runner.invoke(app, ["validate", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "baseline samples" in x)
    assert line.split() == ["baseline", "samples", "1", "(TIME", "<", "0,", "not", "fitted)"]
    assert "pre-infusion baseline sample (TIME < 0): kept in Dataset.baseline" in result.output
