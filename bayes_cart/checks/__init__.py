"""Model checks of a fit against its data: posterior predictive checks, VPC and GOF.

``ppc`` (randomised PIT and LOO-PIT on the censored scale), ``vpc`` (censoring-aware visual
predictive checks, pcVPC, BLQ fraction, coverage) and ``gof`` (PRED, IPRED, IWRES, NPD and
individual fit bands). Each reads a loaded fit through :mod:`bayes_cart.predict` and returns
tables; the figures are in :mod:`bayes_cart.plots`.
"""
