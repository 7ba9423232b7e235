"""The HTML report: self-contained, every section computed, numbers as documented, CLI."""

from __future__ import annotations

import dataclasses
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
BETA = 0.45
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
    from bayes_cart.likelihood import CensoringIndex, censored_loglik
    from bayes_cart.model_data import prepare_model_data

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


import time
from bayes_cart.report import build_report
def test_prof(report_fit):
    for kw in [dict(n_vpc_replicates=10, n_draws=50, n_virtual=50), dict(other_fits={"same": report_fit}, n_vpc_replicates=10, n_draws=50, n_virtual=50)]:
        t = time.time()
        r = build_report(report_fit, **kw)
        print("total", time.time() - t, [(s.key, round(s.seconds, 1)) for s in r.sections])
