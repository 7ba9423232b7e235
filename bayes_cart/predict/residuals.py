"""Residual error on the log scale: its SD under the fit's error model, and draws of it."""

from __future__ import annotations

from typing import Any

import numpy as np

from bayes_cart.predict.draws import stacked

__all__ = ["draw_residuals", "residual_sd"]


def residual_sd(fit: Any, log_pred: np.ndarray, sigma: Any = None) -> np.ndarray:
    """Residual SD on the log scale under the fit's error model.

    Parameters
    ----------
    fit : Fit
        A fit (its spec gives the error model).
    log_pred : ndarray
        Log predictions (for the combined model).
    sigma : dict, optional
        ``{"sigma": ..., "sigma_add": ...}`` values broadcastable with ``log_pred``; default
        the posterior medians.

    Returns
    -------
    ndarray
        Same shape as ``log_pred``.
    """
    post = fit.idata.posterior
    if sigma is None:
        sigma = {v: float(np.median(stacked(post, v))) for v in ("sigma", "sigma_add") if v in post}
    sd = np.asarray(sigma["sigma"]) * np.ones_like(log_pred)
    if fit.spec.doc.error.model == "combined":
        add = np.asarray(sigma.get("sigma_add", 0.0))
        sd = np.sqrt(sd**2 + (add / np.exp(log_pred)) ** 2)
    return sd


def draw_residuals(fit: Any, draws: Any, mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Residual error (log scale) of each replicate, with that replicate's draw of the SDs.

    Parameters
    ----------
    fit : Fit
        The fit (its spec gives the error model).
    draws : Fit
        The fit restricted to the replicates' draws
        (:func:`bayes_cart.predict.draws.subset_draws`), one draw per row of ``mu``.
    mu : ndarray (replicate, obs)
        Log predictions.
    rng : Generator
        Random numbers.

    Returns
    -------
    ndarray
        Same shape as ``mu``: normal residuals (Student-t with the draw's ``nu`` for the
        Student-t model; the combined model's SD depends on ``mu``).
    """
    post = draws.idata.posterior
    model = fit.spec.doc.error.model
    sd = stacked(post, "sigma")[:, None] * np.ones_like(mu)
    if model == "combined" and "sigma_add" in post:
        sd = np.sqrt(sd**2 + (stacked(post, "sigma_add")[:, None] / np.exp(mu)) ** 2)
    if model == "student_t" and "nu" in post:
        nu = stacked(post, "nu")[:, None] * np.ones_like(mu)
        return sd * rng.standard_t(nu)
    return sd * rng.standard_normal(mu.shape)
