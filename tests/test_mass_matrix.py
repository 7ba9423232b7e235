"""nutpie's low-rank modified mass matrix as a fit option (``fit(low_rank=True)``)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from bayes_cart.example import load_example
from bayes_cart.inference.sampling import fit, sample_posterior
from bayes_cart.model.spec import load_spec


def test_low_rank_follows_one_collective_direction():
    """A Gaussian with one long direction shared by all 20 coordinates (SD 5 against 0.1):
    the diagonal mass matrix cannot follow it, the low-rank one can; nutpie reports the
    eigenvalues it kept only in the low-rank run, and the trajectories are shorter."""
    d = 20
    v = np.ones(d) / np.sqrt(d)
    cov = 0.01 * np.eye(d) + 25.0 * np.outer(v, v)
    with pm.Model() as model:
        pm.MvNormal("x", np.zeros(d), cov=cov)
    steps = {}
    for low_rank in (False, True):
        idata, _ = sample_posterior(
            model,
            chains=2,
            tune=400,
            draws=200,
            random_seed=1,
            low_rank=low_rank,
            max_extensions=0,
            retry_target_accept=None,
        )
        stats = idata.sample_stats
        assert ("num_eigenvalues" in stats) == low_rank
        steps[low_rank] = float(stats["n_steps"].mean())
        # the long direction is sampled either way: its variance is right within MC error
        proj = idata.posterior["x"].values.reshape(-1, d) @ v
        assert np.var(proj) == pytest.approx(25.0, rel=0.5)
    assert steps[True] < 0.8 * steps[False]


def test_low_rank_needs_a_nutpie_sampler():
    ds = load_example()
    with pytest.raises(ValueError, match="low-rank mass matrix needs a nutpie sampler"):
        fit(ds.subset(ds.patient_ids[:3]), load_spec("liu2021"), sampler="pymc", low_rank=True)


def test_cli_low_rank_with_pymc_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from bayes_cart.cli import app
    from bayes_cart.example import example_data_path

    out = tmp_path / "fit"
    res = CliRunner().invoke(
        app,
        ["fit", str(example_data_path()), "--model", "liu2021", "--out", str(out)]
        + ["--sampler", "pymc", "--low-rank", "--draws", "10", "--tune", "10"],
    )
    assert res.exit_code == 1, res.output
    assert "low-rank mass matrix needs a nutpie sampler" in res.output
    assert "Traceback" not in res.output
    assert not (out / "fit.nc").exists()
