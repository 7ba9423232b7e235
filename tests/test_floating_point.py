"""Subnormal numbers are flushed to zero in the sampler's threads, and only while it runs."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from bayes_cart.inference import floating_point, sampling

pytestmark = pytest.mark.skipif(not floating_point.supported(), reason="x86-64 only")

TINY = np.array([1e-310])  # subnormal


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_flush_applies_to_the_block_and_threads_started_in_it_then_is_restored():
    before = floating_point.read_mxcsr()
    assert float(TINY[0] * 1.0) > 0.0
    with floating_point.flush_subnormals() as on:
        assert on
        assert float(TINY[0] * 1.0) == 0.0
        assert _in_thread(lambda: float(TINY[0] * 1.0)) == 0.0
        assert floating_point.read_mxcsr() & floating_point.FTZ_DAZ == floating_point.FTZ_DAZ
    assert floating_point.read_mxcsr() == before
    assert float(TINY[0] * 1.0) > 0.0
    assert _in_thread(lambda: float(TINY[0] * 1.0)) > 0.0


def test_flush_is_restored_after_an_exception_and_can_be_turned_off():
    before = floating_point.read_mxcsr()
    with pytest.raises(RuntimeError), floating_point.flush_subnormals():
        raise RuntimeError("boom")
    assert floating_point.read_mxcsr() == before
    with floating_point.flush_subnormals(enabled=False) as on:
        assert not on
        assert float(TINY[0] * 1.0) > 0.0


def test_nutpie_chains_run_flushed_by_default():
    """A density that depends on whether exp(-712 - x^2) (subnormal) is flushed to zero:
    N(0, 1) unflushed, N(0, 1/101) flushed. The chains' draws tell which arithmetic ran."""
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        tiny = pt.exp(-712.0 - x**2)
        pm.Potential("flushed", pt.switch(pt.gt(tiny, 0.0), 0.0, -50.0 * x**2))
    kwargs = dict(chains=2, tune=100, draws=200, max_extensions=0, retry_target_accept=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flushed, t_on = sampling.sample_posterior(model, **kwargs)
        plain, t_off = sampling.sample_posterior(model, flush_subnormals=False, **kwargs)
    assert t_on["flush_subnormals"] and not t_off["flush_subnormals"]
    assert float(flushed.posterior["x"].std()) < 0.2  # 1/sqrt(101) = 0.1
    assert float(plain.posterior["x"].std()) > 0.7  # 1
    assert float(TINY[0] * 1.0) > 0.0  # the caller's thread is back to normal
