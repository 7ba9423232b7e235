"""``bayes-cart study run | status | summary``: messages and exit codes, never a traceback."""

from __future__ import annotations

import tomllib

import study_doubles  # noqa: F401 (registers the test methods in this process)
from typer.testing import CliRunner

from bayes_cart.cli import app

runner = CliRunner()

STUDY = """
[study]
name = "cli_doubles"
seed = 3
replicates = 2
quantities = ["beta", "beta:RESPONSE[CR/PR]"]

[defaults.population]
typical = { C0 = 50.0, beta = 0.4, T1 = 12.0, alpha = 0.12, rM = 0.0015, deltaM = 0.004 }
omega = { beta = 0.3 }

[defaults.design]
patients_per_trial = 10
times = [1, 7, 14, 28]
covariates = { RESPONSE = { levels = ["CR/PR", "PD/NR"] } }

[scenarios.null]

[methods.exact]
kind = "conjugate"

[methods.bad]
kind = "failing"
"""


def _write(tmp_path, text=STUDY, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_status_summary(tmp_path):
    spec, out = _write(tmp_path), tmp_path / "out"
    result = runner.invoke(app, ["study", "run", str(spec), str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "ran 4 task(s)" in result.output and "2 failed in all" in result.output
    assert (out / "metrics.csv").exists() and (out / "fits.parquet").exists()
    assert tomllib.loads((out / "study.toml").read_text())["study"]["name"] == "cli_doubles"
    again = runner.invoke(app, ["study", "run", str(spec), str(out), "--workers", "0"])
    assert "ran 0 task(s)" in again.output and "4 already done" in again.output
    status = runner.invoke(app, ["study", "status", str(out)])
    assert status.exit_code == 0, status.output
    assert "4 of 4 tasks done, 2 failed" in status.output
    assert "null__r0000__bad: error: RuntimeError: this method always fails" in status.output
    summary = runner.invoke(app, ["study", "summary", str(out)])
    assert summary.exit_code == 0, summary.output
    assert "beta:RESPONSE[CR/PR]" in summary.output and "coverage_90" in summary.output
    # a log or a pipe gets the whole table (rich's 80 columns cut every header)
    assert "coverage_90_mcse" in summary.output and "median_sampling_seconds" in summary.output
    more = runner.invoke(
        app, ["study", "run", str(spec), str(out), "--workers", "0", "--replicates", "3"]
    )
    assert "ran 2 task(s)" in more.output


def test_partial_run_exits_3_and_says_to_rerun(tmp_path):
    spec, out = _write(tmp_path), tmp_path / "out"
    result = runner.invoke(
        app, ["study", "run", str(spec), str(out), "--workers", "0", "--max-tasks", "1"]
    )
    assert result.exit_code == 3
    assert "run the same command again" in result.output


def test_user_errors_are_messages_with_exit_codes(tmp_path):
    bad = _write(tmp_path, STUDY.replace("replicates = 2", "replicates = 0"), "bad.toml")
    result = runner.invoke(app, ["study", "run", str(bad), str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "study.replicates: Input should be greater than or equal to 1" in result.output
    missing = runner.invoke(app, ["study", "run", str(tmp_path / "nope.toml"), str(tmp_path)])
    assert missing.exit_code == 1 and "no shipped study named" in missing.output
    spec, out = _write(tmp_path), tmp_path / "out"
    runner.invoke(app, ["study", "run", str(spec), str(out), "--workers", "0"])
    other = _write(tmp_path, STUDY.replace("seed = 3", "seed = 4"), "other.toml")
    refused = runner.invoke(app, ["study", "run", str(other), str(out), "--workers", "0"])
    assert refused.exit_code == 2 and "holds the results of another study spec" in refused.output
    not_study = runner.invoke(app, ["study", "status", str(tmp_path)])
    assert not_study.exit_code == 2 and "not a study directory" in not_study.output
    workers = runner.invoke(app, ["study", "run", str(spec), str(out), "--workers", "-1"])
    assert workers.exit_code == 2 and "--workers must be >= 0" in workers.output
    for r in (result, missing, refused, not_study, workers):
        assert "Traceback" not in r.output
