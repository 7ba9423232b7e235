"""Virtual patients: simulate CAR-T kinetics data from population values.

For patient *i* and kinetic parameter *p* with a log-normal distribution::

    log p_i = log p_typical + sum of covariate shifts + group deviation (e.g. per TRIAL) + eta_pi

with ``eta_i ~ MVN(0, Omega)``, ``Omega = diag(omega) R diag(omega)`` (``omega`` the SDs of the
log parameters, ``R`` their correlation matrix). Parameters in ``fixed`` are the same for
everyone (e.g. ``k = T0 = 0`` when there is no distribution phase) unless a design column of
the same name sets them per patient. Curves come from the registered kinetic model
(:func:`bayes_cart.kinetics.get_kinetics`), so simulation and fitting share one implementation.
Observations follow a log-normal proportional error, ``log DV = log IPRED + sigma eps``,
and values below the LLOQ are reported as ``DV = LLOQ, CENS = 1``.

Parameters listed in ``logit`` (fractions such as Stein's ``FB``) are logit-normal instead:
the same sum on the logit scale. Covariate effects act on the log (logit) scale:

* categorical: ``{"RESPONSE": {"CR/PR": 0.30}}`` adds 0.30 for that level; levels not listed
  (the reference) add 0;
* continuous, linear: ``{"AGE": {"slope": 0.01, "center": 40}}`` adds ``0.01 (AGE - 40)``;
* continuous, power: ``{"DOSE": {"power": 0.5, "reference": 1e8}}`` adds
  ``0.5 log(DOSE / 1e8)

The simulator is split by job: :mod:`~bayes_cart.simulate.population` (the population values),
:mod:`~bayes_cart.simulate.design` (sampling designs and their checks),
:mod:`~bayes_cart.simulate.engine` (:func:`simulate_patients`) and
:mod:`~bayes_cart.simulate.rows` (infusion and dosing rows, CSV writing); the public names are
re-exported here, so ``bayes_cart.simulate.simulate_patients`` is the one way to reach them.
"""

from __future__ import annotations

from bayes_cart.simulate.design import make_design
from bayes_cart.simulate.engine import SimulationResult, simulate_patients
from bayes_cart.simulate.population import PopulationParameters
from bayes_cart.simulate.rows import (
    add_dosing_rows,
    add_infusion_rows,
    make_infusions,
    write_data_csv,
)

__all__ = [
    "PopulationParameters",
    "SimulationResult",
    "add_dosing_rows",
    "add_infusion_rows",
    "make_design",
    "make_infusions",
    "simulate_patients",
    "write_data_csv",
]
