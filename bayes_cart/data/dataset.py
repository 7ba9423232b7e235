"""Load and validate a CAR-T kinetics dataset (NONMEM / Monolix style, one row per sample).

Format (column names are matched case-insensitively):

* ``ID`` (any label, stored as text), ``TIME`` (time since infusion; days unless
  ``time_unit=`` says otherwise), ``DV`` (observed level) are required. Monolix and NONMEM
  headers (``y``/``obs`` for DV, ``BLQ``/``BQL``, ``LLOQ``, ``CMT``, ``OCC``, ...) are recognised
  and any column can be given a role with ``columns={"DV": "CONC"}``
  (:mod:`bayes_cart.data.column_roles`). A negative TIME is a pre-infusion baseline sample: kept in
  ``Dataset.baseline``, not fitted.
* ``CENS``: 0 quantified, 1 left-censored (true value below DV, DV holds the LLOQ), -1
  right-censored (true value above DV). No CENS column means every row is quantified.
  ``LIMIT`` (optional): the other end of a censoring interval (a left-censored value lies in
  ``[LIMIT, DV]``, a right-censored one in ``[DV, LIMIT]``). ``LIMIT=0`` on a left-censored row
  means no lower bound (Monolix's convention; the same likelihood on the log scale).
* NONMEM dosing rows (``EVID=1`` with ``AMT``; or, without EVID, ``AMT > 0`` with ``MDV=1`` or no
  DV) are doses, not observations. Each distinct dosing TIME of a patient is an infusion
  (``Dataset.infusions``; rows at one TIME are one infusion, their AMT summed) that starts its
  own cohort of cells (:mod:`bayes_cart.kinetics.superposition`); the first infusion's AMT
  becomes covariate ``DOSE``.
  ``EVID`` 2/3/4 rows and ``MDV=1`` observation rows are excluded and listed in the report.
  NONMEM items ``CMT, RATE, ADDL, II, SS`` are checked (one infusion at its TIME is accepted,
  repeated or long infusions are refused; :mod:`bayes_cart.data.conventions`).
* Every other column is a covariate: patient-level (constant within a patient) unless declared
  with ``time_varying=[...]``. An empty cell, ``.``, ``NA`` or ``NaN`` is a missing value. A column
  whose present values are all numbers is numeric, otherwise categorical.

Row numbers in errors and in the ``ROW`` columns are 1-based **data row** numbers: row ``n`` is
line ``n + 1`` of a CSV file whose header is on line 1 (spreadsheet row ``n + 1``). For a DataFrame
or a Parquet file, row ``n`` is the ``n``-th row (position + 1; the index is ignored).

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({"id": ["a", "a", "b"], "time": [1, 7, 14], "dv": [5.0, 80.0, 20.0],
...                       "cens": [0, 0, 0], "Sex": ["F", "F", "M"]})
>>> data = load_dataset(frame)
>>> data.n_patients, data.n_observations, data.covariates
(2, 3, ('Sex',))
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayes_cart.data.checks import RawTable, check_table, infusion_table, normalise_cell
from bayes_cart.data.column_roles import find_column, merge_declarations, normalise_columns
from bayes_cart.errors import DataError, DataWarning, Problem
from bayes_cart.units import to_days

if TYPE_CHECKING:
    from bayes_cart.model.spec import ModelSpec

__all__ = ["Dataset", "ValidationReport", "load_dataset", "native_columns"]

FRAME_SOURCE = "<DataFrame>"
PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = (",", "\t", ";", "|")
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (an .xlsx workbook is one: export the sheet as CSV)",
    b"\xd0\xcf\x11\xe0": "a legacy Excel (.xls) workbook: export the sheet as CSV",
    b"\x1f\x8b": "a gzip-compressed file: decompress it, or name it *.csv.gz",
}


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """What the validation found in valid data.

    Attributes
    ----------
    warnings : tuple of str
        Human-readable notes (also emitted as :class:`~bayes_cart.errors.DataWarning`).
    excluded : pandas.DataFrame
        Rows excluded on purpose, columns ``ROW, ID, reason`` (EVID 2/3/4 rows, MDV=1
        observation rows, rows of patients without observations). Dosing rows are used, so they
        are not listed.
    missing_covariates : dict
        Patient-level covariate -> IDs of the patients whose value is missing.
    """

    warnings: tuple[str, ...]
    excluded: pd.DataFrame
    missing_covariates: dict[str, tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated dataset: observations, patients with covariates, doses.

    Attributes
    ----------
    observations : pandas.DataFrame
        One row per observation, sorted by patient (order of first appearance) then TIME.
        Columns ``ID`` (str), ``TIME`` (float64, days), ``DV`` (float64), ``CENS`` (int64 in
        {0, 1, -1}), ``LIMIT`` (float64, NaN if none), ``ROW`` (int64, data row in the source),
        then the time-varying covariates.
    patients : pandas.DataFrame
        One row per patient with at least one observation, index ``ID``; columns are the
        patient-level covariates (float64, or object of str with ``None`` for missing).
    doses : pandas.DataFrame
        Columns ``ID, TIME`` (days), ``AMT, ROW``; may be empty.
    source : str
        File read, or ``"<DataFrame>"``.
    time_unit : str
        Unit of TIME in the source (converted to days here).
    covariates : tuple of str
        Patient-level covariate names, as spelled in the header (``DOSE`` last if built from AMT).
    time_varying : tuple of str
        Time-varying covariate names (columns of ``observations``).
    report : ValidationReport
        Warnings, excluded rows, missing covariates.
    baseline : pandas.DataFrame
        Pre-infusion samples (TIME < 0) of the patients, with the columns of ``observations``;
        not fitted (the kinetics start at the infusion) and listed in ``report.excluded``.
    """

    observations: pd.DataFrame
    patients: pd.DataFrame
    doses: pd.DataFrame
    source: str
    time_unit: str
    covariates: tuple[str, ...]
    time_varying: tuple[str, ...]
    report: ValidationReport
    baseline: pd.DataFrame = field(default_factory=lambda: _empty_baseline())

    @property
    def n_patients(self) -> int:
        """Number of patients (with at least one observation)."""
        return len(self.patients)

    @property
    def n_observations(self) -> int:
        """Number of observation rows."""
        return len(self.observations)

    @property
    def n_censored(self) -> int:
        """Number of censored observations (CENS != 0)."""
        return int((self.observations["CENS"] != 0).sum())

    @property
    def patient_ids(self) -> tuple[str, ...]:
        """Patient IDs in order of first appearance."""
        return tuple(str(i) for i in self.patients.index)

    @cached_property
    def infusions(self) -> pd.DataFrame:
        """Return one row per infusion: ``ID, INFUSION, TIME, AMT, ROW, ROWS``.

        ``INFUSION`` counts 1, 2, ... in time order; ``ROW`` is the first dosing row and
        ``ROWS`` the number of dosing rows at that TIME (their AMT summed).

        Each infusion starts its own cohort of cells (:mod:`bayes_cart.kinetics.superposition`);
        a patient without dosing rows has one infusion, at TIME 0, not listed here.
        """
        return infusion_table(self.doses)

    @cached_property
    def obs_patient_index(self) -> np.ndarray:
        """For each observation, the position (int64) of its patient in ``patients``."""
        index = pd.Index(self.patient_ids).get_indexer(self.observations["ID"])
        return np.asarray(index, dtype=np.int64)

    def _column_name(self, name: str) -> str:
        col = find_column(self.covariates, name)
        if col is not None:
            return col
        raise KeyError(
            f"no patient-level covariate {name!r}; available: "
            f"{', '.join(self.covariates) or '(none)'}"
        )

    def covariate(self, name: str) -> pd.Series:
        """Return a patient-level covariate (case-insensitive name), indexed by patient ID.

        Raises
        ------
        KeyError
            If there is no such covariate; the message lists the available ones.
        """
        return self.patients[self._column_name(name)]

    def is_categorical(self, name: str) -> bool:
        """Whether a covariate (patient-level or time-varying) is categorical."""
        col = find_column(self.time_varying, name)
        if col is not None:
            return not pd.api.types.is_numeric_dtype(self.observations[col])
        return not pd.api.types.is_numeric_dtype(self.covariate(name))

    def summary(self) -> dict:
        """Summarise the dataset.

        Returns
        -------
        dict
            Keys ``source, time_unit, patients, observations, censored`` (``n``, ``fraction``,
            ``left``, ``right``), ``samples_per_patient`` (min/median/max), ``time_range``
            (days), ``doses``, ``baseline`` (number of pre-infusion samples), ``covariates``
            and ``time_varying`` (per name: ``type`` categorical with ``levels`` {level:
            patients} or numeric with min/median/max; and ``missing``), ``warnings``,
            ``excluded`` (number of rows).
        """
        obs = self.observations
        per_patient = obs.groupby("ID", sort=False).size()
        return {
            "source": self.source,
            "time_unit": self.time_unit,
            "patients": self.n_patients,
            "observations": self.n_observations,
            "censored": {
                "n": self.n_censored,
                "fraction": self.n_censored / max(self.n_observations, 1),
                "left": int((obs["CENS"] == 1).sum()),
                "right": int((obs["CENS"] == -1).sum()),
            },
            "samples_per_patient": {
                "min": int(per_patient.min()),
                "median": float(per_patient.median()),
                "max": int(per_patient.max()),
            },
            "time_range": (float(obs["TIME"].min()), float(obs["TIME"].max())),
            "doses": len(self.doses),
            "baseline": len(self.baseline),
            "covariates": {c: _describe(self.patients[c]) for c in self.covariates},
            "time_varying": {c: _describe(obs[c]) for c in self.time_varying},
            "warnings": list(self.report.warnings),
            "excluded": len(self.report.excluded),
        }

    def subset(self, ids: Iterable[str]) -> Dataset:
        """Return the dataset restricted to the given patients (kept in dataset order).

        Raises
        ------
        KeyError
            If an ID is not a patient of the dataset.
        """
        wanted = {str(i) for i in ids}
        unknown = sorted(wanted - set(self.patient_ids))
        if unknown:
            raise KeyError(f"unknown patient IDs: {', '.join(unknown)}")
        keep = [pid for pid in self.patient_ids if pid in wanted]
        missing = {
            name: tuple(i for i in ids_ if i in wanted)
            for name, ids_ in self.report.missing_covariates.items()
        }
        report = replace(self.report, missing_covariates={k: v for k, v in missing.items() if v})
        return replace(
            self,
            observations=self.observations[self.observations["ID"].isin(keep)].reset_index(
                drop=True
            ),
            patients=self.patients.loc[keep],
            doses=self.doses[self.doses["ID"].isin(keep)].reset_index(drop=True),
            report=report,
            baseline=self.baseline[self.baseline["ID"].isin(keep)].reset_index(drop=True),
        )

    def to_frame(self) -> pd.DataFrame:
        """Return the data as one row per sample (and dose), readable by :func:`load_dataset`.

        Columns: ``ID, TIME`` (days), ``DV, CENS, LIMIT``, then ``EVID, AMT`` when there are
        doses, the time-varying and the patient-level covariates. Baseline samples (TIME < 0)
        are included.
        """
        obs = pd.concat([self.baseline, self.observations], ignore_index=True)
        obs = obs.drop(columns="ROW")
        parts = [obs.assign(_KIND=1)]
        if not self.doses.empty:
            obs = obs.assign(EVID=0, AMT=np.nan)
            doses = self.doses.drop(columns="ROW").assign(
                DV=np.nan, CENS=0, LIMIT=np.nan, EVID=1, _KIND=0
            )
            parts = [obs.assign(_KIND=1), doses]
        frame = pd.concat(parts, ignore_index=True)
        frame["_P"] = pd.Index(self.patient_ids).get_indexer(frame["ID"])
        frame = frame.sort_values(["_P", "TIME", "_KIND"], kind="stable")
        frame = frame.drop(columns=["_P", "_KIND"]).reset_index(drop=True)
        first = ["ID", "TIME", "DV", "CENS", "LIMIT", "EVID", "AMT"]
        first = [c for c in first if c in frame.columns]
        frame = frame[first + list(self.time_varying)]
        return frame.merge(self.patients.reset_index(), on="ID", how="left", sort=False)


NATIVE_COLUMNS = ("ID", "TIME", "DV", "CENS", "LIMIT", "EVID", "AMT")
"""The role columns of :meth:`Dataset.to_frame`; every other column of it is a covariate."""


def native_columns(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Return the ``columns=`` declaration that reads a :meth:`Dataset.to_frame` table back.

    Its covariates are declared ``COVARIATE``, so that one named like a Monolix/NONMEM role
    (``OCC``, ``Y``, ``LLOQ``, ...) that was declared a covariate stays one.
    """
    covariates = tuple(str(c) for c in frame.columns if str(c) not in NATIVE_COLUMNS)
    return {"COVARIATE": covariates} if covariates else {}


def _empty_baseline() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": pd.Series(dtype=object),
            "TIME": pd.Series(dtype="float64"),
            "DV": pd.Series(dtype="float64"),
            "CENS": pd.Series(dtype="int64"),
            "LIMIT": pd.Series(dtype="float64"),
            "ROW": pd.Series(dtype="int64"),
        }
    )


def _describe(values: pd.Series) -> dict:
    missing = int(values.isna().sum())
    if pd.api.types.is_numeric_dtype(values):
        present = values.dropna()
        if present.empty:
            return {"type": "numeric", "min": None, "median": None, "max": None, "missing": missing}
        return {
            "type": "numeric",
            "min": float(present.min()),
            "median": float(present.median()),
            "max": float(present.max()),
            "missing": missing,
        }
    levels = values.dropna().astype(str).value_counts(sort=False)
    return {
        "type": "categorical",
        "levels": {str(k): int(v) for k, v in levels.items()},
        "missing": missing,
    }


def load_dataset(
    source: str | os.PathLike | pd.DataFrame,
    *,
    time_unit: str | None = None,
    time_varying: Sequence[str] = (),
    delimiter: str | None = None,
    columns: Mapping[str, str | Sequence[str]] | None = None,
    spec: ModelSpec | None = None,
) -> Dataset:
    r"""Read and validate a dataset (CSV, CSV.gz, Parquet file or DataFrame).

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A ``.csv`` / ``.tsv`` / ``.txt`` (optionally ``.gz``) or ``.parquet`` file, or a frame.
    time_unit : str, optional
        Unit of TIME in the source: ``day``, ``hour``, ``week`` or ``month``. By default the
        ``time_unit`` of the spec's ``[data]`` table, else ``day``.
    time_varying : sequence of str
        Covariates that may change within a patient (kept in ``observations``).
    delimiter : str, optional
        Field separator of a text file (``","``, ``";"``, ``"\\t"`` or ``"tab"``...). By default
        it is detected from the header line.
    columns : mapping, optional
        Column roles for headers that are not recognised by name, e.g.
        ``{"ID": "SUBJECT", "DV": "CONC", "IGNORE": ["NOTE"], "CAT": ["SITE"]}``. Roles:
        ``ID, TIME, DV, CENS, LIMIT, EVID, MDV, AMT, BLQ, LLOQ, CMT, RATE, ADDL, II, SS, YTYPE,
        OCC, TIMEUNIT``, and ``IGNORE`` (not used), ``COVARIATE``, ``CAT`` (categorical),
        ``CONT`` (numeric) taking a list. See :data:`bayes_cart.data.column_roles.ROLE_NAMES` for
        the names recognised without a declaration.
    spec : ModelSpec, optional
        A model spec whose ``[data]`` table declares column roles (``columns``) and the unit
        of TIME: used unless ``columns`` / ``time_unit`` say otherwise for a role or the unit
        (:func:`bayes_cart.data.column_roles.merge_declarations`).

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Listing every problem found (row, column, patient and what is wrong).
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an unknown ``time_unit``, a ``delimiter`` that is not one character, or a
        ``columns`` declaration with an unknown role (or one column given two roles).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"ID": [1, 1], "TIME": [24, 168], "DV": [10.0, 5.0]})
    >>> load_dataset(frame, time_unit="hour").observations["TIME"].tolist()
    [1.0, 7.0]
    """
    declared, origins = normalise_columns(columns), {}
    if spec is not None:
        declared, origins = _spec_declaration(spec, declared)
        time_unit = time_unit or spec.data.time_unit
    time_unit = time_unit or "day"
    factor = to_days(time_unit)
    if isinstance(time_varying, str):
        time_varying = (time_varying,)
    raw = _read_raw(source, _normalise_delimiter(delimiter))
    checked = check_table(
        raw, factor, time_varying, time_unit=time_unit, columns=declared, origins=origins
    )
    report = ValidationReport(
        warnings=tuple(checked.warnings),
        excluded=checked.excluded,
        missing_covariates=checked.missing_covariates,
    )
    for message in report.warnings:
        warnings.warn(f"{raw.source}: {message}", DataWarning, stacklevel=2)
    return Dataset(
        observations=checked.observations,
        patients=checked.patients,
        doses=checked.doses,
        source=raw.source,
        time_unit=time_unit,
        covariates=tuple(checked.covariates),
        time_varying=tuple(checked.time_varying),
        report=report,
        baseline=checked.baseline if checked.baseline is not None else _empty_baseline(),
    )


def _spec_declaration(
    spec: ModelSpec, columns: Mapping[str, str | tuple[str, ...]]
) -> tuple[dict[str, str | tuple[str, ...]], dict[str, str]]:
    """Return the spec's ``[data] columns`` under ``columns``, and where each spec name is from."""
    own = spec.data.declaration()
    merged = merge_declarations(own, columns)
    keys = {str(k).strip().upper(): str(k) for k in spec.data.columns}

    def names(declaration: Mapping[str, str | tuple[str, ...]], role: str) -> tuple[str, ...]:
        value = declaration.get(role, ())
        return (value,) if isinstance(value, str) else tuple(value)

    origins = {
        name.upper(): f"data.columns.{keys[role]} of {spec.source}"
        for role in own
        for name in names(own, role)
        if name in names(merged, role) and name not in names(columns, role)
    }
    return merged, origins


def _normalise_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    delimiter = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character (or 'tab'), got {delimiter!r}")
    return delimiter


def _read_raw(source: str | os.PathLike | pd.DataFrame, delimiter: str | None) -> RawTable:
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, FRAME_SOURCE)
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {name}")
    if path.is_dir():
        raise DataError(name, "is a directory, not a data file")
    data = path.read_bytes()
    if not data:
        raise DataError(name, "file is empty (0 bytes)")
    if data[:4] == b"PAR1" or path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, name)
    if data[:2] == b"\x1f\x8b" and path.suffix.lower() == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(name, f"could not decompress the gzip file: {exc}") from None
    return _parse_text(name, _decode(name, data), delimiter)


def _read_parquet(path: Path, name: str) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(name, f"could not read the Parquet file: {exc}") from None
    return _from_frame(frame, name)


def _from_frame(frame: pd.DataFrame, name: str) -> RawTable:
    columns = [str(c).strip() for c in frame.columns]
    cells = pd.DataFrame(
        {
            i: frame.iloc[:, i].astype(object).map(normalise_cell).to_list()
            for i in range(len(columns))
        },
        index=pd.RangeIndex(1, len(frame) + 1),
        dtype=object,
    )
    cells.columns = columns
    problems = [
        Problem(f"column {i + 1} has no name", column=f"#{i + 1}")
        for i, c in enumerate(columns)
        if not c
    ]
    if len(frame) == 0 and not problems:
        raise DataError(name, "no data rows (the table has a header only)")
    return RawTable(source=name, cells=cells, problems=problems)


def _decode(name: str, data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(name, "not valid UTF-16 text despite its byte-order mark") from None
    for magic, what in BINARY_MAGIC.items():
        if data.startswith(magic):
            raise DataError(name, f"not a text file: it looks like {what}")
    if b"\x00" in data[:65536]:
        raise DataError(
            name, "not a text file: it contains NUL bytes (binary data); expected CSV or Parquet"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            name,
            Problem(
                f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                "save the file as UTF-8 (CSV UTF-8 in Excel)",
                row=line - 1 if line > 1 else None,
            ),
        ) from None


def _detect_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the first (comma)
    return best if counts[best] else ","


def _parse_text(name: str, text: str, delimiter: str | None) -> RawTable:
    header_line = next((line for line in text.splitlines() if line.strip()), None)
    if header_line is None:
        raise DataError(name, "file is empty (only blank lines)")
    chosen = delimiter or _detect_delimiter(header_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=chosen)
    header: list[str] | None = None
    records: list[list[str]] = []
    rows: list[int] = []
    ragged: set[int] = set()
    problems: list[Problem] = []
    previous = 0
    try:
        for record in reader:
            line, previous = previous + 1, reader.line_num
            if not any(field.strip() for field in record):
                continue
            if header is None:
                header = [field.strip() for field in record]
                continue
            row = line - 1
            if len(record) > len(header):
                extra = record[len(header) :]
                if any(field.strip() for field in extra):
                    ragged.add(row)
                    problems.append(
                        Problem(
                            f"row has {len(record)} fields but the header has {len(header)} "
                            f"columns (extra values {', '.join(repr(e) for e in extra[:3])})",
                            row=row,
                        )
                    )
                record = record[: len(header)]
            records.append(record + [""] * (len(header) - len(record)))
            rows.append(row)
    except csv.Error as exc:
        raise DataError(name, Problem(f"malformed CSV: {exc}", row=previous)) from None
    assert header is not None
    if len(header) == 1 and delimiter is not None:
        others = [d for d in DELIMITERS if d != chosen and d in header[0]]
        if others:
            shown = "\\t" if others[0] == "\t" else others[0]
            raise DataError(
                name,
                Problem(
                    f"the header is a single column {header[0]!r}: the file looks like "
                    f"'{shown}'-separated; use delimiter='{shown}'",
                    column=header[0],
                ),
            )
    if not records:
        raise DataError(name, "no data rows (the file has a header only)")
    cells = pd.DataFrame(records, index=pd.Index(rows), dtype=object)
    cells = cells.map(normalise_cell)
    keep = []
    for pos, col in enumerate(header):
        if col:
            keep.append(pos)
        elif cells[pos].notna().any():
            hint = ""
            values = pd.to_numeric(cells[pos], errors="coerce")
            if values.notna().all() and (values.diff().dropna() == 1).all():
                hint = " (a row index written by pandas? save with index=False)"
            problems.append(Problem(f"column {pos + 1} has no name{hint}", column=f"#{pos + 1}"))
    cells = cells[keep]
    cells.columns = [header[p] for p in keep]
    return RawTable(source=name, cells=cells, ragged=ragged, problems=problems)
