"""Per-patient starting estimates read off the observed profiles, one heuristic per structure.

The sampler starts every chain from these (see :mod:`bayes_cart.model.initial_values`): a chain
started inside the typical set does not fall into the degenerate regions a random start can
reach (a peak placed after the last sample, residual error explaining everything, or, for
Stein's bi-exponential, the slow and fast phases swapped). The estimates are crude on
purpose (graphical, NCA-like); NaN means "no information for this patient" and is filled
with the median over patients, then with the prior median.

:func:`read_profiles` is structure-free; each structure maps a :class:`ProfileSummary` to its
own parameters in its own module (``initial_estimates`` of
:mod:`bayes_cart.kinetics.structures.liu2021` and
:mod:`bayes_cart.kinetics.structures.stein2019`).

Examples
--------
>>> import numpy as np
>>> t = np.array([1.0, 7.0, 14.0, 28.0, 90.0, 180.0])
>>> y = np.log([10.0, 800.0, 5000.0, 600.0, 60.0, 30.0])
>>> prof = read_profiles(t, y, np.zeros(6, int), np.zeros(6, int), 1)
>>> float(prof.t_peak[0]), round(float(prof.expansion_rate[0]), 3)
(14.0, 0.478)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Samples within this many days after the peak inform the early (fast) decline.
EARLY_WINDOW = 45.0

__all__ = ["EARLY_WINDOW", "ProfileSummary", "read_profiles"]


@dataclass(frozen=True)
class ProfileSummary:
    """Graphical summaries of each patient's observed profile (NaN where not estimable).

    Attributes
    ----------
    log_peak, t_peak : ndarray
        Highest quantified log DV and its time (days).
    log_first, t_first : ndarray
        First quantified sample after infusion and before the peak.
    expansion_rate : ndarray
        Log-linear slope from the first sample to the peak (/day).
    decline_rate : ndarray
        Minus the log-linear slope over the samples up to :data:`EARLY_WINDOW` days after the
        peak (/day).
    terminal_rate : ndarray
        Minus the slope over the later quantified samples (/day), at least two of them.
    late_fraction : ndarray
        Level of the terminal line at the peak time relative to the peak (Stein's FB).
    """

    log_peak: np.ndarray
    t_peak: np.ndarray
    log_first: np.ndarray
    t_first: np.ndarray
    expansion_rate: np.ndarray
    decline_rate: np.ndarray
    terminal_rate: np.ndarray
    late_fraction: np.ndarray


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    if len(t) < 2 or np.ptp(t) <= 0:
        return np.nan
    return float(np.polyfit(t, y, 1)[0])


def read_profiles(
    time: np.ndarray,
    log_dv: np.ndarray,
    cens: np.ndarray,
    patient_index: np.ndarray,
    n_patients: int,
) -> ProfileSummary:
    """Summarise every patient's quantified samples (censored samples are ignored).

    Parameters
    ----------
    time, log_dv, cens, patient_index : ndarray
        Per observation (as in :class:`bayes_cart.model.model_data.ModelData`).
    n_patients : int
        Number of patients.

    Returns
    -------
    ProfileSummary
    """
    out = {f: np.full(n_patients, np.nan) for f in ProfileSummary.__dataclass_fields__}
    for i in range(n_patients):
        sel = (patient_index == i) & (cens == 0)
        t, y = time[sel], log_dv[sel]
        if len(t) == 0:
            continue
        j = int(np.argmax(y))
        tp, yp = t[j], y[j]
        out["log_peak"][i], out["t_peak"][i] = yp, tp
        before = (t > 0) & (t < tp)
        if before.any():
            k = int(np.argmin(np.where(before, t, np.inf)))
            out["log_first"][i], out["t_first"][i] = y[k], t[k]
            if yp > y[k]:
                out["expansion_rate"][i] = (yp - y[k]) / (tp - t[k])
        early = (t >= tp) & (t <= tp + EARLY_WINDOW)
        decline = -_slope(t[early], y[early])
        if np.isfinite(decline) and decline > 0:
            out["decline_rate"][i] = decline
        late = t > tp + EARLY_WINDOW
        terminal = -_slope(t[late], y[late])
        if np.isfinite(terminal) and late.sum() >= 2:
            terminal = max(terminal, 1e-4)
            out["terminal_rate"][i] = terminal
            level = np.mean(y[late] + terminal * (t[late] - tp))
            out["late_fraction"][i] = np.exp(min(level - yp, 0.0))
    return ProfileSummary(**out)
