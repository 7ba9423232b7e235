"""The HTML report: self-contained, every section computed, numbers as documented, CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from bayes_cart.report import SECTION_TITLES, build_report, default_by, write_report
from bayes_cart.units import DAYS_PER_MONTH

S = 200
BETA = 0.45  # constant typical beta: its per-month value is known exactly
TRUE_CR_EFFECT = 0.3


@pytest.fixture(scope="module")
def report_fit(analysis_data, analysis_spec, fake_fit_factory):
    """A fake fit of the analysis data with every group the report reads.

    Posterior: typical values near the simulation truth (beta constant), IIV, covariate effects,
    trial effects, residual SD, and each patient's true parameters with a little noise;
    posterior predictive, pointwise log-likelihood, observed and constant data computed from
    them as the sampler would.
    """
    import arviz as az
    import xarray as xr

    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
    from bayes_cart.model.model_data import prepare_model_data

    data, sim = analysis_data
    md = prepare_model_data(data, analysis_spec)
    rng = np.random.default_rng(5)
    truth = sim.truth.set_index("ID").loc[list(md.patient_ids)]
    kin = get_kinetics("liu2021")

    def effects(param: str, values: dict[str, float]) -> np.ndarray:
        names = md.design.effect_names(param)
        return np.column_stack([rng.normal(values.get(n, 0.0), 0.05, S) for n in names])

    post: dict[str, object] = {
        "C0": np.exp(rng.normal(np.log(20.0), 0.1, S)),
        "beta": BETA,
        "T1": np.exp(rng.normal(np.log(11.0), 0.05, S)),
        "alpha": np.exp(rng.normal(np.log(0.15), 0.1, S)),
        "rM": np.exp(rng.normal(np.log(0.003), 0.2, S)),
        "deltaM": np.exp(rng.normal(np.log(0.01), 0.2, S)),
        "b_beta": effects("beta", {"RESPONSE[CR/PR]": TRUE_CR_EFFECT}),
        "b_alpha": effects("alpha", {}),
        "u_trial_beta": rng.normal(0.0, 0.05, (S, len(md.group_levels))),
        "omega_trial_beta": np.abs(rng.normal(0.1, 0.02, S)),
        "sigma": np.abs(rng.normal(0.25, 0.02, S)),
        "corr_beta_T1": np.clip(rng.normal(-0.3, 0.1, S), -0.9, 0.9),
    }
    for p, om in {
        "C0": 0.5,
        "beta": 0.2,
        "T1": 0.15,
        "alpha": 0.3,
        "rM": 0.2,
        "deltaM": 0.2,
    }.items():
        post[f"omega_{p}"] = np.abs(rng.normal(om, 0.03, S))
    individual = {}
    for p in kin.parameters:
        base = truth[p].to_numpy(dtype=float) if p in truth else np.zeros(md.n_patients)
        noise = np.exp(rng.normal(0.0, 0.03, (S, md.n_patients))) if p in truth else 1.0
        individual[p] = base[None, :] * noise
        post[f"{p}_i"] = individual[p]

    params = {p: v[:, md.patient_index] for p, v in individual.items()}
    mu = np.asarray(kin.solve(md.time[None, :], params)["log_total"])  # (S, obs)
    sigma = np.asarray(post["sigma"])
    y = mu + sigma[:, None] * rng.standard_normal(mu.shape)
    idx = CensoringIndex.from_arrays(md.cens, md.log_limit)
    ll = np.stack(
        [censored_loglik(md.log_dv, mu[s], sigma[s], idx, md.log_limit) for s in range(S)]
    )
    oc = {"chain": [0], "draw": np.arange(S), "obs": md.obs_rows}
    extra = {
        "posterior_predictive": xr.Dataset(
            {"log_dv": (("chain", "draw", "obs"), y[None])}, coords=oc
        ),
        "log_likelihood": xr.Dataset({"log_dv": (("chain", "draw", "obs"), ll[None])}, coords=oc),
        "observed_data": xr.Dataset({"log_dv": ("obs", md.log_dv)}, coords={"obs": md.obs_rows}),
        "constant_data": xr.Dataset(
            {"patient_index": ("obs", md.patient_index)},
            coords={"obs": md.obs_rows, "patient": list(md.patient_ids)},
        ),
    }
    fit = fake_fit_factory(data, analysis_spec, post, n_draws=S, extra_groups=extra)
    assert isinstance(fit.idata, az.InferenceData)
    return fit


@pytest.fixture(scope="module")
def truth():
    """The simulation truth of the analysis data, in the example-truth format."""
    return {
        "population": {
            "kinetics": "liu2021",
            "typical": {
                "C0": 20.0,
                "beta": BETA,
                "T1": 11.0,
                "alpha": 0.15,
                "rM": 0.003,
                "deltaM": 0.01,
            },
            "omega": {"beta": 0.2, "T1": 0.15, "C0": 0.5, "alpha": 0.3},
            "effects": {"beta": {"RESPONSE": {"CR/PR": TRUE_CR_EFFECT}}},
            "sigma": 0.25,
        }
    }


@pytest.fixture(scope="module")
def built(report_fit, truth):
    return build_report(report_fit, truth=truth, n_vpc_replicates=40, n_virtual=200)


@pytest.fixture(scope="module")
def html(built) -> str:
    return built.to_html()


def _section(html: str, key: str) -> str:
    return html.split(f'<section id="{key}">')[1].split("</section>")[0]


def test_every_section_is_computed_on_a_normal_fit(built, html):
    assert built.failures == []
    assert "could not compute" not in html
    assert [s.title for s in built.sections] == list(SECTION_TITLES.values())
    for key, title in SECTION_TITLES.items():
        assert f'<section id="{key}">' in html
        assert f"<h2>{title}</h2>" in html


def test_page_is_self_contained(html):
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "@import" not in html and "url(" not in html
    images = re.findall(r"<img[^>]*>", html)
    assert len(images) >= 8  # forest plots, VPC, GOF, PIT, individual fits, virtual population
    for tag in images:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', tag), tag[:80]
    # only in-page anchors
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith("#"), href


def test_badge_follows_the_diagnostics_verdict(report_fit, html):
    assert report_fit.diagnostics.passed
    assert '<span class="badge pass">PASS</span>' in html
    assert "badge fail" not in html
    bad_fit = SimpleNamespace(**vars(report_fit))
    bad_fit.diagnostics = dataclasses.replace(
        report_fit.diagnostics, passed=False, advice=["run longer"]
    )
    page = build_report(bad_fit, sections=["diagnostics"]).to_html()
    assert '<span class="badge fail">FAIL</span>' in page and "badge pass" not in page
    assert "run longer" in page


def _tables(report, key: str) -> dict:
    """The tables a section of a built report was computed from (:attr:`Section.tables`)."""
    return next(s for s in report.sections if s.key == key).tables


def _median(cell: str) -> float:
    """The median of a ``median [low, high]`` cell."""
    return float(cell.split(" ")[0])


def test_parameter_table_converts_rates_to_months(built):
    per_month = BETA * DAYS_PER_MONTH  # 13.696875
    assert f"{per_month:.1f}" == "13.7"
    tables = _tables(built, "parameters")
    assert tables["summary"].set_index("parameter").loc["beta", "q50"] == pytest.approx(BETA)
    beta = tables["typical values"].set_index("parameter").loc["beta"]
    assert beta["unit"] == "1/day"
    assert beta["median [90% CrI]"] == "0.450 [0.450, 0.450]"  # per day
    assert beta["per month"] == "13.7 [13.7, 13.7]"
    assert beta["truth"] == "0.450" and beta["truth per month"] == "13.7"
    # an IIV SD is also shown as %CV: omega 0.2 -> sqrt(exp(0.04) - 1) = 20.2%
    iiv = tables["variability"].set_index("parameter").loc["omega_beta"]
    assert _median(iiv["%CV"]) == pytest.approx(100 * math.sqrt(math.expm1(0.2**2)), abs=1.0)


def test_covariate_effect_is_a_ratio_with_its_truth(built):
    effects = _tables(built, "parameters")["covariate effects"]
    row = effects.set_index(["parameter", "covariate level"]).loc[
        ("beta", "RESPONSE[CR/PR] vs PD/NR")
    ]
    ratio = _median(row["ratio exp(b) [90% CrI]"])
    assert ratio == pytest.approx(math.exp(TRUE_CR_EFFECT), rel=0.03)
    assert row["true ratio"] == f"{math.exp(TRUE_CR_EFFECT):.3g}"  # true ratio column: 1.35


def test_contrasts_show_the_true_ratio(built, html):
    tables = _tables(built, "contrasts")
    assert set(tables) == {f"contrasts by {c}" for c in ("RESPONSE", "TUMOR_TYPE", "TRIAL")}
    table = tables["contrasts by RESPONSE"].set_index(["quantity", "group"])
    beta = table.loc[("beta", "CR/PR")]
    assert beta["reference"] == "PD/NR" and bool(beta["in_model"])
    assert beta["truth"] == pytest.approx(math.exp(TRUE_CR_EFFECT))  # 1.35
    assert beta["ratio_q50"] == pytest.approx(math.exp(TRUE_CR_EFFECT), rel=0.03)
    # a derived metric's true ratio: Cmax = C0 exp(beta T1), beta x exp(0.3) for responders
    true_cmax = math.exp(BETA * math.expm1(TRUE_CR_EFFECT) * 11.0)
    cmax = table.loc[("Cmax", "CR/PR")]
    assert cmax["kind"] == "metric"
    assert cmax["truth"] == pytest.approx(true_cmax, rel=1e-3)
    # rendered: headings, the truths beside the ratios, forest plots
    section = _section(html, "contrasts")
    assert "By RESPONSE" in section and "By TUMOR_TYPE" in section and "By TRIAL" in section
    assert "truth 1.35" in section and f"truth {true_cmax:.3g}" in section
    assert section.count("<img") >= 4


def test_ck_metrics_carry_the_truth_of_each_group(built):
    """The CK-metric table of the typical responder: the true Cmax, C0 exp(beta T1), beside
    the posterior median of the metric."""
    table = _tables(built, "metrics")["CK metrics by RESPONSE"].set_index(["metric", "group"])
    for group, effect in (("PD/NR", 0.0), ("CR/PR", TRUE_CR_EFFECT)):
        true_cmax = 20.0 * math.exp(BETA * math.exp(effect) * 11.0)
        row = table.loc[("Cmax", group)]
        assert row["truth"] == pytest.approx(true_cmax, rel=1e-3)
        assert row["q5"] <= row["q50"] <= row["q95"]
        assert row["q50"] == pytest.approx(true_cmax, rel=0.3)


def test_default_groups_come_from_the_covariates(report_fit):
    assert default_by(report_fit) == ["RESPONSE", "TUMOR_TYPE", "TRIAL"]


def test_a_failing_section_shows_a_box_and_is_logged(report_fit, tmp_path, caplog):
    import arviz as az

    no_predictive = SimpleNamespace(**vars(report_fit))
    no_predictive.idata = az.InferenceData(posterior=report_fit.idata.posterior)
    with caplog.at_level(logging.WARNING, logger="bayes_cart.report"):
        path = write_report(
            no_predictive,
            tmp_path / "sub" / "report.html",
            n_vpc_replicates=10,
            n_draws=50,
            sections=["data", "gof", "loo"],
        )
    page = path.read_text(encoding="utf-8")
    assert "could not compute" in page
    assert "posterior_predictive" in page  # the reason is shown
    assert any("PIT" in r.getMessage() for r in caplog.records)
    # the other parts are still there
    assert '<section id="data">' in page and "IWRES mean" in page


def test_loo_comparison_with_other_fits(report_fit):
    page = build_report(
        report_fit, other_fits={"same model": report_fit}, sections=["loo"]
    ).to_html()
    section = _section(page, "loo")
    assert "elpd_diff" in section and "same model" in section
    assert "could not compute" not in section


def test_cli_writes_the_report_and_refuses_bad_fits(report_fit, tmp_path):
    from bayes_cart.cli import app
    from bayes_cart.inference.io import save_fit

    fit_path = save_fit(report_fit, tmp_path / "fit.nc")
    # the sampler settings `bayes-cart fit` writes beside the fit are shown
    side = {"sampler": "nutpie", "tune": 321, "seed": 7, "spec_hash": report_fit.spec.hash}
    (tmp_path / "diagnostics.json").write_text(json.dumps(side))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(fit_path),
            "--out",
            str(out),
            "--by",
            "RESPONSE",
            "--replicates",
            "10",
            "--draws",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "By RESPONSE" in page and "By TRIAL" not in page
    assert "could not compute" not in page
    assert "<dt>tuning draws per chain</dt><dd>321</dd>" in page
    assert "<dt>sampler</dt><dd>nutpie</dd>" in page

    no_truth = CliRunner().invoke(
        app, ["report", str(fit_path), "--out", str(out), "--truth", str(tmp_path / "t.json")]
    )
    assert no_truth.exit_code == 1 and "truth file not found" in no_truth.output

    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope.nc"), "--out", str(out)])
    assert missing.exit_code == 1
    assert "fit file not found" in missing.output and "nope.nc" in missing.output

    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"this is not a NetCDF file")
    invalid = CliRunner().invoke(app, ["report", str(garbage), "--out", str(out)])
    assert invalid.exit_code == 1
    # rich wraps long lines at the console width: compare with whitespace collapsed
    assert "not a readable NetCDF fit" in " ".join(invalid.output.split())
    assert "Traceback" not in invalid.output


def test_write_report_returns_the_path_and_checks_section_names(report_fit, tmp_path):
    path = write_report(report_fit, tmp_path / "r.html", sections=["model", "parameters"])
    assert isinstance(path, Path) and path.exists()
    page = path.read_text(encoding="utf-8")
    assert "<h2>2. Model card</h2>" in page and '<section id="vpc">' not in page
    with pytest.raises(ValueError, match="unknown report section"):
        build_report(report_fit, sections=["nope"])


def test_variability_table_shows_the_eta_shrinkage(report_fit):
    """EBEs of beta with SD 0.1 against omega_beta about 0.2: about 50%, named in the note."""
    post = report_fit.idata.posterior
    n, s = post.sizes["patient"], post.sizes["draw"]
    ebe = np.linspace(-1.0, 1.0, n)
    ebe = 0.1 * ebe / ebe.std(ddof=1)
    idata = report_fit.idata.copy()
    idata.posterior["eta_beta"] = (("chain", "draw", "patient"), np.broadcast_to(ebe, (1, s, n)))
    fit = SimpleNamespace(**vars(report_fit))
    fit.idata = idata
    built = build_report(fit, sections=["parameters"])
    tables = _tables(built, "parameters")
    expected = 1.0 - 0.1 / float(np.median(post["omega_beta"]))
    shrink = tables["eta-shrinkage"].set_index("parameter")
    assert shrink.loc["beta", "shrinkage"] == pytest.approx(expected)
    assert list(shrink.index) == ["beta"]  # the fake fit has no other eta
    variability = tables["variability"].set_index("parameter")
    assert variability.loc["omega_beta", "eta-shrinkage"] == f"{expected:.0%}"
    assert variability.loc["omega_C0", "eta-shrinkage"] == ""
    assert variability.loc["sigma", "eta-shrinkage"] == ""
    page = built.to_html()
    assert "ETASHRINKSD" in page and f"beta {expected:.0%}" in page
    # without etas (the module's fit) there is no such column
    plain = _tables(build_report(report_fit, sections=["parameters"]), "parameters")
    assert "eta-shrinkage" not in plain["variability"].columns
