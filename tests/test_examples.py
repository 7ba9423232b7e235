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


def test_custom_linear_structure_solvers_agree_and_fit_runs() -> None:
    module = _load("custom_linear_structure")
    module.register()
    assert module.compare_solvers() < 1e-5  # diffrax at rtol 1e-8 against matrix exponentials
    summary = module.main(["--patients", "5", *TINY])
    assert "rE" in set(summary["parameter"])
