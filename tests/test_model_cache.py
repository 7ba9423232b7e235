"""The compiled-model cache: one compile per model structure, the same draws as a fresh compile.

The slow test compiles twice (about 20 s each): a fit whose compiled model came from the cache,
with another replicate's data swapped in, gives bitwise the draws of a fresh build and compile
of the same swappable model on that replicate with the same seed.
"""

from pathlib import Path

import numpy as np
import pytest

from bayes_cart.data.dataset import load_dataset
from bayes_cart.inference.model_cache import ModelCache
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.study.datasets import simulate_replicate
from bayes_cart.study.spec import load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _spec():
    return load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE"}, reference={"RESPONSE": "PD/NR"}
    )


@pytest.fixture(scope="module")
def replicates():
    study = load_study(STUDIES / "tiny_two_stage.toml")
    return [
        load_dataset(simulate_replicate(study, scenario, r).data)
        for scenario, r in (("effect", 0), ("null", 1))
    ]


def test_models_the_swap_does_not_cover_are_not_cached(replicates):
    """None (the fit compiles as always) before anything is built."""
    cache = ModelCache()
    spec = _spec()
    md = prepare_model_data(replicates[0], spec)
    assert cache.prepare(replicates[0], spec, md, solver="linear", sampler="nutpie-jax") is None
    assert cache.prepare(replicates[0], spec, md, solver="closed_form", sampler="pymc") is None
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


@pytest.mark.slow
def test_cached_fit_gives_the_draws_of_a_fresh_compile(replicates):
    from bayes_cart.inference.sampling import compile_nutpie, fit, sample_posterior
    from bayes_cart.model.build import build_model

    a, b = replicates
    spec = _spec()
    cache = ModelCache()
    settings = {"chains": 2, "tune": 60, "draws": 30, "random_seed": 5, "cores": 1}
    quick = {"prior_draws": 0, "predictive": False, "retry": False, "extend": False}
    fit_a = fit(a, spec, cache=cache, **settings, **quick)
    fit_b = fit(b, spec, cache=cache, **settings, **quick)
    assert (fit_a.timings["model_cache"], fit_b.timings["model_cache"]) == ("miss", "hit")
    assert (cache.misses, cache.hits) == (1, 1)
    assert fit_b.timings["compile_seconds"] < fit_a.timings["compile_seconds"] / 4
    # the draws are labelled with B's patients, and its model data are B's
    assert list(fit_b.idata.posterior["patient"].values) == list(b.patient_ids)
    assert fit_b.model_data.n_obs == len(b.observations)

    # a fresh build and compile of the same swappable model on B, same seed
    layout = next(iter(cache._entries.values())).layout
    md_b = prepare_model_data(b, spec)
    model = build_model(b, spec, model_data=md_b, swap=layout)
    idata, _ = sample_posterior(
        model,
        sampler="nutpie",
        compiled=compile_nutpie(model, "nutpie"),
        retry_target_accept=None,
        max_extensions=0,
        **settings,
    )
    for name in ("beta", "omega_beta", "b_beta", "sigma", "log_Cmax_i", "beta_i"):
        np.testing.assert_array_equal(
            fit_b.idata.posterior[name].values, idata.posterior[name].values
        )
    assert not np.array_equal(
        fit_a.idata.posterior["beta"].values, fit_b.idata.posterior["beta"].values
    )
