"""Cellular-kinetic (CK) metrics with posterior uncertainty, and their reconciliation with NCA.

Every metric is a function of a patient's kinetic parameters
(:mod:`bayes_cart.kinetics.metrics`), so its posterior is obtained draw by draw:

* **per patient** (individual predictions): from the posterior draws of ``<p>_i``
  (:func:`bayes_cart.predict.individual_parameters`);
* **per covariate group** (population predictions): from the posterior draws of the typical
  patient of each group (:func:`bayes_cart.analysis.virtual_population.typical_parameters`).

Metrics (times in days, levels in data units):

==========================  ======================================================================
``Cmax``                    peak level, ``max(C0, E(T1))``
``Tmax``                    time of the peak (T1, or 0 if the distribution phase dominates)
``AUC_0_28``                exact area under E + M over the AUC window (default 0-28 d)
``persistence``             first time after the peak at which E + M falls below the LLOQ
``doubling_time``           ``ln 2 / beta``
``initial_half_life``       ``ln 2 / (alpha + deltaE + rM)`` (effector contraction)
``terminal_half_life``      ``ln 2 / min(deltaM, alpha + deltaE + rM)``
``memory_fraction_90``      ``M / (E + M)`` at day 90 (``memory_fraction_at``)
==========================  ======================================================================

The LLOQ for ``persistence`` is the patient's own when known (the DV of its BLQ samples),
else the median LLOQ of its trial (group column), else the median over the dataset; a number
given as ``lloq`` overrides all. Without any known LLOQ the column is NaN.

Stein et al. (2019) fits are mapped to Liu parameters first
(:func:`bayes_cart.kinetics.stein_to_liu`); draws with no Liu equivalent give NaN.

Examples
--------
>>> from bayes_cart.inference.io import load_fit  # doctest: +SKIP
>>> fit = load_fit("out/fit.nc")  # doctest: +SKIP
>>> individual_metrics(fit).query("metric == 'Cmax'").head()  # doctest: +SKIP
>>> typical_metrics(fit, by="RESPONSE")  # doctest: +SKIP
>>> reconcile_nca(fit).groupby("metric")["ratio"].median()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_cart.analysis.virtual_population import typical_parameters
from bayes_cart.data.lloq import patient_lloq
from bayes_cart.kinetics import derived_metrics, get_kinetics, list_kinetics
from bayes_cart.kinetics.profile_metrics import profile_metrics
from bayes_cart.kinetics.structures.liu2021 import LIU_PARAMETERS
from bayes_cart.predict import draw_index, fit_kinetics, fit_solver, individual_parameters

__all__ = [
    "LIU_PARAMETERS",
    "as_liu",
    "interval_columns",
    "metric_draws",
    "individual_metric_draws",
    "individual_metrics",
    "reconcile_nca",
    "summarise_draws",
    "summarise_reconciliation",
    "typical_metric_draws",
    "typical_metrics",
]

RECONCILED = ("Cmax", "Tmax", "AUC")


def interval_columns(ci: float) -> tuple[str, str]:
    """Names of the interval bounds for a central interval, e.g. ``("q5", "q95")`` for 0.9.

    Examples
    --------
    >>> interval_columns(0.9), interval_columns(0.95)
    (('q5', 'q95'), ('q2.5', 'q97.5'))
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    lo = 50.0 * (1.0 - ci)
    return f"q{round(lo, 6):g}", f"q{round(100.0 - lo, 6):g}"


def as_liu(kinetics: str, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Liu parameters of any structure that has a Liu equivalent (NaN where a draw has none).

    Parameters
    ----------
    kinetics : str
        Registered structure name, e.g. ``"liu2021"`` or ``"stein2019"``; its
        ``liu_equivalent`` (:class:`~bayes_cart.kinetics.KineticModel`) does the mapping.
    params : mapping
        Parameter arrays of that structure (all of the same shape).

    Returns
    -------
    dict
        ``C0, k, T0, beta, T1, alpha, rM, deltaM, deltaE`` arrays. For liu2021, ``T0`` is cut
        at ``T1`` as in the closed form.
    """
    kin = get_kinetics(kinetics) if kinetics in list_kinetics() else None
    if kin is None or kin.liu_equivalent is None:
        raise ValueError(
            "CK metrics need liu2021 or stein2019 kinetics (a structure with a Liu "
            f"equivalent), got {kinetics!r}"
        )
    return kin.liu_equivalent(params)


def _metric_names(
    auc_window: tuple[float, float], memory_fraction_at: Sequence[float]
) -> dict[str, str]:
    """Column names of derived_metrics -> names used here."""
    a, b = auc_window
    names = {
        "Cmax": "Cmax",
        "Tmax": "Tmax",
        f"AUC_{a:g}_{b:g}": f"AUC_{a:g}_{b:g}",
        "time_below_lloq": "persistence",
        "doubling_time": "doubling_time",
        "initial_half_life": "initial_half_life",
        "terminal_half_life": "terminal_half_life",
    }
    for t in memory_fraction_at:
        names[f"memory_fraction_{t:g}"] = f"memory_fraction_{t:g}"
    return names


def metric_draws(
    params: Mapping[str, np.ndarray],
    kinetics: str = "liu2021",
    *,
    lloq: float | np.ndarray | None = None,
    auc_window: tuple[float, float] = (0.0, 28.0),
    memory_fraction_at: Sequence[float] = (90.0,),
    dims: tuple[str, str] = ("sample", "patient"),
    coords: Mapping[str, Any] | None = None,
    solver: str | None = None,
) -> xr.Dataset:
    """CK metrics of parameter draws, element by element.

    Structures with a Liu equivalent (liu2021, stein2019) get the analytic metrics of
    :func:`bayes_cart.kinetics.derived_metrics`; any other structure gets the same table read
    off its solved curves (:func:`bayes_cart.kinetics.profile_metrics.profile_metrics`).

    Parameters
    ----------
    params : mapping
        ``{parameter: array (sample, unit)}`` (units = patients or groups).
    kinetics : str
        Kinetic structure of the parameters.
    lloq : float or array (unit,), optional
        LLOQ per unit for ``persistence`` (NaN entries give NaN); None: no persistence.
    auc_window : (float, float)
        AUC window (days).
    memory_fraction_at : sequence of float
        Days at which the memory fraction is reported.
    dims : (str, str)
        Names of the two dimensions.
    coords : mapping, optional
        Coordinates of the dimensions.
    solver : str, optional
        Route that solves a structure without a Liu equivalent (normally the fit's,
        :func:`bayes_cart.predict.fit_solver`); default its first.

    Returns
    -------
    xarray.Dataset
        One variable per metric, dims ``dims``.
    """
    kin = get_kinetics(kinetics) if kinetics in list_kinetics() else None
    if kin is not None and kin.liu_equivalent is None:
        liu = {k: np.asarray(v, dtype=float) for k, v in params.items() if k in kin.parameters}
    else:
        liu = as_liu(kinetics, params)
    shape = np.broadcast_shapes(*(v.shape for v in liu.values()))
    flat = {p: np.broadcast_to(v, shape).ravel() for p, v in liu.items()}
    valid = np.all([np.isfinite(v) for v in flat.values()], axis=0)
    lloq_flat = None
    if lloq is not None:
        lloq_flat = np.broadcast_to(np.asarray(lloq, dtype=float), shape).ravel()
    names = _metric_names(auc_window, memory_fraction_at)
    out = {
        name: np.full(valid.shape, np.nan)
        for key, name in names.items()
        if key != "time_below_lloq" or lloq is not None
    }
    if valid.any():
        sub = {p: v[valid] for p, v in flat.items()}
        sub_lloq = None
        if lloq_flat is not None:
            sub_lloq = np.where(np.isfinite(lloq_flat[valid]), lloq_flat[valid], 1.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if kin is not None and kin.liu_equivalent is None:
                table = profile_metrics(
                    kin,
                    sub,
                    solver=solver,
                    lloq=sub_lloq,
                    auc_window=auc_window,
                    memory_fraction_at=memory_fraction_at,
                )
            else:
                table = derived_metrics(
                    sub,
                    lloq=sub_lloq,
                    auc_window=auc_window,
                    memory_fraction_at=memory_fraction_at,
                )
        for key, name in names.items():
            if key in table:
                out[name][valid] = table[key].to_numpy()
        if lloq_flat is not None:
            out["persistence"][~np.isfinite(lloq_flat)] = np.nan
    data = {name: (dims, values.reshape(shape)) for name, values in out.items()}
    ds = xr.Dataset(data, coords=dict(coords or {}))
    units = {"Cmax": "DV", "Tmax": "day", "persistence": "day", "doubling_time": "day"}
    for name in ds.data_vars:
        if name in units or name.endswith("half_life"):
            ds[name].attrs["units"] = units.get(name, "day")
        elif name.startswith("AUC_"):
            ds[name].attrs["units"] = "DV x day"
    return ds


def _resolve_lloq(fit: Any, lloq: float | str | Mapping[str, float] | None) -> np.ndarray | None:
    ids = [str(i) for i in fit.model_data.patient_ids]
    if lloq is None:
        return None
    if isinstance(lloq, str):
        if lloq != "data":
            raise ValueError(f"lloq must be a number, a mapping, 'data' or None; got {lloq!r}")
        return patient_lloq(fit.dataset, fit.model_data.group_column).reindex(ids).to_numpy()
    if isinstance(lloq, Mapping):
        return np.array([float(lloq.get(i, np.nan)) for i in ids])
    return np.full(len(ids), float(lloq))


def individual_metric_draws(
    fit: Any,
    *,
    lloq: float | str | Mapping[str, float] | None = "data",
    auc_window: tuple[float, float] = (0.0, 28.0),
    memory_fraction_at: Sequence[float] = (90.0,),
    n_draws: int | None = None,
    random_seed: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Posterior draws of the CK metrics of every fitted patient.

    Parameters
    ----------
    fit : Fit
        A fit.
    lloq : "data", float, mapping or None
        LLOQ for ``persistence``: ``"data"`` (see :func:`patient_lloq`), one number, a
        ``{patient: LLOQ}`` mapping, or None to skip persistence.
    auc_window : (float, float)
        AUC window (days).
    memory_fraction_at : sequence of float
        Days of the memory fraction columns.
    n_draws : int, optional
        Random subset of posterior draws (all if None).
    random_seed : int or Generator
        Seed of the subset.

    Returns
    -------
    xarray.Dataset
        Dims ``(sample, patient)``, one variable per metric.
    """
    params = individual_parameters(fit)
    n_total = next(iter(params.values())).shape[0]
    sel = draw_index(n_total, n_draws, np.random.default_rng(random_seed))
    params = {p: v[sel] for p, v in params.items()}
    ids = [str(i) for i in fit.model_data.patient_ids]
    return metric_draws(
        params,
        fit_kinetics(fit),
        lloq=_resolve_lloq(fit, lloq),
        auc_window=auc_window,
        memory_fraction_at=memory_fraction_at,
        dims=("sample", "patient"),
        coords={"patient": ids},
        solver=fit_solver(fit),
    )


def summarise_draws(ds: xr.Dataset, ci: float = 0.9, dim: str = "sample") -> pd.DataFrame:
    """Median and central interval of every variable, as a tidy table.

    Parameters
    ----------
    ds : xarray.Dataset
        Draws along ``dim`` (e.g. from :func:`individual_metric_draws`).
    ci : float
        Interval probability (0.9 gives columns ``q5`` and ``q95``).
    dim : str
        The draws dimension.

    Returns
    -------
    pandas.DataFrame
        The other dimension(s) as columns, then ``metric, q50, q<lo>, q<hi>, mean``.
    """
    lo_name, hi_name = interval_columns(ci)
    lo = 0.5 * (1.0 - ci)
    rows = []
    for name, da in ds.data_vars.items():
        q = da.quantile([0.5, lo, 1.0 - lo], dim=dim, skipna=True)
        frame = pd.DataFrame(
            {
                "q50": q.isel(quantile=0).to_series(),
                lo_name: q.isel(quantile=1).to_series(),
                hi_name: q.isel(quantile=2).to_series(),
                "mean": da.mean(dim, skipna=True).to_series(),
            }
        )
        frame.insert(0, "metric", str(name))
        rows.append(frame.reset_index())
    return pd.concat(rows, ignore_index=True)


def individual_metrics(fit: Any, *, ci: float = 0.9, **kwargs: Any) -> pd.DataFrame:
    """Per-patient CK metrics: posterior median and central interval.

    Parameters
    ----------
    fit : Fit
        A fit.
    ci : float
        Interval probability.
    **kwargs
        Passed to :func:`individual_metric_draws`.

    Returns
    -------
    pandas.DataFrame
        ``patient, metric, q50, q5, q95, mean`` (for ``ci=0.9``).
    """
    return summarise_draws(individual_metric_draws(fit, **kwargs), ci=ci)


def typical_metric_draws(
    fit: Any,
    by: str | None = None,
    *,
    levels: Sequence[Any] | None = None,
    reference: Any = None,
    at: Mapping[str, Any] | None = None,
    lloq: float | str | None = "data",
    auc_window: tuple[float, float] = (0.0, 28.0),
    memory_fraction_at: Sequence[float] = (90.0,),
    n_draws: int | None = None,
    random_seed: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Posterior draws of the CK metrics of the typical patient of each group.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str, optional
        Grouping covariate (see :func:`bayes_cart.analysis.virtual_population.typical_parameters`).
    levels, reference, at : optional
        Groups and fixed covariates.
    lloq : "data", float or None
        LLOQ for ``persistence``: ``"data"`` uses the median of the patients' LLOQs.
    auc_window, memory_fraction_at : optional
        As in :func:`metric_draws`.
    n_draws : int, optional
        Random subset of posterior draws.
    random_seed : int or Generator
        Seed of the subset.

    Returns
    -------
    xarray.Dataset
        Dims ``(sample, group)``, one variable per metric.
    """
    params, groups = typical_parameters(
        fit,
        by,
        levels=levels,
        reference=reference,
        at=at,
        n_draws=n_draws,
        random_seed=random_seed,
    )
    value: float | None
    if isinstance(lloq, str):
        per_patient = _resolve_lloq(fit, lloq)
        value = float(np.nanmedian(per_patient)) if np.isfinite(per_patient).any() else np.nan
    else:
        value = None if lloq is None else float(lloq)
    ds = metric_draws(
        params,
        fit_kinetics(fit),
        lloq=None if value is None else np.full(len(groups.levels), value),
        auc_window=auc_window,
        memory_fraction_at=memory_fraction_at,
        dims=("sample", "group"),
        coords={"group": groups.labels},
        solver=fit_solver(fit),
    )
    ds.attrs.update(by=groups.column or "", reference=str(groups.reference))
    return ds


def typical_metrics(
    fit: Any, by: str | None = None, *, ci: float = 0.9, **kwargs: Any
) -> pd.DataFrame:
    """CK metrics of each group's typical patient: posterior median and central interval.

    Parameters
    ----------
    fit : Fit
        A fit.
    by : str, optional
        Grouping covariate.
    ci : float
        Interval probability.
    **kwargs
        Passed to :func:`typical_metric_draws`.

    Returns
    -------
    pandas.DataFrame
        ``group, metric, q50, q5, q95, mean`` (for ``ci=0.9``).
    """
    return summarise_draws(typical_metric_draws(fit, by, **kwargs), ci=ci)


def reconcile_nca(
    fit: Any,
    *,
    ci: float = 0.9,
    auc_window: tuple[float, float] = (0.0, 28.0),
    nca_table: pd.DataFrame | None = None,
    n_draws: int | None = None,
    random_seed: int | np.random.Generator | None = None,
    **nca_options: Any,
) -> pd.DataFrame:
    """Model-based vs observed-data (NCA) Cmax, Tmax and AUC per patient.

    The model-based value is the posterior median of the metric of the patient's fitted curve
    (continuous in time), the NCA value that of :func:`bayes_cart.data.nca.nca` on the observed
    samples. ``ratio = model / NCA``: near 1 when the sampling is rich; the NCA Cmax is below
    the model's when the true peak falls between samples, and an incomplete NCA AUC
    (``complete = False``, last sample before the window end) is below the model's.

    Parameters
    ----------
    fit : Fit
        A fit.
    ci : float
        Interval probability of the model-based interval.
    auc_window : (float, float)
        AUC window (days), used by both.
    nca_table : DataFrame, optional
        A precomputed :func:`bayes_cart.data.nca.nca` table (same window).
    n_draws : int, optional
        Random subset of posterior draws.
    random_seed : int or Generator
        Seed of the subset.
    **nca_options
        Passed to :func:`bayes_cart.data.nca.nca` (``blq_rule``, ``intermediate_blq``).

    Returns
    -------
    pandas.DataFrame
        One row per patient and metric: ``ID, metric, nca, model_q50, model_q<lo>,
        model_q<hi>, ratio, nca_in_interval, complete`` and the patient covariates. ``metric``
        is ``Cmax``, ``Tmax`` or ``AUC_<a>_<b>``.
    """
    from bayes_cart.data.nca import auc_column, nca

    auc_name = auc_column(auc_window)
    if nca_table is None:
        nca_table = nca(fit.dataset, auc_window=auc_window, **nca_options)
    draws = individual_metric_draws(
        fit,
        lloq=None,
        auc_window=auc_window,
        memory_fraction_at=(),
        n_draws=n_draws,
        random_seed=random_seed,
    )
    summary = summarise_draws(draws[["Cmax", "Tmax", auc_name]], ci=ci)
    lo_name, hi_name = interval_columns(ci)
    summary = summary.rename(
        columns={
            "patient": "ID",
            "q50": "model_q50",
            lo_name: f"model_{lo_name}",
            hi_name: f"model_{hi_name}",
        }
    ).drop(columns="mean")
    base = nca_table.set_index(nca_table["ID"].astype(str))
    rows = []
    for metric in ("Cmax", "Tmax", auc_name):
        part = summary[summary["metric"] == metric].copy()
        part["nca"] = part["ID"].map(base[metric].astype(float)).to_numpy(dtype=float)
        if metric == auc_name:
            part["complete"] = part["ID"].map(base[f"{auc_name}_complete"]).astype(bool)
        else:
            part["complete"] = part["nca"].notna()
        rows.append(part)
    table = pd.concat(rows, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["ratio"] = table["model_q50"] / table["nca"]
    table["nca_in_interval"] = (table["nca"] >= table[f"model_{lo_name}"]) & (
        table["nca"] <= table[f"model_{hi_name}"]
    )
    first = ["ID", "metric", "nca", "model_q50", f"model_{lo_name}", f"model_{hi_name}"]
    table = table[[*first, "ratio", "nca_in_interval", "complete"]]
    covs = fit.dataset.patients.copy()
    covs.index = covs.index.astype(str)
    return table.merge(covs, left_on="ID", right_index=True, how="left")


def summarise_reconciliation(
    table: pd.DataFrame, by: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Median NCA and model-based metrics per group (like Table 3 of Wang et al. 2025).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`reconcile_nca`.
    by : str or list of str, optional
        Grouping covariate(s); missing values form the group ``"(missing)"``.

    Returns
    -------
    pandas.DataFrame
        One row per group: the group columns, ``n``, then per metric ``<m>_nca_median``,
        ``<m>_model_median`` (median over patients of the posterior medians),
        ``<m>_ratio_median``, ``<m>_ratio_min``, ``<m>_ratio_max`` and ``<m>_coverage`` (share
        of patients whose NCA value lies in the model-based interval). AUC ratios use
        complete NCA AUCs only.
    """
    keys: list[str] = [by] if isinstance(by, str) else list(by or [])
    unknown = [k for k in keys if k not in table.columns]
    if unknown:
        raise KeyError(f"cannot group by {unknown}: not a column of the table")
    work = table.copy()
    for k in keys:
        if not pd.api.types.is_numeric_dtype(work[k]):
            work[k] = work[k].astype("string").fillna("(missing)")
    metrics = list(dict.fromkeys(work["metric"]))
    groups = work.groupby(keys, sort=True, dropna=False) if keys else [((), work)]
    rows = []
    for key, grp in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = int(grp["ID"].nunique())
        for m in metrics:
            part = grp[grp["metric"] == m]
            usable = part[part["complete"]]
            row[f"{m}_nca_median"] = part["nca"].median()
            row[f"{m}_model_median"] = part["model_q50"].median()
            row[f"{m}_ratio_median"] = usable["ratio"].median()
            row[f"{m}_ratio_min"] = usable["ratio"].min()
            row[f"{m}_ratio_max"] = usable["ratio"].max()
            row[f"{m}_coverage"] = usable["nca_in_interval"].mean()
        rows.append(row)
    return pd.DataFrame(rows)
