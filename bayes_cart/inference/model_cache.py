"""Compile a model once and sample it on many datasets: the compiled-model cache of a study worker.

Compiling the model with nutpie (Numba) takes 15-30 s, sampling a small replicate 2-10 s. A
study fits the same model to hundreds of datasets of the same structure, so a worker keeps the
compiled model and swaps each replicate's data in (``CompiledPyMCModel.with_data``).

A :class:`ModelCache` holds, per model structure (:func:`bayes_cart.model.build.swap_key`: the
spec, the solver, the number of patients, the design columns, the trial levels, the
distribution-phase patients, informed-centring masks and which data arrays exist), one
swappable model (``build_model(..., swap=layout)``: every per-dataset array is ``pm.Data``, the
observations padded to a :class:`~bayes_cart.model.swap.SwapLayout`) and its compiled
nutpie model. :meth:`ModelCache.prepare` returns the model ready for one dataset:

* **hit**: same structure and the observations fit the layout: the data (padded observations,
  indices, design matrices, the dataset's own partial-centring weights) are set in the PyMC
  model (for the start check) and in a copy of the compiled model, and the sampler's start is
  the dataset's data-informed start (:func:`bayes_cart.model.initial_values.initial_values`,
  jitter on the population variables as in an ordinary fit);
* **miss**: a new structure, or more observations of a kind than the layout holds: build and
  compile as an ordinary fit does, with a layout of 25% headroom (a grown layout replaces the
  old one, so a study compiles a few times per worker, not once per replicate).

What a cached fit samples does not depend on the cache: a hit gives the draws a fresh build and
compile of the same swappable model would give on that dataset and seed
(``tests/test_model_cache.py``), and the swappable model's log density is that of the ordinary
model (padding rows weigh 0; ``tests/test_model_swap.py``). Models
:func:`bayes_cart.model.swap.swap_problems` refuses, and other samplers than Numba nutpie, are
not cached (:meth:`ModelCache.prepare` returns None and the fit compiles as always).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm

from bayes_cart.model.build import build_model, swap_data, swap_key
from bayes_cart.model.initial_values import initial_values, patient_level_variables
from bayes_cart.model.model_data import ModelData
from bayes_cart.model.spec import ModelSpec
from bayes_cart.model.swap import SwapLayout, kind_counts, swap_problems

__all__ = ["ModelCache", "PreparedModel", "jitter_variables", "with_start"]

#: Default number of compiled models one cache keeps (least recently used dropped first).
MAX_MODELS = 8


@dataclass
class PreparedModel:
    """A model ready to sample one dataset.

    Attributes
    ----------
    model : pymc.Model
        The swappable PyMC model, holding this dataset's data.
    compiled : nutpie compiled model
        Its compiled nutpie model, with this dataset's data and start.
    hit : bool
        Whether the compiled model came from the cache.
    compile_seconds : float
        Building and compiling (a miss) or swapping the data in (a hit).
    """

    model: pm.Model
    compiled: Any
    hit: bool
    compile_seconds: float


@dataclass
class _Entry:
    model: pm.Model
    compiled: Any
    layout: SwapLayout
    names: frozenset[str]


def jitter_variables(model: pm.Model, n_patients: int | None = None) -> set[Any] | None:
    """Return the free variables nutpie jitters at the start: the population ones, not per patient.

    ``n_patients`` defaults to that of ``model.bayes_cart_data``; None (every variable
    jittered, nutpie's default) for a model without it.
    """
    if n_patients is None:
        md = getattr(model, "bayes_cart_data", None)
        if md is None:
            return None
        n_patients = md.n_patients
    per_patient = patient_level_variables(model, n_patients)
    return {rv for rv in model.free_RVs if rv.name not in per_patient}


def with_start(compiled: Any, model: pm.Model, init: dict[str, np.ndarray] | None) -> Any:
    """Return a copy of nutpie's compiled model that starts its chains at ``init`` (with jitter).

    The same start as ``nutpie.compile_pymc_model(model, initial_points=init, jitter_rvs=...)``
    (PyMC's initial-point function, flattened in the order of the free variables), without
    compiling the model again.
    """
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(
        model=model,
        overrides=init or None,
        jitter_rvs=jitter_variables(model),
        return_transformed=True,
    )
    names = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    lock = threading.Lock()  # PyMC's compiled function is not thread-safe; chains start in parallel

    def start(seed: Any = None) -> np.ndarray:
        with lock:
            point = fn(seed)
        return np.concatenate([np.asarray(point[n], dtype="float64").ravel() for n in names])

    return dataclasses.replace(compiled, initial_point_func=start)


class ModelCache:
    """Compiled swappable models by structure, for fits of many datasets in one process.

    Parameters
    ----------
    max_models : int
        Compiled models kept (least recently used dropped first).
    headroom : float
        Room for more observations per kind in a new layout (0.25: 25% more).

    Attributes
    ----------
    hits, misses : int
        Fits served from the cache and fits that compiled.
    lock : threading.RLock
        Held by :func:`bayes_cart.inference.sampling.fit` while it samples a cached model (the
        model's data are set in place).
    """

    def __init__(self, max_models: int = MAX_MODELS, headroom: float = 0.25) -> None:
        self.max_models = max_models
        self.headroom = headroom
        self.hits = 0
        self.misses = 0
        self.lock = threading.RLock()
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every compiled model."""
        self._entries.clear()

    def prepare(
        self, dataset: Any, spec: ModelSpec, md: ModelData, *, solver: str, sampler: str
    ) -> PreparedModel | None:
        """Return the swappable model of ``md`` ready to sample, from the cache or compiled.

        Returns None for a model the cache does not cover (not Numba nutpie, or
        :func:`bayes_cart.model.swap.swap_problems`): compile it as an ordinary fit.
        """
        if sampler != "nutpie" or swap_problems(spec, md, solver):
            return None
        t0 = time.perf_counter()
        key = (solver, *swap_key(spec, md))
        counts = kind_counts(md)
        entry = self._entries.get(key)
        if entry is not None and entry.layout.fits(counts):
            values = swap_data(spec, md, entry.layout)
            if frozenset(values) == entry.names:
                self._entries.move_to_end(key)
                model = _set_data(entry.model, spec, md, values)
                used = entry.compiled.shared_data  # what the compiled functions read
                swapped = entry.compiled.with_data(**{k: v for k, v in values.items() if k in used})
                compiled = with_start(swapped, model, model.bayes_cart_initvals)
                self.hits += 1
                return PreparedModel(model, compiled, True, time.perf_counter() - t0)
        layout = (
            entry.layout.grown(counts, self.headroom)
            if entry is not None
            else SwapLayout.for_counts(counts, self.headroom)
        )
        from bayes_cart.inference.sampling import compile_nutpie

        model = build_model(dataset, spec, model_data=md, solver=solver, swap=layout)
        compiled = compile_nutpie(model, sampler)
        names = frozenset(swap_data(spec, md, layout))
        self._entries[key] = _Entry(model, compiled, layout, names)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_models:
            self._entries.popitem(last=False)
        self.misses += 1
        return PreparedModel(model, compiled, False, time.perf_counter() - t0)


def _set_data(
    model: pm.Model, spec: ModelSpec, md: ModelData, values: dict[str, np.ndarray]
) -> pm.Model:
    """Put a dataset into the cached PyMC model: its data, weights, model data and start."""
    for name, value in values.items():
        model.set_data(name, value)
    weights = {
        name.removeprefix("data_pc_weight_"): value
        for name, value in values.items()
        if name.startswith("data_pc_weight_")
    }
    model.bayes_cart_data = md  # type: ignore[attr-defined]
    model.bayes_cart_partial_weights = weights  # type: ignore[attr-defined]
    model.bayes_cart_initvals = initial_values(model, spec, md)  # type: ignore[attr-defined]
    return model
