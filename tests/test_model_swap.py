"""A swappable model (``build_model(..., swap=layout)``) is the ordinary model of the same data.

Its observations are padded to fixed segments with rows of weight 0 and every per-dataset
array is ``pm.Data`` (:mod:`bayes_cart.model.swap`): the log density and its gradient must be
those of the unpadded model at any point, for every feature the swap covers, and setting
another dataset's data into it must give that dataset's model.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_cart.data.dataset import load_dataset
from bayes_cart.model.build import build_model, swap_data, swap_key
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.model.swap import SwapLayout, kind_counts, padded_observations, swap_problems
from bayes_cart.study.datasets import simulate_replicate
from bayes_cart.study.spec import load_study

FAST = "FAST_COMPILE"
STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _replicate(replicate: int, scenario: str = "effect") -> pd.DataFrame:
    """A replicate of the tiny study: 16 patients, BLQ samples, a stopping rule, a covariate."""
    study = load_study(STUDIES / "tiny_two_stage.toml")
    return simulate_replicate(study, scenario, replicate).data


@pytest.fixture(scope="module")
def replicates():
    return [load_dataset(_replicate(0)), load_dataset(_replicate(1, "null"))]


def _spec(**sampling):
    spec = load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE"}, reference={"RESPONSE": "PD/NR"}
    )
    if sampling:
        spec = spec.replace(sampling=sampling)
    return spec


def _density(model):
    """The joint log density and its gradient at a point: one FAST_COMPILE function.

    The terms are summed here (the Python backend cannot add 30 terms in one node).
    """
    terms = model.logp(sum=False)
    grads = pytensor.grad(model.logp(), model.value_vars)
    outputs = [t.sum() for t in terms] + [pt.concatenate([g.ravel() for g in grads])]
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore", mode=FAST)

    def evaluate(point):
        *values, grad = fn(point)
        return float(sum(np.sum(v) for v in values)), grad

    return evaluate


def _points(model, n=1, seed=0):
    """The model's initial point and n random points around it (unconstrained values)."""
    rng = np.random.default_rng(seed)
    ip = model.initial_point()
    out = [ip]
    for _ in range(n):
        out.append({k: v + rng.normal(0.0, 0.3, np.shape(v)) for k, v in ip.items()})
    return out


def _assert_same_density(plain, swapped, f1=None):
    f0, f1 = _density(plain), f1 or _density(swapped)
    for point in _points(plain):
        (lp0, g0), (lp1, g1) = f0(point), f1(point)
        assert lp1 == pytest.approx(lp0, abs=1e-10, rel=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "sampling",
    [
        pytest.param({}, marks=pytest.mark.slow),
        pytest.param({"centering": "partial", "center_covariates": True}, marks=pytest.mark.slow),
        pytest.param({"centering": "partial_dynamic"}, marks=pytest.mark.slow),
    ],
    ids=["default", "partial+centred-covariates", "partial_dynamic"],
)
def test_padded_model_has_the_density_and_gradient_of_the_unpadded_one(replicates, sampling):
    dataset = replicates[0]
    spec = _spec(**sampling)
    md = prepare_model_data(dataset, spec)
    counts = kind_counts(md)
    assert counts[1] > 0  # BLQ rows: the left-censored segment is used
    layout = SwapLayout.for_counts(counts)
    assert layout.n_obs > md.n_obs  # there is padding
    _assert_same_density(
        build_model(dataset, spec, model_data=md),
        build_model(dataset, spec, model_data=md, swap=layout),
    )


@pytest.mark.slow  # the Student-t CDF's gradient is slow in the Python backend
def test_student_t_and_interval_censoring_padded(replicates):
    """Every kind of row: quantified, left, interval (a LIMIT) and right-censored."""
    frame = replicates[0].observations
    raw = _replicate(0)
    raw["LIMIT"] = np.nan
    blq = np.flatnonzero(raw["CENS"].to_numpy() == 1)
    raw.loc[raw.index[blq[:3]], "LIMIT"] = 5.0  # interval-censored [5, LLOQ]
    quant = np.flatnonzero(raw["CENS"].to_numpy() == 0)
    raw.loc[raw.index[quant[:2]], "CENS"] = -1  # right-censored at DV
    dataset = load_dataset(raw)
    assert len(frame) == len(dataset.observations)
    spec = _spec().replace(error={"model": "student_t", "nu": {"dist": "Exponential", "lam": 0.1}})
    md = prepare_model_data(dataset, spec)
    counts = kind_counts(md)
    assert all(c > 0 for c in counts)
    layout = SwapLayout.for_counts(counts)
    _assert_same_density(
        build_model(dataset, spec, model_data=md),
        build_model(dataset, spec, model_data=md, swap=layout),
    )


def test_another_datasets_data_set_into_the_model_give_that_datasets_model(replicates):
    """Build swappable on replicate A: A's density; set B's data: B's own model's density."""
    a, b = replicates
    spec = _spec(centering="partial")  # the weights are the dataset's too
    md_a, md_b = prepare_model_data(a, spec), prepare_model_data(b, spec)
    assert md_a.n_obs != md_b.n_obs  # the stopping rule: the rows differ
    assert swap_key(spec, md_a) == swap_key(spec, md_b)
    layout = SwapLayout.for_counts(kind_counts(md_a)).grown(kind_counts(md_b))
    model = build_model(a, spec, model_data=md_a, swap=layout)
    swapped = _density(model)  # compiled once: it reads the data from the shared variables
    _assert_same_density(build_model(a, spec, model_data=md_a), model, swapped)
    for name, value in swap_data(spec, md_b, layout).items():
        model.set_data(name, value)
    _assert_same_density(build_model(b, spec, model_data=md_b), model, swapped)


def test_padding_rows_weigh_zero_and_copy_real_rows(replicates):
    md = prepare_model_data(replicates[0], _spec())
    counts = kind_counts(md)
    layout = SwapLayout((counts[0] + 5, counts[1] + 3, 2, 0))
    obs = padded_observations(md, layout)
    assert obs["weight"].sum() == md.n_obs
    assert np.all(obs["weight"][: counts[0]] == 1) and np.all(
        obs["weight"][counts[0] : layout.capacity[0]] == 0
    )
    interval = slice(sum(layout.capacity[:2]), sum(layout.capacity[:3]))
    assert np.all(obs["log_limit"][interval] < obs["log_dv"][interval])  # a finite interval
    with pytest.raises(ValueError, match="do not fit"):
        padded_observations(md, SwapLayout((counts[0] - 1, counts[1], 0, 0)))


def test_layout_grows_only_where_needed():
    layout = SwapLayout.for_counts((100, 10, 0, 0))
    assert layout.capacity == (128, 24, 0, 0)  # 25% of 100; 10% of all 110 rows
    assert layout.fits((128, 24, 0, 0)) and not layout.fits((100, 10, 1, 0))
    assert layout.grown((90, 30, 0, 0)).capacity == (128, 48, 0, 0)


def test_what_the_swap_does_not_cover_is_refused_before_building(replicates):
    spec = _spec()
    md = prepare_model_data(replicates[0], spec)
    assert swap_problems(spec, md, "closed_form") == []
    with pytest.raises(ValueError, match="solver 'linear'"):
        build_model(
            replicates[0], spec, model_data=md, solver="linear", swap=SwapLayout((512, 64, 0, 0))
        )
