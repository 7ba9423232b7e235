"""The prediction layer predicts what the PyMC graph computes, with the fit's own solver."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import checks_simulation

from bayes_cart.data.dataset import load_dataset
from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.build import build_model
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.predict import (
    curve_states,
    draw_index,
    fit_solver,
    predict_at_observations,
    predict_curves,
)


@pytest.fixture(scope="module")
def small_data():
    sim = checks_simulation(n_patients=12, random_seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(sim.data)


def _graph_and_numpy(dataset, spec_name: str, solver: str, seed: int):
    """Elementwise log-likelihood from the graph, and from numpy predictions, at one point."""
    spec = load_spec(spec_name)
    md = prepare_model_data(dataset, spec)
    model = build_model(dataset, spec, model_data=md, solver=solver)
    kin = get_kinetics(spec.kinetics)
    rng = np.random.default_rng(seed)
    point = {
        k: v + rng.normal(0.0, 0.2, size=np.shape(v)) for k, v in model.initial_point().items()
    }
    stored = [n for n in kin.parameters if f"{n}_i" in model.named_vars]
    # the deterministics as functions of the value variables (not of fresh random draws)
    outs = model.replace_rvs_by_values([model[f"{n}_i"] for n in stored] + [model["sigma"]])
    values = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(point)
    params = {n: np.asarray(v)[None, :] for n, v in zip(stored, values[:-1], strict=True)}
    sigma = float(values[-1])
    logp_fn = model.compile_fn(
        model.logp(vars=[model["log_dv"]], sum=False),
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    graph = np.asarray(logp_fn(point)[0])
    mu = predict_at_observations(spec.kinetics, params, md.patient_index, md.time, solver=solver)[0]
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    lim = np.nan_to_num(md.log_limit, nan=0.0)
    numpy_ll = censored_loglik(md.log_dv, mu, sigma, index, lim, xp=np)
    return graph, numpy_ll, md


@pytest.mark.parametrize("solver", ["closed_form", "linear"])
def test_numpy_predictions_equal_the_graph(small_data, solver: str) -> None:
    """On the same point, numpy IPRED gives the graph's pointwise log-likelihood to 1e-8."""
    graph, numpy_ll, md = _graph_and_numpy(small_data, "liu2021", solver, seed=3)
    assert md.n_censored > 0  # the censored (M3) terms are compared too
    assert graph.shape == numpy_ll.shape == (md.n_obs,)
    np.testing.assert_allclose(numpy_ll, graph, rtol=1e-8, atol=1e-8)


def test_curves_agree_across_routes() -> None:
    """Grids, per-patient grids and every state agree between closed form and the routes."""
    rng = np.random.default_rng(5)
    params = {
        "C0": rng.lognormal(np.log(20.0), 0.3, (3, 4)),
        "beta": rng.lognormal(np.log(0.4), 0.2, (3, 4)),
        "T1": rng.lognormal(np.log(12.0), 0.2, (3, 4)),
        "alpha": rng.lognormal(np.log(0.12), 0.2, (3, 4)),
        "rM": rng.lognormal(np.log(0.002), 0.2, (3, 4)),
        "deltaM": rng.lognormal(np.log(0.006), 0.2, (3, 4)),
    }
    grid = np.sort(rng.uniform(0.0, 300.0, (4, 9)), axis=1)
    closed = predict_curves("liu2021", params, grid)
    for solver, rtol in (("linear", 1e-9), ("ode", 1e-5)):
        routed = predict_curves("liu2021", params, grid, solver=solver)
        assert set(routed) == set(closed) == set(curve_states("liu2021"))
        finite = np.isfinite(closed["log_M"])
        np.testing.assert_allclose(routed["log_total"], closed["log_total"], rtol=rtol)
        np.testing.assert_allclose(routed["log_M"][finite], closed["log_M"][finite], rtol=rtol)


def test_fit_solver_defaults_to_closed_form() -> None:
    class Old:
        settings: dict = {}

    class New:
        settings = {"solver": "linear"}

    assert fit_solver(Old()) == "closed_form" and fit_solver(New()) == "linear"


def test_draw_index_rules() -> None:
    rng = np.random.default_rng(0)
    assert draw_index(5, None, rng).tolist() == [0, 1, 2, 3, 4]
    assert draw_index(5, 9, rng).tolist() == [0, 1, 2, 3, 4]  # all, once
    picked = draw_index(50, 10, rng)
    assert len(np.unique(picked)) == 10 and np.all(np.diff(picked) > 0)
    assert len(draw_index(3, 8, rng, replace_if_more=True)) == 8


def test_the_fit_file_keeps_the_solver_and_the_settings(tmp_path) -> None:
    """settings round-trip through fit.nc; a file without them reads as a closed-form fit."""
    import dataclasses

    from conftest import point_mass_fit

    from bayes_cart.inference.io import load_fit, save_fit

    fit = point_mass_fit(checks_simulation(n_patients=6, random_seed=4), n_draws=5)
    settings = {"solver": "linear", "sampler": "nutpie-jax", "chains": 2, "random_seed": 7}
    save_fit(dataclasses.replace(fit, settings=settings), tmp_path / "fit.nc")
    loaded = load_fit(tmp_path / "fit.nc")
    # a file without a method (as from before) reads as a NUTS fit
    assert loaded.settings == {**settings, "method": "nuts"} and fit_solver(loaded) == "linear"
    save_fit(fit, tmp_path / "old.nc")  # no settings recorded (as files from before)
    assert fit_solver(load_fit(tmp_path / "old.nc")) == "closed_form"
