"""The ``[data]`` table of a model spec: column roles and the unit of TIME (issue 12, part 1).

A spec can say how its data file is laid out (``[data] columns = { DV = "CONC" }``,
``time_unit = "hour"``); the loader uses it when it is given the spec, ``--columns`` and
``--time-unit`` take precedence, and a spec without the table keeps the canonical text and
hash it had before the table existed (fit files written then still load).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings

import pandas as pd
import pandas.testing as pdt
import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.data.column_roles import declaration_problems, merge_declarations
from bayes_cart.data.dataset import Dataset, load_dataset
from bayes_cart.errors import DataError, DataWarning, SpecError
from bayes_cart.example import example_data_path, load_example
from bayes_cart.model.spec import list_specs, load_spec, spec_from_dict

WIDE = {"COLUMNS": "200"}
runner = CliRunner()

#: SHA-256 of the canonical text of every shipped spec, computed on main before ``[data]``
#: existed (commit 6a382dc): a spec without the table must keep its text, so its hash.
#: ``stein2019``'s was recomputed when its IIV priors became log-normal (session 9), the one
#: intended change of a shipped model since.
SHIPPED_TEXT_SHA256 = {
    "liu2021": "61d2096b311c248ba1d0311b8f8d513ccfa9ed7311a6203645910f66b52302af",
    "liu2021_fixed_t1": "5f5652d7c1f4bccadc6b13ab94ce5c35d6f9eee51c3e0688bfccc32b418cf3e5",
    "liu2021_meta": "d1e16314e83f970f92c85a6ba4fa45989df6cc6c2d96bce2c679375b34af6f82",
    "stein2019": "a70f13c066cf54ce40422fb100a646c39f6d525eb8ab1dae8cc97c6ad9937bd3",
}

RENAMED = {"ID": "SUBJ", "TIME": "TAFD_H", "DV": "CONC", "CENS": "BELOW"}
SPEC_DATA = """
[data]
columns = { DV = "CONC", id = "SUBJ", TIME = "TAFD_H", CENS = "BELOW", IGNORE = ["NOTE"] }
time_unit = "hour"
"""


def _quiet_load(source, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(source, **kwargs)


def _spec_file(tmp_path, extra: str, name: str = "study.toml"):
    """liu2021's TOML with ``extra`` appended, written to ``tmp_path / name``."""
    from importlib import resources

    text = resources.files("bayes_cart.models").joinpath("liu2021.toml").read_text("utf-8")
    path = tmp_path / name
    path.write_text(text + extra, encoding="utf-8")
    return path


def _renamed_example(tmp_path):
    """The bundled example with other headers, TIME in hours and a NOTE column."""
    native = pd.read_csv(example_data_path(), dtype=str, keep_default_na=False)
    renamed = native.rename(columns=RENAMED)
    renamed["TAFD_H"] = (native["TIME"].astype(float) * 24).map(lambda t: f"{t:.10g}")
    renamed["NOTE"] = "x"
    path = tmp_path / "renamed.csv"
    renamed.to_csv(path, index=False)
    return path


def _same_dataset(a: Dataset, b: Dataset) -> None:
    pdt.assert_frame_equal(a.observations, b.observations)
    pdt.assert_frame_equal(a.patients, b.patients)
    pdt.assert_frame_equal(a.doses, b.doses)
    assert (a.covariates, a.n_censored) == (b.covariates, b.n_censored)


# ------------------------------------------------------------------------- hashes unchanged


@pytest.mark.parametrize("name", sorted(SHIPPED_TEXT_SHA256))
def test_shipped_specs_keep_their_canonical_text_and_hash(name):
    spec = load_spec(name)
    assert hashlib.sha256(spec.text.encode()).hexdigest() == SHIPPED_TEXT_SHA256[name]
    assert spec.hash == SHIPPED_TEXT_SHA256[name][:16]
    assert "data" not in json.loads(spec.text)
    assert spec.data.columns == {} and spec.data.time_unit is None


def test_every_shipped_spec_has_a_recorded_hash():
    assert sorted(SHIPPED_TEXT_SHA256) == list_specs()


def test_an_empty_data_table_is_the_same_spec_and_a_mapping_is_another():
    base = load_spec("liu2021")
    raw = json.loads(base.text)
    assert spec_from_dict({**raw, "data": {}}).hash == base.hash
    assert spec_from_dict({**raw, "data": {"columns": {}}}).text == base.text
    mapped = spec_from_dict({**raw, "data": {"columns": {"DV": "CONC"}}})
    assert mapped.hash != base.hash
    assert json.loads(mapped.text)["data"] == {"columns": {"DV": "CONC"}, "time_unit": None}
    # the stored text validates to the same spec (what load_fit checks)
    assert spec_from_dict(json.loads(mapped.text)).hash == mapped.hash
    # overrides keep the table
    assert base.with_overrides(covariates={"beta": "AGE"}).text.count('"data"') == 0
    assert mapped.with_overrides(covariates={"beta": "AGE"}).data.columns == {"DV": "CONC"}


def test_fit_file_with_a_data_table_saves_and_loads(checks_fit, tmp_path):
    from bayes_cart.inference.io import load_fit, save_fit

    raw = json.loads(checks_fit.spec.text)
    raw["data"] = {"columns": {"DV": "CONC", "ID": "SUBJ"}, "time_unit": "hour"}
    spec = spec_from_dict(raw, source="study.toml")
    path = save_fit(dataclasses.replace(checks_fit, spec=spec), tmp_path / "fit.nc")
    loaded = load_fit(path)
    assert loaded.spec.hash == spec.hash and loaded.spec.data == spec.data
    # the stored data are canonical (days, native headers): the mapping is not applied again
    _same_dataset(loaded.dataset, checks_fit.dataset)


# ------------------------------------------------------------------ loading with the spec


def test_spec_mapping_loads_a_renamed_file_to_the_native_dataset(tmp_path):
    spec = load_spec(_spec_file(tmp_path, SPEC_DATA))
    assert spec.data.declaration() == {
        "DV": "CONC", "ID": "SUBJ", "TIME": "TAFD_H", "CENS": "BELOW", "IGNORE": ("NOTE",)
    }  # fmt: skip
    data = _quiet_load(_renamed_example(tmp_path), spec=spec)
    _same_dataset(data, load_example())
    assert data.time_unit == "hour"
    assert "NOTE (declared IGNORE)" in " ".join(data.report.warnings)


def test_caller_columns_and_time_unit_override_the_spec(write_csv):
    data = {"DV": "CONC", "ID": "SUBJ", "CAT": ["SITE"], "IGNORE": ["LEVEL"]}
    spec = spec_from_dict(
        {**json.loads(load_spec("liu2021").text), "data": {"columns": data, "time_unit": "hour"}},
        source="study.toml",
    )
    path = write_csv("SUBJ,TIME,CONC,LEVEL,SITE,ARM\n1,1,5,7,1,1\n1,7,50,70,1,1\n")
    by_spec = _quiet_load(path, spec=spec)
    assert by_spec.observations["DV"].tolist() == [5.0, 50.0]
    assert by_spec.observations["TIME"].tolist() == pytest.approx([1 / 24, 7 / 24])
    assert by_spec.covariates == ("SITE", "ARM")
    # DV from the caller (LEVEL then loses the spec's IGNORE), the rest from the spec; the
    # list roles add up; the caller's time_unit replaces the spec's
    both = _quiet_load(
        path, spec=spec, columns={"dv": "LEVEL", "CAT": ["ARM"], "IGNORE": ["CONC"]},
        time_unit="day",
    )  # fmt: skip
    assert both.observations["DV"].tolist() == [7.0, 70.0]
    assert both.observations["TIME"].tolist() == [1.0, 7.0]
    assert both.covariates == ("SITE", "ARM")
    assert both.patients["SITE"].tolist() == ["1"] and both.patients["ARM"].tolist() == ["1"]
    # a column the caller gives another role loses the spec's role
    ignored = _quiet_load(path, spec=spec, columns={"IGNORE": ["SITE", "CONC"], "DV": "LEVEL"})
    assert ignored.covariates == ("ARM",)
    assert "SITE (declared IGNORE)" in " ".join(ignored.report.warnings)


def test_merge_declarations_precedence():
    spec = {"DV": "CONC", "ID": "SUBJ", "IGNORE": ["A"], "CAT": ["SITE"]}
    assert merge_declarations(spec, None) == {
        "DV": "CONC", "ID": "SUBJ", "IGNORE": ("A",), "CAT": ("SITE",)
    }  # fmt: skip
    assert merge_declarations(spec, {"dv": "C2", "IGNORE": "SUBJ", "CONT": ["SITE"]}) == {
        "DV": "C2", "IGNORE": ("A", "SUBJ"), "CONT": ("SITE",)
    }  # fmt: skip
    assert merge_declarations(None, {"dv": "C2"}) == {"DV": "C2"}


# ----------------------------------------------------------------------------- the errors


def test_spec_data_errors_all_at_once_with_their_keys(tmp_path):
    bad = """
[data]
columns = { DV = "CONC", ID = "conc", DOSAGE = "AMT", TIME = ["T1", "T2"], dv = "X", CAT = [] }
time_unit = "fortnight"
"""
    path = _spec_file(tmp_path, bad)
    text = path.read_text("utf-8").replace("median = 0.3,", "median = -0.3,")  # beta's prior
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.source == str(path)
    problems = "\n".join(err.problems)
    for expected in (
        "parameters.beta.typical: a LogNormal median must be positive (got -0.3)",
        "data.columns.ID: column 'conc' is given two roles (DV, ID)",
        "data.columns.DOSAGE: unknown column role 'DOSAGE'; roles: ID, TIME, DV",
        "data.columns.TIME: role TIME takes one column, got ['T1', 'T2']",
        "data.columns.dv: role DV is given twice (roles are case-insensitive)",
        "data.columns.CAT: role CAT needs column name(s), got []",
        "data.time_unit: unknown time unit 'fortnight'",
    ):
        assert expected in problems, problems
    assert len(err.problems) == 7


def test_unknown_key_in_the_data_table():
    raw = {**json.loads(load_spec("liu2021").text), "data": {"column": {"DV": "CONC"}}}
    with pytest.raises(SpecError, match=r"data.column: unknown key; did you mean 'columns'"):
        spec_from_dict(raw)


def test_declaration_problems_match_normalise_columns():
    assert declaration_problems({"DV": "CONC", "IGNORE": ["A", "B"]}) == []
    assert declaration_problems({"IGNORE": ["A"], "CAT": ["a"]}) == [
        ("CAT", "column 'a' is given two roles (IGNORE, CAT)")
    ]


def test_a_mapped_column_the_file_lacks_names_the_key_and_the_file(write_csv, tmp_path):
    spec = load_spec(_spec_file(tmp_path, '\n[data]\ncolumns = { dv = "CONC", ID = "SUBJ" }\n'))
    path = write_csv("ID,TIME,DV,NOTE\n1,1,5,x\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError) as info:
            load_dataset(path, spec=spec, columns={"IGNORE": ["NOTEX"]})
    err = info.value
    assert err.source == str(path)
    found = [str(p) for p in err.problems]
    for role, key, name in (("DV", "dv", "CONC"), ("ID", "ID", "SUBJ")):
        assert any(
            f"column {name!r} declared as {role} (data.columns.{key} of {spec.source}) is not a "
            "column of the file (columns found: ID, TIME, DV, NOTE)" in p
            for p in found
        ), found
    # the caller's own declaration is named as an option
    assert any("declared as IGNORE (--columns IGNORE=NOTEX)" in p for p in found), found


# ------------------------------------------------------------------------------------ CLI


def test_cli_validate_and_nca_read_the_spec_mapping(tmp_path):
    spec = _spec_file(tmp_path, SPEC_DATA)
    data = _renamed_example(tmp_path)
    result = runner.invoke(app, ["validate", str(data), "--model", str(spec)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "218" in result.output and "file unit: hour" in result.output
    # without the spec the file is refused; --time-unit overrides the spec's unit
    plain = runner.invoke(app, ["validate", str(data)], env=WIDE)
    assert plain.exit_code == 1 and "missing required column 'ID'" in plain.output
    days = runner.invoke(
        app, ["validate", str(data), "--model", str(spec), "--time-unit", "day"], env=WIDE
    )
    assert days.exit_code == 0 and "file unit: day" in days.output
    nca = runner.invoke(app, ["nca", str(data), "--model", str(spec)], env=WIDE)
    assert nca.exit_code == 0, nca.output


def test_cli_bad_spec_mapping_is_refused_before_compiling(tmp_path, write_csv):
    data = write_csv("SUBJ,TIME,CONC\n1,1,5\n1,7,50\n")
    bad = _spec_file(tmp_path, '\n[data]\ncolumns = { DOSAGE = "CONC" }\n', name="bad.toml")
    for command in (["validate", str(data)], ["fit", str(data), "--out", str(tmp_path / "o")]):
        result = runner.invoke(app, [*command, "--model", str(bad)], env=WIDE)
        assert result.exit_code == 1, result.output
        assert "data.columns.DOSAGE: unknown column role 'DOSAGE'" in result.output
        assert "Traceback" not in result.output
    lacking = _spec_file(tmp_path, '\n[data]\ncolumns = { DV = "DV2" }\n', name="lacks.toml")
    args = ["fit", str(data), "--out", str(tmp_path / "o"), "--model", str(lacking)]
    result = runner.invoke(app, [*args, "--columns", "ID=SUBJ"], env=WIDE)
    assert result.exit_code == 1
    flat = " ".join(result.output.split())  # rich wraps long lines
    assert f"column 'DV2' declared as DV (data.columns.DV of {lacking})" in flat, flat
    # --columns DV=CONC overrides the spec's DV: the data are then fine, and the fit goes on
    # to check its output folder (here a file, refused before any compilation)
    (tmp_path / "o").write_text("not a folder", encoding="utf-8")
    result = runner.invoke(app, [*args, "--columns", "ID=SUBJ", "--columns", "DV=CONC"], env=WIDE)
    assert result.exit_code == 2 and "--out" in result.output, result.output
    assert "declared as" not in result.output
