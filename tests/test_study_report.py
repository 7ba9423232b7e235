"""The study report: its tables on known answers, its figures, a partial study, the CLI.

The study is run in process (``workers=0``) on two scripted methods whose intervals and
decisions are fixed functions of the truth and the replicate, so every number of the report
is known in advance: replicate r's estimate is truth + OFFSETS[r % 4], its 90% interval
+- 0.25 and its 50% interval +- 0.05 around it; the "test" method rejects when the estimate
exceeds 0.15. Replicate 3 of the interval method fails the gate (R-hat 1.2).
"""

from __future__ import annotations

import math
import re
import time
from html import unescape

import numpy as np
import pandas as pd
import pytest
import study_doubles  # noqa: F401 (registers the "failing" method)
from typer.testing import CliRunner

import bayes_cart as bc
from bayes_cart.cli import app
from bayes_cart.report.study_report import (
    STUDY_SECTION_TITLES,
    build_study_report,
    section_tables,
)
from bayes_cart.study import MethodOutput, StudyStore, register_method, run_study, study_from_dict
from bayes_cart.study.report_tables import sbc_ecdf, sbc_table, study_tables
from bayes_cart.study.task import Task, failed_record
from bayes_cart.study.truth import truth_values

OFFSETS = (-0.1, 0.0, 0.1, 0.3)
HALF_90, HALF_50 = 0.25, 0.05


def _truth(ctx) -> dict[str, float]:
    scenario = ctx.study.scenarios[ctx.scenario]
    return truth_values(scenario.population_parameters(), scenario.design)


def scripted_intervals(ctx):
    """Intervals around truth + offset: 90% coverage 3/4, 50% coverage 1/4, exactly."""
    offset = OFFSETS[ctx.replicate % 4]
    rows = []
    for q, theta in _truth(ctx).items():
        if q not in ctx.quantities:
            continue
        est = theta + offset
        rows.append(
            {
                "quantity": q,
                "mean": est,
                "median": est,
                "q5": est - HALF_90,
                "q25": est - HALF_50,
                "q75": est + HALF_50,
                "q95": est + HALF_90,
                "p_positive": 0.99 if est - HALF_90 > 0 else 0.6,
            }
        )
    rhat = 1.2 if ctx.replicate % 4 == 3 else 1.0
    time.sleep(0.006)  # the "compile" and "sampling" below, so that wall >= their sum
    return MethodOutput(
        estimates=rows,
        diagnostics={"max_rhat": rhat, "min_ess_bulk": 1000.0, "divergences": 0},
        timings={"compile_seconds": 0.004, "sampling_seconds": 0.002},
    )


def scripted_test(ctx):
    """A point estimate and a test of its own (like the two-stage method), no interval."""
    offset = OFFSETS[ctx.replicate % 4]
    theta = _truth(ctx)["beta:RESPONSE[CR/PR]"]
    est = theta + offset
    row = {
        "quantity": "beta:RESPONSE[CR/PR]",
        "median": est,
        "p_value": 0.01 if est > 0.15 else 0.5,
        "test_reject": est > 0.15,
    }
    return MethodOutput(estimates=[row], timings={"sampling_seconds": 0.5})


register_method("scripted_intervals", scripted_intervals, replace=True)
register_method("scripted_test", scripted_test, replace=True)


def _study_dict(replicates: int = 4) -> dict:
    return {
        "study": {
            "name": "report_doubles",
            "description": "scripted methods",
            "seed": 11,
            "replicates": replicates,
            "quantities": ["beta", "beta:RESPONSE[CR/PR]"],
            "gate": {"max_rhat": 1.05, "min_ess_bulk": 100},
        },
        "defaults": {
            "population": {
                "typical": {
                    "C0": 50.0,
                    "beta": 0.4,
                    "T1": 12.0,
                    "alpha": 0.12,
                    "rM": 0.0015,
                    "deltaM": 0.004,
                },
                "omega": {"beta": 0.3},
                "sigma": 0.3,
            },
            "design": {
                "patients_per_trial": 6,
                "times": [1, 7, 14, 28],
                "covariates": {"RESPONSE": {"levels": ["CR/PR", "PD/NR"]}},
            },
        },
        # named out of effect order: the report must order them by the true effect
        "scenarios": {
            "big": {"population": {"effects": {"beta": {"RESPONSE": {"CR/PR": 0.4}}}}},
            "null": {"description": "no effect"},
            "small": {"population": {"effects": {"beta": {"RESPONSE": {"CR/PR": 0.2}}}}},
        },
        "methods": {
            "interval": {"kind": "scripted_intervals", "description": "posterior intervals"},
            "test": {"kind": "scripted_test", "alpha": 0.05},
            "bad": {"kind": "failing"},
        },
    }


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "s"
    result = run_study(study_from_dict(_study_dict()), root, workers=0)
    assert result.ran == 36
    return root


@pytest.fixture(scope="module")
def report(study_dir):
    return build_study_report(study_dir)


def test_coverage_table_is_metrics_csv_and_the_scripted_coverage(study_dir, report):
    coverage = section_tables(report)["coverage"]["coverage"]
    metrics = pd.read_csv(study_dir / "metrics.csv", keep_default_na=False, na_values=[""])
    metrics = metrics.query("fits == 'all'")  # ("null", a scenario, is not NaN here)
    merged = coverage.merge(metrics, on=["quantity", "scenario", "method"], suffixes=("", "_csv"))
    assert len(merged) == len(coverage) == 6  # 2 quantities x 3 scenarios, interval method only
    for c in ("coverage_50", "coverage_90", "coverage_90_mcse", "width_90", "n"):
        np.testing.assert_allclose(merged[c].astype(float), merged[f"{c}_csv"].astype(float))
    assert set(coverage["method"]) == {"interval"}  # the test method has no intervals
    assert (coverage["coverage_90"] == 0.75).all() and (coverage["coverage_50"] == 0.25).all()
    assert coverage["coverage_90_mcse"].to_numpy() == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert coverage["width_90"].to_numpy() == pytest.approx(2 * HALF_90)
    accuracy = section_tables(report)["accuracy"]["accuracy"]
    effect = accuracy.set_index(["quantity", "scenario", "method"])
    assert effect.loc[("beta", "null", "interval"), "bias"] == pytest.approx(np.mean(OFFSETS))
    assert effect.loc[("beta", "null", "interval"), "rmse"] == pytest.approx(
        math.sqrt(np.mean(np.square(OFFSETS)))
    )


def test_power_is_ordered_by_effect_size_with_each_rule(report):
    d = section_tables(report)["decisions"]["decisions"]
    test = d[d["method"] == "test"]
    assert list(test["scenario"]) == ["null", "small", "big"]
    assert list(test["rate"]) == [0.25, 0.75, 1.0]  # estimate > 0.15
    assert list(test["measures"]) == ["type-I error", "power", "power"]
    assert set(test["nominal"]) == {0.05} and set(test["rule"]) == {"own test"}
    interval = d[(d["method"] == "interval") & (d["rule"] == "90% interval excludes 0")]
    assert list(interval["scenario"]) == ["null", "small", "big"]
    assert list(interval["rate"]) == [0.25, 0.5, 1.0]  # estimate - 0.25 > 0
    assert set(interval["nominal"]) == {0.10}
    pd_rule = d[(d["method"] == "interval") & (d["rule"] == "P(direction) >= 0.95")]
    assert list(pd_rule["rate"]) == [0.25, 0.5, 1.0]
    assert "bad" not in set(d["method"])  # no estimates, no rate
    glance = section_tables(report)["decisions"]["effects"]
    assert list(glance["scenario"]) == ["null", "null", "small", "small", "big", "big"]
    row = glance.set_index(["scenario", "method"]).loc[("small", "test")]
    assert row["rejection_rate"] == 0.75 and math.isnan(row["coverage_90"])
    assert row["bias"] == pytest.approx(np.mean(OFFSETS))


def test_failures_runtime_and_progress(report):
    failures = section_tables(report)["failures"]["failures"].set_index("method")
    assert failures.loc["bad", "error"] == 12 and failures.loc["bad", "ok"] == 0
    assert failures.loc["interval", "gate_failed"] == 3  # replicate 3 of each scenario
    assert failures.loc["interval", "rhat_high"] == 3 and failures.loc["interval", "ess_low"] == 0
    assert failures.loc["test", "gate_failed"] == 0  # no sampler: no gate
    assert (failures["pending"] == 0).all()
    messages = section_tables(report)["failures"]["messages"]
    assert len(messages) == 1  # the same message but for the replicate number
    assert messages.iloc[0]["count"] == 12
    assert messages.iloc[0]["message"].startswith("RuntimeError: this method always fails")
    runtime = section_tables(report)["runtime"]["runtime"].set_index("method")
    assert runtime.loc["interval", "median_compile_seconds"] == 0.004
    assert runtime.loc["interval", "n_fits"] == 12 and "bad" not in runtime.index
    assert 0 < runtime.loc["interval", "compile_share"] < 1
    assert runtime.loc["interval", "median_ess_per_second"] == pytest.approx(1000 / 0.002)
    assert math.isnan(runtime.loc["test", "median_ess_per_second"])  # no sampler
    assert report.badge == "COMPLETE"
    assert section_tables(report)["overview"]["status"]["done"].sum() == 36


def test_metrics_over_passed_fits_leave_out_the_gate_failures(study_dir):
    passed = study_tables(study_dir, fits="passed")
    cov = passed.coverage[passed.coverage["method"] == "interval"]
    assert (cov["n"] == 3).all() and (cov["coverage_90"] == 1.0).all()


def test_html_has_every_section_and_figure_and_nothing_external(study_dir, report):
    html = report.to_html()
    for key in STUDY_SECTION_TITLES:
        assert f'<section id="{key}">' in html
    assert report.failures == []
    for key in ("coverage", "accuracy", "decisions", "runtime", "failures"):
        section = html.split(f'<section id="{key}">', 1)[1].split("</section>", 1)[0]
        assert re.search(
            r'<img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{500,}"', section
        ), key
    sbc = html.split('<section id="sbc">', 1)[1].split("</section>", 1)[0]
    assert "<img" not in sbc and "No fit of this study carries SBC ranks" in sbc
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "could not compute" not in html
    assert "COMPLETE" in html


def test_a_partial_study_says_what_is_missing(tmp_path):
    study = study_from_dict(_study_dict())
    root = tmp_path / "partial"
    run_study(study, root, workers=0, max_tasks=10)
    StudyStore.open(root, study).write(
        failed_record(study, Task("small", 3, "interval"), "timeout", "task exceeded 900 s")
    )
    report = build_study_report(root)
    tables = section_tables(report)
    missing = tables["overview"]["missing"]
    assert missing["pending"].sum() == 36 - 11
    assert report.badge == "PARTIAL 11/36" and report.badge_class == "partial"
    failures = tables["failures"]["failures"].set_index("method")
    assert failures.loc["interval", "timeout"] == 1
    assert failures["pending"].sum() == 25
    html = report.to_html()
    assert "Partial study: 25 of 36 tasks have not run yet" in html
    assert "task exceeded 900 s" in html
    empty = tmp_path / "empty"
    run_study(study, empty, workers=0, max_tasks=1)
    for p in (empty / "tasks").glob("*.json"):
        p.unlink()
    nothing = build_study_report(empty)
    assert nothing.failures == [] and nothing.badge == "PARTIAL 0/36"
    assert nothing.to_html().count("No task has finished with estimates yet.") == 4


def test_when_every_fit_fails_the_gate_the_report_says_so(tmp_path):
    raw = _study_dict(replicates=1)
    raw["study"]["gate"] = {"min_ess_bulk": 5000}  # the scripted fits have 1000
    raw["methods"] = {"interval": raw["methods"]["interval"]}
    run_study(study_from_dict(raw), tmp_path / "s", workers=0)
    passed = build_study_report(tmp_path / "s", fits="passed")
    assert section_tables(passed)["coverage"]["coverage"].empty
    html = unescape(passed.to_html())
    assert "Every one of the 3 finished fits with a sampler failed the study's gate" in html
    assert html.count("No finished fit passed the study's gate") == 3  # coverage, bias, power
    failures = section_tables(passed)["failures"]["failures"].set_index("method")
    assert failures.loc["interval", "ess_low"] == 3 and failures.loc["interval", "rhat_high"] == 0


def _sbc_fits(ranks: dict[str, np.ndarray], draws: int = 99) -> pd.DataFrame:
    rows = [
        {
            "scenario": "prior",
            "method": "nuts",
            "quantity": q,
            "replicate": i,
            "status": "ok",
            "sbc_rank": float(r),
            "sbc_draws": draws,
        }
        for q, rs in ranks.items()
        for i, r in enumerate(rs)
    ]
    return pd.DataFrame(rows)


def test_sbc_ecdf_band_separates_uniform_from_biased_ranks():
    rng = np.random.default_rng(3)
    fits = _sbc_fits(
        {
            "beta": rng.integers(0, 100, 200),  # calibrated: uniform on 0..L
            "T1": np.minimum(rng.integers(0, 100, 200) + 30, 99),  # truths too often high
        }
    )
    ecdf = sbc_ecdf(fits)
    table = sbc_table(fits, ecdf).set_index("quantity")
    assert table.loc["beta", "inside_band"] and not table.loc["T1", "inside_band"]
    assert table.loc["beta", "n_fits"] == 200 and table.loc["beta", "draws"] == 99
    assert abs(table.loc["beta", "mean_rank"] - 0.5) < 0.05
    assert table.loc["T1", "mean_rank"] > 0.6
    assert len(ecdf[ecdf["quantity"] == "beta"]) == 99
    assert (ecdf["lower"] <= 0).all() and (ecdf["upper"] >= 0).all()
    # fits thinned to different L: randomised ranks, still uniform when calibrated
    draws = rng.integers(40, 100, 300)
    mixed = _sbc_fits({"beta": rng.integers(0, draws + 1)})
    mixed["sbc_draws"] = np.tile(draws, 1)
    assert sbc_table(mixed).iloc[0]["inside_band"]
    low = mixed.assign(sbc_rank=(mixed["sbc_rank"] * 0.6).round())  # truths too often low
    assert not sbc_table(low).iloc[0]["inside_band"]


def test_the_report_draws_sbc_when_the_fits_carry_ranks(study_dir, monkeypatch):
    """Where the SBC columns join the report: fits_table's ``sbc_rank`` / ``sbc_draws``."""
    import bayes_cart.study.summary as summary

    original = summary.fits_table

    def with_ranks(records):
        fits = original(records)
        rng = np.random.default_rng(0)
        fits["sbc_rank"] = rng.integers(0, 20, len(fits)).astype(float)
        fits["sbc_draws"] = 19
        return fits

    monkeypatch.setattr(summary, "fits_table", with_ranks)
    report = build_study_report(study_dir)
    table = section_tables(report)["sbc"]["sbc"]
    assert set(table["quantity"]) == {"beta", "beta:RESPONSE[CR/PR]"}
    assert (table["draws"] == 19).all() and (table["n_fits"] >= 4).all()
    sbc = report.to_html().split('<section id="sbc">', 1)[1].split("</section>", 1)[0]
    assert "data:image/png;base64," in sbc


runner = CliRunner()


def test_cli_report_default_and_out_and_bad_directories(study_dir, tmp_path):
    out = tmp_path / "sub" / "r.html"  # the default DIR/report.html: test_public_api...
    again = runner.invoke(
        app, ["study", "report", str(study_dir), "--out", str(out), "--fits", "passed"]
    )
    assert again.exit_code == 0, again.output
    assert f"study report written to {out}" in again.output.replace("\n", "")
    assert "fits that passed the study" in out.read_text()
    not_study = runner.invoke(app, ["study", "report", str(tmp_path)])
    assert not_study.exit_code == 2 and "not a study directory" in not_study.output
    missing = runner.invoke(app, ["study", "report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a study directory" in missing.output
    fits = runner.invoke(app, ["study", "report", str(study_dir), "--fits", "some"])
    assert fits.exit_code == 2 and "--fits must be 'all' or 'passed'" in fits.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "study.json").write_text((study_dir / "study.json").read_text())
    (broken / "spec.json").write_text("{ not json")
    unreadable = runner.invoke(app, ["study", "report", str(broken)])
    assert unreadable.exit_code == 2 and "spec.json: cannot be read" in unreadable.output
    for r in (not_study, missing, fits, unreadable):
        assert "Traceback" not in r.output


def test_public_api_writes_the_default_path(study_dir):
    path = bc.write_study_report(study_dir)
    assert path == study_dir / "report.html" and path.stat().st_size > 10_000
    with pytest.raises(bc.OutputError, match="not a study directory"):
        bc.write_study_report(study_dir / "tasks")
