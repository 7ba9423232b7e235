"""Registry of kinetic structures, looked up by name (never by Python import path).

A :class:`KineticModel` bundles the parameter names of a structure with its solvers: a closed
form (when one exists) written against an array namespace, and/or an ODE system integrated
phase by phase with diffrax (:mod:`bayes_cart.kinetics.ode`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from bayes_cart.kinetics.closed_form import liu_log_states, stein_log_total
from bayes_cart.kinetics.initial_estimates import (
    ProfileSummary,
    liu_initial_estimates,
    stein_initial_estimates,
)

Array = Any
ClosedForm = Callable[[Array, Mapping[str, Array], ModuleType], dict[str, Array]]


@dataclass(frozen=True)
class KineticModel:
    """A named kinetic structure.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"liu2021"``.
    parameters : tuple of str
        Parameter names, in the paper's notation (rates /day, times days).
    description : str
        One-line description.
    closed_form : callable, optional
        ``f(t, params, xp) -> {"log_total": ..., "log_E": ..., "log_M": ...}``; at least
        ``log_total``. ``params`` maps parameter names to arrays broadcastable with ``t``.
    ode : object, optional
        An :class:`bayes_cart.kinetics.ode.PhasedODE` for the ODE route.
    defaults : dict
        Values used for parameters that are not given (e.g. ``k = 0, T0 = 0``).
    reference : str
        Literature reference.
    initial_estimates : callable, optional
        ``f(ProfileSummary) -> {parameter: per-patient values}``: crude per-patient
        estimates read off the observed profiles, used to start the sampler
        (:mod:`bayes_cart.kinetics.initial_estimates`); NaN where not estimable. ``None``: the
        chains start at the prior medians.
    """

    name: str
    parameters: tuple[str, ...]
    description: str
    closed_form: ClosedForm | None = None
    ode: Any = None
    defaults: Mapping[str, float] = field(default_factory=dict)
    reference: str = ""
    initial_estimates: Callable[[ProfileSummary], dict[str, Array]] | None = None

    def with_defaults(self, params: Mapping[str, Array]) -> dict[str, Array]:
        """Return ``params`` completed with the structure's defaults; unknown names raise."""
        unknown = set(params) - set(self.parameters)
        if unknown:
            raise KeyError(
                f"kinetic model {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"its parameters are {list(self.parameters)}"
            )
        full = dict(self.defaults)
        full.update(params)
        missing = [p for p in self.parameters if p not in full]
        if missing:
            raise KeyError(f"kinetic model {self.name!r}: missing parameter(s) {missing}")
        return full

    def solve(
        self,
        t: Array,
        params: Mapping[str, Array],
        solver: str = "closed_form",
        xp: ModuleType = np,
    ) -> dict[str, Array]:
        """Solve the structure at times ``t``.

        Parameters
        ----------
        t : array
            Times since infusion (days).
        params : mapping
            Parameter values (arrays broadcastable with ``t``).
        solver : {"closed_form", "linear", "ode"}
            Which route to use: the hand-derived closed form, the matrix exponential of the
            ODE system's linear phases (:mod:`bayes_cart.kinetics.linear_ode`) or the adaptive
            diffrax solver (:mod:`bayes_cart.kinetics.ode`).
        xp : module
            Array namespace for the closed form (numpy, pytensor.tensor, jax.numpy).

        Returns
        -------
        dict
            At least ``log_total``; ``log_E`` and ``log_M`` where the structure has them.
        """
        full = self.with_defaults(params)
        if solver == "closed_form":
            if self.closed_form is None:
                raise ValueError(
                    f"kinetic model {self.name!r} has no closed form; use solver='linear' "
                    "(phases linear in the states) or solver='ode' (any right-hand side)"
                )
            return self.closed_form(t, full, xp)
        if solver in ("ode", "linear"):
            if self.ode is None:
                raise ValueError(f"kinetic model {self.name!r} has no ODE system")
            if solver == "linear":
                from bayes_cart.kinetics.linear_ode import linear_solve

                return linear_solve(self.ode, t, full)
            return self.ode.solve(t, full)
        raise ValueError(f"unknown solver {solver!r}; use 'closed_form', 'linear' or 'ode'")


class _LazyODE:
    """Stand-in for a :class:`~bayes_cart.kinetics.ode.PhasedODE` defined in the ode module.

    Importing :mod:`bayes_cart.kinetics.ode` imports JAX and diffrax and switches JAX to 64-bit
    floats; this placeholder delays that until the ODE route is first used.
    """

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def load(self) -> Any:
        """Import the ode module and return the real object."""
        from bayes_cart.kinetics import ode

        return getattr(ode, self._attribute)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __repr__(self) -> str:
        return f"<lazy bayes_cart.kinetics.ode.{self._attribute}>"


_REGISTRY: dict[str, KineticModel] = {}


def register_kinetics(model: KineticModel, overwrite: bool = False) -> KineticModel:
    """Add a kinetic structure to the registry.

    Parameters
    ----------
    model : KineticModel
        The structure.
    overwrite : bool
        Replace an existing entry of the same name.

    Returns
    -------
    KineticModel
        The registered model (so this can be used inline).
    """
    if model.name in _REGISTRY and not overwrite:
        raise ValueError(f"a kinetic model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def get_kinetics(name: str) -> KineticModel:
    """Look a kinetic structure up by name.

    Examples
    --------
    >>> get_kinetics("liu2021").parameters
    ('C0', 'k', 'T0', 'beta', 'T1', 'alpha', 'rM', 'deltaM', 'deltaE')
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no kinetic model named {name!r}; registered: {sorted(_REGISTRY)}"
        ) from None


def list_kinetics() -> list[str]:
    """Names of all registered kinetic structures."""
    return sorted(_REGISTRY)


def _liu_closed_form(t: Array, p: Mapping[str, Array], xp: ModuleType) -> dict[str, Array]:
    log_e, log_m, log_total = liu_log_states(
        t,
        xp.log(p["C0"]),
        p["beta"],
        p["T1"],
        p["alpha"],
        p["rM"],
        p["deltaM"],
        k=p["k"],
        t0=p["T0"],
        delta_e=p["deltaE"],
        xp=xp,
    )
    return {"log_E": log_e, "log_M": log_m, "log_total": log_total}


def _stein_closed_form(t: Array, p: Mapping[str, Array], xp: ModuleType) -> dict[str, Array]:
    log_total = stein_log_total(
        t, xp.log(p["Cmax"]), p["Tmax"], p["foldx"], p["alpha"], p["beta"], p["FB"], xp=xp
    )
    return {"log_total": log_total}


LIU2021 = register_kinetics(
    KineticModel(
        name="liu2021",
        parameters=("C0", "k", "T0", "beta", "T1", "alpha", "rM", "deltaM", "deltaE"),
        description=(
            "Multiphasic CAR-T kinetics: distribution (k, T0), expansion (beta, T1), "
            "contraction with memory (alpha, rM, deltaM; deltaE fixed)"
        ),
        closed_form=_liu_closed_form,
        ode=_LazyODE("LIU2021_ODE"),
        defaults={"k": 0.0, "T0": 0.0, "deltaE": 0.435 / (365.25 / 12.0)},
        reference="Liu C et al. Clin Pharmacol Ther 2021; medRxiv 2020.05.09.20096586",
        initial_estimates=lambda prof: liu_initial_estimates(prof, 0.435 / (365.25 / 12.0)),
    )
)

STEIN2019 = register_kinetics(
    KineticModel(
        name="stein2019",
        parameters=("Cmax", "Tmax", "foldx", "alpha", "beta", "FB"),
        description=(
            "Exponential growth to Cmax at Tmax, then bi-exponential decline "
            "(1-FB) e^(-alpha tau) + FB e^(-beta tau)"
        ),
        closed_form=_stein_closed_form,
        reference="Stein AM et al. CPT Pharmacometrics Syst Pharmacol 2019; 8:285-295",
        initial_estimates=stein_initial_estimates,
    )
)
