import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats
from scipy.special import log_ndtr

from bayes_cart.model.likelihood import CensoringIndex, censored_loglik, log_normal_cdf


def test_log_normal_cdf_matches_scipy_over_both_tails():
    z = np.linspace(-60, 15, 30001)
    ref = log_ndtr(z)
    rel = np.abs(log_normal_cdf(z) - ref) / np.maximum(np.abs(ref), 1e-300)
    assert rel.max() < 1e-7


@pytest.mark.parametrize("xp_name", ["pytensor", "jax"])
def test_log_normal_cdf_same_in_every_namespace_with_finite_gradient(xp_name):
    z = np.linspace(-50, 12, 2001)
    dens = np.exp(stats.norm.logpdf(z) - log_ndtr(z))  # d/dz log Phi
    if xp_name == "pytensor":
        zz = pt.dvector()
        out = log_normal_cdf(zz, xp=pt)
        f = pytensor.function([zz], [out, pytensor.grad(out.sum(), zz)])
        val, grad = f(z)
    else:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        val = np.asarray(log_normal_cdf(jnp.asarray(z), xp=jnp))
        grad = np.asarray(jax.grad(lambda x: log_normal_cdf(x, xp=jnp).sum())(jnp.asarray(z)))
    np.testing.assert_allclose(val, log_ndtr(z), rtol=1e-7)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, dens, rtol=1e-6)


def test_m3_matches_hand_computation():
    """Quantified, left-censored (M3), interval-censored and right-censored rows by hand."""
    mu = np.array([2.0, 1.0, 0.5, 3.0, 2.5])
    sigma = 0.4
    value = np.array([2.3, np.log(2.0), np.log(3.0), np.log(40.0), 2.0])
    cens = np.array([0, 1, 1, -1, 0])
    log_limit = np.array([np.nan, np.nan, np.log(1.0), np.nan, np.nan])
    idx = CensoringIndex.from_arrays(cens, log_limit)
    ll = censored_loglik(value, mu, sigma, idx, log_limit)
    hand = [
        stats.norm.logpdf(2.3, 2.0, 0.4),
        np.log(stats.norm.cdf(np.log(2.0), 1.0, 0.4)),
        np.log(stats.norm.cdf(np.log(3.0), 0.5, 0.4) - stats.norm.cdf(0.0, 0.5, 0.4)),
        np.log(stats.norm.sf(np.log(40.0), 3.0, 0.4)),
        stats.norm.logpdf(2.0, 2.5, 0.4),
    ]
    np.testing.assert_allclose(ll, hand, rtol=1e-10)


def test_m3_pytensor_graph_equals_numpy_and_per_obs_sigma():
    rng = np.random.default_rng(3)
    n = 50
    mu = rng.normal(2, 1, n)
    value = mu + rng.normal(0, 0.5, n)
    cens = rng.choice([0, 1, -1], n, p=[0.6, 0.3, 0.1])
    log_limit = np.where((cens == 1) & (rng.random(n) < 0.5), value - 1.0, np.nan)
    sig = rng.uniform(0.2, 0.8, n)
    idx = CensoringIndex.from_arrays(cens, log_limit)
    ref = censored_loglik(value, mu, sig, idx, log_limit)
    m, s = pt.dvector(), pt.dvector()
    f = pytensor.function(
        [m, s], censored_loglik(value, m, s, idx, np.nan_to_num(log_limit), xp=pt)
    )
    np.testing.assert_allclose(f(mu, sig), ref, rtol=1e-12)
    assert np.all(np.isfinite(ref))


def test_censored_term_is_a_probability_and_tends_to_zero():
    idx = CensoringIndex.from_arrays(np.array([1, 1]), np.array([np.nan, np.nan]))
    ll = censored_loglik(np.array([0.0, 0.0]), np.array([-20.0, 20.0]), 0.5, idx)
    assert ll[0] == pytest.approx(0.0, abs=1e-12)  # far above the mean: P(below LLOQ) ~ 1
    assert ll[1] < -700  # far below: tiny but finite
    assert np.isfinite(ll[1])
