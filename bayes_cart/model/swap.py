"""Stable shapes for a model whose data are swapped: padded observations that add nothing.

A method-comparison study fits one model to hundreds of replicate datasets. Compiling the model
once per worker and swapping the data in (:mod:`bayes_cart.inference.model_cache`) needs every
array the graph reads to keep its shape from one replicate to the next, but the number of
observations differs between replicates (a BLQ stopping rule, drop-out, BLQ rows dropped).

:class:`SwapLayout` fixes the observation vector: four segments, one per kind of observation
(quantified, left-censored, interval-censored, right-censored), each of a fixed capacity. A
replicate's observations of a kind fill the start of their segment and the rest are padding
rows with weight 0: their log-likelihood term is computed (finite, at a copy of a real
observation) and multiplied by 0, so the log density and its gradient are exactly those of the
unpadded data, up to the order of the floating-point sum (``tests/test_model_swap.py``). The
segments are static, so the likelihood keeps the static censoring index of the ordinary model
(:class:`bayes_cart.model.likelihood.CensoringIndex`); only the values change.

:func:`swap_problems` lists what the swappable model does not cover (such a model is compiled
per fit, as always). numpy only: the PyMC side is ``build_model(..., swap=layout)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayes_cart.model.likelihood import CensoringIndex

__all__ = ["KINDS", "SwapLayout", "kind_counts", "padded_observations", "swap_problems"]

#: The segments of the padded observation vector, in order.
KINDS = ("quantified", "left", "interval", "right")


def kind_counts(md: Any) -> tuple[int, int, int, int]:
    """Count the observations of each kind (:data:`KINDS`) of a model data.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> md = SimpleNamespace(cens=np.array([0, 0, 1, 1, -1]),
    ...                      log_limit=np.array([np.nan, np.nan, np.nan, 0.5, np.nan]))
    >>> kind_counts(md)
    (2, 1, 1, 1)
    """
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    return (len(index.quantified), len(index.left), len(index.interval), len(index.right))


#: Room in a segment beyond its rows: ``headroom`` times its rows, but at least ``SLACK`` times
#: all rows (a kind with few rows, BLQ samples say, varies most between replicates).
SLACK = 0.1


def _rounded(count: int, total: int, headroom: float, multiple: int) -> int:
    if count == 0:
        return 0
    room = max(headroom * count, SLACK * total)
    return int(math.ceil((count + room) / multiple) * multiple)


@dataclass(frozen=True)
class SwapLayout:
    """Capacities of the four observation segments of a swappable model.

    Attributes
    ----------
    capacity : tuple of int
        Rows per segment, in the order of :data:`KINDS`.

    Examples
    --------
    >>> layout = SwapLayout((16, 8, 0, 0))
    >>> layout.n_obs, layout.index().left.tolist()[:3]
    (24, [16, 17, 18])
    >>> layout.fits((12, 9, 0, 0)), layout.grown((12, 9, 0, 0)).capacity
    (False, (16, 16, 0, 0))
    >>> SwapLayout.for_counts((128, 15, 0, 0)).capacity  # room: 25% of 128, 10% of 143
    (160, 32, 0, 0)
    """

    capacity: tuple[int, int, int, int]

    @classmethod
    def for_counts(
        cls, counts: tuple[int, ...], headroom: float = 0.25, multiple: int = 8
    ) -> SwapLayout:
        """Return a layout with room for ``counts`` and more.

        Per kind with rows: ``headroom`` times its rows or :data:`SLACK` times all rows,
        whichever is more, rounded up to ``multiple``.
        """
        total = int(sum(counts))
        return cls(tuple(_rounded(int(c), total, headroom, multiple) for c in counts))  # type: ignore[arg-type]

    @property
    def n_obs(self) -> int:
        """Length of the padded observation vector."""
        return int(sum(self.capacity))

    def offsets(self) -> tuple[int, ...]:
        """First position of each segment."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.capacity)[:-1]]))

    def fits(self, counts: tuple[int, ...]) -> bool:
        """Whether a replicate with ``counts`` observations per kind fits."""
        return all(c <= cap for c, cap in zip(counts, self.capacity, strict=True))

    def grown(
        self, counts: tuple[int, ...], headroom: float = 0.25, multiple: int = 8
    ) -> SwapLayout:
        """Return the layout widened where ``counts`` would not fit (never narrowed)."""
        wider = SwapLayout.for_counts(counts, headroom, multiple).capacity
        return SwapLayout(
            tuple(
                cap if c <= cap else w
                for c, cap, w in zip(counts, self.capacity, wider, strict=True)
            )  # type: ignore[arg-type]
        )

    def index(self) -> CensoringIndex:
        """Return the static censoring index of the padded vector (its segments, in order)."""
        start = self.offsets()
        parts = [
            np.arange(s, s + c, dtype=np.int64) for s, c in zip(start, self.capacity, strict=True)
        ]
        return CensoringIndex(*parts, order=np.arange(self.n_obs, dtype=np.int64))


def padded_observations(md: Any, layout: SwapLayout) -> dict[str, np.ndarray]:
    """Lay the observation arrays of ``md`` out in ``layout``'s segments, with weights.

    Each segment holds the replicate's observations of its kind (in data order) and then
    padding rows, copies of a real observation (of that kind where there is one) with
    weight 0; an interval-censored padding row gets a limit one unit below its value, so every
    term is finite.

    Returns
    -------
    dict
        ``time``, ``log_dv``, ``log_limit`` (0 where absent, as in the ordinary model),
        ``patient_index`` (int64) and ``weight`` (1 for data, 0 for padding), each of length
        ``layout.n_obs``.

    Raises
    ------
    ValueError
        When a kind has more observations than its segment holds.
    """
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    rows = [index.quantified, index.left, index.interval, index.right]
    counts = tuple(len(r) for r in rows)
    if not layout.fits(counts):
        raise ValueError(f"observations per kind {counts} do not fit the layout {layout.capacity}")
    if md.n_obs == 0:
        raise ValueError("a swappable model needs at least one observation")
    limit = np.nan_to_num(np.asarray(md.log_limit, dtype=float), nan=0.0)
    source = np.empty(layout.n_obs, dtype=np.int64)
    weight = np.zeros(layout.n_obs)
    for start, cap, r in zip(layout.offsets(), layout.capacity, rows, strict=True):
        fill = r[0] if len(r) else 0
        source[start : start + cap] = fill
        source[start : start + len(r)] = r
        weight[start : start + len(r)] = 1.0
    out = {
        "time": np.asarray(md.time, dtype=float)[source],
        "log_dv": np.asarray(md.log_dv, dtype=float)[source],
        "log_limit": limit[source],
        "patient_index": np.asarray(md.patient_index, dtype=np.int64)[source],
        "weight": weight,
    }
    # an interval row needs LIMIT < LLOQ: padding copied from another kind gets one below
    s, c = layout.offsets()[2], layout.capacity[2]
    pad = slice(s + counts[2], s + c)
    out["log_limit"][pad] = out["log_dv"][pad] - 1.0
    return out


def swap_problems(spec: Any, md: Any, solver: str) -> list[str]:
    """Why the model of ``spec`` on ``md`` cannot be built swappable (empty when it can).

    Covered: the closed form, every error model, covariates (fixed columns), trial random
    effects (``centered_group`` false or true), parameters set from the data, every centring
    (informed masks are part of the model's key), the distribution phase. Not covered: the JAX
    solvers, several infusions, marginalised covariates, step covariates, ``centered_group =
    "mean"``.

    Examples
    --------
    >>> from bayes_cart.model.spec import load_spec
    >>> from types import SimpleNamespace
    >>> md = SimpleNamespace(infusions=None, marginal=None, step=None)
    >>> swap_problems(load_spec("liu2021"), md, "ode")
    ["solver 'ode' (only the closed form)"]
    """
    out = []
    if solver != "closed_form":
        out.append(f"solver {solver!r} (only the closed form)")
    if getattr(md, "infusions", None) is not None:
        out.append("several infusions per patient")
    if getattr(md, "marginal", None) is not None:
        out.append("covariates.missing = 'marginalize'")
    if getattr(md, "step", None) is not None:
        out.append("a time-varying step covariate")
    sampling = spec.doc.sampling
    if spec.doc.group.mode == "random" and sampling.centered_group == "mean":
        out.append("sampling.centered_group = 'mean'")
    return out
