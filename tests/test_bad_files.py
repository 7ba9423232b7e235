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
    import bayes_cart.inference.sampling as sampling

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

    from bayes_cart.inference.io import save_fit

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
    from bayes_cart.inference.io import load_fit

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


# --- the data stored in a fit are covered by a hash (issue 12, part 4) -----------------------


def _saved(fit, tmp_path: Path) -> Path:
    from bayes_cart.inference.io import save_fit

    return save_fit(fit, tmp_path / "fit.nc")


def test_fit_file_stores_the_hash_of_its_data(checks_fit, tmp_path):
    import arviz as az

    from bayes_cart.inference.io import data_hash, load_fit

    path = _saved(checks_fit, tmp_path)
    stored = az.from_netcdf(path).posterior.attrs["data_hash"]
    assert len(stored) == 64 and int(stored, 16) >= 0
    again = load_fit(path)
    assert again.dataset.observations.equals(checks_fit.dataset.observations)
    assert data_hash(az.from_netcdf(path).fitted_data) == stored


@pytest.mark.parametrize("edit", ["value", "row", "column"])
def test_fit_file_with_edited_data_is_refused(checks_fit, tmp_path, edit):
    import arviz as az
    import numpy as np

    from bayes_cart.inference.io import load_fit

    path = _saved(checks_fit, tmp_path)
    idata = az.from_netcdf(path)
    data = idata.fitted_data
    if edit == "value":
        dv = data["DV"].to_numpy().copy()
        dv[3] *= 1.5
        data["DV"] = ("row", dv)
    elif edit == "row":
        data = data.isel(row=np.arange(1, data.sizes["row"]))
    else:
        data = data.rename({"ARM": "ARM2"})
    idata.fitted_data = data
    bad = tmp_path / "edited.nc"
    idata.to_netcdf(str(bad), engine="h5netcdf")
    with pytest.raises(FitFileError, match="data hash mismatch") as info:
        load_fit(bad)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{bad}: ")


def test_fit_file_without_a_data_hash_still_loads(checks_fit, tmp_path):
    import arviz as az

    from bayes_cart.inference.io import load_fit

    path = _saved(checks_fit, tmp_path)
    idata = az.from_netcdf(path)
    del idata.posterior.attrs["data_hash"]  # a file written before the hash was stored
    older = tmp_path / "before_hash.nc"
    idata.to_netcdf(str(older), engine="h5netcdf")
    assert load_fit(older).dataset.n_patients == load_fit(path).dataset.n_patients


# --- every command: a bad input gets a message, not a traceback ------------------------------


def _one_error(result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def bad_spec(tmp_path) -> Path:
    text = (Path(__file__).parents[1] / "models" / "liu2021.toml").read_text(encoding="utf-8")
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("median = 30.0", "median = -30.0"), encoding="utf-8")
    return path


def test_run_example_reports_a_bad_spec_before_writing_anything(tmp_path, bad_spec, no_sampling):
    out = tmp_path / "example_out"
    for model, fragment in (
        (str(bad_spec), "parameters.C0.typical: a LogNormal median must be positive"),
        (str(tmp_path / "nope.toml"), "no such file"),
        ("liu2020", "no shipped spec named 'liu2020'"),
    ):
        result = runner.invoke(app, ["run-example", "--model", model, "--out", str(out)], env=WIDE)
        line = _one_error(result)
        assert result.exit_code == 1
        assert line.startswith(f"model spec {model}: ") and fragment in line, line
    result = runner.invoke(app, ["run-example", "--chains", "1", "--out", str(out)], env=WIDE)
    assert "--chains must be at least 2" in _one_error(result) and result.exit_code == 2
    assert not out.exists()


def test_fit_reports_a_bad_spec_without_importing_the_sampler(tmp_path, bad_spec):
    """The spec is read before PyMC and ArviZ are imported: the error comes in about a second."""
    import subprocess
    import sys

    data = tmp_path / "data.csv"
    data.write_text("ID,TIME,DV\n1,1,5\n1,7,40\n", encoding="utf-8")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from bayes_cart.cli import app\n"
        f"r = CliRunner().invoke(app, ['fit', {str(data)!r}, '--model', {str(bad_spec)!r}, "
        f"'--out', {str(tmp_path / 'out')!r}])\n"
        "print(r.exit_code, sorted(m for m in ('pymc', 'arviz', 'pytensor') if m in sys.modules))\n"
        "print(r.output)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    first, *rest = done.stdout.splitlines()
    assert first == "1 []", done.stdout
    assert "parameters.C0.typical: a LogNormal median must be positive" in " ".join(rest)


def test_fit_reports_a_formula_that_does_not_fit_the_data_before_sampling(tmp_path, no_sampling):
    data = tmp_path / "data.csv"
    data.write_text("ID,TIME,DV,ARM\n1,1,5,a\n1,7,40,a\n2,1,3,b\n2,7,30,b\n", encoding="utf-8")
    args = ["fit", str(data), "--out", str(tmp_path / "out"), "--covariates", "beta ~ NOPE"]
    line = _one_error(runner.invoke(app, args, env=WIDE))
    assert "covariates.formulas.beta: no covariate column 'NOPE'" in line


@pytest.mark.parametrize("command", ["validate", "nca", "fit"])
def test_data_commands_report_a_bad_row_or_a_missing_file(tmp_path, command, no_sampling):
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,TIME,DV\n1,1,5\n1,seven,40\n2,1,-2\n", encoding="utf-8")
    extra = ["--out", str(tmp_path / "out")] if command == "fit" else []
    result = runner.invoke(app, [command, str(bad), *extra], env=WIDE)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    text = " ".join(result.output.split())
    assert "[row 2; patient 1; column 'TIME'] TIME is not a number: 'seven'" in text
    assert "[row 3; patient 2; column 'DV']" in text
    result = runner.invoke(app, [command, str(tmp_path / "nope.csv"), *extra], env=WIDE)
    assert "nope.csv" in _one_error(result) and result.exit_code == 2


@pytest.mark.parametrize("command", ["vpc", "compare", "loo", "report"])
def test_fit_commands_report_a_folder_or_a_non_fit_file_in_one_line(tmp_path, command):
    fake = tmp_path / "fake.nc"
    fake.write_text("not netcdf", encoding="utf-8")
    folder = tmp_path / "folder.nc"
    folder.mkdir()
    for target, fragment in ((fake, "not a readable NetCDF fit"), (folder, "is a folder")):
        args = {
            "vpc": ["vpc", str(target), "--out", str(tmp_path / "v")],
            "compare": ["compare", str(target), "--by", "ARM"],
            "loo": ["loo", str(target), str(target)],
            "report": ["report", str(target), "--out", str(tmp_path / "r.html")],
        }[command]
        line = _one_error(runner.invoke(app, args, env=WIDE))
        assert fragment in line, line


# --- report: bad options before the computation, section failures in one line ----------------


@pytest.fixture
def saved_fit(checks_fit, tmp_path) -> Path:
    from bayes_cart.inference.io import save_fit

    return save_fit(checks_fit, tmp_path / "fit.nc")


@pytest.fixture
def no_report(monkeypatch):
    import bayes_cart.report as report

    def refuse(*args, **kwargs):
        raise AssertionError("the report was computed although an option is bad")

    monkeypatch.setattr(report, "build_report", refuse)


def test_report_refuses_bad_inputs_before_computing(saved_fit, tmp_path, no_report):
    folder = tmp_path / "folder"
    folder.mkdir()
    truth = tmp_path / "truth.json"
    truth.write_text("[1, 2]", encoding="utf-8")
    cases = [
        (["--by", "NOPE"], 2, "--by NOPE: no such patient covariate in the fit (covariates: ARM)"),
        (["--truth", str(truth)], 1, "a truth file is a JSON object"),
        (["--out", str(folder)], 2, "is a folder; name an HTML file"),
        (["--out", str(saved_fit / "r.html")], 2, "is a file, not a folder"),
    ]
    for extra, code, fragment in cases:
        args = ["report", str(saved_fit), "--out", str(tmp_path / "r.html"), *extra]
        result = runner.invoke(app, args, env=WIDE)
        line = _one_error(result)
        assert result.exit_code == code and fragment in line, (extra, result.output)


def test_report_lists_failed_sections_in_one_line_each(saved_fit, tmp_path, monkeypatch):
    import logging

    import bayes_cart.report as report

    class Built:
        passed = True
        failures = ["4. Population parameters / table: KeyError: 'x'"]

        def to_html(self) -> str:
            return "<html></html>"

    def fake_build_report(fit, **kwargs):
        try:
            raise KeyError("x")
        except KeyError:  # what the report's soft failure logs
            logging.getLogger("bayes_cart.report").warning("section failed", exc_info=True)
        return Built()

    monkeypatch.setattr(report, "build_report", fake_build_report)
    args = ["report", str(saved_fit), "--out", str(tmp_path / "r.html")]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "warning: could not compute 4. Population parameters / table: KeyError" in result.output
    debug = runner.invoke(app, [*args, "--debug"], env=WIDE)
    assert debug.exit_code == 0 and "Traceback" in debug.output and "KeyError" in debug.output
    assert not logging.getLogger("bayes_cart.report").handlers  # restored after the command


def test_fit_and_run_example_refuse_an_unknown_sampler_or_solver_first(tmp_path, no_sampling):
    from bayes_cart.cli.fit_cmd import SAMPLER_NAMES
    from bayes_cart.inference.sampling import SAMPLERS

    assert SAMPLER_NAMES == SAMPLERS  # the CLI's copy (checked before PyMC is imported)
    out = str(tmp_path / "out")
    for args, fragment in (
        (["fit", "example", "--sampler", "stan", "--out", out], "--sampler: unknown sampler"),
        (["fit", "example", "--solver", "rk4", "--out", out], "--solver: unknown solver 'rk4'"),
        (["run-example", "--sampler", "stan", "--out", out], "--sampler: unknown sampler"),
    ):
        result = runner.invoke(app, args, env=WIDE)
        assert fragment in _one_error(result) and result.exit_code == 2
    assert not (tmp_path / "out").exists()
