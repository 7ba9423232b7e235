"""The prediction layer: every analysis draws, predicts and simulates from a fit through here.

Data flow, one way: :mod:`~bayes_cart.predict.draws` (which posterior draws) ->
:mod:`~bayes_cart.predict.parameters` (fitted, typical, new patients, new trials) ->
:mod:`~bayes_cart.predict.curves` (solves with the fit's own solver: grids, observation times,
PRED, IPRED) -> :mod:`~bayes_cart.predict.residuals` and :mod:`~bayes_cart.predict.replicates`
(residual error, replicate datasets on the observed design). GOF, VPC, PPC, CK metrics,
contrasts, virtual populations and the report use these functions and nothing else to predict.
"""

from bayes_cart.predict.curves import (
    curve_states,
    fit_kinetics,
    fit_solver,
    individual_predictions,
    population_predictions,
    predict_at_observations,
    predict_curves,
)
from bayes_cart.predict.draws import draw_index, n_samples, stacked, subset_draws
from bayes_cart.predict.observations import observation_table
from bayes_cart.predict.parameters import (
    design_population_parameters,
    individual_parameters,
    population_parameters,
)
from bayes_cart.predict.replicates import simulate_observed_design
from bayes_cart.predict.residuals import draw_residuals, residual_sd

__all__ = [
    "curve_states",
    "design_population_parameters",
    "draw_index",
    "draw_residuals",
    "fit_kinetics",
    "fit_solver",
    "individual_parameters",
    "individual_predictions",
    "n_samples",
    "observation_table",
    "population_parameters",
    "population_predictions",
    "predict_at_observations",
    "predict_curves",
    "residual_sd",
    "simulate_observed_design",
    "stacked",
    "subset_draws",
]
