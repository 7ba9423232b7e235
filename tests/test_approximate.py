"""Approximate inference (issue 11): ADVI, Pathfinder and Laplace beside NUTS.

Fast tier: the option checks (before any compiling), the method's own check and its sentence,
the fit file and diagnostics.json recording the method (an approximate fit built from a
point-mass fit, no fitting), old files reading as NUTS, the CLI's output and errors, the report's
banner, the study spec's ``inference`` key and gate. Slow tier: real fits of each method on a
small simulated dataset, their population medians against the truth.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app
from bayes_cart.errors import ConvergenceWarning
from bayes_cart.inference.approximate import (
    APPROXIMATE_METHODS,
    LAPLACE_MAX_GRADIENT,
    METHODS,
    PARETO_K_MAX,
    approximate_diagnostics,
    approximation_passed,
    approximation_text,
    check_method,
    noncentred_spec,
)

runner = CliRunner()
WIDE = {"COLUMNS": "250"}

#: What each method's own record looks like when its check passed.
RECORDS = {
    "advi": {
        "iterations": 4200,
        "max_iterations": 20000,
        "converged": True,
        "elbo_final": -812.5,
        "elbo_final_sd": 3.1,
        "elbo_trace": [-5000.0, -900.0, -815.0, -812.5],
    },
    "pathfinder": {
        "paths": 4,
        "successful_paths": 4,
        "all_paths_failed": False,
        "pareto_k": 0.45,
        "lbfgs_iterations_mean": 80.0,
    },
    "laplace": {
        "optimizer": "trust-ncg",
        "success": True,
        "message": "Optimization terminated successfully.",
        "iterations": 35,
        "log_density_at_mode": -700.0,
        "max_abs_gradient": 1e-6,
        "hessian_positive_definite": True,
        "min_covariance_eigenvalue": 1e-4,
    },
}


# ---------------------------------------------------------------------------------------------
# options, checked before anything is compiled
# ---------------------------------------------------------------------------------------------


def test_methods_and_defaults():
    assert METHODS == ("nuts", "advi", "pathfinder", "laplace")
    assert check_method("nuts") == {}
    advi = check_method("advi")
    assert advi["iterations"] == 20_000 and advi["tolerance"] > 0
    assert check_method("pathfinder", options={"paths": 2})["paths"] == 2


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("mcmc", {}, "unknown inference method 'mcmc'; choose one of nuts, advi"),
        ("advi", {"low_rank": True}, "--low-rank is a NUTS setting"),
        ("laplace", {"sampler": "pymc"}, "--sampler pymc chooses a NUTS backend"),
        ("advi", {"options": {"iters": 5}}, "unknown option(s) ['iters']"),
        ("advi", {"options": {"iterations": 0}}, "iterations must be a positive number"),
        ("pathfinder", {"options": {"paths": 2.5}}, "paths must be a whole number"),
        ("nuts", {"options": {"iterations": 5}}, "method 'nuts' takes no method options"),
    ],
)
def test_bad_methods_and_options_are_refused(method, kwargs, message):
    with pytest.raises(ValueError) as exc:
        check_method(method, **kwargs)
    assert message in str(exc.value)


def test_fit_refuses_a_bad_method_before_building_the_model(monkeypatch, analysis_data):
    import bayes_cart.inference.sampling as sampling
    from bayes_cart.model.spec import load_spec

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built although the method is invalid")

    monkeypatch.setattr(sampling, "build_model", refuse)
    data, _ = analysis_data
    spec = load_spec("liu2021")
    with pytest.raises(ValueError, match="unknown inference method 'vi'"):
        sampling.fit(data, spec, method="vi")
    with pytest.raises(ValueError, match="--low-rank is a NUTS setting"):
        sampling.fit(data, spec, method="advi", low_rank=True)
    with pytest.raises(ValueError, match="unknown option"):
        sampling.fit(data, spec, method="laplace", method_options={"paths": 4})


# ---------------------------------------------------------------------------------------------
# the method's own check: what `passed` means
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", APPROXIMATE_METHODS)
def test_the_approximations_own_check(method):
    good = RECORDS[method]
    assert approximation_passed(method, good)
    bad = {
        "advi": {**good, "converged": False, "iterations": 20000},
        "pathfinder": {**good, "pareto_k": PARETO_K_MAX + 0.3},
        "laplace": {**good, "hessian_positive_definite": False},
    }[method]
    assert not approximation_passed(method, bad)
    with pytest.warns(ConvergenceWarning, match="failed its own check"):
        diag = approximate_diagnostics(method, bad)
    assert not diag.passed
    assert "no MCMC gate" in diag.advice[0]
    assert any("do not use these estimates" in a for a in diag.advice)


def test_a_laplace_optimum_with_a_large_gradient_is_not_a_mode():
    # L-BFGS-B reported success on 40 patients with a largest gradient of 5.1
    record = {**RECORDS["laplace"], "max_abs_gradient": 5.1}
    assert not approximation_passed("laplace", record)
    assert "above 0.01: not a mode" in approximation_text("laplace", record)
    edge = {**RECORDS["laplace"], "max_abs_gradient": LAPLACE_MAX_GRADIENT}
    assert approximation_passed("laplace", edge)
    assert not approximation_passed("laplace", {**edge, "max_abs_gradient": float("nan")})
    # trust-ncg's precision-loss stop at a zero gradient is a mode (16 patients: 2.7e-7)
    stopped = {
        **RECORDS["laplace"],
        "success": False,
        "message": "A bad approximation caused failure to predict improvement.",
        "max_abs_gradient": 2.7e-7,
    }
    assert approximation_passed("laplace", stopped)
    assert "stopped (A bad approximation" in approximation_text("laplace", stopped)


def test_pathfinder_with_every_path_failed_does_not_pass():
    record = {**RECORDS["pathfinder"], "all_paths_failed": True, "successful_paths": 0}
    assert not approximation_passed("pathfinder", record)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("advi", "converged after 4,200 of 20,000 iterations, final ELBO -812.5"),
        ("pathfinder", "Pareto k 0.45 (<= 0.7), 4 of 4 paths succeeded"),
        ("laplace", "the optimiser converged in 35 iterations"),
    ],
)
def test_the_sentence_names_the_method_and_its_diagnostics(method, expected):
    text = approximation_text(method, RECORDS[method])
    assert text.startswith("approximate inference (")
    assert "no MCMC gate" in text and expected in text


def test_approximate_diagnostics_have_no_mcmc_numbers():
    diag = approximate_diagnostics("laplace", RECORDS["laplace"])
    assert diag.passed and diag.method == "laplace"
    assert np.isnan(diag.max_rhat) and np.isnan(diag.min_ess_bulk)
    assert diag.approximation["iterations"] == 35
    assert "confirm with method 'nuts'" in diag.advice[-1]


# ---------------------------------------------------------------------------------------------
# the fit file, diagnostics.json, old files, the CLI
# ---------------------------------------------------------------------------------------------


def _approximate_like(fit, method: str):
    """The point-mass fit relabelled as an approximate fit (its posterior is one chain)."""
    diag = approximate_diagnostics(method, RECORDS[method], warn=False)
    settings = {**fit.settings, "method": method, "sampler": None, "chains": 1}
    return dataclasses.replace(fit, diagnostics=diag, settings=settings)


@pytest.mark.parametrize("method", APPROXIMATE_METHODS)
def test_fit_file_records_the_method(checks_fit, tmp_path, method):
    from bayes_cart.inference.io import load_fit, write_fit_outputs

    fit = _approximate_like(checks_fit, method)
    write_fit_outputs(fit, tmp_path / "out")
    back = load_fit(tmp_path / "out" / "fit.nc")
    assert back.settings["method"] == method
    assert back.diagnostics.method == method
    assert back.diagnostics.approximation == RECORDS[method]
    assert back.idata.posterior.attrs["inference_method"] == method
    info = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert info["method"] == method and info["approximation"] == RECORDS[method]


def test_files_without_a_method_load_as_nuts(checks_fit, tmp_path):
    import arviz as az

    from bayes_cart.inference.io import load_fit, save_fit

    path = save_fit(checks_fit, tmp_path / "fit.nc")
    idata = az.from_netcdf(path)
    attrs = idata.posterior.attrs
    settings = json.loads(attrs["settings_json"])
    settings.pop("method", None)
    diag = json.loads(attrs["diagnostics_json"])
    diag.pop("method"), diag.pop("approximation")
    attrs["settings_json"], attrs["diagnostics_json"] = json.dumps(settings), json.dumps(diag)
    del attrs["inference_method"]
    old = tmp_path / "old.nc"
    idata.to_netcdf(str(old), engine="h5netcdf")
    back = load_fit(old)
    assert back.settings["method"] == "nuts"
    assert back.diagnostics.method == "nuts" and back.diagnostics.approximation == {}


@pytest.fixture
def approximate_cli_fit(monkeypatch, checks_fit):
    """``inference.sampling.fit`` returns an ADVI-labelled point-mass fit at once."""
    import bayes_cart.inference.sampling as sampling

    calls = []

    def instant(*args, **kwargs):
        calls.append(kwargs)
        return _approximate_like(checks_fit, kwargs.get("method", "nuts"))

    monkeypatch.setattr(sampling, "fit", instant)
    return calls


def _data(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("ID,TIME,DV\n1,1,5\n1,7,40\n1,28,3\n2,1,2\n2,7,30\n2,28,1\n")
    return path


def test_cli_method_passes_through_and_marks_the_output(tmp_path, approximate_cli_fit):
    out = tmp_path / "o"
    result = runner.invoke(
        app, ["fit", str(_data(tmp_path)), "--out", str(out), "--method", "advi"], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert approximate_cli_fit[0]["method"] == "advi"
    text = " ".join(result.output.split())
    assert "population parameters (APPROXIMATE: ADVI)" in text
    assert "APPROXIMATE inference (ADVI): no MCMC gate, intervals may be too narrow" in text
    assert "r_hat" not in text and "converged after 4,200 of 20,000 iterations" in text
    assert json.loads((out / "diagnostics.json").read_text())["method"] == "advi"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "vb"], "--method: unknown inference method 'vb'; choose one of nuts, advi"),
        (["--method", "advi", "--low-rank"], "--method advi: --low-rank is a NUTS setting"),
        (
            ["--method", "pathfinder", "--sampler", "numpyro"],
            "--method pathfinder: --sampler numpyro chooses a NUTS backend",
        ),
    ],
)
def test_cli_bad_method_is_refused_at_once(tmp_path, monkeypatch, args, message):
    import bayes_cart.inference.sampling as sampling

    def refuse(*a, **k):
        raise AssertionError("the fit started although the options are invalid")

    monkeypatch.setattr(sampling, "fit", refuse)
    t0 = time.perf_counter()
    result = runner.invoke(
        app, ["fit", str(_data(tmp_path)), "--out", str(tmp_path / "o"), *args], env=WIDE
    )
    assert time.perf_counter() - t0 < 20
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_advi_that_reaches_nan_is_a_clear_error(monkeypatch, analysis_data, analysis_spec):
    import pymc as pm

    from bayes_cart.errors import ApproximationError
    from bayes_cart.inference import sampling

    def overflow(*args, **kwargs):  # what pm.fit raises (sim40, non-centred, learning rate 0.01)
        raise FloatingPointError("NaN occurred in optimization. \nThe current approximation...")

    monkeypatch.setattr(pm, "fit", overflow)
    data, _ = analysis_data
    with pytest.raises(ApproximationError) as info:
        sampling.fit(data, analysis_spec, method="advi", prior_draws=0, predictive=False)
    text = str(info.value)
    assert text.startswith("ADVI broke down: NaN occurred in optimization")
    assert "method_options={'learning_rate': 0.001}" in text and "use method 'nuts'" in text


def test_cli_reports_an_approximation_that_broke_down(tmp_path, monkeypatch):
    import bayes_cart.inference.sampling as sampling
    from bayes_cart.errors import ApproximationError

    def broke(*args, **kwargs):
        raise ApproximationError("ADVI broke down: NaN occurred in optimization")

    monkeypatch.setattr(sampling, "fit", broke)
    out = tmp_path / "o"
    result = runner.invoke(
        app, ["fit", str(_data(tmp_path)), "--out", str(out), "--method", "advi"], env=WIDE
    )
    assert result.exit_code == 1, result.output
    assert "ADVI broke down: NaN occurred in optimization" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "label"), [("advi", "ADVI"), ("laplace", "Laplace")])
def test_report_shows_the_banner_and_the_methods_own_check(checks_fit, method, label):
    from bayes_cart.report import build_report

    fit = _approximate_like(checks_fit, method)
    page = build_report(fit, sections=["diagnostics", "model"]).to_html()
    assert f"approximate inference ({label}) — intervals may be too narrow" in page
    assert 'class="approx-banner"' in page
    assert f"Approximate inference ({label}): no MCMC gate" in page
    assert "max R-hat" not in page  # the NUTS gate's table is not shown
    assert f"{label} (APPROXIMATE, not MCMC)" in page
    nuts = build_report(checks_fit, sections=["diagnostics"]).to_html()
    assert "approx-banner" not in nuts.split("</style>")[1] and "max R-hat" in nuts


def test_report_badge_fails_when_the_approximation_failed(checks_fit):
    from bayes_cart.report import build_report

    fit = _approximate_like(checks_fit, "pathfinder")
    bad = {**RECORDS["pathfinder"], "pareto_k": 1.4}
    fit = dataclasses.replace(
        fit, diagnostics=approximate_diagnostics("pathfinder", bad, warn=False)
    )
    page = build_report(fit, sections=["diagnostics"]).to_html()
    assert '<span class="badge fail">FAIL</span>' in page
    assert "Pareto k 1.40 (&gt; 0.7: the importance weights are unreliable)" in page


# ---------------------------------------------------------------------------------------------
# studies: the inference key and the gate
# ---------------------------------------------------------------------------------------------


def _study_text(inference: str | None, sampler: str | None = None) -> str:
    from importlib import resources

    text = resources.files("bayes_cart.studies").joinpath("tiny_two_stage.toml").read_text()
    extra = ""
    if inference is not None:
        extra += f'inference = "{inference}"\n'
    if sampler is not None:
        extra += f'sampler = "{sampler}"\n'
    return text.replace("[methods.bayes_m3]\n", "[methods.bayes_m3]\n" + extra, 1)


def test_study_spec_inference_key(tmp_path):
    from bayes_cart.errors import SpecError
    from bayes_cart.study.spec import load_study

    def load(text):
        path = tmp_path / "s.toml"
        path.write_text(text)
        return load_study(path)

    plain, nuts, advi = (
        load(_study_text(None)),
        load(_study_text("nuts")),
        load(_study_text("advi")),
    )
    assert plain.methods["bayes_m3"].inference == "nuts"
    assert advi.methods["bayes_m3"].inference == "advi"
    assert plain.hash == nuts.hash != advi.hash  # the default keeps existing studies' hashes
    with pytest.raises(SpecError) as exc:
        load(_study_text("mcmc"))
    assert "methods.bayes_m3.inference" in str(exc.value)
    with pytest.raises(SpecError) as exc:
        load(_study_text("laplace", sampler="pymc"))
    assert "methods.bayes_m3.sampler: 'pymc' chooses a NUTS backend" in str(exc.value)


def test_study_gate_of_an_approximate_fit():
    from bayes_cart.study.spec import GateSpec
    from bayes_cart.study.task import gate_passed

    gate = GateSpec()
    approx = {"max_rhat": float("nan"), "min_ess_bulk": float("nan"), "divergences": 0}
    assert gate_passed({**approx, "package_gate_passed": True}, gate, "advi") is True
    assert gate_passed({**approx, "package_gate_passed": False}, gate, "pathfinder") is False
    # without the method the NaN R-hat fails the NUTS gate
    assert gate_passed({**approx, "package_gate_passed": True}, gate) is False
    nuts = {"max_rhat": 1.002, "min_ess_bulk": 900.0, "divergences": 0}
    assert gate_passed(nuts, gate, "nuts") is True


# ---------------------------------------------------------------------------------------------
# the coordinates of an approximation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["liu2021", "liu2021_meta", "liu2021_fixed_t1", "stein2019"])
def test_approximations_use_non_centred_coordinates_of_the_same_model(name):
    from bayes_cart.model.spec import load_spec

    spec = load_spec(name)
    safe = noncentred_spec(spec)
    s = safe.doc.sampling
    assert s.centered == () and s.centering == "all"
    assert s.centered_group is False and s.sigma_scaled is False
    # every shipped spec centres something for NUTS, so this is a real change ...
    assert safe is not spec and spec.doc.sampling != s
    # ... of the coordinates only: every other table is the spec's
    for table in type(spec.doc).model_fields:
        if table != "sampling":
            assert getattr(safe.doc, table) == getattr(spec.doc, table), table
    assert noncentred_spec(safe) is safe


def test_the_laplace_copy_carries_the_jacobian_of_every_transform():
    import pymc as pm

    from bayes_cart.inference.approximate import with_jacobian

    with pm.Model() as model:
        s = pm.HalfNormal("s", 1.0)  # log transform
        pm.Beta("f", 2.0, 3.0)  # logodds transform
        pm.LKJCholeskyCov(
            "L", n=2, eta=2.0, sd_dist=pm.Exponential.dist(1.0, shape=2), compute_corr=True
        )
        pm.Normal("y", 0.0, s, observed=np.array([0.3, -0.2]))
    copy = with_jacobian(model)
    point = {k: v + 0.3 for k, v in model.initial_point().items()}
    with_jac = model.compile_logp(jacobian=True)(point)
    without = model.compile_logp(jacobian=False)(point)
    assert abs(with_jac - without) > 0.1  # the Jacobian matters here ...
    np.testing.assert_allclose(copy.compile_logp(jacobian=False)(point), with_jac, rtol=1e-12)
    # ... and the original model is unchanged
    assert not model.potentials and len(copy.potentials) == 1
    np.testing.assert_allclose(model.compile_logp(jacobian=False)(point), without)


def test_the_fold_coordinates_become_the_peak_coordinates():
    from bayes_cart.model.spec import load_spec

    spec = load_spec("liu2021").replace(
        sampling={"parameterisation": "fold", "centered": ["C0", "beta", "T1", "alpha"]}
    )
    safe = noncentred_spec(spec).doc.sampling
    assert safe.parameterisation == "cmax" and safe.centered == ()


def test_fit_hands_the_approximation_the_non_centred_model(
    monkeypatch, analysis_data, analysis_spec
):
    from bayes_cart.inference import sampling

    data, _ = analysis_data
    spec = analysis_spec
    built = {}

    def stop(dataset, spec, **kwargs):
        built["sampling"] = spec.doc.sampling
        raise RuntimeError("stop here")

    monkeypatch.setattr(sampling, "build_model", stop)
    with pytest.raises(RuntimeError, match="stop here"):
        sampling.fit(data, spec, method="laplace")
    assert built["sampling"].centered == ()
    with pytest.raises(RuntimeError, match="stop here"):
        sampling.fit(data, spec, method="nuts")
    assert built["sampling"].centered == spec.doc.sampling.centered != ()


# ---------------------------------------------------------------------------------------------
# real fits (slow tier)
# ---------------------------------------------------------------------------------------------

#: Simulation truth of the small dataset of the real fits.
TYPICAL = {"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01}


@pytest.fixture(scope="module")
def small_simulation():
    """16 simulated patients, 10 samples each, the liu2021 model without the LKJ block."""
    import warnings

    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.errors import DataWarning
    from bayes_cart.model.spec import load_spec
    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    pop = PopulationParameters(
        typical=TYPICAL,
        omega={"beta": 0.2, "T1": 0.15, "C0": 0.5, "alpha": 0.3, "rM": 0.3, "deltaM": 0.3},
        sigma=0.25,
    )
    times = (1, 4, 7, 10, 14, 21, 28, 60, 90, 180)
    sim = simulate_patients(make_design(16, times), pop, lloq=5.0, random_seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = load_dataset(sim.data)
    spec = load_spec("liu2021").replace(iiv={"blocks": []})
    return data, spec


#: How far (on the log scale) a method's posterior median of a typical value may land from the
#: truth on 16 patients: the population values of such a small study are uncertain (posterior
#: SD 0.05-0.3 on the log scale under NUTS), so the tolerance is about 3 NUTS SDs.
LOG_TOLERANCE = {"beta": 0.3, "T1": 0.3, "alpha": 0.5, "C0": 0.9}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "options"),
    [("advi", None), ("pathfinder", None), ("laplace", None)],
)
def test_approximate_fit_recovers_the_typical_values(small_simulation, tmp_path, method, options):
    from bayes_cart.analysis.summary import population_summary
    from bayes_cart.inference.io import load_fit, save_fit
    from bayes_cart.inference.sampling import fit

    data, spec = small_simulation
    result = fit(
        data, spec, method=method, method_options=options, draws=250, prior_draws=0, random_seed=1
    )
    post = result.idata.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1000
    assert post["beta_i"].dims == ("chain", "draw", "patient")
    assert "log_dv" in result.idata.posterior_predictive
    assert result.idata.log_likelihood["log_dv"].shape[-1] == data.n_observations
    assert result.settings["method"] == method and result.diagnostics.method == method
    # the approximation ran in non-centred coordinates, and the fit carries that spec
    assert result.spec.doc.sampling.centered == () and spec.doc.sampling.centered != ()
    if method == "laplace":  # a finite mode exists there: the optimiser converges
        assert result.diagnostics.passed, result.diagnostics.approximation
    table = population_summary(result.idata).set_index("parameter")
    for name, tol in LOG_TOLERANCE.items():
        assert abs(np.log(table.loc[name, "q50"] / TYPICAL[name])) < tol, (name, table.loc[name])
    back = load_fit(save_fit(result, tmp_path / "fit.nc"))
    assert back.settings["method"] == method
    np.testing.assert_allclose(back.idata.posterior["beta"], post["beta"])
