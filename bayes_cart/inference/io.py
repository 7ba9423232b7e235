"""Saving and loading fits: the only module that touches the on-disk format.

A fit is one NetCDF file (ArviZ InferenceData written with h5netcdf). Besides the sampler's
groups it holds:

* ``fitted_data``: the dataset that was fitted, one row per sample (``Dataset.to_frame``);
* attributes on the ``posterior`` group: ``bayes_cart_version``, ``spec_json`` (the spec's
  canonical content), ``spec_hash`` (its SHA-256 prefix: the model id), ``data_hash`` (the
  SHA-256 of ``fitted_data``, :func:`data_hash`), ``spec_source``,
  ``sampler``, ``inference_method`` (``"nuts"``, or the approximation: ``"advi"``,
  ``"pathfinder"``, ``"laplace"``; files without it are NUTS fits), timings, diagnostics,
  the model notes (imputations...) and
  ``covariate_design_json``: the constants that code covariates for new patients as in the fit
  (the means and SDs of ``center``/``scale``, the medians of missing values, the categorical
  levels; :meth:`bayes_cart.model.covariates.CovariateDesign.to_state`).

:func:`load_fit` checks the identity: the stored hash must match the stored spec, the spec must
still validate, the data hash must match the stored data (when the file has one), the data
must load again, and a fit written by a newer major version is
refused. Keeping all of this here means a later move to ``xarray.DataTree`` (arviz 1.x) is local.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_cart import __version__
from bayes_cart.data.dataset import load_dataset, native_columns
from bayes_cart.errors import FitFileError, OutputError, SpecError
from bayes_cart.inference.diagnostics import Diagnostics
from bayes_cart.inference.fit_result import Fit
from bayes_cart.model.covariates import CovariateDesign
from bayes_cart.model.model_data import ModelData, prepare_model_data
from bayes_cart.model.spec import spec_from_dict

#: Variables not written to disk: the standard-normal draws behind non-centred effects and the
#: partially centred coordinates (``eta_<p>`` and ``<p>_i`` hold the same information).
_DROP_PREFIXES = ("z_", "pc_")

#: The files :func:`write_fit_outputs` writes: a folder holding only these may be replaced.
FIT_OUTPUTS = ("fit.nc", "summary.csv", "shrinkage.csv", "diagnostics.json")

#: Folders shown by name in an error message about a non-empty output folder.
_MAX_NAMES = 5

#: Groups stored in single precision (predictive draws and pointwise log-likelihood: float32
#: keeps 7 significant digits, far below Monte Carlo error, and halves the file).
_FLOAT32_GROUPS = ("posterior_predictive", "prior_predictive", "log_likelihood")


def _is_dropped(name: str) -> bool:
    # z_* helpers, and log_<p>_i / logit_<p>_i (centred individual values on the parameter's
    # scale; <p>_i holds the same draws)
    scaled = name.startswith(("log_", "logit_", "scaled_")) and name.endswith("_i")
    return name.startswith(_DROP_PREFIXES) or scaled


def _single_precision(ds: xr.Dataset) -> xr.Dataset:
    return ds.map(lambda v: v.astype("float32") if v.dtype == "float64" else v)


def _frame_to_xarray(frame: pd.DataFrame) -> xr.Dataset:
    data = {}
    for col in frame.columns:
        s = frame[col]
        if s.dtype.kind in "fiub":
            data[col] = ("row", s.to_numpy(dtype=float))
        else:
            data[col] = ("row", s.astype(object).where(s.notna(), "").astype(str).to_numpy())
    return xr.Dataset(data, coords={"row": np.arange(len(frame))})


def _xarray_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    frame = pd.DataFrame({name: ds[name].to_numpy() for name in ds.data_vars})
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].replace("", np.nan)
    return frame


def data_hash(stored: xr.Dataset) -> str:
    """SHA-256 of a ``fitted_data`` group in canonical form (the ``data_hash`` attribute).

    The canonical form is the table as :func:`load_fit` reads it back, written as CSV with
    every float in round-trip precision (``%.17g``), so that the hash of what was saved equals
    the hash of what is read while any edit of a value, a row or a column name changes it.

    Parameters
    ----------
    stored : xarray.Dataset
        The ``fitted_data`` group (:func:`_frame_to_xarray` of ``Dataset.to_frame()``).

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    text = _xarray_to_frame(stored).to_csv(index=False, float_format="%.17g", lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_fit(fit: Fit, path: str | Path) -> Path:
    """Write a fit to one NetCDF file.

    Parameters
    ----------
    fit : Fit
        The result of :func:`bayes_cart.inference.sampling.fit`.
    path : str or Path
        Output file (``.nc``); parent folders are created.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idata = fit.idata
    keep = [v for v in idata.posterior.data_vars if not _is_dropped(str(v))]
    groups = {g: getattr(idata, g) for g in idata.groups()}
    post = idata.posterior[keep]
    # per-patient draws (individual parameters, etas) in single precision: the file halves
    post = post.map(
        lambda v: (
            v.astype("float32")
            if v.dtype == "float64" and ({"patient", "patient_dp"} & set(v.dims))
            else v
        )
    )
    groups["posterior"] = post
    for g in _FLOAT32_GROUPS:
        if g in groups:
            groups[g] = _single_precision(groups[g])
    groups["fitted_data"] = _frame_to_xarray(fit.dataset.to_frame())
    stored_data_hash = data_hash(groups["fitted_data"])
    attrs = {
        "bayes_cart_version": __version__,
        "spec_json": fit.spec.text,
        "spec_hash": fit.spec.hash,
        "spec_source": fit.spec.source,
        "data_source": str(fit.dataset.source),
        "data_time_unit": "day",
        "data_hash": stored_data_hash,
        "timings_json": json.dumps(fit.timings),
        "settings_json": json.dumps(getattr(fit, "settings", {}) or {}, default=str),
        # "nuts", or the approximation (advi, pathfinder, laplace): readable without JSON
        "inference_method": str((getattr(fit, "settings", {}) or {}).get("method", "nuts")),
        "diagnostics_json": json.dumps(fit.diagnostics.to_dict(), default=float),
        "notes_json": json.dumps(fit.model_data.notes),
        "covariate_design_json": json.dumps(fit.model_data.design.to_state()),
    }
    post = groups["posterior"].copy()
    post.attrs.update(attrs)
    groups["posterior"] = post
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = az.InferenceData(**groups)
        out.to_netcdf(str(path), engine="h5netcdf")
    return path


def _with_stored_design(
    model_data: ModelData,
    patients: pd.DataFrame,
    attrs: dict[str, Any],
    posterior: xr.Dataset,
    path: Path,
) -> ModelData:
    """Model data whose covariate design uses the constants stored with the fit.

    A file without ``covariate_design_json`` (written before it existed) keeps the design
    rebuilt from the stored ``fitted_data``: the data the fit was built from, hence the same
    means, SDs and medians.
    """
    text = attrs.get("covariate_design_json")
    if text is None:
        return model_data
    try:
        design = CovariateDesign.from_state(json.loads(text), patients)
    except Exception as exc:  # noqa: BLE001 - any problem with the stored state is a bad file
        raise FitFileError(f"{path}: cannot read the stored covariate design ({exc})") from None
    for p, m in design.matrices.items():
        dim = f"{p}_effect"
        stored = [str(c) for c in posterior.coords[dim].values] if dim in posterior.coords else None
        if stored is not None and stored != list(m.columns):
            raise FitFileError(
                f"{path}: the stored covariate design of {p} ({list(m.columns)}) does not match "
                f"the posterior's {dim} ({stored})"
            )
    return dataclasses.replace(model_data, design=design)


def load_fit(path: str | Path) -> Fit:
    """Read a fit written by :func:`save_fit` and check that it is what it claims to be.

    Parameters
    ----------
    path : str or Path
        The ``fit.nc`` file.

    Returns
    -------
    Fit
        With the spec, dataset and model data rebuilt from the file.

    Raises
    ------
    FitFileError
        Missing file, not a bayes_cart fit, spec or data hash mismatch, or written by a newer
        major version.
    """
    path = Path(path)
    if not path.exists():
        raise FitFileError(f"{path}: no such file")
    if path.is_dir():
        raise FitFileError(f"{path}: is a folder, not a fit file (fit.nc)")
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise FitFileError(f"{path}: not a readable NetCDF fit ({exc})") from None
    attrs: dict[str, Any] = dict(idata.posterior.attrs) if "posterior" in idata.groups() else {}
    missing = [k for k in ("spec_json", "spec_hash", "bayes_cart_version") if k not in attrs]
    if missing or "fitted_data" not in idata.groups():
        raise FitFileError(
            f"{path}: not a bayes_cart fit (missing {missing or ['fitted_data group']})"
        )
    major = str(attrs["bayes_cart_version"]).split(".")[0]
    if major.isdigit() and int(major) > int(__version__.split(".")[0] or 0):
        raise FitFileError(
            f"{path}: written by bayes_cart {attrs['bayes_cart_version']}, newer than this "
            f"{__version__}; upgrade bayes_cart"
        )
    raw = _stored_json(attrs, "spec_json", path, what="spec")
    if not isinstance(raw, dict):
        raise FitFileError(f"{path}: the stored spec is not a JSON object; the file is corrupt")
    try:
        spec = spec_from_dict(raw, source=f"{path} (stored spec)")
    except SpecError as exc:
        raise FitFileError(f"{path}: the stored spec no longer validates:\n{exc}") from None
    if spec.hash != attrs["spec_hash"]:
        raise FitFileError(
            f"{path}: spec hash mismatch (stored {attrs['spec_hash']}, content {spec.hash}); "
            "the file was edited or is corrupt"
        )
    # files written before the data hash was stored load unchecked
    if "data_hash" in attrs and data_hash(idata.fitted_data) != attrs["data_hash"]:
        raise FitFileError(
            f"{path}: data hash mismatch (the stored fitted_data do not match the data_hash "
            "written with the fit); the file was edited or is corrupt"
        )
    frame = _xarray_to_frame(idata.fitted_data)
    dataset = load_dataset(frame, columns=native_columns(frame))
    model_data = _with_stored_design(
        prepare_model_data(dataset, spec), dataset.patients, attrs, idata.posterior, path
    )
    stored = _stored_json(attrs, "diagnostics_json", path, default={})
    try:
        diag = Diagnostics(**stored)
    except TypeError as exc:
        raise FitFileError(f"{path}: the stored diagnostics_json does not fit ({exc})") from None
    return Fit(
        idata=idata,
        spec=spec,
        dataset=dataset,
        model_data=model_data,
        diagnostics=diag,
        timings=_stored_json(attrs, "timings_json", path, default={}),
        settings=_stored_settings(attrs, path),
    )


def _stored_settings(attrs: dict[str, Any], path: Path) -> dict[str, Any]:
    """Return ``Fit.settings`` of a file.

    Files written before the settings were stored were closed-form fits, and files written
    before ``method`` was stored were NUTS fits.
    """
    settings = _stored_json(attrs, "settings_json", path, default={"solver": "closed_form"})
    settings.setdefault("method", "nuts")
    return settings


def _stored_json(
    attrs: dict[str, Any], key: str, path: Path, what: str | None = None, default: Any = None
) -> Any:
    """Parse the JSON attribute ``key`` of a fit file (``default`` when absent).

    Raises
    ------
    FitFileError
        One line naming the file and the attribute when it is not valid JSON.
    """
    if key not in attrs:
        return default
    try:
        return json.loads(attrs[key])
    except (TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise FitFileError(
            f"{path}: the stored {what or key} is not valid JSON ({exc}); the file was edited "
            "or is corrupt"
        ) from None


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_NAMES else "")


def check_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Check that the results of a fit can be written to the folder ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        The output folder: new, empty, or (with ``overwrite``) holding only the files of a
        previous fit (:data:`FIT_OUTPUTS`).
    overwrite : bool
        Whether a previous fit's results may be replaced.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    OutputError
        ``out_dir`` is a file or lies under one, is the current folder (or one above it), is a
        non-empty folder (without ``overwrite``, or holding other files), or its parent folder
        cannot be written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder (the output is a folder)")
    if Path.cwd().is_relative_to(os.path.abspath(out)):
        raise OutputError(f"{out}: is the current folder or one above it; name a new subfolder")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            raise OutputError(
                f"{out}: the folder exists and is not empty ({_names(entries)}); choose another "
                "folder, or pass --overwrite (overwrite=True) to replace a previous fit's results"
            )
        others = [e for e in entries if e not in FIT_OUTPUTS]
        if others:
            raise OutputError(
                f"{out}: holds files that a fit does not write ({_names(others)}); --overwrite "
                f"replaces only a folder of fit results ({', '.join(FIT_OUTPUTS)})"
            )
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: cannot write in {parent} (permission denied)")
    return out


def _move_into_place(new: Path, out: Path) -> None:
    """Rename the folder ``new`` to ``out``, replacing ``out`` (same file system)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:12]}")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_fit_outputs(
    fit: Fit,
    out_dir: str | Path,
    settings: dict[str, Any] | None = None,
    *,
    overwrite: bool = True,
):
    """Write ``fit.nc``, ``summary.csv``, ``shrinkage.csv`` and ``diagnostics.json``, whole.

    Into ``out_dir``: the fit, the population summary
    (:func:`~bayes_cart.analysis.summary.population_summary`), the eta-shrinkage of each
    random effect (:func:`~bayes_cart.inference.shrinkage.eta_shrinkage`) and the diagnostics.

    The files are written to a new hidden folder next to ``out_dir``
    (``.<name>.partial-<random>``) that is then renamed to ``out_dir``, so a crash leaves
    either the previous folder or the new one, never a half-written or mixed folder (a
    ``kill -9`` while writing may leave the hidden folder behind).

    Parameters
    ----------
    fit : Fit
        The fitted model.
    out_dir : str or Path
        Output folder (created with its parents), see :func:`check_output_dir`.
    settings : dict, optional
        Sampler settings recorded in ``diagnostics.json`` (sampler, chains, tune, draws, seed).
    overwrite : bool
        Whether a folder holding a previous fit's results (only :data:`FIT_OUTPUTS`) is
        replaced; ``False`` refuses any non-empty folder.

    Returns
    -------
    pandas.DataFrame
        The population summary that was written to ``summary.csv``.

    Raises
    ------
    OutputError
        When ``out_dir`` cannot take the results (:func:`check_output_dir`).
    """
    out = check_output_dir(out_dir, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:12]}")
    partial.mkdir()
    try:
        summary = _write_fit_files(fit, partial, settings)
        _move_into_place(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return summary


def _write_fit_files(fit: Fit, out: Path, settings: dict[str, Any] | None) -> pd.DataFrame:
    """Write the result files (:data:`FIT_OUTPUTS`) into the existing folder ``out``."""
    from bayes_cart.analysis.summary import population_summary
    from bayes_cart.inference.shrinkage import eta_shrinkage

    save_fit(fit, out / "fit.nc")
    summary = population_summary(fit.idata)
    summary.to_csv(out / "summary.csv", index=False)
    eta_shrinkage(fit.idata).to_csv(out / "shrinkage.csv", index=False)
    md = fit.model_data
    diag = {
        **fit.diagnostics.to_dict(),
        "compile_seconds": fit.timings.get("compile_seconds"),
        "sampling_seconds": fit.timings.get("sampling_seconds"),
        "predictive_seconds": fit.timings.get("predictive_seconds"),
        "n_patients": md.n_patients,
        "n_observations": md.n_obs,
        "n_censored": md.n_censored,
        **(settings or {}),
        # the route and structure actually solved (a step covariate moves closed_form to linear)
        **{
            k: v
            for k, v in (getattr(fit, "settings", None) or {}).items()
            if k in ("solver", "kinetics", "method", "method_options")
        },
        "model": fit.spec.name,
        "spec_hash": fit.spec.hash,
        "notes": md.notes,
    }
    (out / "diagnostics.json").write_text(json.dumps(diag, indent=2, default=float))
    return summary
