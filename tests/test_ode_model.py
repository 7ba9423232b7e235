"""The JAX solver routes inside the PyMC model agree with the closed-form model.

The model built with ``solver="ode"`` wraps the batched diffrax solve as a PyTensor op
(:mod:`bayes_cart.kinetics.engines.pytensor_op`, sampling tolerances ``rtol=1e-6``); with
``solver="linear"`` the op is the matrix-exponential integrator of
:mod:`bayes_cart.kinetics.engines.linear`. Their log density and gradient, compiled with JAX as
nutpie-jax does, must match the closed-form model at random points of the unconstrained space --
including a point where the distribution phase would end after the peak (T0 > T1), where every
route cuts it at T1.
"""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymc.sampling.jax import get_jaxified_logp
from pytensor.graph.traversal import applys_between
from pytensor.link.jax.ops import JAXOp

import bayes_cart.inference.sampling as sampling
from bayes_cart.example import load_example
from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.engines.diffrax_ode import make_batched_log_total
from bayes_cart.kinetics.engines.linear import make_linear_log_total
from bayes_cart.kinetics.engines.pytensor_op import MCMC_OPTIONS, ode_log_total
from bayes_cart.model.build import build_model
from bayes_cart.model.spec import load_spec, spec_from_dict

LIU = get_kinetics("liu2021")
NAMES = LIU.parameters


@pytest.fixture(scope="module")
def dp_spec():
    """liu2021 with a distribution phase for the DLBCL trial."""
    raw = json.loads(load_spec("liu2021").text)
    raw["distribution_phase"]["enabled_if"] = "TRIAL == 'DLBCL'"
    return spec_from_dict(raw, source="liu2021 + DLBCL distribution phase")


@pytest.fixture(scope="module")
def eight_patients():
    """Three DLBCL patients (distribution phase) and five from other trials."""
    ds = load_example()
    dlbcl = [i for i in ds.patient_ids if i.startswith("DLBCL")][:3]
    others = [i for i in ds.patient_ids if not i.startswith("DLBCL")][::40][:5]
    return ds.subset(dlbcl + others)


def value_and_grad(model):
    """The model's log density and gradient as one jitted JAX function (as nutpie-jax)."""
    logp = get_jaxified_logp(model)
    return jax.jit(jax.value_and_grad(lambda xs: logp(xs)))


# solver -> relative tolerance on the log density and its gradient (diffrax at rtol 1e-6)
ROUTE_RTOL = {"ode": 1e-6, "linear": 1e-9}


@pytest.fixture(scope="module")
def closed_form(dp_spec, eight_patients):
    """The closed-form model and its jitted log density and gradient, shared by both routes."""
    model = build_model(eight_patients, dp_spec)
    return model, value_and_grad(model)


@pytest.mark.parametrize("solver", ["ode", "linear"])
def test_ode_model_matches_closed_form(dp_spec, eight_patients, closed_form, solver) -> None:
    rtol = ROUTE_RTOL[solver]
    cf_model, f_cf = closed_form
    ode_model = build_model(eight_patients, dp_spec, solver=solver)
    md = ode_model.bayes_cart_data
    assert md.distribution_mask.sum() == 3
    # the ODE model really goes through the JAX op, the closed-form one does not
    ops = {
        name: [
            node.op
            for node in applys_between(m.value_vars, [m.logp()])
            if isinstance(node.op, JAXOp)
        ]
        for name, m in (("cf", cf_model), ("ode", ode_model))
    }
    assert not ops["cf"] and len(ops["ode"]) == 1

    names = [v.name for v in ode_model.value_vars]
    assert names == [v.name for v in cf_model.value_vars]
    assert "log_T0" in names
    start = ode_model.initial_point(0)
    rng = np.random.default_rng(2024)
    points = []
    for j in range(5):
        point = {n: start[n] + rng.normal(0.0, 0.3, np.shape(start[n])) for n in names}
        if j == 0:
            # typical T0 of 60 days: every DLBCL patient's T0 is beyond its T1
            point["log_T0"] = np.asarray(np.log(60.0))
        points.append(point)

    f_ode = value_and_grad(ode_model)
    for j, point in enumerate(points):
        x = [jnp.asarray(point[n]) for n in names]
        v_cf, g_cf = f_cf(x)
        v_ode, g_ode = f_ode(x)
        assert np.isfinite(float(v_cf))
        assert float(v_ode) == pytest.approx(float(v_cf), rel=rtol), f"point {j}"
        g_cf = np.concatenate([np.ravel(g) for g in g_cf])
        g_ode = np.concatenate([np.ravel(g) for g in g_ode])
        np.testing.assert_allclose(
            g_ode, g_cf, rtol=rtol, atol=rtol * np.abs(g_cf).max(), err_msg=f"point {j}"
        )


@pytest.mark.parametrize("solver", ["ode", "linear"])
def test_distribution_phase_after_peak_is_cut_at_t1(solver) -> None:
    """T0 > T1: distribution up to T1, no expansion, contraction from T1 -- in both routes."""
    patients = [
        dict(C0=40.0, k=0.3, T0=15.0, beta=0.5, T1=9.0, alpha=0.1, rM=0.01, deltaM=0.004),
        dict(C0=5.0, k=0.5, T0=2.0, beta=0.4, T1=11.0, alpha=0.15, rM=0.01, deltaM=0.005),
        dict(C0=8.0, k=1.2, T0=30.0, beta=0.9, T1=6.0, alpha=0.3, rM=0.05, deltaM=0.02),
    ]
    for p in patients:
        p["deltaE"] = LIU.defaults["deltaE"]
    times = np.array([0.5, 3.0, 8.0, 10.0, 14.0, 20.0, 45.0, 120.0, 300.0])
    t_obs = np.tile(times, len(patients))
    patient_idx = np.repeat(np.arange(len(patients)), times.size)
    params = {name: jnp.asarray([p[name] for p in patients]) for name in NAMES}
    w = np.random.default_rng(5).uniform(0.5, 1.5, t_obs.size)

    def closed_form(q):
        per_obs = {k: v[patient_idx] for k, v in q.items()}
        return LIU.solve(t_obs, per_obs, xp=jnp)["log_total"]

    if solver == "ode":
        batched = make_batched_log_total(LIU, **MCMC_OPTIONS)  # as inside the model
    else:
        batched = make_linear_log_total(LIU)

    def ode(q):
        return batched(t_obs, patient_idx, q)

    ref, cf_vjp = jax.vjp(closed_form, params)
    out, ode_vjp = jax.vjp(ode, params)
    atol = 2e-6 if solver == "ode" else 1e-11
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=atol)
    # before T1 only the distribution phase acts for the first patient: log C0 - k t
    first = (patient_idx == 0) & (t_obs < 9.0)
    np.testing.assert_allclose(ref[first], np.log(40.0) - 0.3 * t_obs[first], rtol=1e-12)

    (g_ref,) = cf_vjp(jnp.asarray(w))
    (g_ode,) = ode_vjp(jnp.asarray(w))
    for name in NAMES:
        scale = max(float(jnp.abs(g_ref[name]).max()), 1e-3)
        np.testing.assert_allclose(
            np.asarray(g_ode[name]),
            np.asarray(g_ref[name]),
            rtol=1e-5 if solver == "ode" else 1e-9,
            atol=(1e-6 if solver == "ode" else 1e-10) * scale,
            err_msg=name,
        )
    # T0 beyond the peak has no influence, and there is no expansion phase
    for i in (0, 2):
        assert float(g_ode["T0"][i]) == 0.0
        assert abs(float(g_ode["beta"][i])) < 1e-9


def test_ode_log_total_checks_its_inputs() -> None:
    from types import SimpleNamespace

    md = SimpleNamespace(time=np.array([1.0, 5.0]), patient_index=np.array([0, 1]), n_patients=2)
    ones = np.ones(2)
    values = dict(C0=ones, beta=0.3 * ones, T1=10 * ones, alpha=0.1 * ones, rM=0.01 * ones)
    with pytest.raises(KeyError, match=r"missing parameter\(s\) \['deltaM'\]"):
        ode_log_total(LIU, md, values)
    with pytest.raises(KeyError, match=r"no parameter\(s\) \['Emax'\]"):
        ode_log_total(LIU, md, dict(values, deltaM=ones, Emax=ones))
    with pytest.raises(ValueError, match="stein2019.*no ODE system"):
        ode_log_total(get_kinetics("stein2019"), md, {})
    bad = SimpleNamespace(time=md.time, patient_index=np.array([0, 2]), n_patients=2)
    with pytest.raises(ValueError, match=r"patient_index must lie in 0\.\.1"):
        ode_log_total(LIU, bad, dict(values, deltaM=ones))
    # a scalar is broadcast to every patient; the result has one entry per observation
    mu = ode_log_total(LIU, md, dict(values, deltaM=0.005, C0=2.0))
    assert mu.type.shape == (2,) and mu.dtype == "float64"
    (node,) = [n for n in applys_between([], [mu]) if isinstance(n.op, JAXOp)]
    assert [inp.type.shape for inp in node.inputs] == [(2,)] * len(NAMES)
    assert MCMC_OPTIONS["rtol"] == 1e-6


class _Stop(Exception):
    pass


def test_fit_checks_solver_and_warns_for_slow_backends(
    monkeypatch, dp_spec, eight_patients
) -> None:
    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(sampling, "build_model", stop)
    monkeypatch.setattr(sampling, "prepare_model_data", stop)
    with pytest.raises(ValueError, match="unknown solver 'rk4'; use one of"):
        sampling.fit(eight_patients, dp_spec, solver="rk4")
    for solver in ("ode", "linear"):
        assert sampling.resolve_sampler("auto", solver) == "nutpie-jax"
        with pytest.warns(UserWarning, match="sampler='nutpie'.*use sampler='nutpie-jax'"):
            with pytest.raises(_Stop):
                sampling.fit(eight_patients, dp_spec, sampler="nutpie", solver=solver)
        for sampler in sampling.ODE_SAMPLERS:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # the JAX samplers do not warn
                with pytest.raises(_Stop):
                    sampling.fit(eight_patients, dp_spec, sampler=sampler, solver=solver)
