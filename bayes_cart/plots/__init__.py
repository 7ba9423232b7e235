"""matplotlib figures of the tables in :mod:`bayes_cart.checks` and :mod:`bayes_cart.analysis`.

``checks`` (VPC, BLQ fraction, GOF, PIT, individual fits) and ``contrasts`` (forest plots,
virtual-population bands). Importing them leaves the matplotlib backend alone.
"""
