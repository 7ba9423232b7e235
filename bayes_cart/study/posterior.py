"""Posterior draws of population quantities, by the names of :func:`bayes_cart.population_summary`.

``beta`` is the posterior variable ``beta``; ``omega_beta``, ``sigma``, ``corr_beta_T1`` the
same; ``beta:RESPONSE[CR/PR]`` is coordinate ``RESPONSE[CR/PR]`` of ``b_beta``; ``x[c]`` is
coordinate ``c`` of ``x``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["quantity_draws"]

_COORD = re.compile(r"^(?P<var>[^\[]+)\[(?P<coord>.+)\]$")


def _locate(name: str) -> tuple[str, str | None]:
    if ":" in name:
        parameter, _, term = name.partition(":")
        return f"b_{parameter}", term
    m = _COORD.match(name)
    if m:
        return m["var"], m["coord"]
    return name, None


def quantity_draws(
    posterior: Any, names: Iterable[str], *, flat: bool = True
) -> dict[str, np.ndarray]:
    """Draws of each named quantity the posterior has (absent ones are left out).

    Parameters
    ----------
    posterior : xarray.Dataset
        ``idata.posterior``.
    names : iterable of str
        Quantities, named like the rows of :func:`bayes_cart.population_summary`.
    flat : bool
        Flat arrays (chains one after the other); False: shape ``(chain, draw)``.

    Examples
    --------
    >>> import xarray as xr
    >>> post = xr.Dataset({"beta": (("chain", "draw"), np.ones((2, 3))),
    ...     "b_beta": (("chain", "draw", "b_beta_dim"), np.zeros((2, 3, 1)))},
    ...     coords={"b_beta_dim": ["RESPONSE[CR/PR]"]})
    >>> sorted(quantity_draws(post, ["beta", "beta:RESPONSE[CR/PR]", "alpha"]))
    ['beta', 'beta:RESPONSE[CR/PR]']
    >>> quantity_draws(post, ["beta"], flat=False)["beta"].shape
    (2, 3)
    """
    out: dict[str, np.ndarray] = {}
    for name in names:
        var, coord = _locate(name)
        if var not in posterior:
            continue
        x = posterior[var]
        extra = [d for d in x.dims if d not in ("chain", "draw")]
        if coord is None and not extra:
            out[name] = np.asarray(x.transpose("chain", "draw"))
        elif coord is not None and len(extra) == 1:
            labels = [str(c) for c in x[extra[0]].values]
            if coord in labels:
                value = x.isel({extra[0]: labels.index(coord)}).transpose("chain", "draw")
                out[name] = np.asarray(value)
    return {k: v.reshape(-1) for k, v in out.items()} if flat else out
