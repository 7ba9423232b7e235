"""Registry of kinetic structures, looked up by name (never by Python import path).

The registry stores :class:`~bayes_cart.kinetics.structure.KineticModel` objects and imports
no solver: the built-in structures are defined in :mod:`bayes_cart.kinetics.structures` and
registered below; users add their own with :func:`register_kinetics`, or with
:func:`register_ode_kinetics` for a structure given by its phases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bayes_cart.kinetics.phases import Phase, PhasedODE, effector_memory_output
from bayes_cart.kinetics.structure import KineticModel
from bayes_cart.kinetics.structures.liu2021 import LIU2021
from bayes_cart.kinetics.structures.stein2019 import STEIN2019

__all__ = ["get_kinetics", "list_kinetics", "register_kinetics", "register_ode_kinetics"]

Array = Any
Params = Mapping[str, Array]

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


def register_ode_kinetics(
    name: str,
    parameters: Sequence[str],
    phases: Sequence[Phase],
    y0: Callable[[Params], Array],
    n_states: int,
    output: Callable[[Array], dict[str, Array]] = effector_memory_output,
    defaults: Mapping[str, float] | None = None,
    description: str = "",
    reference: str = "",
    overwrite: bool = False,
    *,
    distribution_parameters: Sequence[str] = (),
    log_peak_shift: Callable[[Params, Any], Array] | None = None,
    **solver_options: Any,
) -> Any:
    """Register a kinetic structure defined by its phases' right-hand sides.

    Parameters
    ----------
    name : str
        Registry name.
    parameters : sequence of str
        All parameter names (including phase boundaries such as ``T1``).
    phases : sequence of Phase
        The phases, see :class:`Phase`.
    y0 : callable
        Initial state ``y0(params)``.
    n_states : int
        Size of the state vector.
    output : callable
        Output function, default :func:`effector_memory_output` (states E, M).
    defaults : mapping, optional
        Default parameter values.
    description, reference : str
        Metadata.
    overwrite : bool
        Replace an existing registration of the same name.
    distribution_parameters : sequence of str
        Parameters of a phase only some patients have (a spec flags them
        ``distribution_phase_only``), e.g. ``("k", "T0")`` when the structure reuses Liu's
        distribution phase; see :class:`~bayes_cart.kinetics.structure.KineticModel`.
    log_peak_shift : callable, optional
        ``f(params, xp) -> log Cmax - log C0``, for the ``cmax`` parameterisation (e.g.
        :func:`~bayes_cart.kinetics.structures.liu2021.liu_log_peak_shift` when the structure
        keeps Liu's distribution and expansion phases).
    **solver_options
        ``solver``, ``rtol``, ``atol``, ``max_steps``, ``throw`` of
        :class:`~bayes_cart.kinetics.phases.PhasedODE` (the diffrax engine's options).

    Returns
    -------
    KineticModel
        The registered model; ``model.solve(t, params, solver="ode")`` solves it.

    Examples
    --------
    >>> from bayes_cart.kinetics.phases import Phase
    >>> from bayes_cart.kinetics.structures.liu2021 import LIU_PHASES
    >>> def saturable(t, y, p):
    ...     return (p["beta"] * y[0] / (1 + y[0] / p["Emax"]), 0 * y[1])
    >>> phases = (LIU_PHASES[0], Phase("T0", "T1", saturable, log_space=True), LIU_PHASES[2])
    >>> model = register_ode_kinetics(
    ...     "liu_saturable_doc", ("C0", "k", "T0", "beta", "Emax", "T1", "alpha", "rM",
    ...     "deltaM", "deltaE"), phases, y0=lambda p: (p["C0"], 0.0 * p["C0"]), n_states=2,
    ...     defaults={"k": 0.0, "T0": 0.0, "deltaE": 0.435 / 30.4375}, overwrite=True)
    >>> model.closed_form is None
    True
    """
    ode = PhasedODE(phases=tuple(phases), n_states=n_states, y0=y0, output=output, **solver_options)
    missing = [b for b in ode.parameter_bounds() if b not in parameters]
    if missing:
        raise ValueError(f"phase boundaries {missing} are not among the parameters of {name!r}")
    model = KineticModel(
        name=name,
        parameters=tuple(parameters),
        description=description,
        ode=ode,
        defaults=dict(defaults or {}),
        reference=reference,
        distribution_parameters=tuple(distribution_parameters),
        log_peak_shift=log_peak_shift,
    )
    return register_kinetics(model, overwrite=overwrite)


for _builtin in (LIU2021, STEIN2019):
    register_kinetics(_builtin)
