"""Censored rows contribute the same kind of term under every residual error model.

For the proportional (normal), combined (normal, per-row SD) and Student-t error models the
model's pointwise ``log_dv`` terms are compared, row by row, with scipy: the log density of
quantified rows, the log CDF at the LLOQ of left-censored rows, ``log(CDF(LLOQ) - CDF(LIMIT))``
of interval-censored rows and the log survival function at the ULOQ of right-censored rows,
including rows deep in either tail where naive formulas lose every digit.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats

from bayes_cart.example import load_example
from bayes_cart.model.build import build_model
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec, spec_from_dict

ERROR_MODELS = {
    "proportional": {"model": "proportional"},
    "combined": {"model": "combined", "additive": {"dist": "HalfNormal", "sigma": 5.0}},
    "student_t": {"model": "student_t", "nu": {"dist": "Exponential", "lam": 0.1}},
}
NU = 4.0
SIGMA_ADD = 20.0

# (CENS, standardised LLOQ / ULOQ in DV, standardised LIMIT or None): standardised means
# (log value - mu) / sigma, so the same row sits equally deep in the tail for any mu and sigma.
NORMAL_ROWS = [
    (0, 0.7, None),
    (0, -2.5, None),
    (1, 0.5, None),
    (1, -2.0, None),
    (1, -35.0, None),  # P(below LLOQ) ~ 1e-268
    (1, 9.0, None),  # P(below LLOQ) = 1 - 1e-19: the log is -1e-19, not 0
    (1, 0.5, -1.0),
    (1, -28.0, -30.0),  # both ends deep in the lower tail
    (1, 9.0, 7.0),  # both ends deep in the upper tail: CDF(u) - CDF(l) cancels
    (1, 9.0, -9.0),  # almost all the mass: log is -2e-19
    (1, 1.0 + 1e-6, 1.0),  # a narrow interval
    (-1, 0.3, None),
    (-1, 9.0, None),  # P(above ULOQ) ~ 1e-19: log(1 - CDF) loses every digit
    (-1, 35.0, None),  # P(above ULOQ) ~ 1e-268
    (-1, -9.0, None),  # P(above ULOQ) = 1 - 1e-19
]
STUDENT_T_ROWS = [
    (0, 0.7, None),
    (0, -6.0, None),
    (1, 0.5, None),
    (1, -2.0, None),
    (1, -1e5, None),  # deep lower tail: t + sqrt(t^2 + nu) cancels in PyMC's logcdf
    (1, 1e3, None),  # P(below LLOQ) = 1 - 4e-12
    (1, 0.5, -1.0),
    (1, -5e4, -1e5),
    (1, 1e3, 50.0),
    (1, 1e3, -1e3),
    (1, 1.0 + 1e-6, 1.0),
    (-1, 0.3, None),
    (-1, 1e3, None),  # P(above ULOQ) ~ 4e-12: log1mexp(logcdf) loses most digits
    (-1, 1e5, None),
    (-1, -50.0, None),
]


@pytest.fixture(scope="module")
def few():
    ds = load_example()
    ids = [i for i in ds.patient_ids if i.startswith(("DLBCL", "MM"))][:3]
    return ds.subset(ids)


def _spec(error_model: str):
    raw = json.loads(load_spec("liu2021").text)
    raw["error"] = {**raw["error"], **ERROR_MODELS[error_model]}
    return spec_from_dict(raw)


def _point(model) -> dict[str, np.ndarray]:
    point = dict(model.initial_point())
    if "nu_log__" in point:
        point["nu_log__"] = np.array(np.log(NU))
    if "sigma_add_log__" in point:
        point["sigma_add_log__"] = np.array(np.log(SIGMA_ADD))
    return point


def _fn(model, outputs):
    return model.compile_fn(
        outputs, inputs=model.value_vars, on_unused_input="ignore", point_fn=True
    )


def _observation_parameters(model, point) -> list[np.ndarray]:
    """The parameters of ``log_dv`` (mu, sigma per row, then nu or the log LIMIT) at a point."""
    rv = model["log_dv"]
    params = rv.owner.inputs[1:-1]  # (size, *parameters, rng)
    mu, *rest = _fn(model, model.replace_rvs_by_values(params))(point)
    return [mu] + [np.broadcast_to(r, mu.shape) for r in rest]


def _pointwise(model, point) -> np.ndarray:
    return _fn(model, model.logp(vars=[model["log_dv"]], sum=False)[0])(point)


def _ref_logcdf(d, x: float) -> float:
    return float(np.log1p(-d.sf(x)) if x > d.median() else np.log(d.cdf(x)))


def _ref_logsf(d, x: float) -> float:
    return float(np.log1p(-d.cdf(x)) if x < d.median() else np.log(d.sf(x)))


def _ref_interval(d, lower: float, upper: float) -> float:
    tails = d.cdf(lower) + d.sf(upper)
    if tails < 0.5:
        return float(np.log1p(-tails))
    if lower >= d.median():
        return float(np.log(d.sf(lower) - d.sf(upper)))
    return float(np.log(d.cdf(upper) - d.cdf(lower)))


def _reference(dists, value, log_limit, cens) -> np.ndarray:
    out = []
    for d, y, lim, c in zip(dists, value, log_limit, cens, strict=True):
        if c == 0:
            out.append(float(d.logpdf(y)))
        elif c == 1 and np.isfinite(lim):
            out.append(_ref_interval(d, lim, y))
        elif c == 1:
            out.append(_ref_logcdf(d, y))
        else:
            out.append(_ref_logsf(d, y))
    return np.array(out)


def _crafted_model(dataset, error_model: str):
    """The model with its first rows replaced by ``*_ROWS``, placed relative to mu and sigma."""
    spec = _spec(error_model)
    base = build_model(dataset, spec)
    point = _point(base)
    mu, sig = _observation_parameters(base, point)[:2]
    rows = STUDENT_T_ROWS if error_model == "student_t" else NORMAL_ROWS
    md = prepare_model_data(dataset, spec)
    n = len(rows)
    cens, log_dv, log_limit = md.cens.copy(), md.log_dv.copy(), md.log_limit.copy()
    for j, (c, z, z_lim) in enumerate(rows):
        cens[j] = c
        log_dv[j] = mu[j] + z * sig[j]
        log_limit[j] = np.nan if z_lim is None else mu[j] + z_lim * sig[j]
    md = dataclasses.replace(md, cens=cens, log_dv=log_dv, log_limit=log_limit)
    model = build_model(dataset, spec, model_data=md)
    return model, point, n


@pytest.fixture(scope="module")
def crafted(few):
    """The crafted model of each error model, built once for the tests of this module.

    Returns a function ``error_model -> (model, point, n_crafted, pointwise terms)``.
    """
    cache: dict[str, tuple] = {}

    def get(error_model: str) -> tuple:
        if error_model not in cache:
            model, point, n = _crafted_model(few, error_model)
            cache[error_model] = (model, point, n, _pointwise(model, point))
        return cache[error_model]

    return get


@pytest.mark.parametrize("error_model", list(ERROR_MODELS))
def test_every_row_matches_scipy_under_every_error_model(crafted, error_model):
    model, point, n_crafted, terms = crafted(error_model)
    md = model.bayes_cart_data
    mu, sig, *rest = _observation_parameters(model, point)
    if error_model == "student_t":
        nu = rest[0]
        dists = [stats.t(df=v, loc=m, scale=s) for v, m, s in zip(nu, mu, sig, strict=True)]
        assert np.allclose(nu, NU)
    else:
        dists = [stats.norm(loc=m, scale=s) for m, s in zip(mu, sig, strict=True)]
    if error_model == "combined":
        sigma = float(np.exp(point["sigma_log__"]))
        expected = np.sqrt(sigma**2 + (SIGMA_ADD / np.exp(mu)) ** 2)
        np.testing.assert_allclose(sig, expected, rtol=1e-12)
        assert np.ptp(sig) > 0.01  # the additive part makes the SD differ between rows
    ref = _reference(dists, md.log_dv, md.log_limit, md.cens)
    assert not np.isnan(terms).any(), f"{int(np.isnan(terms).sum())} NaN terms"
    assert np.all(np.isfinite(terms))
    np.testing.assert_allclose(terms[:n_crafted], ref[:n_crafted], rtol=1e-8, atol=0)
    np.testing.assert_allclose(terms, ref, rtol=1e-8, atol=0)
    assert np.all(np.isfinite(model.compile_dlogp()(point)))


@pytest.mark.parametrize("error_model", list(ERROR_MODELS))
def test_interval_rows_use_their_lower_limit(few, crafted, error_model):
    """An interval-censored row is less likely than the same row left-censored at its LLOQ."""
    model, point, _, with_limit = crafted(error_model)
    md = model.bayes_cart_data
    interval = (md.cens == 1) & np.isfinite(md.log_limit)
    as_left = dataclasses.replace(md, log_limit=np.where(interval, np.nan, md.log_limit))
    left_model = build_model(few, _spec(error_model), model_data=as_left)
    without = _pointwise(left_model, point)
    assert np.all(with_limit[interval] <= without[interval])
    # strictly less, except perhaps for the deep lower-tail interval: under the normal
    # CDF(LIMIT) is 1e-25 of CDF(LLOQ) there and vanishes in double precision
    assert np.sum(with_limit[interval] < without[interval]) >= interval.sum() - 1
    np.testing.assert_array_equal(with_limit[~interval], without[~interval])
