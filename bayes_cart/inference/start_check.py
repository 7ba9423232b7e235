"""Check the sampler's starting point before sampling: a finite log density and gradient.

A start where the log density or its gradient is not finite (a NaN in a patient's starting
value, a value outside a prior's support) makes the sampler fail after compiling, with a Rust
backtrace from nutpie or PyMC's ``SamplingError``. :func:`check_start` evaluates the model once
at the data-informed start (``model.bayes_cart_initvals``, without the sampler's jitter) and
raises a :class:`~bayes_cart.errors.StartError` naming the terms that are not finite and, for
the data term or per-patient variables, the patients and data rows responsible.

The happy path costs one evaluation of the function nutpie compiled (logp and gradient); only
when it is not finite is a per-term log density compiled (PyTensor's ``FAST_COMPILE`` mode,
under a second on the bundled example) to say where. Without a compiled nutpie function
(``sampler="pymc"`` or ``"numpyro"``) the per-term log density is the check itself and the
gradient is not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm

from bayes_cart.errors import StartError

__all__ = ["StartTerm", "check_start", "start_point"]

#: Patients (and data rows) named per term in the message.
MAX_SHOWN = 5

#: Terms named in the message.
MAX_TERMS = 6

#: Coordinates whose values are patient IDs (all patients, or those with a distribution phase).
PATIENT_DIMS = ("patient", "patient_dp")


@dataclass(frozen=True)
class StartTerm:
    """One term that is not finite at the start.

    Attributes
    ----------
    variable : str
        Model variable (a free variable's name, or ``log_dv`` for the data).
    kind : {"log density", "gradient"}
        What is not finite.
    value : float
        The term's value (its sum over elements; for the gradient the first bad element).
    patients : tuple of str
        Patients whose elements are not finite (empty for a population-level variable).
    rows : tuple of int
        Data rows of the observations that are not finite (the data term only).
    elements : tuple of int
        Flat positions of the bad elements when they cannot be mapped to patients.
    """

    variable: str
    kind: str
    value: float
    patients: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    elements: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = []
        if self.patients:
            where.append(f"patient{'s' if len(self.patients) > 1 else ''} {_shown(self.patients)}")
        if self.rows:
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {_shown(self.rows)}")
        if self.elements and not self.patients:
            where.append(f"element{'s' if len(self.elements) > 1 else ''} {_shown(self.elements)}")
        place = f" ({', '.join(where)})" if where else ""
        return f"{self.kind} of {self.variable} is {self.value:g}{place}"


def _shown(values: Sequence[Any]) -> str:
    text = ", ".join(str(v) for v in values[:MAX_SHOWN])
    return text + (f", ... ({len(values)} in all)" if len(values) > MAX_SHOWN else "")


def start_point(model: pm.Model) -> dict[str, np.ndarray]:
    """Return the sampler's start on the unconstrained scale, without jitter.

    Parameters
    ----------
    model : pymc.Model
        A model from :func:`bayes_cart.model.build.build_model` (its ``bayes_cart_initvals``, the
        data-informed start, override PyMC's defaults).

    Returns
    -------
    dict
        ``{value variable name: value}`` in the order of ``model.value_vars``.
    """
    from pymc.initial_point import make_initial_point_fn

    init = getattr(model, "bayes_cart_initvals", None) or None
    fn = make_initial_point_fn(
        model=model, overrides=init, jitter_rvs=set(), return_transformed=True
    )
    point = fn(0)
    return {v.name: np.asarray(point[v.name], dtype=float) for v in model.value_vars}


def check_start(model: pm.Model, compiled: Any = None) -> None:
    """Raise a StartError when the log density or its gradient is not finite at the start.

    Parameters
    ----------
    model : pymc.Model
        The model about to be sampled.
    compiled : nutpie compiled model, optional
        nutpie's compiled model (Numba or JAX backend): its logp-and-gradient function is
        evaluated once. Without it (or for a compiled model this module cannot read) only the
        log density is checked, by a per-term function compiled here.

    Raises
    ------
    StartError
        Naming each term that is not finite, with its patients and data rows.
    """
    point = start_point(model)
    order = _compiled_order(compiled, point)
    logp_dlogp = _compiled_logp_dlogp(compiled) if order is not None else None
    if order is None or logp_dlogp is None:
        try:
            terms = _logp_terms(model, point)
        except Exception:  # a model this check cannot evaluate is left to the sampler's own
            return
        if terms:
            raise StartError(_message(terms, np.nan), terms)
        return
    logp, grad = logp_dlogp(np.concatenate([np.ravel(point[name]) for name in order]))
    grad = np.asarray(grad, dtype=float)
    if np.isfinite(logp) and np.all(np.isfinite(grad)):
        return
    if np.isfinite(logp):
        terms = _gradient_terms(model, point, order, grad)
    else:  # the gradient of a log density that is not finite says nothing more
        try:
            terms = _logp_terms(model, point)
        except Exception as exc:  # the finding stands; only its details are missing
            terms = [
                StartTerm(f"the model (per-term evaluation failed: {exc})", "log density", logp)
            ]
    raise StartError(_message(terms, logp), terms)


def _message(terms: list[StartTerm], logp: float) -> str:
    if not terms:  # the total is not finite, every term is: an overflow in the sum
        return (
            f"the log density at the sampler's starting point is {logp:g} although each term "
            "is finite; check the data's scale"
        )
    shown = "; ".join(str(t) for t in terms[:MAX_TERMS])
    if len(terms) > MAX_TERMS:
        shown += f"; ... ({len(terms)} terms in all)"
    return (
        f"not finite at the sampler's starting point: {shown}. Check these patients' data "
        "(DV, LIMIT, TIME) or the priors of these variables"
    )


def _compiled_order(compiled: Any, point: dict[str, np.ndarray]) -> list[str] | None:
    """Return the value variables in the order of nutpie's flat vector (None if unknown).

    nutpie lists the variables of its trace with the free ones first, in the order of its flat
    vector, which for the JAX backend is that of the frozen model (not ``model.value_vars``).
    """
    names = _trace_names(compiled)
    if names is None:
        return None
    order = names[: len(point)]
    size = sum(int(np.size(point[n])) for n in order if n in point)
    if set(order) != set(point) or size != getattr(compiled, "n_dim", None):
        return None
    return order


def _trace_names(compiled: Any) -> list[str] | None:
    """Return the names of the variables of nutpie's trace, free ones first (None if unknown)."""
    if compiled is None:
        return None
    info = getattr(compiled, "shape_info", None)  # Numba backend: (names, slices, shapes)
    if info is not None:
        return [str(n) for n in info[0]]
    variables = getattr(compiled, "_variables", None)  # JAX backend (its .shapes fails)
    if variables is not None:
        return [str(v.name) for v in variables]
    try:
        return [str(n) for n in compiled.shapes]
    except (AttributeError, TypeError):
        return None


def _compiled_logp_dlogp(compiled: Any) -> Callable[[np.ndarray], tuple[float, Any]] | None:
    """Return the logp-and-gradient function of a nutpie compiled model (None if unknown)."""
    fn = getattr(compiled, "logp_func", None)  # Numba backend: the PyTensor function
    if callable(fn):

        def numba_logp(x: np.ndarray) -> tuple[float, Any]:
            logp, grad = fn(x)
            return float(np.asarray(logp)), grad

        return numba_logp
    make = getattr(compiled, "_make_logp_func", None)  # JAX backend (nutpie's from_pyfunc)
    if callable(make):
        logp_fn = make()
        shared = dict(getattr(compiled, "_shared_data", None) or {})
        return lambda x: logp_fn(x, **shared)
    return None


def _logp_terms(model: pm.Model, point: dict[str, np.ndarray]) -> list[StartTerm]:
    """Return the terms whose log density is not finite, each with its patients and rows."""
    variables = [*model.free_RVs, *model.observed_RVs, *model.potentials]
    fn = model.compile_fn(model.logp(sum=False), point_fn=True, mode="FAST_COMPILE")
    values = fn(point)
    terms = []
    for var, value in zip(variables, values, strict=True):
        value = np.asarray(value, dtype=float)
        bad = ~np.isfinite(value)
        if bad.any():
            total = float(np.sum(value))
            terms.append(_locate(model, var.name, "log density", total, bad))
    return terms


def _gradient_terms(
    model: pm.Model, point: dict[str, np.ndarray], order: list[str], grad: np.ndarray
) -> list[StartTerm]:
    """Return the variables whose gradient (flat, in ``order``) has elements not finite."""
    value_vars = {v.name: v for v in model.value_vars}
    terms = []
    start = 0
    for value_name in order:
        size = int(np.size(point[value_name]))
        part = grad[start : start + size].reshape(np.shape(point[value_name]))
        start += size
        bad = ~np.isfinite(part)
        if bad.any():
            name = model.values_to_rvs[value_vars[value_name]].name
            first = float(part[bad].ravel()[0])
            terms.append(_locate(model, name, "gradient", first, bad))
    return terms


def _locate(model: pm.Model, name: str, kind: str, value: float, bad: np.ndarray) -> StartTerm:
    """Map the bad elements of variable ``name`` to patients and data rows."""
    md = getattr(model, "bayes_cart_data", None)
    dims = tuple(model.named_vars_to_dims.get(name) or ())
    if md is None or bad.ndim == 0:
        return StartTerm(name, kind, value)
    if dims == ("obs",) and bad.shape == (md.n_obs,):
        idx = np.flatnonzero(bad)
        patients = _unique(md.patient_ids[int(i)] for i in md.patient_index[idx])
        rows = tuple(int(r) for r in md.obs_rows[idx])
        return StartTerm(name, kind, value, patients=patients, rows=rows)
    ids = _patient_axis(model, md, name, dims, bad.shape)
    if ids is not None:
        hit = np.any(bad.reshape(len(ids), -1), axis=1)
        return StartTerm(
            name, kind, value, patients=_unique(ids[int(i)] for i in np.flatnonzero(hit))
        )
    return StartTerm(name, kind, value, elements=tuple(int(i) for i in np.flatnonzero(bad)))


def _unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values))


def _patient_axis(
    model: pm.Model, md: Any, name: str, dims: tuple[str, ...], shape: tuple[int, ...]
) -> list[str] | None:
    """Return the patient ID of each index along the first axis of ``name`` (None if none).

    The first axis is the patient's when its dim is a patient coordinate, when it has one
    element per patient, or when ``name`` holds the centred (or non-centred) subset of the
    patients of a parameter centred for some patients only (``model.bayes_cart_centring``).
    """
    if dims:
        return [str(p) for p in model.coords[dims[0]]] if dims[0] in PATIENT_DIMS else None
    if shape[0] == md.n_patients:
        return [str(p) for p in md.patient_ids]
    if name not in getattr(model, "bayes_cart_patient_subsets", ()):
        return None
    masks = getattr(model, "bayes_cart_centring", None) or {}
    # a block's subsets follow the mask of its first parameter (build_model)
    label = name.removeprefix("z_").removesuffix("_i").split("_")
    first = next((part for part in label if part in masks), None)
    if first is None:
        return None
    mask = np.asarray(masks[first], dtype=bool)
    chosen = np.flatnonzero(~mask if name.startswith("z_") else mask)
    if len(chosen) != shape[0]:
        return None
    return [str(md.patient_ids[int(i)]) for i in chosen]
