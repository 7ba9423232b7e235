"""Eta-shrinkage of a fit: how much the data say about each patient's random effects.

The pharmacometric diagnostic of Savic and Karlsson (AAPS J 2009; NONMEM's ``ETASHRINKSD``):

    shrinkage(p) = 1 - SD over patients of EBE(eta_p,i) / omega_p

with the empirical-Bayes estimate ``EBE(eta_p,i)`` here the posterior mean of patient i's
random effect on parameter p (log scale; logit scale for a logit-normal fraction) and
``omega_p`` the posterior median of its IIV SD. Near 0 the patients' data pin their own
values; near 1 every patient's estimate is pulled to the typical value, because the data
(sparse samples, BLQ, a phase no sample reaches) do not inform it. Above about 30%, plots
of EBEs against covariates and tests on EBEs (the two-stage method of Liu et al.) lose power
and are biased towards "no effect", while the one-stage covariate model is not: it uses the
data, not the EBEs. A large shrinkage also marks a random effect that the sampler has to
explore from its prior, the usual place of a funnel.

The full posterior draws of eta are not shrunk (their spread across patients estimates
omega); the diagnostic is about the point estimates, as in NONMEM and Monolix.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

__all__ = ["SHRINKAGE_COLUMNS", "HIGH_SHRINKAGE", "eta_shrinkage", "high_shrinkage_text"]

#: Columns of :func:`eta_shrinkage`.
SHRINKAGE_COLUMNS = ["parameter", "n_patients", "omega", "sd_ebe", "shrinkage"]

#: Shrinkage above which EBE-based diagnostics and tests are unreliable (the 20-30% of
#: Savic and Karlsson; the upper end is used, so that the warning is about something real).
HIGH_SHRINKAGE = 0.3


def eta_shrinkage(idata: az.InferenceData) -> pd.DataFrame:
    """Eta-shrinkage of every patient-level random effect of a fit.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit's InferenceData, with ``eta_<p>`` (dims ``chain, draw, patient`` or
        ``patient_dp``) and its ``omega_<p>`` in the posterior.

    Returns
    -------
    DataFrame
        Columns :data:`SHRINKAGE_COLUMNS`, one row per parameter with IIV, in the order of
        the posterior: ``parameter`` (``p``), ``n_patients``, ``omega`` (posterior median of
        ``omega_p``), ``sd_ebe`` (SD over patients of the posterior means, ``ddof = 1``) and
        ``shrinkage`` (``1 - sd_ebe / omega``; NaN with fewer than 2 patients).

    Examples
    --------
    >>> import xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> ebe = np.array([-1.0, 0.0, 1.0])                  # SD 1 over patients
    >>> draws = ebe + 0.0 * rng.normal(size=(2, 50, 3))   # every draw at the EBE
    >>> post = xr.Dataset({"eta_beta": (("chain", "draw", "patient"), draws),
    ...                    "omega_beta": (("chain", "draw"), np.full((2, 50), 2.0))})
    >>> eta_shrinkage(az.InferenceData(posterior=post))[["parameter", "shrinkage"]]
      parameter  shrinkage
    0      beta        0.5
    """
    post = idata.posterior
    rows = []
    for name, var in post.data_vars.items():
        name = str(name)
        if not name.startswith("eta_"):
            continue
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        parameter = name[len("eta_") :]
        omega_name = f"omega_{parameter}"
        if len(extra) != 1 or not str(extra[0]).startswith("patient"):
            continue
        if omega_name not in post or set(post[omega_name].dims) != {"chain", "draw"}:
            continue
        ebe = np.asarray(var.mean(("chain", "draw")), dtype=float)
        omega = float(np.median(np.asarray(post[omega_name], dtype=float)))
        n = int(ebe.size)
        sd = float(np.std(ebe, ddof=1)) if n > 1 else float("nan")
        shrink = 1.0 - sd / omega if n > 1 and omega > 0 else float("nan")
        rows.append(
            {
                "parameter": parameter,
                "n_patients": n,
                "omega": omega,
                "sd_ebe": sd,
                "shrinkage": shrink,
            }
        )
    return pd.DataFrame(rows, columns=SHRINKAGE_COLUMNS)


def high_shrinkage_text(table: pd.DataFrame, threshold: float = HIGH_SHRINKAGE) -> str:
    """One sentence naming the random effects shrunk more than ``threshold`` ("" if none).

    Examples
    --------
    >>> t = pd.DataFrame({"parameter": ["C0", "FB"], "shrinkage": [0.05, 0.81]})
    >>> print(high_shrinkage_text(t))  # doctest: +NORMALIZE_WHITESPACE
    eta-shrinkage above 30%: FB 81%. The data say little about these patients' own values:
    plots and tests of their individual estimates (EBEs), such as the two-stage method, are
    biased towards no effect; a covariate on them belongs in the model.
    """
    high = table[table["shrinkage"] > threshold]
    if high.empty:
        return ""
    pairs = zip(high["parameter"], high["shrinkage"], strict=True)
    named = ", ".join(f"{p} {s:.0%}" for p, s in pairs)
    return (
        f"eta-shrinkage above {threshold:.0%}: {named}. The data say little about these "
        "patients' own values: plots and tests of their individual estimates (EBEs), such as "
        "the two-stage method, are biased towards no effect; a covariate on them belongs in "
        "the model."
    )
