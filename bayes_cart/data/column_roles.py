"""Column roles: which header holds the ID, TIME, DV, ... of a Monolix or NONMEM dataset.

A role is what a column means to the loader (``ID``, ``TIME``, ``DV``, ``CENS``, ...). Roles are
found **by name**, case-insensitively, from the headers Monolix and NONMEM users already write
(:data:`ROLE_NAMES`: ``y``/``obs`` for DV, ``BLQ``/``BQL`` for the censoring flag, ...), or
**by declaration**: ``load_dataset(..., columns={"DV": "CONC"})`` in Python, ``--columns DV=CONC``
on the command line. Every column without a role is a covariate, unless declared ``IGNORE``.

This module only names columns; what the values of a role mean is checked in
:mod:`bayes_cart.data.checks` and :mod:`bayes_cart.data.conventions`.

Examples
--------
>>> parse_column_options(["dv=Conc", "IGNORE=SITE", "ignore=NOTE"])
{'DV': 'Conc', 'IGNORE': ('SITE', 'NOTE')}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ROLE_NAMES",
    "ColumnRoles",
    "declaration_problems",
    "find_column",
    "merge_declarations",
    "normalise_columns",
    "parse_column_options",
    "resolve_roles",
]

ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "ID": ("ID", "#ID"),
    "TIME": ("TIME",),
    "DV": ("DV", "Y", "OBS"),
    "CENS": ("CENS",),
    "LIMIT": ("LIMIT",),
    "EVID": ("EVID",),
    "MDV": ("MDV",),
    "AMT": ("AMT",),
    "BLQ": ("BLQ", "BQL", "BLOQ"),
    "LLOQ": ("LLOQ", "LOQ"),
    "CMT": ("CMT",),
    "RATE": ("RATE",),
    "ADDL": ("ADDL",),
    "II": ("II",),
    "SS": ("SS",),
    "YTYPE": ("YTYPE", "OBSID", "DVID"),
    "OCC": ("OCC",),
    "TIMEUNIT": ("TIMEUNIT", "TIME_UNIT", "TIMEU", "TUNIT"),
}
"""Role -> header names that take it automatically (compared upper-case; Monolix's ``id``,
``time``, ``y``, ``cens``, ``limit``, ``amt``, ``evid``, ``mdv``, ``ytype``/``obsid``, ``occ``
and NONMEM's ``ID``, ``TIME``, ``DV``, ``MDV``, ``EVID``, ``AMT``, ``CMT``, ``RATE``, ``ADDL``,
``II``, ``SS``, ``BLQ``/``BQL``, ``LLOQ``)."""

ROLE_MEANINGS: dict[str, str] = {
    "ID": "patient identifier",
    "TIME": "time since infusion",
    "DV": "observed level",
    "CENS": "censoring code",
    "LIMIT": "other end of a censoring interval",
    "EVID": "event type",
    "MDV": "missing-DV flag",
    "AMT": "dose amount",
    "BLQ": "below-LLOQ flag",
    "LLOQ": "lower limit of quantification",
    "CMT": "compartment",
    "RATE": "infusion rate",
    "ADDL": "additional doses",
    "II": "interdose interval",
    "SS": "steady-state flag",
    "YTYPE": "observation type",
    "OCC": "occasion",
    "TIMEUNIT": "unit of TIME",
}

TIME_AFTER_DOSE_NAMES = ("TAD", "NTAD", "TAFD", "TSFD", "NOMTIME", "NTIME", "NTAFD")
"""Other clocks NONMEM files carry next to TIME (time after dose, nominal times): not used, not
covariates (declare ``TIME=TAD`` to use one of them as TIME)."""

COVARIATE_ROLES = ("COVARIATE", "CAT", "CONT")
"""Declarations that make a column a covariate whatever its name: ``CAT`` categorical even if
its values are numbers (site codes), ``CONT`` numeric (every value must be a number)."""

LIST_ROLES = ("IGNORE", *COVARIATE_ROLES)
"""Declarations that may name several columns."""

EXCLUSIVE = (("CENS", "BLQ"),)
"""Roles that say the same thing: a file may carry one of each pair, not both."""


@dataclass(frozen=True)
class ColumnRoles:
    """The roles found in a header.

    Attributes
    ----------
    roles : dict
        Role (``ID``, ``TIME``, ``DV``, ``BLQ``, ...) -> header name as spelled.
    unused : dict
        Header name -> why the column is neither a role nor a covariate (declared ``IGNORE``, a
        time-after-dose clock, a name displaced by a declaration).
    categorical, continuous : tuple of str
        Covariates declared ``CAT`` / ``CONT``.
    declared : tuple of str
        Header names named in the declaration (exempt from matching by name).
    """

    roles: dict[str, str]
    unused: dict[str, str] = field(default_factory=dict)
    categorical: tuple[str, ...] = ()
    continuous: tuple[str, ...] = ()
    declared: tuple[str, ...] = ()


def find_column(columns: Iterable[object], name: str) -> str | None:
    """Return the column called ``name``, compared case-insensitively, or None.

    An exact match wins over a match in another case; among several of those, the first.

    Examples
    --------
    >>> find_column(["ID", "Trial", "TRIAL"], "trial"), find_column(["ID"], "AGE")
    ('Trial', None)
    >>> find_column(["Trial", "TRIAL"], "TRIAL")
    'TRIAL'
    """
    names = [str(c) for c in columns]
    if name in names:
        return name
    folded = str(name).casefold()
    return next((c for c in names if c.casefold() == folded), None)


def _option_hint(role: str) -> str:
    return f"--columns {role}=NAME on the command line, columns={{'{role}': NAME}} in Python"


def parse_column_options(items: Iterable[str] | None) -> dict[str, str | tuple[str, ...]]:
    """Turn ``--columns ROLE=NAME`` options into a declaration for :func:`normalise_columns`.

    Parameters
    ----------
    items : iterable of str, optional
        ``"ROLE=NAME"`` strings (role case-insensitive). ``IGNORE``, ``COVARIATE``, ``CAT`` and
        ``CONT`` may be given several times (or as ``IGNORE=A,B``).

    Returns
    -------
    dict
        Role (upper-case) -> column name, or tuple of names for the list roles.

    Raises
    ------
    ValueError
        For an item without ``=``, an unknown role, or one role given two different columns.
    """
    out: dict[str, str | tuple[str, ...]] = {}
    for item in items or ():
        role, sep, name = str(item).partition("=")
        role, name = role.strip().upper(), name.strip()
        if not sep or not role or not name:
            raise ValueError(f"--columns {item!r}: expected ROLE=NAME, e.g. --columns DV=CONC")
        if role in LIST_ROLES:
            names = tuple(n.strip() for n in name.split(",") if n.strip())
            previous = out.get(role, ())
            assert isinstance(previous, tuple)
            out[role] = previous + names
            continue
        _check_role(role, f"--columns {item!r}")
        if role in out and out[role] != name:
            raise ValueError(f"--columns: role {role} given twice ({out[role]!r} and {name!r})")
        out[role] = name
    return normalise_columns(out)


def _check_role(role: str, where: str) -> None:
    if role not in ROLE_NAMES and role not in LIST_ROLES:
        known = ", ".join([*ROLE_NAMES, *LIST_ROLES])
        raise ValueError(f"{where}: unknown column role {role!r}; roles: {known}")


def declaration_problems(
    columns: Mapping[str, str | Sequence[str]] | None,
) -> list[tuple[str, str]]:
    """Every problem of a column declaration, without raising.

    Parameters
    ----------
    columns : mapping, optional
        Role -> column name, or names for the list roles (as for :func:`normalise_columns`).

    Returns
    -------
    list of (str, str)
        ``(role as written, message)`` for each unknown role, role without a column name,
        single-column role given several names, and column given two roles.

    Examples
    --------
    >>> for role, message in declaration_problems({"DV": "C", "ID": "c", "DOSE": "AMT"}):
    ...     print(role, "|", message[:40])
    ID | column 'c' is given two roles (DV, ID)
    DOSE | unknown column role 'DOSE'; roles: ID, T
    """
    problems: list[tuple[str, str]] = []
    owner: dict[str, str] = {}
    seen: set[str] = set()
    for role, value in (columns or {}).items():
        key = str(role).strip().upper()
        if key in seen:
            problems.append((str(role), f"role {key} is given twice (roles are case-insensitive)"))
            continue
        seen.add(key)
        if key not in ROLE_NAMES and key not in LIST_ROLES:
            known = ", ".join([*ROLE_NAMES, *LIST_ROLES])
            problems.append((str(role), f"unknown column role {key!r}; roles: {known}"))
            continue
        names = (value,) if isinstance(value, str) else tuple(value)
        if not names or any(not isinstance(n, str) or not n.strip() for n in names):
            problems.append((str(role), f"role {key} needs column name(s), got {value!r}"))
            continue
        if key not in LIST_ROLES and len(names) != 1:
            problems.append((str(role), f"role {key} takes one column, got {list(names)}"))
            continue
        for name in (n.strip() for n in names):
            other = owner.setdefault(name.upper(), key)
            if other != key:
                problems.append((str(role), f"column {name!r} is given two roles ({other}, {key})"))
    return problems


def merge_declarations(
    base: Mapping[str, str | Sequence[str]] | None,
    override: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, str | tuple[str, ...]]:
    """Combine a spec's column declaration (``[data] columns``) with the caller's.

    The caller's declaration (``columns=`` / ``--columns``) takes precedence: a single-column
    role it names replaces the spec's column for that role; the list roles (``IGNORE``,
    ``COVARIATE``, ``CAT``, ``CONT``) add its names to the spec's; and a column it gives a role
    loses the role the spec gave it.

    Parameters
    ----------
    base : mapping, optional
        The spec's declaration.
    override : mapping, optional
        The caller's declaration.

    Returns
    -------
    dict
        A declaration for :func:`normalise_columns` (upper-case roles).

    Examples
    --------
    >>> merge_declarations({"DV": "CONC", "ID": "SUBJ", "IGNORE": ["A"]},
    ...                    {"dv": "CONC2", "IGNORE": ["SUBJ"]})
    {'IGNORE': ('A', 'SUBJ'), 'DV': 'CONC2'}
    """
    first, second = normalise_columns(base), normalise_columns(override)
    claimed = {n.upper() for v in second.values() for n in ((v,) if isinstance(v, str) else v)}
    out: dict[str, str | tuple[str, ...]] = {}
    for role, value in first.items():
        if role in LIST_ROLES:
            kept = tuple(n for n in value if n.upper() not in claimed)
            if kept:
                out[role] = kept
        elif role not in second and str(value).upper() not in claimed:
            out[role] = value
    for role, value in second.items():
        if role in LIST_ROLES:
            previous = out.get(role, ())
            assert isinstance(previous, tuple)
            out[role] = previous + tuple(value)
        else:
            out[role] = value
    return out


def normalise_columns(
    columns: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, str | tuple[str, ...]]:
    """Check a column declaration and return it with upper-case roles.

    Parameters
    ----------
    columns : mapping, optional
        Role -> column name (``{"DV": "CONC", "ID": "SUBJECT"}``); ``IGNORE``, ``COVARIATE``,
        ``CAT`` and ``CONT`` take a name or a list of names.

    Returns
    -------
    dict
        Role -> name (tuple of names for the list roles).

    Raises
    ------
    ValueError
        For an unknown role, a name that is not text, or one column given two roles.
    """
    out: dict[str, str | tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for role, value in (columns or {}).items():
        key = str(role).strip().upper()
        _check_role(key, "columns")
        names = (value,) if isinstance(value, str) else tuple(value)
        if not names or any(not isinstance(n, str) or not n.strip() for n in names):
            raise ValueError(f"columns: role {key} needs column name(s), got {value!r}")
        if key not in LIST_ROLES and len(names) != 1:
            raise ValueError(f"columns: role {key} takes one column, got {list(names)}")
        names = tuple(n.strip() for n in names)
        for name in names:
            other = owner.setdefault(name.upper(), key)
            if other != key:
                raise ValueError(f"columns: column {name!r} is given two roles ({other}, {key})")
        out[key] = names if key in LIST_ROLES else names[0]
    return out


def resolve_roles(
    columns: Sequence[str],
    declared: Mapping[str, str | tuple[str, ...]],
    problems: list[tuple[str, str | None]],
    origins: Mapping[str, str] | None = None,
) -> ColumnRoles:
    """Give each header its role, by declaration first, then by name.

    Parameters
    ----------
    columns : sequence of str
        Header names as spelled (names unique up to case; duplicates are reported elsewhere).
    declared : mapping
        The output of :func:`normalise_columns`.
    problems : list
        ``(message, column)`` pairs are appended for a declared column that is not in the file
        and for two columns that claim one role.
    origins : mapping, optional
        Declared column name (upper-case) -> where it was declared, for the message about a
        missing column (e.g. ``"data.columns.DV of study.toml"``); ``--columns ROLE=NAME``
        for a name without one.

    Returns
    -------
    ColumnRoles
    """
    by_upper: dict[str, str] = {}
    for name in columns:
        by_upper.setdefault(name.upper(), name)
    found = ", ".join(columns)

    def lookup(name: str) -> str | None:
        return name if name in columns else by_upper.get(name.upper())

    roles: dict[str, str] = {}
    lists: dict[str, list[str]] = {r: [] for r in LIST_ROLES}
    taken: set[str] = set()
    for role, value in declared.items():
        for name in (value,) if isinstance(value, str) else value:
            header = lookup(name)
            if header is None:
                where = (origins or {}).get(name.upper(), f"--columns {role}={name}")
                problems.append(
                    (
                        f"column {name!r} declared as {role} ({where}) is not a "
                        f"column of the file (columns found: {found})",
                        name,
                    )
                )
                continue
            taken.add(header)
            if role in LIST_ROLES:
                lists[role].append(header)
            else:
                roles[role] = header

    unused: dict[str, str] = {h: "declared IGNORE" for h in lists["IGNORE"]}
    candidates: dict[str, list[str]] = {}
    alias = {name: role for role, names in ROLE_NAMES.items() for name in names}
    for header in columns:
        if header in taken:
            continue
        key = header.upper()
        if key in TIME_AFTER_DOSE_NAMES and "TIME" not in declared:
            unused[header] = "another clock than TIME: time after dose or nominal time"
        elif key in alias:
            candidates.setdefault(alias[key], []).append(header)
    for role, headers in candidates.items():
        if role in roles:
            for header in headers:
                unused[header] = f"{role} is the declared column {roles[role]!r}"
        elif len(headers) > 1:
            shown = " and ".join(repr(h) for h in headers)
            problems.append(
                (
                    f"columns {shown} both name the {role} ({ROLE_MEANINGS[role]}); declare "
                    f"which one holds it ({_option_hint(role)}) or rename the other",
                    headers[0],
                )
            )
        else:
            roles[role] = headers[0]
    for first, second in EXCLUSIVE:
        if first in roles and second in roles:
            problems.append(
                (
                    f"columns {roles[first]!r} ({first}) and {roles[second]!r} ({second}) both "
                    f"say which rows are censored; keep one of them (or declare the other "
                    f"IGNORE: --columns IGNORE={roles[second]})",
                    roles[second],
                )
            )
    return ColumnRoles(
        roles=roles,
        unused=unused,
        categorical=tuple(lists["CAT"]),
        continuous=tuple(lists["CONT"]),
        declared=tuple(taken),
    )
