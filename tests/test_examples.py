"""Every script in ``examples/`` runs end to end with tiny draw counts.

The scripts are loaded from their files and their ``main`` called with size flags, as a user
would run them; the assertions check what each script promises to report (tiny chains cannot
check recovery: that is ``tests/test_recovery.py``).

Each script compiles and samples its own model, so every test that runs one is marked
``slow`` (the fast tier's 5-minute budget; ``.ci/run`` runs the slow tier after it): the
simulation-estimation script (a Liu fit with the default sampler, nutpie on Numba), the
custom-structure script (the linear solver, from the fit through every analysis to the
report) and the responder contrast (its contrasts are also tested on chosen draws in
``test_contrasts.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--chains", "2", "--tune", "40", "--draws", "30"]  # R-hat needs two chains


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_covered_here() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert scripts == {"simulation_estimation", "responder_contrast", "custom_linear_structure"}


@pytest.mark.slow  # a real fit: see the module docstring
def test_simulation_estimation_reports_every_true_quantity(capsys) -> None:
    module = _load("simulation_estimation")
    table = module.main(["--patients", "10", *TINY])
    lines = capsys.readouterr().out.strip().splitlines()
    # the study it says it simulated is the one simulate_study draws (11 samples per patient)
    data = module.simulate_study(10, 2021).data
    n_blq = int((data["CENS"] == 1).sum())
    assert 0 < n_blq < 110
    assert lines[0] == f"simulated 10 patients, 110 samples, {n_blq} below the LLOQ"
    # every simulated population quantity has its posterior row (no name silently missing)
    truth = module.true_values()
    assert set(table["parameter"]) == set(truth)
    assert dict(zip(table["parameter"], table["truth"], strict=True)) == truth
    assert (table["q5"] <= table["q50"]).all() and (table["q50"] <= table["q95"]).all()
    inside = (table["q5"] <= table["truth"]) & (table["truth"] <= table["q95"])
    assert (table["inside_90"] == inside).all()
    assert lines[-1].startswith(f"{int(inside.sum())} of {len(table)} truths inside their 90%")
    # numbers in range: positive quantities positive, a correlation in [-1, 1], and the
    # well-informed typical values and residual SD within a factor 3 of their truth
    est = table.set_index("parameter")
    positive = [p for p in truth if ":" not in p and not p.startswith("corr_")]
    assert (est.loc[positive, "q5"] > 0).all()
    assert -1 <= est.loc["corr_beta_T1", "q5"] and est.loc["corr_beta_T1", "q95"] <= 1
    for name in ("C0", "beta", "T1", "alpha", "sigma"):
        assert truth[name] / 3 < est.loc[name, "q50"] < 3 * truth[name], name
    # the printed table has a row per quantity
    assert all(any(line.split()[0] == p for line in lines[1:-1]) for p in truth)


@pytest.mark.slow  # a real fit: see the module docstring
def test_responder_contrast_compares_parameters_and_metrics(capsys) -> None:
    table = _load("responder_contrast").main(["--per-trial", "2", *TINY])
    printed = capsys.readouterr().out
    assert set(table["reference"]) == {"PD/NR"} and set(table["covariate"]) == {"RESPONSE"}
    # the first two patients of each trial: responders, and the pediatric ALL trial's
    # patients of unknown response (their own level)
    assert set(table["group"]) == {"CR/PR", "unknown"}
    assert (table["n_draws"] == 2 * 30).all()
    params = table[table["kind"] == "parameter"].set_index(["quantity", "group"])
    metrics = table[table["kind"] == "metric"].set_index(["quantity", "group"])
    assert set(params.index.get_level_values(0)) == {"C0", "beta", "T1", "alpha", "rM", "deltaM"}
    assert {"Cmax", "Tmax", "AUC_0_28", "doubling_time"} <= set(metrics.index.get_level_values(0))
    # RESPONSE enters beta and alpha only: every other parameter's ratio is exactly 1
    in_model = params[params["in_model"].astype(bool)]
    assert set(in_model.index.get_level_values(0)) == {"beta", "alpha"}
    assert (params.loc[~params["in_model"].astype(bool), "ratio_q50"] == 1.0).all()
    # ratios: positive, ordered, in a plausible range; probabilities are probabilities
    effects = pd.concat([in_model, metrics])
    assert (effects["ratio_q5"] > 0).all()
    assert (effects["ratio_q5"] <= effects["ratio_q50"]).all()
    assert (effects["ratio_q50"] <= effects["ratio_q95"]).all()
    assert effects["p_direction"].between(0.5, 1).all() and effects["p_rope"].between(0, 1).all()
    for group in ("CR/PR", "unknown"):
        beta = params.loc[("beta", group), "ratio_q50"]
        assert 0.2 < beta < 5
        # the doubling time ln2/beta: the reciprocal ratio; Tmax = T1, which RESPONSE misses
        assert metrics.loc[("doubling_time", group), "ratio_q50"] == pytest.approx(
            1 / beta, rel=0.02
        )
        assert metrics.loc[("Tmax", group), "ratio_q50"] == pytest.approx(1.0)
    # what it prints is that table
    for quantity in set(table["quantity"]):
        assert quantity in printed, quantity
    assert "CR/PR" in printed and "PD/NR" in printed


@pytest.mark.slow  # a real fit: see the module docstring
def test_custom_linear_structure_goes_from_fit_to_report(tmp_path: Path) -> None:
    """A structure without a closed form: fit, GOF, VPC, CK metrics and report, on its solver."""
    module = _load("custom_linear_structure")
    module.register()
    assert module.compare_solvers() < 1e-5  # diffrax at rtol 1e-8 against matrix exponentials
    report = tmp_path / "reversion.html"
    summary, out = module.main(["--patients", "5", *TINY, "--report", str(report)])
    assert "rE" in set(summary["parameter"])
    gof = out["gof"]
    assert np.isfinite(gof["log_ipred"]).all() and np.isfinite(gof["log_pred"]).all()
    # the individual curves follow the data: log residuals of a few SDs at most
    assert gof["IWRES"].abs().median() < 3
    cmax = out["metrics"].query("metric == 'Cmax'")
    tmax = out["metrics"].query("metric == 'Tmax'")
    assert len(cmax) == 5 and (cmax["q50"] > 0).all()
    assert ((tmax["q50"] > 0) & (tmax["q50"] < 100)).all()  # the peak lies in the expansion
    assert (out["vpc"].table["n_obs"] > 0).all() and out["vpc"].table["blq_observed"].notna().all()
    html = report.read_text()
    assert "could not compute" not in html
    assert "<dt>kinetic solver</dt><dd>linear</dd>" in html
