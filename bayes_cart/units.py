"""Units used inside bayes_cart.

Inside the package time is in **days** and rates are **per day**. The paper (Liu et al. 2021)
reports rates per month; one month is taken as 30.4375 days (365.25 / 12).
"""

from __future__ import annotations

DAYS_PER_MONTH: float = 365.25 / 12.0
"""Days in one month (365.25 / 12 = 30.4375)."""

DELTA_E_PER_MONTH: float = 0.435
"""Natural death rate of effector CAR-T cells, fixed in the paper (/month)."""

DELTA_E_PER_DAY: float = DELTA_E_PER_MONTH / DAYS_PER_MONTH
"""deltaE in /day (0.435 / 30.4375 = 0.014292 /day)."""

TIME_UNITS: dict[str, float] = {
    "day": 1.0,
    "days": 1.0,
    "d": 1.0,
    "hour": 1.0 / 24.0,
    "hours": 1.0 / 24.0,
    "h": 1.0 / 24.0,
    "week": 7.0,
    "weeks": 7.0,
    "w": 7.0,
    "month": DAYS_PER_MONTH,
    "months": DAYS_PER_MONTH,
    "mo": DAYS_PER_MONTH,
}
"""Multipliers that convert a time in the given unit to days."""


def to_days(unit: str) -> float:
    """Return the factor that converts times in ``unit`` to days.

    Parameters
    ----------
    unit : str
        One of ``day``, ``hour``, ``week``, ``month`` (plural and short forms accepted).

    Returns
    -------
    float
        Multiply a time in ``unit`` by this to get days.

    Examples
    --------
    >>> to_days("week")
    7.0
    """
    key = unit.strip().lower()
    if key not in TIME_UNITS:
        raise ValueError(f"unknown time unit {unit!r}; use one of day, hour, week, month")
    return TIME_UNITS[key]


def per_day_to_per_month(rate: float) -> float:
    """Convert a rate constant from /day to /month."""
    return rate * DAYS_PER_MONTH


def per_month_to_per_day(rate: float) -> float:
    """Convert a rate constant from /month to /day."""
    return rate / DAYS_PER_MONTH
