"""Data text is printed literally by the CLI, never read as rich console markup (issue 12).

A covariate level, a column name or a file name such as ``[/site 2]`` or ``[bold]x`` is a
closing (or opening) rich markup tag; printed unescaped it raises ``MarkupError`` or is
swallowed from the output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bayes_cart.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
LEVEL = "[/site 2]"
OTHER = "[bold]x"
COLUMN = "[red]SITE"

DATA = (
    f"ID,TIME,DV,CENS,EVID,AMT,{COLUMN},ARM\n"
    f"1,0,.,0,1,5,{LEVEL},[/a]\n"
    f"1,1,50,0,0,.,{LEVEL},[/a]\n"
    f"1,7,5,0,0,.,{LEVEL},[/a]\n"
    f"1,28,0.5,0,0,.,{LEVEL},[/a]\n"
    f"2,0,.,0,1,5,{OTHER},[/a]\n"
    f"2,1,40,0,0,.,{OTHER},[/a]\n"
    f"2,7,8,0,0,.,{OTHER},[/a]\n"
    f"2,14,1,1,0,.,{OTHER},[/a]\n"
    f"2,9,1,0,2,.,{OTHER},[/a]\n"
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder whose path holds a rich closing tag (``.../[/site 2]``).

    Its sub-folder ``[`` lets the tests name files ``folder / "[/x].csv"``.
    """
    path = tmp_path / "[" / "site 2]"
    (path / "[").mkdir(parents=True)
    return path


@pytest.fixture
def data_file(folder: Path) -> Path:
    path = folder / "[bold]data.csv"
    path.write_text(DATA, encoding="utf-8")
    return path


def _flat(text: str) -> str:
    """The output with line breaks and box characters removed (a long path may wrap)."""
    return "".join(c for c in text if c not in "\n│┃ ")


def _ok(result, code: int = 0) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    return result.output


def test_validate_prints_levels_columns_and_file_names_literally(data_file):
    out = _ok(runner.invoke(app, ["validate", str(data_file)], env=WIDE))
    assert f"valid: {data_file}" in out
    assert LEVEL in out and OTHER in out and COLUMN in out
    assert "[/a] (2)" in out  # categorical level with its count


def test_validate_invalid_data_with_markup_in_values(folder):
    path = folder / "[/bad].csv"
    path.write_text(f"ID,TIME,DV,{COLUMN}\n[b]1,0,5,a\n[b]1,1,[/x],a\n", encoding="utf-8")
    out = _ok(runner.invoke(app, ["validate", str(path)], env=WIDE), code=1)
    assert f"invalid data: {path}" in out
    assert "'[/x]'" in out and "[b]1" in out


def test_validate_missing_file_and_bad_option_with_markup(folder):
    out = _ok(runner.invoke(app, ["validate", str(folder / "[/no].csv")], env=WIDE), code=2)
    assert "[/no].csv" in out
    path = folder / "ok.csv"
    path.write_text("ID,TIME,DV\n1,1,5\n", encoding="utf-8")
    out = _ok(
        runner.invoke(app, ["validate", str(path), "--time-unit", "[/fortnight]"], env=WIDE),
        code=2,
    )
    assert "[/fortnight]" in out


def test_nca_prints_group_levels_and_paths_literally(data_file, folder):
    table = folder / "[/out].csv"
    args = ["nca", str(data_file), "--by", COLUMN, "--out", str(table)]
    out = _ok(runner.invoke(app, args, env=WIDE))
    assert LEVEL in out and OTHER in out and COLUMN in out
    assert _flat(str(table)) in _flat(out)
    missing = _ok(runner.invoke(app, ["nca", str(data_file), "--by", "[/nope]"], env=WIDE), 2)
    assert "[/nope]" in missing
    gone = _ok(runner.invoke(app, ["nca", str(folder / "[/no].csv")], env=WIDE), code=2)
    assert "[/no].csv" in gone


def test_fit_prints_data_errors_and_file_names_literally(folder):
    missing = folder / "[/none].csv"
    args = ["fit", str(missing), "--out", str(folder / "o")]
    out = _ok(runner.invoke(app, args, env=WIDE), code=2)
    assert f"{missing}: no such file" in out
    bad = folder / "[bold]bad.csv"
    bad.write_text("ID,TIME,DV\n[/p1],-1,5\n", encoding="utf-8")
    out = _ok(runner.invoke(app, ["fit", str(bad), "--out", str(folder / "o")], env=WIDE), 1)
    assert "negative TIME" in out and "[/p1]" in out and "[bold]bad.csv" in out


def test_fit_spec_error_with_markup(data_file, folder):
    args = ["fit", str(data_file), "--out", str(folder / "o"), "--model", "[/nomodel]"]
    out = _ok(runner.invoke(app, args, env=WIDE), code=1)
    assert "[/nomodel]" in out


def test_simulate_prints_paths_and_design_errors_literally(folder, tmp_path):
    pop = tmp_path / "pop.json"
    pop.write_text(
        '{"typical": {"C0": 20, "beta": 0.4, "T1": 12, "alpha": 0.1, "rM": 0.002, '
        '"deltaM": 0.01}, "omega": {"beta": 0.2}, "sigma": 0.3}',
        encoding="utf-8",
    )
    design = folder / "[/design].csv"
    design.write_text(f"ID,TIME,{COLUMN}\n1,1,{LEVEL}\n1,7,{LEVEL}\n", encoding="utf-8")
    target = folder / "[/sim].csv"
    args = ["simulate", "-p", str(pop), "--design", str(design), "--out", str(target)]
    out = _ok(runner.invoke(app, args, env=WIDE))
    assert _flat(str(target)) in _flat(out)
    assert "[/sim]_truth.csv" in out
    gone = folder / "[/gone].csv"
    args = ["simulate", "-p", str(pop), "--design", str(gone), "--out", str(target)]
    assert "[/gone].csv" in _ok(runner.invoke(app, args, env=WIDE), code=2)


@pytest.fixture
def bracket_fit(analysis_data, analysis_spec, fake_fit_factory, folder):
    """A saved fake fit whose RESPONSE levels are rich markup tags."""
    import warnings

    import numpy as np

    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.errors import DataWarning
    from bayes_cart.inference.io import save_fit
    from bayes_cart.model.model_data import prepare_model_data

    _, sim = analysis_data
    frame = sim.data.copy()
    frame["RESPONSE"] = frame["RESPONSE"].replace({"CR/PR": LEVEL, "PD/NR": OTHER})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = load_dataset(frame)
    spec = analysis_spec.with_overrides(
        covariates={"beta": "RESPONSE", "alpha": ""}, reference={"RESPONSE": OTHER}
    )
    design = prepare_model_data(data, spec).design
    n = len(design.effect_names("beta"))
    post = {
        "C0": 20.0,
        "beta": 0.45,
        "T1": 11.0,
        "alpha": 0.15,
        "rM": 0.003,
        "deltaM": 0.01,
        "b_beta": np.full((200, n), 0.2),
        "u_trial_beta": np.zeros((200, 3)),
        "omega_trial_beta": 0.1,
        "sigma": 0.3,
    }
    fit = fake_fit_factory(data, spec, post, n_draws=200)
    return save_fit(fit, folder / "[/fit]" / "fit.nc")


def test_compare_prints_levels_literally(bracket_fit):
    args = ["compare", str(bracket_fit), "--by", "RESPONSE", "--param", "beta", "--no-metrics"]
    out = _ok(runner.invoke(app, args, env=WIDE))
    assert LEVEL in out and OTHER in out
    bad = _ok(runner.invoke(app, [*args[:3], "[/NOPE]"], env=WIDE), code=2)
    assert "[/NOPE]" in bad


def test_loo_and_vpc_print_file_names_literally(bracket_fit, folder):
    gone = folder / "[/gone].nc"
    out = _ok(runner.invoke(app, ["loo", str(bracket_fit), str(gone)], env=WIDE), code=2)
    assert "[/gone].nc" in out
    args = ["loo", str(bracket_fit), str(bracket_fit), "--names", "[/a],[bold]b"]
    out = _ok(runner.invoke(app, args, env=WIDE), code=1)  # no log-likelihood: refused
    assert "'[/a]': the fit has no pointwise log-likelihood" in out
    out = _ok(runner.invoke(app, ["vpc", str(gone), "--out", str(folder)], env=WIDE), code=2)
    assert "[/gone].nc" in out
