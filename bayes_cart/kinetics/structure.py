"""A kinetic structure: its parameters, its closed form and/or phases, and its heuristics.

:class:`KineticModel` is what the registry (:mod:`bayes_cart.kinetics.registry`) stores and
what every part of bayes_cart solves through :meth:`KineticModel.solve`. The built-in
structures are defined in :mod:`bayes_cart.kinetics.structures`, one module each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from bayes_cart.kinetics.initial_estimates import ProfileSummary
from bayes_cart.kinetics.phases import PhasedODE
from bayes_cart.kinetics.solvers import solve

Array = Any
ClosedForm = Callable[[Array, Mapping[str, Array], ModuleType], dict[str, Array]]

__all__ = ["ClosedForm", "KineticModel"]


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
    ode : PhasedODE, optional
        The phase description (:mod:`bayes_cart.kinetics.phases`) for the ODE routes
        (``solver="linear"`` or ``"ode"``).
    defaults : dict
        Values used for parameters that are not given (e.g. ``k = 0, T0 = 0``).
    reference : str
        Literature reference.
    initial_estimates : callable, optional
        ``f(ProfileSummary) -> {parameter: per-patient values}``: crude per-patient
        estimates read off the observed profiles, used to start the sampler
        (:mod:`bayes_cart.kinetics.initial_estimates`); NaN where not estimable. ``None``: the
        chains start at the prior medians.
    distribution_parameters : tuple of str
        Parameters of a phase that only some patients have (Liu's distribution phase:
        ``k``, ``T0``): a spec flags them ``distribution_phase_only`` and they are 0 for the
        other patients.
    log_peak_shift : callable, optional
        ``f(params, xp) -> log Cmax - log C0`` from the other parameters; lets the ``cmax``
        parameterisation sample each patient's log peak level instead of log C0 (an exact
        translation). ``None``: the structure has no such identity.
    derived : callable, optional
        ``f(params) -> params`` run on the complete parameters before every solve, to add
        values the phases need that are computed from the others (the cut points of a step
        change, :func:`bayes_cart.kinetics.step_change.with_step_change`).
    liu_equivalent : callable, optional
        ``f(params) -> Liu parameters`` (``C0, k, T0, beta, T1, alpha, rM, deltaM, deltaE``
        arrays, NaN where a draw has no Liu equivalent): lets the analytic CK metrics of
        :mod:`bayes_cart.kinetics.metrics` serve this structure. ``None``: metrics are read
        off solved profiles on a time grid.
    """

    name: str
    parameters: tuple[str, ...]
    description: str
    closed_form: ClosedForm | None = None
    ode: PhasedODE | None = None
    defaults: Mapping[str, float] = field(default_factory=dict)
    reference: str = ""
    initial_estimates: Callable[[ProfileSummary], dict[str, Array]] | None = None
    distribution_parameters: tuple[str, ...] = ()
    log_peak_shift: Callable[[Mapping[str, Array], ModuleType], Array] | None = None
    derived: Callable[[dict[str, Array]], dict[str, Array]] | None = None
    liu_equivalent: Callable[[Mapping[str, Array]], dict[str, Array]] | None = None

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
        return self.derived(full) if self.derived is not None else full

    def solve(
        self,
        t: Array,
        params: Mapping[str, Array],
        solver: str = "closed_form",
        xp: ModuleType = np,
    ) -> dict[str, Array]:
        """Solve the structure at times ``t``: see :func:`bayes_cart.kinetics.solvers.solve`.

        ``solver`` is ``"closed_form"``, ``"linear"`` or ``"ode"``; ``xp`` the array namespace
        of the closed form. Returns at least ``log_total`` (and ``log_E``, ``log_M`` where the
        structure has them).
        """
        return solve(self, t, params, solver=solver, xp=xp)
