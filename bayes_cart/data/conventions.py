"""NONMEM and Monolix row conventions behind :func:`bayes_cart.data.dataset.load_dataset`.

:mod:`bayes_cart.data.column_roles` says which column holds what; this module reads the values of
the roles that are conventions of the two tools rather than data the model uses directly, and turns
them into the loader's canonical meaning or refuses them with a message naming the file, row, column
and patient:

* ``BLQ``/``BQL`` flags and an ``LLOQ`` column (NONMEM's M3 layout) -> censored rows whose limit
  is that LLOQ;
* ``CMT``, ``RATE``, ``ADDL``, ``II``, ``SS`` on dosing and observation rows: a single infusion at
  its TIME is accepted, anything the kinetics cannot represent is refused;
* ``CMT``/``YTYPE`` (one observed quantity), ``OCC`` (one occasion per patient);
* the unit of TIME: a ``TIMEUNIT`` column must agree with ``time_unit``, and hours read as days
  (or days read as hours) are detected from the sampling pattern;
* warnings for IDs that differ only by case, spaces or number format, samples before the first
  dose, a first dose not at TIME 0, and every sample at one TIME.

Functions that check rows add to a ``problems`` collector (``add`` / ``per_row``, see
:class:`bayes_cart.data.checks._Problems`); functions that only warn return or append text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bayes_cart.data.checks import _list, _n, labels, to_numbers
from bayes_cart.units import to_days

MAX_INFUSION_DAYS = 1.0
"""Longest infusion (AMT/RATE) taken as given at its TIME: the kinetics start from C0 there."""

HOURS_HINT = "if TIME is in hours, pass time_unit='hour' (--time-unit hour)"
UNIT_NAMES = {1.0: "day", 1.0 / 24.0: "hour", 7.0: "week"}
MAX_LISTED = 20


def censoring_from_blq(cells, roles, frame, is_obs, problems) -> np.ndarray:
    """Read a ``BLQ`` flag column (1 below the LLOQ, 0 or empty quantified) as CENS codes."""
    col = roles["BLQ"]
    flag, bad = to_numbers(cells[col])
    flag = np.where(np.isnan(flag) & ~bad, 0.0, flag)
    invalid = is_obs & ~np.isin(flag, (0.0, 1.0))
    problems.per_row(
        frame,
        invalid,
        "invalid BLQ flag {v} (1 = below the LLOQ, 0 or empty = quantified)",
        column=col,
        v=cells[col].to_numpy(),
    )
    return np.where(invalid, 0, flag).astype(np.int64)


def limits_from_lloq(
    cells, roles, frame, is_obs, dv, dv_bad, cens, problems, notes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put the LLOQ of censored rows in DV (the loader's convention) from an ``LLOQ`` column.

    NONMEM files flag a sample below the LLOQ (``BLQ=1``, or ``CENS=1``) and write DV = 0, DV =
    LLOQ or the unreliable measured value; the LLOQ itself is in an ``LLOQ`` column or in DV.
    Without a flag column, a row whose DV is below its LLOQ is taken as censored (with a note).

    Returns
    -------
    dv, dv_bad, cens : numpy.ndarray
        DV with the LLOQ on censored rows, the "DV is not a number" mask (cleared where the
        LLOQ replaces DV) and the CENS codes.
    """
    dv, dv_bad, cens = dv.copy(), dv_bad.copy(), cens.copy()
    dv_col = roles["DV"]
    flag_col = roles.get("BLQ") or roles.get("CENS")
    flag_name = "BLQ" if "BLQ" in roles else "CENS"
    lloq = np.full(len(cells), np.nan)
    if "LLOQ" in roles:
        col = roles["LLOQ"]
        raw = cells[col].to_numpy()
        lloq, bad = to_numbers(cells[col])
        problems.per_row(frame, is_obs & bad, "LLOQ is not a number: {v}", column=col, v=raw)
        problems.per_row(
            frame,
            is_obs & ~bad & (np.isinf(lloq) | (lloq <= 0)),
            "LLOQ must be a finite number > 0, got {v}",
            column=col,
            v=raw,
        )
        lloq = np.where(np.isfinite(lloq) & (lloq > 0), lloq, np.nan)
        if flag_col is None:
            below = is_obs & ~np.isnan(lloq) & ~dv_bad & (dv < lloq)
            cens[below] = 1
            if below.any():
                notes.append(
                    f"{_n(int(below.sum()), 'row')} with DV below the {col!r} column taken as "
                    "below the LLOQ (censored, M3), as there is no BLQ or CENS column: "
                    + _where(frame, below)
                )
    left = is_obs & (cens == 1)
    known = left & ~np.isnan(lloq)
    above = known & ~dv_bad & (dv > lloq * (1 + 1e-9))
    problems.per_row(
        frame,
        above,
        "DV {d} is above the LLOQ {q} on a row flagged below the LLOQ ("
        + f"{flag_name}=1); fix the flag or the LLOQ",
        column=dv_col,
        d=dv,
        q=lloq,
    )
    use = known & ~above
    dv = np.where(use, lloq, dv)
    dv_bad = dv_bad & ~use
    if "BLQ" in roles:
        unknown = left & np.isnan(lloq) & (dv_bad | np.isnan(dv) | (dv <= 0))
        where = " (no LLOQ column)" if "LLOQ" not in roles else " (the LLOQ cell is empty)"
        problems.per_row(
            frame,
            unknown,
            "row flagged below the LLOQ (BLQ=1) with DV {d} and no LLOQ"
            + where
            + ": the limit is unknown; write the LLOQ in DV or in an LLOQ column",
            column=flag_col,
            d=cells[dv_col].to_numpy(),
        )
        # reported above: a placeholder keeps the DV checks from reporting the row twice
        dv = np.where(unknown, 1.0, dv)
        dv_bad = dv_bad & ~unknown
    low = is_obs & (cens == 0) & ~np.isnan(lloq) & ~dv_bad & (dv > 0) & (dv < lloq)
    if low.any():
        notes.append(
            f"{_n(int(low.sum()), 'quantified row')} ({flag_name}=0) with DV below the LLOQ "
            "kept as quantified values: " + _where(frame, low)
        )
    return dv, dv_bad, cens


def blq_rows_marked_missing(cells, roles, frame, usable) -> str | None:
    """Return a note when rows flagged BLQ=1 also have MDV=1 (NONMEM's M1: not used)."""
    if "BLQ" not in roles or "MDV" not in roles:
        return None
    flag, _ = to_numbers(cells[roles["BLQ"]])
    mdv, _ = to_numbers(cells[roles["MDV"]])
    rows = usable & (flag == 1) & (mdv == 1)
    if not rows.any():
        return None
    return (
        f"{_n(int(rows.sum()), 'row')} flagged below the LLOQ (BLQ=1) also have MDV=1 and are "
        "not used (NONMEM's M1 method); set MDV=0 on them to fit them as censored (M3): "
        + _where(frame, rows)
    )


_ITEM_MESSAGES = {
    "ADDL": (
        "ADDL {v} (additional doses) is not supported: repeated infusions are read from rows; "
        "write each infusion as its own dosing row (each starts its own cohort of cells) or set "
        "ADDL=0"
    ),
    "II": (
        "II {v} (interdose interval) is not supported: it only has a meaning with ADDL or SS, "
        "and repeated doses are read from their own dosing rows; set II=0 or leave it empty"
    ),
    "SS": (
        "SS {v} (steady-state dosing) is not supported: a CAR-T infusion is a single dose; "
        "set SS=0 or leave it empty"
    ),
}


def check_dose_items(cells, roles, frame, is_dose, is_obs, amt, factor, problems, notes) -> None:
    """Check NONMEM's ``RATE``, ``ADDL``, ``II``, ``SS``: accepted only where they are neutral.

    A dosing row with ``RATE > 0`` whose infusion (AMT/RATE) lasts at most
    :data:`MAX_INFUSION_DAYS` is taken as given at its TIME (noted); a longer infusion, a
    modelled rate or duration (``RATE`` -1/-2), ``ADDL > 0``, ``II > 0`` and ``SS != 0`` are
    refused on the row. On an observation row they must be 0 or empty.
    """
    used = is_dose | is_obs
    for item in ("CMT", "RATE", "ADDL", "II", "SS"):
        if item not in roles:
            continue
        col = roles[item]
        raw = cells[col].to_numpy()
        values, bad = to_numbers(cells[col])
        problems.per_row(frame, used & bad, f"{item} is not a number: {{v}}", column=col, v=raw)
        values = np.where(bad, np.nan, values)
        given = ~np.isnan(values) & (values != 0)
        if item == "CMT":
            continue
        if item != "RATE":
            problems.per_row(frame, used & given, _ITEM_MESSAGES[item], column=col, v=values)
            continue
        problems.per_row(
            frame,
            is_dose & (values < 0),
            "RATE {v}: a rate or duration estimated by the model (NONMEM R1/D1) is not "
            "supported; the kinetics start from C0 at the dose TIME, so write RATE=0 or leave "
            "it empty",
            column=col,
            v=values,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            days = np.where(is_dose & (values > 0), amt / values * factor, np.nan)
        long = is_dose & (values > 0) & np.isfinite(amt) & ~(days <= MAX_INFUSION_DAYS)
        problems.per_row(
            frame,
            long,
            "RATE {v} makes an infusion of {d} days (AMT/RATE); an infusion longer than "
            f"{MAX_INFUSION_DAYS:g} day is not modelled (the kinetics start from C0 at the dose "
            "TIME)",
            column=col,
            v=values,
            d=days,
        )
        short = is_dose & (values > 0) & (days <= MAX_INFUSION_DAYS)
        if short.any():
            notes.append(
                f"{_n(int(short.sum()), 'dosing row')} with RATE > 0 (infusions of at most "
                f"{np.nanmax(days[short]) * 24:.3g} h) taken as given at their TIME: "
                + _where(frame, short)
            )
        problems.per_row(
            frame,
            is_obs & given,
            "RATE {v} on an observation row: RATE describes a dose; it must be 0 or empty here",
            column=col,
            v=values,
        )


def check_single_quantity(cells, roles, frame, is_dose, is_obs, problems) -> None:
    """Refuse several compartments (``CMT``) or observation types (``YTYPE``) and occasions."""
    checks = []
    if "CMT" in roles:
        checks.append(
            ("CMT", is_dose, "dosing", "the model has one infusion route; keep the dosing rows "
             "of one compartment")
        )  # fmt: skip
        checks.append(
            ("CMT", is_obs, "observation", "only one observed compartment is modelled; keep the "
             "rows of one CMT or mark the others MDV=1")
        )  # fmt: skip
    if "YTYPE" in roles:
        checks.append(
            ("YTYPE", is_obs, "observation", "only one observation type is modelled; keep the "
             "rows of one type or mark the others MDV=1")
        )  # fmt: skip
    for role, mask, kind, advice in checks:
        col = roles[role]
        text = labels(cells[col]).to_numpy()
        present = mask & pd.notna(text)
        counts = pd.Series(text[present]).value_counts(sort=True)
        if len(counts) <= 1:
            continue
        main = counts.index[0]
        shown = ", ".join(f"{role} {k}: {_n(int(v), 'row')}" for k, v in counts.items())
        problems.per_row(
            frame,
            present & (text != main),
            f"{role} {{v}} differs from the {role} {main} of most {kind} rows ({shown}): {advice}",
            column=col,
            v=text,
        )
    if "OCC" in roles:
        _check_occasions(cells, roles["OCC"], frame, is_dose | is_obs, problems)


def _check_occasions(cells, col, frame, used, problems) -> None:
    sub = pd.DataFrame({"ID": frame["_ID"], "v": labels(cells[col])})[used]
    sub = sub[sub["v"].notna() & sub["ID"].notna()]
    counts = sub.groupby("ID", sort=False)["v"].nunique()
    for pid in counts.index[counts.to_numpy() > 1][:MAX_LISTED]:
        rows = sub[sub["ID"] == pid]
        shown = "; ".join(
            f"OCC {v}: row{'s' if len(g) > 1 else ''} {', '.join(map(str, g.index[:5]))}"
            + (", ..." if len(g) > 5 else "")
            for v, g in rows.groupby("v", sort=False)
        )
        problems.add(
            f"several occasions for one patient ({shown}): occasions (re-treatment, "
            "inter-occasion variability) are not modelled; keep one occasion per patient or "
            "give each occasion its own ID",
            row=tuple(int(r) for r in rows.index),
            column=col,
            patient=pid,
        )


def check_time_unit_column(cells, roles, frame, used, time_unit: str, problems) -> None:
    """Check that a ``TIMEUNIT`` column names one unit, the one TIME is read in (``time_unit``)."""
    col = roles["TIMEUNIT"]
    text = labels(cells[col]).to_numpy()
    present = used & pd.notna(text)
    if not present.any():
        return
    factors = np.full(len(text), np.nan)
    for pos in np.flatnonzero(present):
        try:
            factors[pos] = to_days(str(text[pos]))
        except ValueError:
            pass
    problems.per_row(
        frame,
        present & np.isnan(factors),
        "unknown time unit {v} (day, hour, week or month)",
        column=col,
        v=text,
    )
    known = present & ~np.isnan(factors)
    distinct = pd.unique(factors[known])
    if len(distinct) > 1:
        shown = "; ".join(
            f"{text[known & (factors == f)][0]!r}: {_n(int((known & (factors == f)).sum()), 'row')}"
            for f in distinct
        )
        problems.add(f"TIME is in several units ({shown}): convert TIME to one unit", column=col)
    elif len(distinct) == 1 and not np.isclose(distinct[0], to_days(time_unit)):
        said = text[known][0]
        unit = UNIT_NAMES.get(float(distinct[0]), "month")
        problems.add(
            f"the {col!r} column says TIME is in {said!r} but TIME is read in {time_unit!r} "
            f"(time_unit={time_unit!r}); pass time_unit={unit!r} (--time-unit {unit}) so that "
            "TIME is converted to days",
            column=col,
        )


def time_unit_warnings(observations: pd.DataFrame, factor: float, time_col: str) -> list[str]:
    """Warn when TIME looks like hours read as days, or days read as hours.

    CAR-T studies sample densely in the first month and then for months to years. Hours read as
    days show as sample times that are mostly multiples of 24, or as a follow-up of many years
    with few samples in the first 28 days; days read as hours as a whole study within 2 days.
    """
    obs = observations[observations["TIME"] > 0]
    if len(obs) < 3:
        return []
    days = obs["TIME"].to_numpy()
    last = obs.iloc[int(np.argmax(days))]
    at = f"patient {last['ID']}, row {int(last['ROW'])}"
    if np.isclose(factor, 1.0):
        raw = days
        mult = np.isclose(np.mod(raw + 1e-9, 24.0), 0.0, atol=1e-6)
        distinct = np.unique(raw[mult])
        if mult.mean() >= 0.75 and len(distinct) >= 3:
            shown = ", ".join(f"{t:g}" for t in distinct[:6]) + (
                ", ..." if len(distinct) > 6 else ""
            )
            return [
                f"column {time_col!r}: TIME looks like hours read as days: "
                f"{mult.mean():.0%} of the sample times are multiples of 24 ({shown}; the last "
                f"at {days.max():g} days, {at}); {HOURS_HINT}"
            ]
        early = float((days <= 28).mean())
        if days.max() > 2000 and early < 0.25:
            return [
                f"column {time_col!r}: TIME looks like hours read as days: the last sample is "
                f"at {days.max():g} days ({days.max() / 365.25:.1f} years, {at}) and only "
                f"{early:.0%} of the samples lie in the first 28 days, where CAR-T studies "
                f"sample most; {HOURS_HINT}"
            ]
    elif np.isclose(factor, 1.0 / 24.0) and days.max() < 2:
        return [
            f"column {time_col!r}: TIME read as hours ends at {days.max() * 24:g} h "
            f"({days.max():g} days, {at}): a CAR-T study follows patients for weeks; if TIME is "
            "in days, drop time_unit='hour' (--time-unit day)"
        ]
    return []


def _id_key(label: str) -> str:
    text = "".join(str(label).split()).casefold()
    try:
        value = float(text)
    except ValueError:
        return text
    return repr(value) if np.isfinite(value) else text


def similar_id_warnings(ids: pd.Series) -> list[str]:
    """Warn about IDs that differ only by case, spaces or number format (``101`` / ``101.0``)."""
    groups: dict[str, list[str]] = {}
    for label in pd.unique(ids.dropna()):
        groups.setdefault(_id_key(label), []).append(str(label))
    clashes = [g for g in groups.values() if len(g) > 1]
    if not clashes:
        return []
    shown = "; ".join(" and ".join(repr(x) for x in g) for g in clashes[:10])
    more = f"; ... ({len(clashes)} groups)" if len(clashes) > 10 else ""
    return [
        f"IDs that differ only by case, spaces or number format are read as different patients: "
        f"{shown}{more}; write the ID of one patient one way if they are the same patient"
    ]


def timing_warnings(observations: pd.DataFrame, doses: pd.DataFrame, time_col: str) -> list[str]:
    """Warn about samples before the first dose, a first dose not at TIME 0, one TIME for all."""
    out = []
    if not doses.empty:
        first = doses.groupby("ID", sort=False)["TIME"].min()
        late = first[first != 0]
        if len(late):
            shown = _join([f"{pid} (TIME {t:g} days)" for pid, t in late.items()])
            out.append(
                f"the first dosing row of {_n(len(late), 'patient')} is not at TIME 0: {shown}; "
                "the kinetics count time from TIME 0 (TIME is the time since the CAR-T infusion), "
                "not from the dosing row"
            )
        dose_time = observations["ID"].map(first)
        before = observations[dose_time.notna() & (observations["TIME"] < dose_time)]
        if len(before):
            per = before.groupby("ID", sort=False).size()
            shown = [
                f"{pid} ({_n(int(n), 'sample')} before TIME {first[pid]:g})"
                for pid, n in per.items()
            ]
            out.append(
                f"{_n(len(per), 'patient')} with samples before their first dosing row: "
                f"{_join(shown)}"
            )
    if len(observations) >= 2 and observations["TIME"].nunique() == 1:
        out.append(
            f"column {time_col!r}: every sample is at TIME "
            f"{observations['TIME'].iloc[0]:g} days: is it the time since infusion?"
        )
    return out


def baseline_warning(baseline: pd.DataFrame) -> list[str]:
    """Say which pre-infusion samples are kept in ``Dataset.baseline`` and not fitted."""
    if baseline.empty:
        return []
    per = baseline.groupby("ID", sort=False)["TIME"].agg(["size", "min"])
    shown = [
        f"{pid} ({_n(int(r['size']), 'sample')} from TIME {r['min']:g})"
        for pid, r in per.iterrows()
    ]
    return [
        f"{_n(len(baseline), 'pre-infusion baseline sample')} (TIME < 0) of "
        f"{_n(len(per), 'patient')} kept in Dataset.baseline and not fitted (the kinetics start "
        f"at the infusion, TIME 0): {_join(shown)}"
    ]


def unused_column_note(unused: Mapping[str, str], items: Sequence[tuple[str, str]]) -> list[str]:
    """One note listing the columns that are neither used nor covariates, and why."""
    parts = [f"{name} ({why})" for name, why in items]
    parts += [f"{name} ({why})" for name, why in unused.items()]
    if not parts:
        return []
    return [f"columns not used as covariates: {', '.join(parts)}"]


def _join(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _where(frame: pd.DataFrame, mask: np.ndarray) -> str:
    rows = frame.index.to_numpy()[mask]
    ids = pd.unique(frame["_ID"].to_numpy()[mask])
    shown = ", ".join(str(r) for r in rows[:8]) + (", ..." if len(rows) > 8 else "")
    return f"row{'s' if len(rows) > 1 else ''} {shown} (patients {_list(tuple(ids))})"


__all__ = [
    "MAX_INFUSION_DAYS",
    "baseline_warning",
    "blq_rows_marked_missing",
    "censoring_from_blq",
    "check_dose_items",
    "check_single_quantity",
    "check_time_unit_column",
    "limits_from_lloq",
    "similar_id_warnings",
    "time_unit_warnings",
    "timing_warnings",
    "unused_column_note",
]
