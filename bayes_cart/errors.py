"""Typed errors and warnings raised by bayes_cart.

Every error names the thing at fault (file, row, patient, column or spec key) so that a user
can fix the input without reading a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One problem found while validating an input.

    Parameters
    ----------
    message : str
        What is wrong, in plain words.
    row : int or list of int, optional
        1-based data row number(s) in the file (the header is row 0).
    column : str, optional
        Column (or spec key) at fault.
    patient : str, optional
        Patient ID at fault.
    """

    message: str
    row: int | tuple[int, ...] | None = None
    column: str | None = None
    patient: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            rows = self.row if isinstance(self.row, tuple) else (self.row,)
            shown = ", ".join(str(r) for r in rows[:8])
            if len(rows) > 8:
                shown += f", ... ({len(rows)} rows)"
            where.append(f"row{'s' if len(rows) > 1 else ''} {shown}")
        if self.patient is not None:
            where.append(f"patient {self.patient}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = f"[{'; '.join(where)}] " if where else ""
        return f"{prefix}{self.message}"


class BayesCartError(Exception):
    """Base class of all bayes_cart errors."""


@dataclass
class _ProblemsMixin:
    problems: list[Problem] = field(default_factory=list)


class DataError(BayesCartError, ValueError):
    """A dataset could not be read or failed validation.

    Parameters
    ----------
    source : str
        The file (or ``"<DataFrame>"``) that was read.
    problems : list of Problem
        Every problem found, collected in one pass.
    """

    def __init__(self, source: str, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} problem(s) found"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class SpecError(BayesCartError, ValueError):
    """A model specification is invalid.

    Parameters
    ----------
    source : str
        The spec file or name.
    problems : list of str
        Every problem found, each naming the key at fault.
    """

    def __init__(self, source: str, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.source = source
        self.problems = list(problems)
        lines = [f"model spec {source}: {len(self.problems)} problem(s) found"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class FitFileError(BayesCartError, ValueError):
    """A saved fit cannot be loaded or does not match what it claims to be."""


class OutputError(BayesCartError, ValueError):
    """An output location cannot take the results (a file, a non-empty folder, no permission)."""


class StartError(BayesCartError, ValueError):
    """The log density or its gradient is not finite at the sampler's starting point.

    Raised before sampling (:func:`bayes_cart.inference.start_check.check_start`).

    Parameters
    ----------
    message : str
        One line naming each term at fault with its patients and data rows.
    terms : list of bayes_cart.inference.start_check.StartTerm
        The terms that are not finite.
    """

    def __init__(self, message: str, terms: list | tuple = ()):
        self.terms = list(terms)
        super().__init__(message)


class ApproximationError(BayesCartError, RuntimeError):
    """An approximate inference method broke down and has no draws to give.

    Raised by :func:`bayes_cart.inference.approximate.fit_approximation`, e.g. when ADVI's
    optimisation reaches NaN; the message says after how many steps and what to try.
    """


class DataWarning(UserWarning):
    """Valid data with something the user should know (missing covariates, all-BLQ patients...)."""


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics failed the gate (R-hat, ESS, divergences, E-BFMI, tree depth)."""


class FormulaWarning(UserWarning):
    """A covariate formula that is valid but probably not what was meant (``-`` removes a term)."""
