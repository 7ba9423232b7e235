"""Model comparison by patient-grouped PSIS-LOO (leave one *patient* out).

Samples of one patient are not exchangeable units: they share the patient's random effects, and
the question a population model answers is how well it predicts a new patient. The pointwise
log-likelihood (``log_likelihood.log_dv``, dim ``obs``; censored samples enter as their M3
terms) is therefore summed per patient::

    log p(y_i | theta_s) = sum over the samples j of patient i of log p(y_ij | theta_s)

and Pareto-smoothed importance sampling LOO (:func:`arviz.loo`) is run on the resulting
``(chain, draw, patient)`` log-likelihood. The comparison table (:func:`compare_fits`) follows
:func:`arviz.compare`: ``elpd_loo`` (expected log predictive density, higher is better), its
standard error ``se``, ``elpd_diff`` and ``dse`` (difference to the best model and its standard
error), ``p_loo`` (effective number of parameters) and stacking ``weight``, plus the number of
patients whose Pareto k exceeds 0.7 (``n_bad_pareto_k``; their LOO estimate is unreliable, so a
difference that depends on them should be checked by refitting without them, i.e. exact
K-fold).

Only fits of the same data can be compared: :func:`compare_fits` refuses fits whose fitted
observations (patient, time, DV, censoring) differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_cart.errors import BayesCartError

__all__ = [
    "PARETO_K_THRESHOLD",
    "IncomparableFitsError",
    "bad_pareto_k",
    "compare_fits",
    "patient_log_likelihood",
    "patient_loo",
    "relative_efficiency",
]

#: Pareto k above which a patient's PSIS-LOO estimate is unreliable.
PARETO_K_THRESHOLD = 0.7


class IncomparableFitsError(BayesCartError, ValueError):
    """Fits that cannot be compared (different data, or no pointwise log-likelihood)."""


def _idata(fit: Any) -> az.InferenceData:
    return fit.idata if hasattr(fit, "idata") else fit


def patient_log_likelihood(fit: Any, var_name: str = "log_dv") -> xr.DataArray:
    """Sum the pointwise log-likelihood over each patient's samples.

    Parameters
    ----------
    fit : Fit or arviz.InferenceData
        Needs the ``log_likelihood`` group and ``constant_data.patient_index``.
    var_name : str
        Log-likelihood variable.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, patient)``; the ``patient`` coordinate holds the patient IDs.

    Raises
    ------
    IncomparableFitsError
        If the fit has no pointwise log-likelihood (fitted with ``predictive=False``).
    """
    idata = _idata(fit)
    if "log_likelihood" not in idata.groups() or var_name not in idata.log_likelihood:
        raise IncomparableFitsError(
            "the fit has no pointwise log-likelihood (log_likelihood group); refit with "
            "predictive=True"
        )
    if "constant_data" not in idata.groups() or "patient_index" not in idata.constant_data:
        raise IncomparableFitsError("the fit has no constant_data.patient_index")
    ll = idata.log_likelihood[var_name]
    index = np.asarray(idata.constant_data["patient_index"].values, dtype=int)
    const = idata.constant_data
    if "patient" in const.coords:
        ids = [str(p) for p in const["patient"].values]
    else:
        ids = [str(i) for i in range(int(index.max()) + 1)]
    ll = ll.assign_coords(patient_index=("obs", index))
    summed = ll.groupby("patient_index").sum("obs")
    summed = summed.rename({"patient_index": "patient"})
    present = summed["patient"].values
    summed = summed.assign_coords(patient=[ids[i] for i in present])
    return summed.transpose("chain", "draw", "patient")


def patient_loo(fit: Any, var_name: str = "log_dv") -> az.ELPDData:
    """Patient-grouped PSIS-LOO of one fit.

    Parameters
    ----------
    fit : Fit or arviz.InferenceData
        A fit with a pointwise log-likelihood.
    var_name : str
        Log-likelihood variable.

    Returns
    -------
    arviz.ELPDData
        With pointwise ``loo_i`` and ``pareto_k`` over the ``patient`` dim. ArviZ's Pareto-k
        warning is silenced; see :func:`bad_pareto_k`. The relative efficiency is that of the
        patient likelihoods (:func:`relative_efficiency`).
    """
    idata = _idata(fit)
    grouped = patient_log_likelihood(idata, var_name)
    data = az.InferenceData(
        posterior=idata.posterior, log_likelihood=xr.Dataset({var_name: grouped})
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        return az.loo(data, pointwise=True, var_name=var_name, reff=relative_efficiency(grouped))


def relative_efficiency(log_lik: xr.DataArray) -> float:
    """Relative effective sample size of the likelihood, averaged over patients.

    ``ESS(exp(log_lik_i)) / S`` per patient (as ``loo::relative_eff`` in R), averaged into the
    single value :func:`arviz.loo` takes. ArviZ's default (the mean ESS over every posterior
    variable) is slow for models with many patient-level variables and is not about the
    quantity being importance-sampled.

    Parameters
    ----------
    log_lik : xarray.DataArray
        ``(chain, draw, patient)`` log-likelihood.

    Returns
    -------
    float
        Mean relative efficiency (1 for a single chain of independent draws).
    """
    n = log_lik.sizes["chain"] * log_lik.sizes["draw"]
    lik = np.exp(log_lik - log_lik.max(("chain", "draw")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(xr.Dataset({"lik": lik}), method="mean")["lik"].values
    ess = ess[np.isfinite(ess)]
    return float(np.mean(ess) / n) if ess.size else 1.0


def bad_pareto_k(elpd: az.ELPDData, threshold: float = PARETO_K_THRESHOLD) -> pd.DataFrame:
    """Patients whose Pareto k exceeds ``threshold``.

    Parameters
    ----------
    elpd : arviz.ELPDData
        From :func:`patient_loo`.
    threshold : float
        Default 0.7.

    Returns
    -------
    pandas.DataFrame
        ``patient, pareto_k``, worst first.
    """
    k = elpd.pareto_k
    table = pd.DataFrame(
        {"patient": [str(p) for p in k["patient"].values], "pareto_k": np.asarray(k.values)}
    )
    bad = table[table["pareto_k"] > threshold]
    return bad.sort_values("pareto_k", ascending=False).reset_index(drop=True)


def _observations(fit: Any) -> pd.DataFrame:
    """Return the fitted observations (ID, TIME, DV, CENS) of a fit, from its dataset or file."""
    if hasattr(fit, "dataset") and fit.dataset is not None:
        obs = fit.dataset.observations
        return pd.DataFrame(
            {
                "ID": obs["ID"].astype(str).to_numpy(),
                "TIME": obs["TIME"].to_numpy(dtype=float),
                "DV": obs["DV"].to_numpy(dtype=float),
                "CENS": obs["CENS"].to_numpy(dtype=int),
            }
        )
    idata = _idata(fit)
    if "fitted_data" in idata.groups():
        fd = idata.fitted_data
        frame = pd.DataFrame({k: fd[k].values for k in ("ID", "TIME", "DV", "CENS")})
        frame = frame[pd.notna(frame["DV"]) & (frame["DV"].astype(str) != "")]
        return frame.astype({"ID": str, "TIME": float, "DV": float, "CENS": int})
    const = idata.constant_data
    ids = np.asarray(const["patient"].values)[np.asarray(const["patient_index"].values, int)]
    return pd.DataFrame(
        {
            "ID": ids.astype(str),
            "TIME": np.asarray(const["time"].values, float),
            "DV": np.exp(np.asarray(idata.observed_data["log_dv"].values, float)),
            "CENS": np.asarray(const["cens"].values, int),
        }
    )


def _loglik_obs(fit: Any, name: str) -> np.ndarray:
    """Return the ``obs`` coordinate of a fit's log-likelihood; refuse a fit without one."""
    idata = _idata(fit)
    if "log_likelihood" not in idata.groups() or "log_dv" not in idata.log_likelihood:
        raise IncomparableFitsError(
            f"{name!r}: the fit has no pointwise log-likelihood (log_likelihood group); refit "
            "with predictive=True"
        )
    return idata.log_likelihood["log_dv"]["obs"].values


def _check_same_data(fits: Mapping[str, Any]) -> None:
    names = list(fits)
    first = names[0]
    ref_obs = _loglik_obs(fits[first], first)
    ref = _observations(fits[first])
    for name in names[1:]:
        other = _observations(fits[name])
        where = _first_difference(ref, other)
        if where:
            raise IncomparableFitsError(
                f"cannot compare fits of different datasets: {first!r} ({len(ref)} samples of "
                f"{ref['ID'].nunique()} patients) and {name!r} ({len(other)} samples of "
                f"{other['ID'].nunique()} patients) differ: {where}. LOO compares models of "
                "the same data only."
            )
        obs = _loglik_obs(fits[name], name)
        if len(obs) != len(ref_obs) or np.any(obs != ref_obs):
            raise IncomparableFitsError(
                f"cannot compare {first!r} and {name!r}: their likelihoods use different samples "
                f"({len(ref_obs)} vs {len(obs)}; e.g. censored samples dropped in one, "
                "censoring.method = 'drop'). Use the same censoring method."
            )


def _first_difference(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """Describe the first difference between two observation tables ('' if none)."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} samples"
    checks = {
        "patient": a["ID"].to_numpy() != b["ID"].to_numpy(),
        "TIME": ~np.isclose(a["TIME"].to_numpy(), b["TIME"].to_numpy(), rtol=1e-9, atol=0.0),
        "DV": ~np.isclose(a["DV"].to_numpy(), b["DV"].to_numpy(), rtol=1e-9, atol=0.0),
        "CENS": a["CENS"].to_numpy() != b["CENS"].to_numpy(),
    }
    for col, mismatch in checks.items():
        if mismatch.any():
            i = int(np.flatnonzero(mismatch)[0])
            key = "ID" if col == "patient" else col
            return (
                f"sample {i + 1} (patient {a['ID'].iloc[i]}): {col} "
                f"{a[key].iloc[i]} vs {b[key].iloc[i]}"
            )
    return ""


def _names(fits: Sequence[Any] | Mapping[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    if isinstance(fits, Mapping):
        return dict(fits)
    fits = list(fits)
    if names is not None:
        if len(names) != len(fits):
            raise ValueError(f"{len(names)} names for {len(fits)} fits")
        labels = [str(n) for n in names]
    else:
        labels = [
            getattr(getattr(f, "spec", None), "name", None) or f"model{i + 1}"
            for i, f in enumerate(fits)
        ]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}_{seen[label]}")
    if len(set(unique)) != len(unique):
        raise ValueError(f"model names must be unique, got {labels}")
    return dict(zip(unique, fits, strict=True))


def compare_fits(
    fits: Sequence[Any] | Mapping[str, Any],
    names: Sequence[str] | None = None,
    *,
    threshold: float = PARETO_K_THRESHOLD,
    method: str = "stacking",
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Compare fits of the same data by patient-grouped PSIS-LOO.

    Parameters
    ----------
    fits : sequence or mapping
        Fits (or InferenceData); a mapping gives the names.
    names : sequence of str, optional
        Model names (default: the spec names, made unique).
    threshold : float
        Pareto k threshold for ``n_bad_pareto_k``.
    method : str
        Weighting method of :func:`arviz.compare` (``"stacking"``, ``"BB-pseudo-BMA"``,
        ``"pseudo-BMA"``).

    Returns
    -------
    table : pandas.DataFrame
        One row per model, best first: ``rank, elpd_loo, se, elpd_diff, dse, p_loo, weight,
        n_bad_pareto_k, n_patients, warning``; index = model names.
    bad_k : dict
        ``{model: DataFrame(patient, pareto_k)}`` of the patients above the threshold.

    Raises
    ------
    IncomparableFitsError
        If the fits are of different data or lack a pointwise log-likelihood.

    Examples
    --------
    >>> table, bad = compare_fits([fit_a, fit_b], names=["memory", "none"])  # doctest: +SKIP
    """
    named = _names(fits, names)
    if len(named) < 2:
        raise ValueError("compare_fits needs at least two fits")
    _check_same_data(named)
    elpds = {name: patient_loo(f) for name, f in named.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        warnings.filterwarnings("ignore", message="The scale is now log by default")
        warnings.filterwarnings("ignore", message="The inplace keyword")  # arviz on pandas 3
        table = az.compare(elpds, ic="loo", method=method)
    bad = {name: bad_pareto_k(e, threshold) for name, e in elpds.items()}
    table["n_bad_pareto_k"] = [len(bad[name]) for name in table.index]
    table["n_patients"] = [int(elpds[name].n_data_points) for name in table.index]
    table["rank"] = table["rank"].astype(int)
    columns = ["rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight"]
    table = table[[*columns, "n_bad_pareto_k", "n_patients", "warning"]]
    table.index.name = "model"
    return table, bad
