"""Every script in ``examples/`` runs end to end with tiny draw counts.

The scripts are loaded from their files and their ``main`` called with size flags, as a user
would run them; the assertions check what each script promises to report (tiny chains cannot
check recovery: that is ``tests/test_recovery.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

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


def test_simulation_estimation_reports_every_true_quantity() -> None:
    module = _load("simulation_estimation")
    table = module.main(["--patients", "10", *TINY])
    # every simulated population quantity has its posterior row (no name silently missing)
    assert set(table["parameter"]) == set(module.true_values())
    assert (table["q5"] <= table["q50"]).all() and (table["q50"] <= table["q95"]).all()


def test_responder_contrast_compares_parameters_and_metrics() -> None:
    table = _load("responder_contrast").main(["--per-trial", "2", *TINY])
    text = table.to_string()
    for quantity in ("beta", "alpha", "Cmax", "CR/PR"):
        assert quantity in text
    assert np.isfinite(table.select_dtypes("number").to_numpy()).any()


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
