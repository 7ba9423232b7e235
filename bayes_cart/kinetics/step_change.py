"""A step change in parameters at a per-patient time: a structure's phases split at that time.

A time-varying covariate that switches on once (tocilizumab or corticosteroids started on a
given day; Stein et al. 2019 estimated their effect on the contraction rate) changes rate
constants from that day on: ``alpha(t) = alpha`` before ``TC`` and ``alpha_after`` from ``TC``.
:func:`with_step_change` builds that structure from any structure with phases: every phase is
split at the patient's change time into a part with the original right-hand side and a part in
which the changed parameters take their ``_after`` values. The state carries over at ``TC``,
so the change acts on the cells present then: a rate that rises during the contraction bends
the curve down from ``TC`` on, and a change before the peak acts on the whole contraction.

The split structure is solved by the ODE routes (``solver="linear"`` when the original phases
are linear, else ``"ode"``); ``TC = inf`` (the default) is no change, and an ``_after`` value
left out (NaN) is the value before.

Examples
--------
>>> import numpy as np
>>> from bayes_cart.kinetics import get_kinetics
>>> liu = get_kinetics("liu2021")
>>> toci = with_step_change(liu, ["alpha"])
>>> p = dict(C0=10.0, beta=0.5, T1=10.0, alpha=0.1, rM=0.01, deltaM=0.001)
>>> t = np.array([5.0, 20.0, 40.0])
>>> same = toci.solve(t, dict(p, TC=np.inf), solver="linear")["log_total"]
>>> bool(np.allclose(same, liu.solve(t, p)["log_total"], rtol=1e-10))
True
>>> faster = toci.solve(t, dict(p, TC=20.0, alpha_after=0.3), solver="linear")["log_total"]
>>> bool(faster[1] == same[1]), bool(faster[2] < same[2])  # equal up to TC, lower after
(True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bayes_cart.kinetics.phases import (
    Phase,
    PhasedODE,
    array_namespace,
    phase_boundaries,
    phased_ode,
)
from bayes_cart.kinetics.structure import KineticModel

Array = Any
Params = Mapping[str, Array]

#: Name of the change-time parameter (days since infusion).
CHANGE_TIME = "TC"
#: Suffix of a changed parameter's value after the change time.
AFTER = "_after"
#: Length (days) of the last phase's first part for a patient without a change: any finite
#: value gives the same curve (the rates after equal those before); finite lengths keep every
#: matrix exponential and gradient finite.
NO_CHANGE_SPAN = 1000.0

__all__ = ["AFTER", "CHANGE_TIME", "with_step_change"]


def _boundary(i: int) -> str:
    return f"{CHANGE_TIME}@{i}"


class _AfterChange(Mapping):
    """The parameters after the change: ``<name>_after`` read for the changed names."""

    def __init__(self, params: Params, changed: tuple[str, ...]) -> None:
        self._params = params
        self._changed = changed

    def __getitem__(self, key: str) -> Array:
        return self._params[key + AFTER if key in self._changed else key]

    def __iter__(self) -> Any:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)


def _after_rhs(rhs: Any, changed: tuple[str, ...]) -> Any:
    def rhs_after(t: Array, y: Array, p: Params) -> Array:
        return rhs(t, y, _AfterChange(p, changed))

    return rhs_after


def with_step_change(model: KineticModel, parameters: Sequence[str]) -> KineticModel:
    """Return ``model`` with ``parameters`` changing, once, at a per-patient time ``TC``.

    Parameters
    ----------
    model : KineticModel
        A structure with phases (``model.ode``).
    parameters : sequence of str
        The parameters that change (e.g. ``["alpha"]``); each gets a ``<name>_after``
        parameter.

    Returns
    -------
    KineticModel
        Named ``"<name>+step(<parameters>)"``, with the extra parameters ``TC`` (default
        ``inf``: no change) and ``<name>_after`` (default NaN: unchanged), solved by the
        ``linear`` and ``ode`` routes.

    Raises
    ------
    ValueError
        If the structure has no phases or a name is not one of its parameters.
    """
    changed = tuple(parameters)
    unknown = [p for p in changed if p not in model.parameters]
    if unknown or not changed:
        raise ValueError(
            f"a step change needs parameters of {model.name!r} ({list(model.parameters)}); "
            f"got {list(changed)}"
        )
    base = phased_ode(model)
    phases: list[Phase] = []
    for i, phase in enumerate(base.phases):
        cut = _boundary(i)
        phases.append(dataclasses.replace(phase, end=cut, name=f"{phase.name} (before)"))
        phases.append(
            Phase(
                cut,
                phase.end,
                _after_rhs(phase.rhs, changed),
                log_space=phase.log_space,
                name=f"{phase.name} (after)",
                two_stage=phase.two_stage,
            )
        )
    split = dataclasses.replace(base, phases=tuple(phases))
    n_phases = len(base.phases)

    def derived(p: dict[str, Array]) -> dict[str, Array]:
        """Cut points of each phase, and unchanged values where ``_after`` is NaN."""
        xp = array_namespace(p[CHANGE_TIME])
        out = dict(p)
        tc = out[CHANGE_TIME]
        never = xp.isinf(tc)
        for name in changed:  # no change (TC = inf) or no value: the value before
            after = out[name + AFTER]
            out[name + AFTER] = xp.where(xp.isnan(after) | never, out[name], after)
        starts, lengths = phase_boundaries(base, xp.where(never, 0.0, tc), out, xp=xp)
        for i in range(n_phases):
            lo = starts[i]
            if i < n_phases - 1:
                cut = xp.minimum(xp.maximum(tc, lo), lo + lengths[i])
            else:  # the last phase runs on; without a change its cut only has to be finite
                # (the values after equal those before), so no solve meets an infinite length
                cut = xp.where(never, lo + NO_CHANGE_SPAN, xp.maximum(tc, lo))
            out[_boundary(i)] = cut
        return out

    return dataclasses.replace(
        model,
        name=f"{model.name}+step({','.join(changed)})",
        parameters=(*model.parameters, CHANGE_TIME, *(p + AFTER for p in changed)),
        description=f"{model.description}; {', '.join(changed)} change at {CHANGE_TIME}",
        closed_form=None,
        ode=split,
        defaults={
            **dict(model.defaults),
            CHANGE_TIME: float("inf"),
            **{p + AFTER: float("nan") for p in changed},
        },
        derived=derived,
        liu_equivalent=None,
        log_peak_shift=model.log_peak_shift,
    )


def is_split(ode: PhasedODE) -> bool:
    """Whether a phase description comes from :func:`with_step_change`."""
    return any(str(ph.end).startswith(f"{CHANGE_TIME}@") for ph in ode.phases)
