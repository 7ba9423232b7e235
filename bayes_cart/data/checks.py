"""Row, column and covariate checks behind :func:`bayes_cart.data.dataset.load_dataset`.

The reader in :mod:`bayes_cart.data.dataset` turns a file or a DataFrame into a :class:`RawTable`
(every cell a stripped string, a Python scalar or ``None`` for a missing value). :func:`check_table`
then classifies the rows (observation, NONMEM dose, excluded), checks every value and collects
**all** problems before raising one :class:`~bayes_cart.errors.DataError`.

Row numbers are 1-based data row numbers: row ``n`` is line ``n + 1`` of a CSV file (the header is
line 1), i.e. spreadsheet row ``n + 1``; for a DataFrame or Parquet file it is the position + 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_cart.data.column_roles import ROLE_MEANINGS, ColumnRoles, resolve_roles
from bayes_cart.errors import DataError, Problem

NA_STRINGS = frozenset({"", ".", "na", "nan", "n/a", "null", "none"})
"""Cell contents read as a missing value (compared lower-case): ``.`` is NONMEM's missing."""

REQUIRED = ("ID", "TIME", "DV")
NOT_COVARIATES = ("CMT", "RATE", "ADDL", "II", "SS", "YTYPE", "OCC", "TIMEUNIT", "BLQ", "LLOQ")
"""Monolix/NONMEM roles checked by :mod:`bayes_cart.data.conventions`, never covariates."""
BASELINE = "pre-infusion baseline sample (TIME < 0): kept in Dataset.baseline, not fitted"

EVID_NAMES = {2: "other-type event", 3: "reset", 4: "reset and dose"}
SYNONYMS = {
    "ID": ("SUBJECT", "SUBJ", "USUBJID", "PATIENT", "PATID", "PID"),
    "TIME": ("TAD", "DAY", "DAYS", "HOUR", "HOURS", "TIME_D", "TIMED", "NOMTIME"),
    "DV": ("CONC", "CONCENTRATION", "VALUE", "LEVEL", "COPIES"),
}
NO_OBS = "patient has no observation rows"
MAX_ROW_PROBLEMS = 20
"""Problems listed one by one per check; further rows with the same problem are grouped."""


@dataclass
class RawTable:
    """A table as read, before any check.

    Parameters
    ----------
    source : str
        File name or ``"<DataFrame>"``.
    cells : pandas.DataFrame
        Object dtype; stripped strings or Python scalars, ``None`` for missing. Index: data row
        numbers (1-based). Columns: header names as spelled (stripped).
    ragged : set of int
        Rows that had more fields than the header (already reported in ``problems``).
    problems : list of Problem
        Problems found while reading (ragged rows, unnamed columns).
    """

    source: str
    cells: pd.DataFrame
    ragged: set[int] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class CheckedTable:
    """What :func:`check_table` hands back to :func:`~bayes_cart.data.dataset.load_dataset`."""

    observations: pd.DataFrame
    patients: pd.DataFrame
    doses: pd.DataFrame
    covariates: list[str]
    time_varying: list[str]
    excluded: pd.DataFrame
    missing_covariates: dict[str, tuple[str, ...]]
    warnings: list[str]
    baseline: pd.DataFrame | None = None


def normalise_cell(value: object) -> object:
    """Return a cell stripped, or ``None`` when it means "missing" (empty, ``.``, NA, NaN)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        return None if text.lower() in NA_STRINGS else text
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def as_label(value: object) -> str:
    """Return a cell as a text label (``1.0`` -> ``"1"``), used for IDs and categories."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def to_numbers(cells: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse cells as numbers.

    Returns
    -------
    values : numpy.ndarray
        float64, NaN where missing or not a number (``inf`` parses as inf).
    bad : numpy.ndarray
        bool, True where the cell is present but not a number.
    """
    missing = cells.isna().to_numpy()
    values = pd.to_numeric(cells.astype(object), errors="coerce").to_numpy(dtype=float)
    return values, ~missing & np.isnan(values)


def _rows(rows) -> int | tuple[int, ...]:
    """Row numbers for a Problem: one int, or a tuple when several."""
    rows = tuple(int(r) for r in rows)
    return rows[0] if len(rows) == 1 else rows


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return repr(value) if isinstance(value, str) else str(value)


class _Problems:
    """Collects problems; per-check row problems are capped at MAX_ROW_PROBLEMS."""

    def __init__(self, initial: Sequence[Problem] = ()):
        self.items: list[Problem] = list(initial)

    def add(self, message: str, *, row=None, column=None, patient=None) -> None:
        self.items.append(Problem(message, row=row, column=column, patient=patient))

    def per_row(
        self,
        frame: pd.DataFrame,
        mask: np.ndarray,
        template: str,
        column=None,
        hint: np.ndarray | None = None,
        **values,
    ) -> None:
        """Add one problem per row of ``frame[mask]``.

        ``template`` is formatted with each keyword array's value at that row (numbers shown
        with ``:g``, text quoted), e.g. ``per_row(frame, bad, "TIME is {t}", t=time)``; the
        ``hint`` array's text at that row, if given, is appended as is.
        """
        positions = np.flatnonzero(mask)
        rows, ids = frame.index.to_numpy(), frame["_ID"].to_numpy()

        def message(pos: int) -> str:
            text = template.format(**{k: _fmt(v[pos]) for k, v in values.items()})
            return text + (hint[pos] if hint is not None else "")

        for pos in positions[:MAX_ROW_PROBLEMS]:
            self.add(message(pos), row=int(rows[pos]), column=column, patient=ids[pos])
        if len(positions) > MAX_ROW_PROBLEMS:
            rest = positions[MAX_ROW_PROBLEMS:]
            self.add(
                f"{len(rest)} more rows with the same kind of problem, e.g. {message(rest[0])}",
                row=_rows(rows[rest]),
                column=column,
            )


def map_columns(
    columns: Sequence[str],
    time_varying: Sequence[str],
    problems: _Problems,
    declared_columns: Mapping[str, str | tuple[str, ...]] | None = None,
    origins: Mapping[str, str] | None = None,
) -> tuple[ColumnRoles, list[str], list[str]]:
    """Match header names to roles (by declaration, then by name, case-insensitively).

    Returns
    -------
    roles : ColumnRoles
        Role (``ID``, ``TIME``, ``DV``, ``CENS``, ``LIMIT``, ``EVID``, ``MDV``, ``AMT``, and the
        Monolix/NONMEM conventions of :mod:`bayes_cart.data.column_roles`) -> header name, and the
        columns that are neither roles nor covariates.
    covariates, time_varying : list of str
        Patient-level covariates and declared time-varying covariates, as spelled in the header.
    """
    upper: dict[str, list[int]] = {}
    for pos, name in enumerate(columns):
        upper.setdefault(name.upper(), []).append(pos)
    for positions in upper.values():
        if len(positions) > 1:
            names = " and ".join(f"{columns[p]!r} (column {p + 1})" for p in positions)
            problems.add(
                f"duplicate column names (names are case-insensitive): {names}",
                column=columns[positions[0]],
            )
    by_upper = {u: columns[p[0]] for u, p in upper.items()}
    found: list[tuple[str, str | None]] = []
    resolved = resolve_roles(list(by_upper.values()), declared_columns or {}, found, origins)
    for message, column in found:
        problems.add(message, column=column)
    roles = resolved.roles
    for role in REQUIRED:
        if role not in roles:
            problems.add(f"missing required column {role!r}{_suggest(role, columns)}", column=role)
    role_columns = set(roles.values())
    declared: list[str] = []
    for name in time_varying:
        key = str(name).upper()
        if key not in by_upper:
            problems.add(
                f"time-varying covariate {name!r} is not a column of the file "
                f"(columns: {', '.join(columns)})",
                column=str(name),
            )
        elif by_upper[key] in role_columns or by_upper[key] in resolved.unused:
            problems.add(f"{name!r} is a reserved column and cannot be time-varying", column=name)
        elif by_upper[key] not in declared:
            declared.append(by_upper[key])
    covariates = [
        c
        for c in by_upper.values()
        if c not in role_columns and c not in declared and c not in resolved.unused
    ]
    return resolved, covariates, declared


def _suggest(role: str, columns: Sequence[str]) -> str:
    upper = {c.upper(): c for c in columns}
    hits = [upper[s] for s in SYNONYMS.get(role, ()) if s in upper]
    hits += [upper[m] for m in difflib.get_close_matches(role, list(upper), n=2, cutoff=0.75)]
    found = f" (columns found: {', '.join(columns)})"
    if hits:
        return (
            f"; rename column {hits[0]!r} to {role!r} if it holds the {role} values, or declare "
            f"it (--columns {role}={hits[0]}, columns={{{role!r}: {hits[0]!r}}})" + found
        )
    return found


def check_table(
    raw: RawTable,
    time_factor: float,
    time_varying: Sequence[str],
    *,
    time_unit: str = "day",
    columns: Mapping[str, str | tuple[str, ...]] | None = None,
    origins: Mapping[str, str] | None = None,
) -> CheckedTable:
    """Classify and check every row of ``raw``; raise one DataError listing all problems.

    Parameters
    ----------
    raw : RawTable
        The table as read.
    time_factor : float
        Multiplier converting the file's TIME unit to days.
    time_varying : sequence of str
        Covariates declared time-varying (exempt from the constant-within-patient check).
    time_unit : str
        Name of the file's TIME unit (compared with a ``TIMEUNIT`` column).
    columns : mapping, optional
        Declared column roles (:func:`bayes_cart.data.column_roles.normalise_columns`).
    origins : mapping, optional
        Declared column name (upper-case) -> where it was declared, when not ``--columns``
        (:func:`bayes_cart.data.column_roles.resolve_roles`).

    Returns
    -------
    CheckedTable
        The pieces of a :class:`~bayes_cart.data.dataset.Dataset`.
    """
    from bayes_cart.data import conventions as conv

    problems = _Problems(raw.problems)
    cells = raw.cells
    resolved, covariates, declared = map_columns(
        [str(c) for c in cells.columns], time_varying, problems, columns, origins
    )
    roles = resolved.roles
    if problems.items and any(p.row is None for p in problems.items):
        raise DataError(raw.source, problems.items)
    if cells.empty:
        raise DataError(raw.source, "no data rows (the file has a header only)")

    frame = pd.DataFrame(index=cells.index)
    frame["_ID"] = labels(cells[roles["ID"]])
    usable = ~cells.index.isin(sorted(raw.ragged))
    problems.per_row(
        frame, usable & frame["_ID"].isna().to_numpy(), "ID is missing", column=roles["ID"]
    )

    warnings: list[str] = []
    excluded: list[tuple[int, str | None, str]] = []
    is_dose, is_obs = _classify(cells, roles, frame, usable, problems, excluded)
    times = _check_time(cells, roles, frame, is_dose, is_obs, time_factor, problems)
    dv, cens, limit = _check_observations(cells, roles, frame, is_obs, problems, warnings)
    amt = _check_doses(cells, roles, frame, is_dose, problems)
    conv.check_dose_items(
        cells, roles, frame, is_dose, is_obs, amt, time_factor, problems, warnings
    )
    conv.check_single_quantity(cells, roles, frame, is_dose, is_obs, problems)
    if "TIMEUNIT" in roles:
        conv.check_time_unit_column(cells, roles, frame, is_dose | is_obs, time_unit, problems)
    baseline = is_obs & np.isfinite(times) & (times < 0)
    fitted = is_obs & ~baseline
    _check_duplicates(frame, is_obs, times, problems)

    used = (is_dose | is_obs) & frame["_ID"].notna().to_numpy()
    patient_values, tv_values, kinds = _check_covariates(
        cells, frame, used, is_obs, covariates, declared, problems, resolved
    )
    order = pd.unique(frame.loc[usable & frame["_ID"].notna().to_numpy(), "_ID"])
    obs_ids = set(frame.loc[fitted, "_ID"])
    if not problems.items and not obs_ids:
        if baseline.any():
            problems.add(
                "no observation rows at TIME >= 0: every sample is a pre-infusion baseline "
                "sample (negative TIME), a dose or excluded; TIME is the time since infusion",
                row=_rows(frame.index[baseline]),
                column=roles["TIME"],
                patient=_list(tuple(pd.unique(frame.loc[baseline, "_ID"]))),
            )
        else:
            problems.add("no observation rows (every row is a dose or excluded)")
    if problems.items:
        raise DataError(raw.source, problems.items)

    no_obs = [pid for pid in order if pid not in obs_ids]
    for pid in no_obs:
        rows = frame.index[(frame["_ID"] == pid).to_numpy() & used]
        excluded += [(int(r), pid, NO_OBS) for r in rows]
    order = [pid for pid in order if pid in obs_ids]
    kept_baseline = baseline & frame["_ID"].isin(order).to_numpy()
    for row, pid in zip(frame.index[kept_baseline], frame["_ID"][kept_baseline], strict=True):
        excluded.append((int(row), pid, BASELINE))
    warnings += conv.unused_column_note(
        resolved.unused,
        [(roles[r], ROLE_MEANINGS[r]) for r in NOT_COVARIATES if r in roles],
    )
    renamed = [f"{h!r} as {r}" for r, h in roles.items() if h.upper() != r]
    if renamed:
        warnings.append(f"columns read by their role: {', '.join(renamed)}")
    note = conv.blq_rows_marked_missing(cells, roles, frame, usable)
    if note:
        warnings.append(note)

    observations = _observation_table(frame, fitted, times, dv, cens, limit, tv_values, order)
    baseline_table = _observation_table(
        frame, kept_baseline, times, dv, cens, limit, tv_values, order
    )
    doses = _dose_table(frame, is_dose, times, amt, order)
    patients = pd.DataFrame(index=pd.Index(order, name="ID"))
    for name in covariates:
        values = patient_values[name].reindex(order)
        if not pd.api.types.is_numeric_dtype(values):
            values = pd.Series(
                [None if pd.isna(v) else v for v in values], index=values.index, dtype=object
            )
        patients[name] = values
    covariates = list(covariates)
    _add_dose_covariate(patients, covariates, declared, doses, warnings)

    missing = {name: tuple(patients.index[patients[name].isna()]) for name in covariates}
    missing = {k: v for k, v in missing.items() if v}
    for name, ids in missing.items():
        warnings.append(
            f"covariate {name!r} is missing for {len(ids)} of {len(order)} patients: {_list(ids)}"
        )
    blq = observations.groupby("ID", sort=False)["CENS"].agg(lambda c: bool((c == 1).all()))
    if blq.any():
        ids = tuple(blq.index[blq.to_numpy()])
        warnings.append(f"{_n(len(ids), 'patient')} with only BLQ (CENS=1) samples: {_list(ids)}")
    warnings += conv.baseline_warning(baseline_table)
    warnings += conv.timing_warnings(observations, doses, roles["TIME"])
    if "TIMEUNIT" not in roles:
        warnings += conv.time_unit_warnings(observations, time_factor, roles["TIME"])
    warnings += conv.similar_id_warnings(frame.loc[used, "_ID"])
    excluded_frame = pd.DataFrame(excluded, columns=["ROW", "ID", "reason"])
    excluded_frame = excluded_frame.sort_values("ROW", kind="stable").reset_index(drop=True)
    excluded_frame["ROW"] = excluded_frame["ROW"].astype("int64")
    if no_obs:
        warnings.append(
            f"{_n(len(no_obs), 'patient')} without observation rows excluded: {_list(no_obs)}"
        )
    listed = ~excluded_frame["reason"].isin([NO_OBS, BASELINE])
    reasons = excluded_frame.loc[listed, "reason"].value_counts()
    if len(reasons):
        shown = "; ".join(f"{r} ({_n(n, 'row')})" for r, n in reasons.items())
        warnings.append(f"{_n(int(reasons.sum()), 'row')} excluded: {shown}")
    return CheckedTable(
        observations=observations,
        patients=patients,
        doses=doses,
        covariates=covariates,
        time_varying=declared,
        excluded=excluded_frame,
        missing_covariates=missing,
        warnings=warnings,
        baseline=baseline_table,
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _list(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _classify(cells, roles, frame, usable, problems, excluded) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into NONMEM dose rows, observation rows and excluded rows."""
    n = len(cells)
    evid = np.zeros(n)
    if "EVID" in roles:
        col = roles["EVID"]
        evid, bad = to_numbers(cells[col])
        evid = np.where(np.isnan(evid) & ~bad, 0.0, evid)
        invalid = usable & (bad | ~np.isfinite(evid) | (evid < 0) | (evid != np.round(evid)))
        problems.per_row(
            frame,
            invalid,
            "invalid EVID {v} (0 = observation, 1 = dose, 2-4 other events)",
            column=col,
            v=cells[col].to_numpy(),
        )
        usable = usable & ~invalid
    mdv = np.zeros(n)
    if "MDV" in roles:
        col = roles["MDV"]
        mdv, bad = to_numbers(cells[col])
        mdv = np.where(np.isnan(mdv) & ~bad, 0.0, mdv)
        invalid = usable & ~np.isin(mdv, (0.0, 1.0))
        problems.per_row(
            frame, invalid, "invalid MDV {v} (0 or 1)", column=col, v=cells[col].to_numpy()
        )
        usable = usable & ~invalid
    if "EVID" in roles:
        is_dose = usable & (evid == 1)
        other = usable & (evid > 1)
    else:
        is_dose = np.zeros(n, dtype=bool)
        other = np.zeros(n, dtype=bool)
        if "AMT" in roles:
            amt, _ = to_numbers(cells[roles["AMT"]])
            has_amt = usable & (amt > 0)
            is_dose = has_amt & ((mdv == 1) | cells[roles["DV"]].isna().to_numpy())
            both = has_amt & ~is_dose
            problems.per_row(
                frame,
                both,
                "row has both AMT and DV: add an EVID column (1 = dose,"
                " 0 = observation) or set MDV=1 on dosing rows",
                column=roles["AMT"],
            )
            usable = usable & ~both
    for row, pid, code in zip(frame.index[other], frame["_ID"][other], evid[other], strict=True):
        name = EVID_NAMES.get(int(code), "unsupported event")
        excluded.append((int(row), pid, f"EVID={int(code)} ({name}) row not used"))
    mdv_rows = usable & ~is_dose & ~other & (mdv == 1)
    for row, pid in zip(frame.index[mdv_rows], frame["_ID"][mdv_rows], strict=True):
        excluded.append((int(row), pid, "MDV=1 (observation marked missing) row not used"))
    is_obs = usable & ~is_dose & ~other & ~mdv_rows
    return is_dose, is_obs


def _check_time(cells, roles, frame, is_dose, is_obs, factor, problems) -> np.ndarray:
    """Check TIME on used rows; a negative TIME is a baseline sample, never a dose."""
    col = roles["TIME"]
    rows = is_dose | is_obs
    raw = cells[col].to_numpy()
    time, bad = to_numbers(cells[col])
    problems.per_row(frame, rows & np.isnan(time) & ~bad, "TIME is missing", column=col)
    problems.per_row(frame, rows & bad, "TIME is not a number: {v}", col, _hints(raw), v=raw)
    problems.per_row(frame, rows & np.isinf(time), "TIME is not finite: {v}", column=col, v=raw)
    problems.per_row(
        frame,
        is_dose & np.isfinite(time) & (time < 0),
        "dosing row at negative TIME {t}: TIME is the time since the CAR-T infusion, so the "
        "infusion is at TIME 0 (negative TIME is for pre-infusion baseline samples)",
        column=col,
        t=time,
    )
    return time * factor


def _check_observations(cells, roles, frame, is_obs, problems, notes):
    """Check DV, CENS (or BLQ, LLOQ) and LIMIT of observation rows; return (dv, cens, limit)."""
    from bayes_cart.data import conventions as conv

    dv_col = roles["DV"]
    raw_dv = cells[dv_col].to_numpy()
    dv, dv_bad = to_numbers(cells[dv_col])
    cens = np.zeros(len(cells), dtype=np.int64)
    if "BLQ" in roles:
        cens = conv.censoring_from_blq(cells, roles, frame, is_obs, problems)
    if "CENS" in roles:
        col = roles["CENS"]
        raw_cens, bad = to_numbers(cells[col])
        raw_cens = np.where(np.isnan(raw_cens) & ~bad, 0.0, raw_cens)
        invalid = is_obs & ~np.isin(raw_cens, (0.0, 1.0, -1.0))
        problems.per_row(
            frame,
            invalid,
            "invalid CENS code {v} (0 = quantified, 1 = below LLOQ, -1 = above ULOQ)",
            column=col,
            v=cells[col].to_numpy(),
        )
        cens = np.where(invalid, 0, raw_cens).astype(np.int64)
    if "BLQ" in roles or "LLOQ" in roles:
        dv, dv_bad, cens = conv.limits_from_lloq(
            cells, roles, frame, is_obs, dv, dv_bad, cens, problems, notes
        )
    quant, left, right = is_obs & (cens == 0), is_obs & (cens == 1), is_obs & (cens == -1)
    dv_missing = np.isnan(dv) & ~dv_bad
    problems.per_row(
        frame, is_obs & dv_bad, "DV is not a number: {v}", dv_col, _hints(raw_dv), v=raw_dv
    )
    problems.per_row(frame, is_obs & np.isinf(dv), "DV is not finite: {v}", column=dv_col, v=raw_dv)
    problems.per_row(
        frame,
        quant & dv_missing,
        "DV is missing in a quantified row (CENS=0); set MDV=1 to keep the row out",
        column=dv_col,
    )
    problems.per_row(
        frame,
        quant & (dv <= 0),
        "DV {v} <= 0 in a quantified row (CENS=0); a "
        "value below the LLOQ is a censored row: CENS=1 with DV = LLOQ",
        column=dv_col,
        v=dv,
    )
    problems.per_row(
        frame,
        left & dv_missing,
        "censored row (CENS=1) without a limit: DV must hold the LLOQ",
        column=dv_col,
    )
    problems.per_row(
        frame,
        right & dv_missing,
        "censored row (CENS=-1) without a limit: DV must hold the upper limit of quantification",
        column=dv_col,
    )
    problems.per_row(
        frame,
        (left | right) & (dv <= 0),
        "the limit in DV of a censored row must be > 0, got {v}",
        column=dv_col,
        v=dv,
    )
    limit = np.full(len(cells), np.nan)
    if "LIMIT" in roles:
        col = roles["LIMIT"]
        lim, bad = to_numbers(cells[col])
        censored = left | right
        problems.per_row(
            frame, is_obs & bad, "LIMIT is not a number: {v}", column=col, v=cells[col].to_numpy()
        )
        problems.per_row(
            frame,
            censored & (lim < 0),
            "LIMIT must be > 0 (0 = no lower bound), got {v}",
            column=col,
            v=lim,
        )
        problems.per_row(
            frame,
            left & (lim >= dv),
            "LIMIT {v} is not below the LLOQ in DV ({d}) of a left-censored row (CENS=1)",
            column=col,
            v=lim,
            d=dv,
        )
        problems.per_row(
            frame,
            right & (lim <= dv),
            "LIMIT {v} is not above DV ({d}) of a right-censored row (CENS=-1)",
            column=col,
            v=lim,
            d=dv,
        )
        # Monolix writes LIMIT=0 for "no lower bound": on the log scale [0, LLOQ] is the same
        # as plain left-censoring, so 0 means none.
        limit = np.where(censored & (lim > 0), lim, np.nan)
    return dv, cens, limit


def _hints(raw: np.ndarray) -> np.ndarray:
    """Say why a cell that should be a number may not be one."""
    out = np.full(len(raw), "", dtype=object)
    for pos, value in enumerate(raw):
        text = str(value)
        if "\n" in text:
            out[pos] = " (an unclosed quote?)"
        elif text.count(",") == 1 and text.replace(",", "", 1).lstrip("+-").isdigit():
            out[pos] = " (a decimal comma? write numbers with '.')"
    return out


def _check_doses(cells, roles, frame, is_dose, problems) -> np.ndarray:
    if not is_dose.any():
        return np.full(len(cells), np.nan)
    if "AMT" not in roles:
        rows = _rows(frame.index[is_dose])
        problems.add("dosing rows (EVID=1) but no AMT column", row=rows, column="AMT")
        return np.full(len(cells), np.nan)
    col = roles["AMT"]
    amt, bad = to_numbers(cells[col])
    raw = cells[col].to_numpy()
    problems.per_row(frame, is_dose & np.isnan(amt) & ~bad, "dosing row without AMT", column=col)
    problems.per_row(
        frame, is_dose & (bad | np.isinf(amt)), "AMT is not a number: {v}", column=col, v=raw
    )
    problems.per_row(
        frame, is_dose & (amt <= 0), "AMT of a dosing row must be > 0, got {v}", column=col, v=amt
    )
    return amt


def _check_duplicates(frame, is_obs, times, problems) -> None:
    sub = pd.DataFrame({"ID": frame["_ID"], "TIME": times})[is_obs & np.isfinite(times)]
    sub = sub[sub["ID"].notna()]
    dup = sub[sub.duplicated(["ID", "TIME"], keep=False)]
    for (pid, time), group in dup.groupby(["ID", "TIME"], sort=False):
        problems.add(
            f"duplicate sample: {len(group)} observation rows at the same TIME "
            f"({time:g} days) for one patient",
            row=tuple(int(r) for r in group.index),
            column="TIME",
            patient=pid,
        )


def _check_covariates(cells, frame, used, is_obs, covariates, declared, problems, resolved):
    """Type every covariate, check patient-level ones are constant within a patient.

    A covariate declared ``CAT`` is categorical whatever its values; one declared ``CONT`` must
    hold numbers only.
    """
    patient_values: dict[str, pd.Series] = {}
    tv_values: dict[str, pd.Series] = {}
    kinds: dict[str, bool] = {}
    ids = frame["_ID"]
    for name in [*covariates, *declared]:
        values, numeric = type_column(cells[name])
        if name in resolved.categorical:
            values, numeric = labels(cells[name]), False
        elif name in resolved.continuous and not numeric:
            _, bad = to_numbers(cells[name])
            problems.per_row(
                frame,
                used & bad,
                "{v} is not a number in a covariate declared continuous (CONT)",
                column=name,
                v=cells[name].to_numpy(),
            )
        kinds[name] = numeric
        if name in declared:
            tv_values[name] = values
            continue
        sub = pd.DataFrame({"ID": ids, "v": values})[used]
        sub = sub[sub["v"].notna()]
        counts = sub.groupby("ID", sort=False)["v"].nunique()
        for pid in counts.index[counts.to_numpy() > 1]:
            rows = sub[sub["ID"] == pid]
            shown = "; ".join(
                f"{_fmt(v)} (row{'s' if len(g) > 1 else ''} {', '.join(map(str, g.index))})"
                for v, g in rows.groupby("v", sort=False)
            )
            problems.add(
                f"time-invariant covariate changes within the patient: {shown}; declare it "
                f"time-varying (time_varying=[{name!r}]) if it is measured over time",
                row=tuple(int(r) for r in rows.index),
                column=name,
                patient=pid,
            )
        patient_values[name] = sub.groupby("ID", sort=False)["v"].first()
        if not numeric:
            patient_values[name] = patient_values[name].astype(object)
    return patient_values, tv_values, kinds


def type_column(cells: pd.Series) -> tuple[pd.Series, bool]:
    """Return a covariate column typed: float64 if every present value is a number, else labels.

    Returns
    -------
    values : pandas.Series
        float64 (NaN for missing) or object dtype of str (``None`` for missing).
    numeric : bool
        Whether the column is numeric.
    """
    numbers, bad = to_numbers(cells)
    if not bad.any():
        return pd.Series(numbers, index=cells.index, dtype="float64"), True
    return labels(cells), False


def labels(cells: pd.Series) -> pd.Series:
    """Return cells as text labels (object dtype, ``None`` for missing)."""
    missing = cells.isna().to_list()
    text = [None if m else as_label(v) for v, m in zip(cells.to_list(), missing, strict=True)]
    return pd.Series(text, index=cells.index, dtype=object)


def _observation_table(frame, is_obs, times, dv, cens, limit, tv_values, order) -> pd.DataFrame:
    obs = pd.DataFrame(
        {
            "ID": frame["_ID"].to_numpy()[is_obs].astype(object),
            "TIME": times[is_obs].astype("float64"),
            "DV": dv[is_obs].astype("float64"),
            "CENS": cens[is_obs].astype("int64"),
            "LIMIT": limit[is_obs].astype("float64"),
            "ROW": frame.index.to_numpy()[is_obs].astype("int64"),
        }
    )
    for name, values in tv_values.items():
        col = values.to_numpy()[is_obs]
        obs[name] = pd.Series(col, dtype=values.dtype)
    position = {pid: i for i, pid in enumerate(order)}
    obs["_P"] = obs["ID"].map(position)
    obs = obs.sort_values(["_P", "TIME"], kind="stable").drop(columns="_P")
    obs["ID"] = obs["ID"].astype(str)
    return obs.reset_index(drop=True)


def _dose_table(frame, is_dose, times, amt, order) -> pd.DataFrame:
    keep = is_dose & frame["_ID"].isin(order).to_numpy()
    doses = pd.DataFrame(
        {
            "ID": frame["_ID"].to_numpy()[keep].astype(object),
            "TIME": times[keep].astype("float64"),
            "AMT": amt[keep].astype("float64"),
            "ROW": frame.index.to_numpy()[keep].astype("int64"),
        }
    )
    position = {pid: i for i, pid in enumerate(order)}
    doses["_P"] = doses["ID"].map(position)
    doses = doses.sort_values(["_P", "TIME"], kind="stable").drop(columns="_P")
    doses["ID"] = doses["ID"].astype(str)
    return doses.reset_index(drop=True)


def infusion_table(doses: pd.DataFrame) -> pd.DataFrame:
    """One row per infusion: the dosing rows of a patient at one TIME are one infusion.

    Parameters
    ----------
    doses : pandas.DataFrame
        ``ID, TIME, AMT, ROW`` (the loader's dose table, sorted by patient then TIME).

    Returns
    -------
    pandas.DataFrame
        ``ID, INFUSION`` (1, 2, ... per patient in time order), ``TIME``, ``AMT`` (summed over
        the rows at that TIME), ``ROW`` (the first of those rows), ``ROWS`` (how many).
    """
    if doses.empty:
        return pd.DataFrame(
            {
                "ID": pd.Series(dtype=object),
                "INFUSION": pd.Series(dtype="int64"),
                "TIME": pd.Series(dtype="float64"),
                "AMT": pd.Series(dtype="float64"),
                "ROW": pd.Series(dtype="int64"),
                "ROWS": pd.Series(dtype="int64"),
            }
        )
    grouped = doses.groupby(["ID", "TIME"], sort=False)
    table = grouped.agg(AMT=("AMT", "sum"), ROW=("ROW", "min"), ROWS=("ROW", "size"))
    table = table.reset_index()
    table["INFUSION"] = table.groupby("ID", sort=False).cumcount().astype("int64") + 1
    table["ID"] = table["ID"].astype(str)
    cols = ["ID", "INFUSION", "TIME", "AMT", "ROW", "ROWS"]
    return table[cols].astype({"ROW": "int64", "ROWS": "int64"}).reset_index(drop=True)


def _add_dose_covariate(patients, covariates, declared, doses, warnings) -> None:
    """Make the first infusion's AMT of each patient covariate DOSE (or check a DOSE column).

    Every infusion starts its own cohort of cells (:mod:`bayes_cart.kinetics.superposition`),
    its level scaled by its AMT relative to the first infusion's, so the patient-level dose is
    the first infusion's: for one infusion, the summed AMT of its dosing rows.
    """
    if doses.empty:
        return
    infusions = infusion_table(doses)
    merged = infusions[infusions["ROWS"] > 1]
    if len(merged):
        shown = [
            f"{r.ID} (TIME {r.TIME:g}: {r.ROWS} rows, AMT {r.AMT:g})" for r in merged.itertuples()
        ]
        warnings.append(
            f"{_n(merged['ID'].nunique(), 'patient')} with several dosing rows at one TIME: "
            f"each such group is one infusion, its AMT summed: {_list(shown)}"
        )
    several = infusions.groupby("ID", sort=False).size()
    several = several[several > 1]
    if len(several):
        times = infusions.groupby("ID", sort=False)["TIME"].agg(
            lambda t: ", ".join(f"{v:g}" for v in t)
        )
        shown = [f"{pid} (TIME {times[pid]})" for pid in several.index]
        warnings.append(
            f"{_n(len(several), 'patient')} with several infusions: each infusion starts its own "
            "cohort of cells with the patient's kinetics on a clock from its TIME, its C0 "
            "scaled by its AMT relative to the first infusion; DOSE is the first infusion's "
            f"AMT: {_list(shown)}"
        )
    first = infusions[infusions["INFUSION"] == 1].set_index("ID")["AMT"]
    total = first.reindex(patients.index)
    existing = [c for c in [*covariates, *declared] if c.upper() == "DOSE"]
    if not existing:
        patients["DOSE"] = total.astype("float64")
        covariates.append("DOSE")
        return
    name = existing[0]
    if name in declared or not pd.api.types.is_numeric_dtype(patients[name]):
        return
    column = patients[name]
    both = column.notna() & total.notna()
    differ = both & ~np.isclose(column.where(both, 0.0), total.where(both, 0.0), rtol=1e-6)
    if differ.any():
        shown = ", ".join(
            f"{pid} ({name}={column[pid]:g}, AMT={total[pid]:g})" for pid in column.index[differ]
        )
        warnings.append(
            f"column {name!r} disagrees with the summed AMT of the first infusion's dosing rows "
            f"for {int(differ.sum())} patients (the column is kept): {shown}"
        )
