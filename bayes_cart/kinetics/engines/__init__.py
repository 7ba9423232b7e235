"""Engines that solve a :class:`~bayes_cart.kinetics.phases.PhasedODE` with JAX.

* :mod:`~bayes_cart.kinetics.engines.diffrax_ode`: adaptive diffrax integration
  (``solver="ode"``).
* :mod:`~bayes_cart.kinetics.engines.linear`: matrix exponentials of linear phases
  (``solver="linear"``), built on :mod:`~bayes_cart.kinetics.engines.matrix_exp`.
* :mod:`~bayes_cart.kinetics.engines.pytensor_op`: either route as a PyTensor op inside the
  PyMC model.

Choose among them with :mod:`bayes_cart.kinetics.solvers`; importing an engine imports JAX.
"""
