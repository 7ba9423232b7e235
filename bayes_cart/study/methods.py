"""The registry of study methods: a kind name -> the function that analyses one dataset.

A method function takes a :class:`MethodContext` (the study, the task, its simulated data, its
seed) and returns a :class:`MethodOutput`: per quantity of interest a row of estimates
(:data:`ESTIMATE_COLUMNS`; a posterior's are filled by :func:`summarise_draws`), the fit's
diagnostics and its timings. The engine (:func:`bayes_cart.study.task.run_task`) adds the truth,
coverage, decisions and the gate, so every method is judged the same way.

Built in: ``bayes`` (the one-stage hierarchical fit, :mod:`bayes_cart.study.bayes_method`) and
``two_stage`` (:mod:`bayes_cart.study.two_stage`). :func:`register_method` adds a kind, e.g. a
quick estimator to test the runner, or an approximate-inference method.

The sampling methods compile once per model structure and worker process, then swap each
replicate's data in (:func:`bayes_cart.study.bayes_method.worker_cache`, a
:class:`bayes_cart.inference.model_cache.ModelCache` keyed by the model's structure, since one
worker runs many tasks); ``timings["model_cache"]`` of the task record says ``hit``, ``miss``
or ``off``. Another method may keep its own per-process state keyed by
:attr:`MethodContext.cache_key`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import numpy as np

__all__ = [
    "ESTIMATE_COLUMNS",
    "MethodContext",
    "MethodOutput",
    "get_method",
    "register_method",
    "registered_methods",
    "summarise_draws",
]

#: The columns of a method's estimates (NaN where a method has no such number): posterior
#: mean and median, the bounds of the central 50% and 90% intervals, the posterior probability
#: that the quantity is positive, and for a frequentist test its p-value and decision.
ESTIMATE_COLUMNS = (
    "quantity",
    "mean",
    "median",
    "q5",
    "q25",
    "q75",
    "q95",
    "p_positive",
    "p_value",
    "test_reject",
)


@dataclass(frozen=True)
class MethodContext:
    """Everything one task's method sees.

    Attributes
    ----------
    study : bayes_cart.study.spec.StudySpec
        The study.
    scenario, method_name : str
        The task's scenario and method names.
    replicate : int
        The replicate (0-based).
    method : bayes_cart.study.spec.MethodSpec
        The method's settings.
    simulation : bayes_cart.simulate.SimulationResult
        The replicate's dataset (``simulation.data``) and its truth.
    seed : int
        The sampler seed of the task (:func:`bayes_cart.study.seeds.fit_seed`).
    """

    study: Any
    scenario: str
    replicate: int
    method_name: str
    method: Any
    simulation: Any
    seed: int

    @property
    def quantities(self) -> tuple[str, ...]:
        """Quantities of interest of the study."""
        return tuple(self.study.quantities)

    @property
    def cache_key(self) -> tuple[Any, ...]:
        """Method, study hash, patients and rows: a coarse key for a method's own per-process state.

        The built-in methods' compiled-model cache keys on the model's structure instead
        (:func:`bayes_cart.model.build.swap_key`), as the number of rows differs between
        replicates.
        """
        data = self.simulation.data
        return (self.method_name, self.study.hash, data["ID"].nunique(), len(data))


@dataclass
class MethodOutput:
    """What a method returns for one dataset.

    Attributes
    ----------
    estimates : list of dict
        One row per quantity it estimates, keys from :data:`ESTIMATE_COLUMNS`.
    diagnostics : dict
        ``max_rhat``, ``min_ess_bulk``, ``divergences`` (over the population quantities) and
        ``package_gate_passed``
        (:attr:`bayes_cart.inference.diagnostics.Diagnostics.passed`); empty for a method
        without a sampler.
    timings : dict
        ``compile_seconds``, ``sampling_seconds`` where the method has them, and
        ``model_cache`` (``"hit"``, ``"miss"`` or ``"off"``) for the compiled-model cache.
    notes : list of str
        Anything the reader of the record should know (e.g. patients dropped).
    draws : dict
        Posterior draws by quantity, shape ``(chain, draw)`` (a flat array is one chain):
        what the simulation-based calibration ranks of a ``from_prior`` scenario are taken
        from (:func:`bayes_cart.analysis.sbc.sbc_rank`). Not stored in the record; a method
        without draws (the two-stage test) gets no rank.
    """

    estimates: list[dict[str, Any]]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    draws: dict[str, np.ndarray] = field(default_factory=dict)


MethodFunction = Callable[[MethodContext], MethodOutput]

#: kind -> function, or "module:function" of a built-in loaded on first use (PyMC stays unimported
#: until a Bayesian task runs)
_METHODS: dict[str, MethodFunction | str] = {
    "bayes": "bayes_cart.study.bayes_method:bayes_method",
    "two_stage": "bayes_cart.study.two_stage:two_stage_method",
}


def register_method(kind: str, function: MethodFunction, *, replace: bool = False) -> None:
    """Register a method kind for ``[methods.<name>] kind = "<kind>"``.

    A method registered in the client must also exist in every Dask worker: register it at
    import time of a module the workers import (a local cluster forks from the client on
    Linux; for a remote cluster install the module on the workers), or run the study with
    ``workers=0`` (in process).

    Parameters
    ----------
    kind : str
        Name used in study specs.
    function : callable
        ``function(MethodContext) -> MethodOutput``.
    replace : bool
        Allow replacing an existing kind (the built-ins included).

    Examples
    --------
    >>> register_method("bayes", lambda ctx: None)
    Traceback (most recent call last):
    ...
    ValueError: method kind 'bayes' is already registered (replace=True to replace it)
    """
    if kind in _METHODS and not replace:
        raise ValueError(f"method kind {kind!r} is already registered (replace=True to replace it)")
    _METHODS[kind] = function


def registered_methods() -> list[str]:
    """Return the method kinds a study spec may name."""
    return sorted(_METHODS)


def get_method(kind: str) -> MethodFunction:
    """Return the function of a method kind (a built-in is imported on first use)."""
    entry = _METHODS[kind]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(import_module(module), name)
        _METHODS[kind] = entry
    return entry


def summarise_draws(draws: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Estimate rows of posterior draws (one flat array per quantity).

    Examples
    --------
    >>> row = summarise_draws({"beta": np.linspace(0, 1, 101)})[0]
    >>> [round(row[k], 3) for k in ("median", "q5", "q95", "p_positive")]
    [0.5, 0.05, 0.95, 0.99]
    """
    rows = []
    for name, values in draws.items():
        x = np.asarray(values, dtype=float).reshape(-1)
        q5, q25, q50, q75, q95 = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
        rows.append(
            {
                "quantity": name,
                "mean": float(x.mean()),
                "median": float(q50),
                "q5": float(q5),
                "q25": float(q25),
                "q75": float(q75),
                "q95": float(q95),
                "p_positive": float((x > 0).mean()),
                "p_value": float("nan"),
                "test_reject": None,
            }
        )
    return rows
