"""matplotlib figures of the tables of the checks, the analyses and the study report.

``checks`` (VPC, BLQ fraction, GOF, PIT, individual fits), ``contrasts`` (forest plots,
virtual-population bands) and ``study`` (coverage, bias and RMSE, power, SBC ECDF differences,
run time and failures of a method-comparison study, from
:mod:`bayes_cart.study.report_tables`). Importing them leaves the matplotlib backend alone.
"""
