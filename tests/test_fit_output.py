"""``fit`` checks its output folder and options before sampling; results land whole (issue 12)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.errors import OutputError
from bayes_cart.inference.io import FIT_OUTPUTS, check_output_dir, write_fit_outputs

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
DATA = "ID,TIME,DV\n1,1,5\n1,7,40\n1,28,3\n2,1,2\n2,7,30\n2,28,1\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(DATA, encoding="utf-8")
    return path


@pytest.fixture
def no_sampling(monkeypatch):
    """Make any call of the sampler a test failure."""
    import bayes_cart.inference.sampling as sampling

    def refuse(*args, **kwargs):
        raise AssertionError("the fit started although the options are invalid")

    monkeypatch.setattr(sampling, "fit", refuse)


@pytest.fixture
def fake_fit(monkeypatch, checks_fit):
    """``inference.sampling.fit`` returns a ready fit at once (a point-mass posterior)."""
    import bayes_cart.inference.sampling as sampling

    calls = []

    def instant(*args, **kwargs):
        calls.append(kwargs)
        return checks_fit

    monkeypatch.setattr(sampling, "fit", instant)
    return calls


def _fit(*args: str):
    t0 = time.perf_counter()
    result = runner.invoke(app, ["fit", *args], env=WIDE)
    assert time.perf_counter() - t0 < 20, "the check took as long as a fit"
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_out_that_is_a_file_is_refused(data, tmp_path, no_sampling):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    result = _fit(str(data), "--out", str(target))
    assert result.exit_code == 2, result.output
    assert f"{target}: exists and is not a folder" in _one_line(result.output)
    assert target.read_text() == "keep me"


def test_out_under_a_file_is_refused(data, tmp_path, no_sampling):
    parent = tmp_path / "a_file"
    parent.write_text("x")
    result = _fit(str(data), "--out", str(parent / "sub"))
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in _one_line(result.output)


def test_non_empty_out_is_refused_without_overwrite(data, tmp_path, no_sampling):
    out = tmp_path / "previous"
    out.mkdir()
    (out / "fit.nc").write_text("old fit")
    result = _fit(str(data), "--out", str(out))
    assert result.exit_code == 2, result.output
    text = _one_line(result.output)
    assert f"{out}: the folder exists and is not empty (fit.nc)" in text
    assert "--overwrite" in text
    assert (out / "fit.nc").read_text() == "old fit"


def test_overwrite_replaces_only_a_folder_of_fit_results(data, tmp_path, no_sampling):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "fit.nc").write_text("old fit")
    (out / "notes.docx").write_text("my notes")
    result = _fit(str(data), "--out", str(out), "--overwrite")
    assert result.exit_code == 2, result.output
    assert "notes.docx" in result.output and "--overwrite replaces only" in _one_line(result.output)
    assert (out / "notes.docx").read_text() == "my notes"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--chains", "1", "--chains must be at least 2 (R-hat compares chains)"),
        ("--draws", "0", "--draws must be at least 1"),
        ("--tune", "-5", "--tune must be >= 0"),
        ("--target-accept", "1.2", "--target-accept must be in (0, 1)"),
        ("--seed", "-1", "--seed must be >= 0"),
        ("--time-unit", "fortnight", "unknown time unit 'fortnight'"),
    ],
)
def test_bad_options_are_refused_before_sampling(
    data, tmp_path, no_sampling, option, value, message
):
    result = _fit(str(data), "--out", str(tmp_path / "o"), option, value)
    assert result.exit_code == 2, result.output
    assert message in _one_line(result.output)
    assert not (tmp_path / "o").exists()


def test_empty_out_folder_and_overwrite_of_a_previous_fit(data, tmp_path, fake_fit):
    out = tmp_path / "empty"
    out.mkdir()
    result = _fit(str(data), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FIT_OUTPUTS)
    first = (out / "diagnostics.json").read_text()
    (out / "summary.csv").write_text("stale")
    again = _fit(str(data), "--out", str(out), "--overwrite", "--seed", "7")
    assert again.exit_code == 0, again.output
    assert len(fake_fit) == 2
    assert (out / "summary.csv").read_text() != "stale"
    assert json.loads((out / "diagnostics.json").read_text())["seed"] == 7
    assert json.loads(first)["seed"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "empty"]  # no leftovers


def test_check_output_dir_accepts_new_and_empty_folders(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")
    with pytest.raises(OutputError, match="not empty"):
        check_output_dir(tmp_path)


def test_results_are_moved_into_place_whole(checks_fit, tmp_path, monkeypatch):
    out = tmp_path / "fit"
    summary = write_fit_outputs(checks_fit, out, {"seed": 1})
    assert len(summary) and sorted(p.name for p in out.iterdir()) == sorted(FIT_OUTPUTS)
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import bayes_cart.analysis.summary

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bayes_cart.analysis.summary, "population_summary", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_fit_outputs(checks_fit, out, {"seed": 2}, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    with pytest.raises(RuntimeError, match="disk full"):
        write_fit_outputs(checks_fit, tmp_path / "other", {"seed": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]  # no half-written folder
    with pytest.raises(OutputError, match="not empty"):
        write_fit_outputs(checks_fit, out, overwrite=False)
