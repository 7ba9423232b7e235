"""Trial effects centred on each trial's own mean (``sampling.centered_group = "mean"``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayes_cart.errors import SpecError
from bayes_cart.example import load_example
from bayes_cart.jax_setup import configure_jax
from bayes_cart.model.build import build_model, group_level_columns
from bayes_cart.model.spec import load_spec, spec_from_dict


@pytest.fixture(scope="module")
def small():
    ds = load_example()
    # two heme trials, the lymphoma trial and a solid trial: tumour type is a trial-level
    # covariate, response varies within trials
    ids = [i for i in ds.patient_ids if i.startswith(("DLBCL", "MM", "ALLP", "GBM"))][::4]
    return ds.subset(ids)


def _meta(**sampling):
    raw = json.loads(load_spec("liu2021_meta").text)
    raw["sampling"].update(sampling)
    return spec_from_dict(raw)


def _values(model, names, point):
    fn = model.compile_fn(
        model.replace_rvs_by_values([model[n] for n in names]),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=True,
    )
    return dict(zip(names, fn(point), strict=True))


def test_group_level_columns_finds_the_trial_level_covariates(small):
    """Tumour type is constant within every trial, response is not (its ``unknown`` level is:
    one trial recorded no response)."""
    model = build_model(small, _meta())
    md = model.bayes_cart_data
    X = md.design.matrices["alpha"]
    cols = group_level_columns(X.to_numpy(float), md.group_index, len(md.group_levels))
    found = {c for c, g in zip(X.columns, cols, strict=True) if g}
    assert {"TUMOR_TYPE[lymphoma]", "TUMOR_TYPE[solid]"} <= found
    assert not any(c.startswith("RESPONSE[CR") for c in found)  # varies within trials
    # by hand: a column is trial-level when it takes one value per trial
    per_trial = X.groupby(md.group_index).nunique().max(axis=0)
    assert found == set(per_trial.index[per_trial == 1])


@pytest.mark.parametrize("center_covariates", [False, True])
def test_group_mean_centring_is_the_same_model(small, center_covariates):
    """m_g = log p + x_g b_G + omega z_g: at corresponding points the joint log density of the
    group-mean coordinates plus the Jacobian (log omega per trial) equals the non-centred one,
    and the trial effects u_g and every individual value are the same."""
    m0 = build_model(small, _meta(center_covariates=center_covariates))
    m1 = build_model(small, _meta(center_covariates=center_covariates, centered_group="mean"))
    md = m0.bayes_cart_data
    rng = np.random.default_rng(11)
    p0 = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m0.initial_point().items()}
    p1 = {k: v for k, v in p0.items() if not k.startswith("z_trial_")}
    log_jac = 0.0
    names = ["u_trial_beta", "u_trial_alpha", "log_beta", "log_alpha"]
    at0 = _values(m0, names, p0)
    for label in ("beta", "alpha"):
        omega = np.exp(p0[f"omega_trial_{label}_log__"])
        X = md.design.matrices[label]
        trial_level = X.groupby(md.group_index).nunique().max(axis=0) == 1
        Xg = X.groupby(md.group_index).first().to_numpy(float) * trial_level.to_numpy()
        pred = at0[f"log_{label}"] + Xg @ p0[f"b_{label}"]
        p1[f"m_trial_{label}"] = pred + at0[f"u_trial_{label}"]
        log_jac += len(md.group_levels) * np.log(omega)
    assert set(p1) == set(m1.initial_point())
    # compiled by JAX (64-bit): the tests run PyTensor's Python ops (tests/conftest.py), whose
    # elementwise sum cannot take the more than 32 terms this graph adds in one op
    configure_jax()
    mode = "JAX"
    np.testing.assert_allclose(
        m1.compile_logp(mode=mode)(p1) + log_jac, m0.compile_logp(mode=mode)(p0), rtol=1e-10
    )
    check = ["u_trial_beta", "u_trial_alpha", "beta_i", "alpha_i", "C0_i", "T1_i"]
    a, b = _values(m0, check, p0), _values(m1, check, p1)
    for name in check:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-10, err_msg=name)


def test_group_mean_centring_without_covariates_centres_on_the_typical_value(small):
    """A trial-effect parameter without covariates: m_g ~ Normal(log p, omega)."""
    raw = json.loads(load_spec("liu2021_meta").text)
    raw["covariates"]["formulas"] = {}
    raw["sampling"]["centered_group"] = "mean"
    model = build_model(small, spec_from_dict(raw))
    point = model.initial_point()
    vals = _values(model, ["u_trial_beta", "log_beta"], point)
    np.testing.assert_allclose(
        vals["u_trial_beta"], point["m_trial_beta"] - vals["log_beta"], rtol=1e-12
    )


def test_group_mean_start_is_each_trials_median(small):
    """The data-informed start puts every trial's mean at its patients' median estimate."""
    from bayes_cart.model.initial_values import initial_values, starting_point

    spec = _meta(centered_group="mean")
    model = build_model(small, spec)
    md = model.bayes_cart_data
    init = initial_values(model, spec, md)
    logs = starting_point(spec, md)["logs"]["alpha"]
    assert init["m_trial_alpha"].shape == (len(md.group_levels),)
    for g in range(len(md.group_levels)):
        assert init["m_trial_alpha"][g] == pytest.approx(np.median(logs[md.group_index == g]))


def test_bad_centered_group_value_is_refused():
    with pytest.raises(SpecError, match="centered_group"):
        _meta(centered_group="sideways")
