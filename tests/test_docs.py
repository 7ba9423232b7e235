"""The documentation builds cleanly and keeps up with the code (specs, commands, priors)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from bayes_cart.cli import app
from bayes_cart.model.spec import list_specs, load_spec

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))


def _commands() -> dict:
    """Registered sub-commands of the ``bayes-cart`` app (name -> click-style command)."""
    return dict(typer.main.get_command(app).commands)


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs-material is not installed (pip install -e '.[dev]')",
)
def test_mkdocs_strict_build(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "model" / "index.html").is_file()


def test_every_shipped_spec_is_documented() -> None:
    text = _docs_text()
    specs = list_specs()
    assert specs, "no shipped specs found"
    missing = [name for name in specs if f"`{name}`" not in text]
    assert not missing, f"specs in models/ not mentioned in docs/: {missing}"


def test_every_cli_command_and_option_is_documented() -> None:
    cli_page = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = _commands()
    assert {"validate", "nca", "simulate", "example", "fit"} <= set(commands)
    undocumented = [n for n in commands if f"## `bayes-cart {n}`" not in cli_page]
    assert not undocumented, f"commands without a section in docs/cli.md: {undocumented}"
    missing_options = []
    checked = 0
    for name, command in commands.items():
        section = cli_page.split(f"## `bayes-cart {name}`", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option" or param.name == "help":
                continue
            long = [o for o in param.opts if o.startswith("--")]
            checked += 1
            if long and f"`{long[0]}" not in section:
                missing_options.append(f"{name} {long[0]}")
    assert checked >= 20, f"only {checked} options found: the command introspection broke"
    assert not missing_options, f"options not described in docs/cli.md: {missing_options}"


def _prior_rows(text: str) -> dict[str, tuple[float, float, float, float]]:
    pattern = re.compile(
        r"^\| `(\w+)` \| LogNormal\(([\d.]+), ([\d.]+)\) \| [^|]+ \| ([\d.]+) - ([\d.]+)",
        re.MULTILINE,
    )
    return {m[1]: tuple(float(x) for x in m.groups()[1:]) for m in pattern.finditer(text)}


def test_prior_table_matches_the_liu2021_spec() -> None:
    rows = _prior_rows((DOCS / "model.md").read_text(encoding="utf-8"))
    spec = load_spec("liu2021")
    z95 = 1.6448536269514722
    estimated = {n: p for n, p in spec.parameters.items() if p.typical is not None}
    assert set(estimated) == set(rows), (set(estimated), set(rows))
    for name, param in estimated.items():
        median, sigma, lo, hi = rows[name]
        assert median == pytest.approx(param.typical.median), name
        assert sigma == pytest.approx(param.typical.sigma), name
        assert lo == pytest.approx(median * math.exp(-z95 * sigma), rel=0.01), name
        assert hi == pytest.approx(median * math.exp(z95 * sigma), rel=0.01), name
