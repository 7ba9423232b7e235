"""Population summary table of a fit (``summary.csv``).

One row per population quantity, named as a pharmacometrician expects:

* typical values by the paper's names (``beta``, ``T1``, ``alpha``, ``rM``, ``deltaM``, ``C0``,
  ``k``, ``T0``; for ``stein2019`` Stein's ``Cmax``, ``Tmax``...) on the natural scale, per day
  (rates) or days (times), for the reference covariate levels;
* IIV SDs ``omega_<param>`` (log scale; logit scale for a logit-normal fraction such as
  Stein's ``FB``), correlations ``corr_<p>_<q>``;
* residual ``sigma`` (log scale);
* covariate effects on the log scale ``<param>:<term>``, e.g. ``beta:RESPONSE[CR/PR]`` (on
  the logit scale, i.e. log odds ratios, for a logit-normal parameter);
* trial-level SDs ``omega_<group>_<param>``;
* the prevalence of each level of a marginalised categorical covariate
  (``covariates.missing = "marginalize"``), ``prevalence_<COLUMN>[<level>]``.

Columns: ``parameter, mean, sd, q5, q50, q95, r_hat, ess_bulk, ess_tail``.
"""

from __future__ import annotations

from functools import partial

import arviz as az
import numpy as np
import pandas as pd

from bayes_cart.inference.diagnostics import population_variables

COLUMNS = ["parameter", "mean", "sd", "q5", "q50", "q95", "r_hat", "ess_bulk", "ess_tail"]


def _label(var: str, coord: str | None) -> str:
    if var.startswith("b_") and coord is None:  # a step covariate's effect, b_<p>_<COLUMN>
        parameter, _, column = var[2:].partition("_")
        return f"{parameter}:{column}" if column else var[2:]
    if var.startswith("b_"):
        return f"{var[2:]}:{coord}"
    return var if coord is None else f"{var}[{coord}]"


def population_summary(idata: az.InferenceData) -> pd.DataFrame:
    """Summarise every population quantity of a fit.

    The statistics are :func:`arviz.summary`'s (mean, SD, rank-normalised split R-hat, bulk and
    tail ESS) with the 5%, 50% and 95% quantiles added, under the names above.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit's InferenceData.

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`, one row per quantity.
    """
    post = idata.posterior
    names = [
        n
        for n in population_variables(idata)
        if not n.startswith("u_") and len(post[n].dims) <= 3  # chain, draw and at most one more
    ]
    if not names:
        return pd.DataFrame(columns=COLUMNS)
    quantiles = {f"q{round(100 * q)}": q for q in (0.05, 0.5, 0.95)}
    table = az.summary(
        idata,
        var_names=names,
        kind="all",
        stat_funcs={k: partial(np.quantile, q=q) for k, q in quantiles.items()},
        extend=True,
        round_to="none",
    )
    rows = []
    for name in names:
        var = post[name]
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        coords = [None] if not extra else [str(c) for c in var[extra[0]].values]
        for coord in coords:
            stats = table.loc[name if coord is None else f"{name}[{coord}]"]
            rows.append(
                {"parameter": _label(name, coord), **{c: float(stats[c]) for c in COLUMNS[1:]}}
            )
    return pd.DataFrame(rows, columns=COLUMNS)
