"""Time-varying step covariates in covariate formulas: ``alpha ~ RESPONSE + TOCI``.

A declared time-varying column (``--time-varying TOCI``) that is 0 up to some day and 1 from
then on (tocilizumab or corticosteroids started) may appear in a parameter's formula as a
plain term. Such a term is not a patient-level covariate: from the patient's change time on,
the parameter is multiplied by ``exp(b)`` (``b_<p>_<COLUMN>``, the formula's covariate prior),
through the kinetics' step change (:func:`bayes_cart.kinetics.step_change.with_step_change`).

The change time of a patient is the TIME of its first record with the value 1 (``inf`` for a
patient who never switches): put a record on the day the treatment starts for it to be exact.
Values must be 0 or 1 and never return to 0 once 1 (one switch per patient). One such column
per fit; it may act on several parameters. Other uses of the column in a formula (an
interaction, a transform) are refused with the term at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayes_cart.errors import DataError, Problem, SpecError

__all__ = [
    "StepCovariate",
    "find_step_covariate",
    "split_step_terms",
    "step_solver",
    "step_structure",
    "structure_by_name",
]


@dataclass(frozen=True)
class StepCovariate:
    """A time-varying 0/1 column acting on parameters from each patient's change time.

    Attributes
    ----------
    column : str
        The column, as spelled in the data.
    parameters : tuple of str
        Parameters whose formula has the column as a term.
    change_time : ndarray (patient,)
        First TIME with the value 1 (days), ``inf`` if never.
    """

    column: str
    parameters: tuple[str, ...]
    change_time: np.ndarray

    def effect_name(self, parameter: str) -> str:
        """Name of the effect's posterior variable, e.g. ``b_alpha_TOCI``."""
        return f"b_{parameter}_{self.column}"


def _terms(rhs: str) -> list[str]:
    """Top-level ``+`` terms of a formula right-hand side."""
    out, depth, cur = [], 0, ""
    for ch in rhs:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "+" and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [t for t in out if t]


def split_step_terms(
    formulas: Mapping[str, str], time_varying: tuple[str, ...], source: str = "covariates"
) -> tuple[dict[str, str], dict[str, str]]:
    """Take time-varying columns out of the formulas.

    Parameters
    ----------
    formulas : mapping
        ``{parameter: right-hand side}``.
    time_varying : tuple of str
        The dataset's time-varying columns.
    source : str
        Where the formulas come from (for errors).

    Returns
    -------
    patient_formulas, steps
        The formulas without the time-varying terms (``"1"`` when nothing is left) and
        ``{parameter: column}``.

    Raises
    ------
    SpecError
        A time-varying column used other than as a plain term, or two different ones.

    Examples
    --------
    >>> split_step_terms({"alpha": "RESPONSE + TOCI", "beta": "RESPONSE"}, ("TOCI",))
    ({'alpha': 'RESPONSE', 'beta': 'RESPONSE'}, {'alpha': 'TOCI'})
    """
    lower = {c.lower(): c for c in time_varying}
    patient: dict[str, str] = {}
    steps: dict[str, str] = {}
    problems: list[str] = []
    for p, rhs in formulas.items():
        kept = []
        for term in _terms(rhs or ""):
            if term.lower() in lower:
                steps[p] = lower[term.lower()]
                continue
            names = {n.lower() for n in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", term)}
            hit = sorted(lower[n] for n in names & set(lower))
            if hit:
                problems.append(
                    f"covariates.formulas.{p}: {term!r} uses the time-varying column(s) {hit} "
                    "other than as a plain term; a step covariate enters as '+ COLUMN' only"
                )
            kept.append(term)
        patient[p] = " + ".join(kept) if kept else "1"
    if len(set(steps.values())) > 1:
        problems.append(
            "covariates: one time-varying step covariate per fit, got "
            f"{sorted(set(steps.values()))}"
        )
    if problems:
        raise SpecError(source, problems)
    return patient, steps


def find_step_covariate(dataset: Any, steps: Mapping[str, str]) -> StepCovariate | None:
    """Change time of every patient for the step covariate of ``steps`` (None if none).

    Raises
    ------
    DataError
        Values other than 0/1, or a return from 1 to 0, naming the patient and rows.
    """
    if not steps:
        return None
    column = next(iter(steps.values()))
    obs = dataset.observations
    values = pd.to_numeric(obs[column], errors="coerce")
    problems: list[Problem] = []
    bad = ~values.isin([0.0, 1.0])
    for i in np.flatnonzero(bad.to_numpy())[:20]:
        problems.append(
            Problem(
                f"step covariate {column!r} must be 0 or 1, got {obs[column].iloc[i]!r}",
                row=int(obs["ROW"].iloc[i]),
                column=column,
                patient=str(obs["ID"].iloc[i]),
            )
        )
    change = np.full(len(dataset.patient_ids), np.inf)
    index = {pid: k for k, pid in enumerate(dataset.patient_ids)}
    for pid, rows in obs.assign(_v=values).groupby("ID", sort=False):
        rows = rows.sort_values("TIME", kind="stable")
        v = rows["_v"].to_numpy()
        on = np.flatnonzero(v == 1.0)
        if len(on) == 0:
            continue
        if np.any(v[on[0] :] != 1.0):
            back = rows["ROW"].to_numpy()[on[0] :][v[on[0] :] != 1.0]
            problems.append(
                Problem(
                    f"step covariate {column!r} goes back from 1 to 0 (rows "
                    f"{[int(r) for r in back[:5]]}); one switch per patient",
                    column=column,
                    patient=str(pid),
                )
            )
        change[index[str(pid)]] = float(rows["TIME"].to_numpy()[on[0]])
    if problems:
        raise DataError(dataset.source, problems)
    return StepCovariate(column=column, parameters=tuple(sorted(steps)), change_time=change)


def step_structure(kinetics: str, changed: tuple[str, ...] = ()) -> Any:
    """Return the structure a fit solves: ``kinetics``, or it with ``changed`` stepping.

    Examples
    --------
    >>> step_structure("liu2021", ("alpha",)).name, step_structure("liu2021").name
    ('liu2021+step(alpha)', 'liu2021')
    """
    from bayes_cart.kinetics import get_kinetics, list_kinetics, register_kinetics
    from bayes_cart.kinetics.step_change import with_step_change

    base = get_kinetics(kinetics)
    if not changed:
        return base
    model = with_step_change(base, changed)
    if model.name not in list_kinetics():
        register_kinetics(model)
    return get_kinetics(model.name)


def structure_by_name(name: str) -> Any:
    """Look a structure up by name, rebuilding a step-change variant (``"<base>+step(a,b)"``)."""
    from bayes_cart.kinetics import get_kinetics, list_kinetics

    if name in list_kinetics():
        return get_kinetics(name)
    m = re.fullmatch(r"(.+)\+step\((.+)\)", name)
    if m is None:
        return get_kinetics(name)  # the registry's own error
    return step_structure(m.group(1), tuple(m.group(2).split(",")))


def step_solver(kinetics: str, step: StepCovariate | None, solver: str) -> str:
    """Route of a fit: a step covariate needs an ODE route (``linear`` if its phases allow)."""
    if step is None or solver != "closed_form":
        return solver
    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.kinetics.engines.linear import check_linear

    try:
        check_linear(get_kinetics(kinetics))
    except ValueError:
        return "ode"
    return "linear"
