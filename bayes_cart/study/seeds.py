"""Seeds of a study's datasets and fits, derived with :class:`numpy.random.SeedSequence`.

Dataset ``r`` of scenario ``s`` is simulated from a seed derived from (study seed, ``s``,
``r``) only, so every method sees the same data, a rerun reproduces it, and adding a method or
a replicate later changes no existing dataset. A fit's seed adds the method's name; the truth
of a simulation-based calibration replicate (drawn from the prior) has a stream of its own. Names
enter as the integers of their SHA-256 digest, so the seeds do not depend on the order of the
tables in the file or on Python's string hashing.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["dataset_seed", "fit_seed", "prior_seed"]

_DATA, _FIT, _PRIOR = 0, 1, 2


def _words(name: str) -> list[int]:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _sequence(study_seed: int, kind: int, *parts: str | int) -> np.random.SeedSequence:
    key: list[int] = [kind]
    for part in parts:
        key += _words(part) if isinstance(part, str) else [int(part)]
    return np.random.SeedSequence(entropy=int(study_seed), spawn_key=tuple(key))


def dataset_seed(study_seed: int, scenario: str, replicate: int) -> np.random.SeedSequence:
    """Return the seed of one replicate's dataset (the same for every method).

    Examples
    --------
    >>> a = dataset_seed(1, "null", 3).generate_state(1)
    >>> b = dataset_seed(1, "null", 3).generate_state(1)
    >>> bool((a == b).all()), bool((a == dataset_seed(1, "null", 4).generate_state(1)).all())
    (True, False)
    """
    return _sequence(study_seed, _DATA, scenario, replicate)


def fit_seed(study_seed: int, scenario: str, replicate: int, method: str) -> int:
    """Return the sampler seed of one task (a 31-bit integer, as :func:`bayes_cart.fit` takes).

    Examples
    --------
    >>> fit_seed(1, "null", 0, "bayes") == fit_seed(1, "null", 0, "bayes")
    True
    """
    state = _sequence(study_seed, _FIT, scenario, replicate, method).generate_state(1)
    return int(state[0] & 0x7FFFFFFF)


def prior_seed(study_seed: int, scenario: str, replicate: int) -> int:
    """Return the seed of one SBC replicate's prior draw (the same for every method).

    Examples
    --------
    >>> prior_seed(1, "prior", 0) == prior_seed(1, "prior", 0) != prior_seed(1, "prior", 1)
    True
    """
    state = _sequence(study_seed, _PRIOR, scenario, replicate).generate_state(1)
    return int(state[0] & 0x7FFFFFFF)
