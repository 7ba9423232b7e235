"""Inference: sampling a model into a fit, checking it, and the fit file.

``sampling`` (:func:`~bayes_cart.inference.sampling.fit`, the samplers, restarts and retries),
``progress`` (the live sampler display), ``floating_point`` (FTZ/DAZ in the sampler's threads),
``start_check`` (the start point's log density and gradient), ``diagnostics`` (the gate),
``fit_result`` (the :class:`~bayes_cart.inference.fit_result.Fit` record, without PyMC) and
``io`` (the on-disk format: ``save_fit`` / ``load_fit``). Only ``sampling`` and
``start_check`` import PyMC; reading a fit does not.
"""
