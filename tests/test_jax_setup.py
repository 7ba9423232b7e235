"""JAX is configured in one place: 64-bit floats and bayes_cart's persistent compile cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_cart.jax_setup import jax_cache_dir

PROBE = """
import json, jax, numpy as np
from bayes_cart.kinetics import get_kinetics
# a JAX route configures JAX when it is first used
get_kinetics("liu2021").solve(np.array([1.0, 20.0]), dict(C0=1.0, beta=0.5, T1=10.0,
    alpha=0.1, rM=0.01, deltaM=0.001), solver="linear")
print(json.dumps({"x64": jax.config.jax_enable_x64,
                  "cache": jax.config.jax_compilation_cache_dir}))
"""

IMPORT_ONLY = """
import json, jax
import bayes_cart, bayes_cart.kinetics
import bayes_cart.kinetics.engines.diffrax_ode, bayes_cart.kinetics.engines.linear
print(json.dumps({"x64": jax.config.jax_enable_x64}))
"""


def _probe(env_overrides: dict[str, str], code: str = PROBE) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAYES_CART_JAX", "JAX_"))}
    env.update(env_overrides)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BAYES_CART_JAX_CACHE", str(tmp_path / "c"))
    assert jax_cache_dir() == tmp_path / "c"
    for off in ("off", "OFF", "0", "none"):
        monkeypatch.setenv("BAYES_CART_JAX_CACHE", off)
        assert jax_cache_dir() is None
    monkeypatch.delenv("BAYES_CART_JAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jax_cache_dir() == tmp_path / "xdg" / "bayes_cart" / "jax"


@pytest.mark.parametrize("setting", ["dir", "off", "users_own"])
def test_importing_a_jax_solver_configures_jax(tmp_path, setting):
    env = {"BAYES_CART_JAX_CACHE": str(tmp_path / "cache")}
    if setting == "off":
        env["BAYES_CART_JAX_CACHE"] = "off"
    if setting == "users_own":
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "mine")
    result = _probe(env)
    assert result["x64"] is True
    expected = {
        "dir": str(tmp_path / "cache"),
        "off": None,
        "users_own": str(tmp_path / "mine"),  # JAX reads it itself; bayes_cart leaves it
    }[setting]
    assert result["cache"] == expected
    assert (tmp_path / "cache").is_dir() == (setting == "dir")
    assert Path(tmp_path).exists()


def test_importing_leaves_jax_alone(tmp_path: Path) -> None:
    """Importing bayes_cart or its JAX engines does not switch JAX to 64 bits; solving does."""
    cache = tmp_path / "cache"
    assert _probe({"BAYES_CART_JAX_CACHE": str(cache)}, IMPORT_ONLY)["x64"] is False
    assert _probe({"BAYES_CART_JAX_CACHE": str(cache)})["x64"] is True
