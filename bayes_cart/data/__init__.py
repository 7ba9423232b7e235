"""Data in: reading a file or a DataFrame into a checked :class:`~bayes_cart.data.dataset.Dataset`.

``dataset`` reads (CSV, CSV.gz, Parquet, DataFrame) and builds the ``Dataset``; ``column_roles``
decides which header holds which role (names only); ``checks`` holds the row, column and
covariate checks; ``conventions`` reads the values of the Monolix/NONMEM convention columns;
``nca`` is the non-compartmental analysis of the observed data. Nothing here imports the model,
the sampler or an analysis.
"""
