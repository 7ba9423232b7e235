"""``sampler="auto"`` picks the backend that suits the kinetic solver the model was built with.

Nothing is sampled here: the compile / sample step is replaced by a stub that records which
backend it was asked for and stops.
"""

from __future__ import annotations

import pymc as pm
import pytest

from bayes_cart.example import load_example
from bayes_cart.inference import sampling
from bayes_cart.model.build import build_model
from bayes_cart.model.spec import load_spec


class _Stop(Exception):
    """Raised by the stubs once the backend is known."""


@pytest.fixture(scope="module")
def two():
    ds = load_example()
    ids = [i for i in ds.patient_ids if i.startswith("DLBCL")][:2]
    return ds.subset(ids)


@pytest.fixture
def compiled_for(monkeypatch) -> list[str]:
    """The backends ``_compile_nutpie`` is called with (it then stops the run)."""
    seen: list[str] = []

    def stub(model, sampler):
        seen.append(sampler)
        raise _Stop

    monkeypatch.setattr(sampling, "_compile_nutpie", stub)
    return seen


@pytest.mark.parametrize(
    ("sampler", "solver", "expected"),
    [
        ("auto", "closed_form", "nutpie"),
        ("auto", "linear", "nutpie-jax"),
        ("auto", "ode", "nutpie-jax"),
        ("nutpie", "ode", "nutpie"),  # an explicit choice is kept (fit warns that it is slow)
        ("pymc", "linear", "pymc"),
        ("numpyro", "closed_form", "numpyro"),
    ],
)
def test_resolve_sampler_follows_the_solver(sampler, solver, expected):
    assert sampling.resolve_sampler(sampler, solver) == expected


def test_resolve_sampler_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown sampler 'stan'"):
        sampling.resolve_sampler("stan", "closed_form")
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        sampling.resolve_sampler("auto", "rk4")


@pytest.mark.parametrize("solver", ["closed_form", "linear"])
def test_build_model_records_its_solver(two, solver):
    model = build_model(two, load_spec("liu2021"), solver=solver)
    assert model.bayes_cart_solver == solver


@pytest.mark.parametrize(
    ("solver", "expected"), [("closed_form", "nutpie"), ("linear", "nutpie-jax")]
)
def test_sample_posterior_auto_uses_the_models_solver(two, compiled_for, solver, expected):
    model = build_model(two, load_spec("liu2021"), solver=solver)
    with pytest.raises(_Stop):
        sampling.sample_posterior(model, chains=1, tune=5, draws=5)
    assert compiled_for == [expected]


def test_sample_posterior_solver_argument_and_plain_models(compiled_for):
    with pm.Model() as plain:  # not built by bayes_cart: no solver recorded, the closed form
        pm.Normal("x")
    with pytest.raises(_Stop):
        sampling.sample_posterior(plain, chains=1, tune=5, draws=5)
    plain.bayes_cart_solver = "ode"
    with pytest.raises(_Stop):
        sampling.sample_posterior(plain, chains=1, tune=5, draws=5)
    with pytest.raises(_Stop):  # an explicit solver wins over the model's
        sampling.sample_posterior(plain, solver="closed_form", chains=1, tune=5, draws=5)
    assert compiled_for == ["nutpie", "nutpie-jax", "nutpie"]


@pytest.mark.parametrize(
    ("solver", "expected"), [("closed_form", "nutpie"), ("linear", "nutpie-jax")]
)
def test_fit_resolves_auto_with_its_solver(two, monkeypatch, solver, expected):
    seen: list[tuple[str, str, str]] = []

    def stub(model, *, sampler, solver=None, **kwargs):
        seen.append((sampler, solver, model.bayes_cart_solver))
        raise _Stop

    monkeypatch.setattr(sampling, "sample_posterior", stub)
    with pytest.raises(_Stop):
        sampling.fit(two, load_spec("liu2021"), solver=solver, chains=1, tune=5, draws=5)
    assert seen == [(expected, solver, solver)]
