"""Tests of ``bayes-cart validate``."""

from __future__ import annotations

from typer.testing import CliRunner

from bayes_cart.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}

VALID = (
    "ID,TIME,DV,CENS,EVID,AMT,SEX,WT\n"
    "1,0,.,0,1,5,F,70\n"
    "1,24,50,0,0,.,F,70\n"
    "1,168,0.5,1,0,.,F,70\n"
    "2,24,8,0,0,.,M,.\n"
    "2,48,9,0,2,.,M,.\n"
)


def test_validate_valid_file(write_csv):
    path = write_csv(VALID)
    result = runner.invoke(app, ["validate", str(path), "--time-unit", "hour"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"valid: {path}" in out
    assert "patients" in out and " 2 " in out
    assert "3 (1-2 per patient" in out  # samples
    assert "1 (33.3%; 1 below LLOQ, 0 above)" in out  # BLQ
    assert "1 to 7 days (file unit: hour)" in out
    assert "F (1), M (1)" in out  # categorical levels
    assert "70 to 70 (median 70)" in out  # numeric range
    assert "covariate 'WT' is missing for 1 of 2 patients: 2" in out
    assert "EVID=2 (other-type event) row not used" in out  # excluded rows table
    assert "Traceback" not in out


def test_validate_time_varying_and_delimiter(write_csv):
    path = write_csv("ID;TIME;DV;CRP\n1;1;5;3\n1;2;6;9\n")
    args = ["validate", str(path), "--delimiter", ";", "--time-varying", "CRP"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    assert "time-varying" in result.output


def test_validate_invalid_file_lists_every_problem(write_csv):
    path = write_csv("ID,TIME,DV,WT\n1,0,5,70\n1,x2,5,70\n2,1,abc,60\n2,3,4,61\n")
    result = runner.invoke(app, ["validate", str(path)], env=WIDE)
    assert result.exit_code == 1
    out = result.output
    assert f"invalid data: {path}: 3 problem(s)" in out
    assert "[row 2; patient 1; column 'TIME'] TIME is not a number: 'x2'" in out
    assert "[row 3; patient 2; column 'DV'] DV is not a number: 'abc'" in out
    assert "[rows 3, 4; patient 2; column 'WT'] time-invariant covariate changes" in out
    assert "Traceback" not in out


def test_validate_wrong_delimiter_and_binary(write_csv):
    path = write_csv("ID;TIME;DV\n1;0;5\n")
    result = runner.invoke(app, ["validate", str(path), "--delimiter", ","], env=WIDE)
    assert result.exit_code == 1
    assert "looks like ';'-separated; use delimiter=';'" in result.output
    png = write_csv(b"\x89PNG\r\n\x1a\n\x00\x00", name="image.csv")
    result = runner.invoke(app, ["validate", str(png)], env=WIDE)
    assert result.exit_code == 1
    assert "not a text file: it looks like a PNG image" in result.output


def test_validate_missing_file_and_bad_unit(tmp_path, write_csv):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.csv")], env=WIDE)
    assert result.exit_code == 2
    assert "data file not found" in result.output
    path = write_csv("ID,TIME,DV\n1,0,5\n")
    result = runner.invoke(app, ["validate", str(path), "--time-unit", "fortnight"], env=WIDE)
    assert result.exit_code == 2
    assert "unknown time unit" in result.output
