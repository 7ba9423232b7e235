"""The built-in kinetic structures, one module each.

Adding a structure means adding one module here that defines its
:class:`~bayes_cart.kinetics.structure.KineticModel` (closed form and/or phases, defaults,
starting-estimate heuristic, CK-metric mapping) and one line in
:mod:`bayes_cart.kinetics.registry` that registers it.
"""
