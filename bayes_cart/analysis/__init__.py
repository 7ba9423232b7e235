"""What a fit says: population summary, contrasts, CK metrics, LOO and virtual populations.

``summary`` (the population table), ``contrasts`` (between covariate groups), ``ck_metrics``
(per patient and per group's typical patient, with the NCA reconciliation), ``loo``
(leave-one-patient-out PSIS-LOO, ``compare_fits``) and ``virtual_population``. Each reads a
loaded fit through :mod:`bayes_cart.predict` and returns tables; none imports PyMC.
"""
