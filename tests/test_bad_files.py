"""Spec and fit files that are not what they claim get one line, not a traceback (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.errors import FitFileError

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture
def no_sampling(monkeypatch):
    import bayes_cart.sampling as sampling

    def refuse(*args, **kwargs):
        raise AssertionError("the fit started although the spec is unreadable")

    monkeypatch.setattr(sampling, "fit", refuse)


def _fit_with_spec(tmp_path: Path, spec: Path):
    data = tmp_path / "data.csv"
    data.write_text("ID,TIME,DV\n1,1,5\n1,7,40\n2,1,2\n2,7,30\n", encoding="utf-8")
    args = ["fit", str(data), "--out", str(tmp_path / "out"), "--model", str(spec)]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # one line
    return lines[0]


def test_spec_file_that_is_not_utf8(tmp_path, no_sampling):
    spec = tmp_path / "latin1.toml"
    spec.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    line = _fit_with_spec(tmp_path, spec)
    assert f"model spec {spec}: not UTF-8 text" in line
    assert "byte 12" in line


def test_spec_path_that_is_a_folder(tmp_path, no_sampling):
    for name in ("folder.toml", "folder"):
        spec = tmp_path / name
        spec.mkdir()
        line = _fit_with_spec(tmp_path, spec)
        assert f"model spec {spec}: is a folder, not a TOML file" in line


def test_spec_file_that_is_not_toml(tmp_path, no_sampling):
    spec = tmp_path / "broken.toml"
    spec.write_text("name = = 'x'\n", encoding="utf-8")
    line = _fit_with_spec(tmp_path, spec)
    assert f"model spec {spec}: not valid TOML" in line
    assert "line 1" in line


def test_spec_file_without_the_toml_suffix(tmp_path, no_sampling):
    spec = tmp_path / "myspec.txt"
    spec.write_text("name = 'x'\n", encoding="utf-8")
    line = _fit_with_spec(tmp_path, spec)
    assert f"model spec {spec}: a spec file must end in .toml" in line


def _edited_fit(fit, tmp_path: Path, key: str, value: str) -> Path:
    import arviz as az

    from bayes_cart.io import save_fit

    path = save_fit(fit, tmp_path / "fit.nc")
    idata = az.from_netcdf(path)
    idata.posterior.attrs[key] = value
    bad = tmp_path / f"bad_{key}.nc"
    idata.to_netcdf(str(bad), engine="h5netcdf")
    return bad


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("spec_json", '{"name": "liu2021", ', "the stored spec is not valid JSON"),
        ("spec_json", "[1, 2]", "the stored spec is not a JSON object"),
        ("diagnostics_json", "{oops", "the stored diagnostics_json is not valid JSON"),
        ("timings_json", "nan]", "the stored timings_json is not valid JSON"),
    ],
)
def test_fit_file_with_stored_json_that_is_not_json(checks_fit, tmp_path, key, value, message):
    from bayes_cart.io import load_fit

    bad = _edited_fit(checks_fit, tmp_path, key, value)
    with pytest.raises(FitFileError, match=message) as info:
        load_fit(bad)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{bad}: ")


def test_cli_reports_a_fit_file_with_a_broken_spec_in_one_line(checks_fit, tmp_path):
    bad = _edited_fit(checks_fit, tmp_path, "spec_json", "{not json")
    result = runner.invoke(app, ["compare", str(bad), "--by", "ARM"], env=WIDE)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "the stored spec is not valid JSON" in " ".join(result.output.split())
    json.loads(checks_fit.spec.text)  # the original is untouched
