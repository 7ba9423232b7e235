"""The two small languages of a spec: covariate formulas and subset expressions.

Nothing in a spec is executed. A covariate formula passes :func:`formula_variables` (column
names, numbers, the operators ``+ - * : /`` and the functions in :data:`FORMULA_FUNCTIONS`)
before formulaic sees it; a subset expression (``enabled_if``, e.g. ``TRIAL == 'DLBCL'``) is
parsed with :mod:`ast` into comparisons only (:func:`parse_subset_expression`) and evaluated on
the patient table by our own walker (:func:`evaluate_subset`).
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["FORMULA_FUNCTIONS", "evaluate_subset", "formula_variables", "parse_subset_expression"]

#: Functions allowed inside covariate formulas (evaluated by formulaic on the patient table).
FORMULA_FUNCTIONS = ("log", "log10", "log2", "exp", "sqrt", "center", "scale", "C", "I")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_ALLOWED_FORMULA_CHARS = re.compile(r"^[A-Za-z0-9_ .+\-*:/()'\",=\[\]]*$")


def formula_variables(rhs: str) -> tuple[list[str], list[str]]:
    """Split the identifiers of a formula into (variables, problems).

    Only column names, numbers, the operators ``+ - * : /`` and the functions in
    :data:`FORMULA_FUNCTIONS` are allowed; anything else is reported, not evaluated.
    """
    problems: list[str] = []
    if not _ALLOWED_FORMULA_CHARS.match(rhs):
        problems.append(f"formula {rhs!r} contains characters that are not allowed")
    stripped = re.sub(r"'[^']*'|\"[^\"]*\"", "", rhs)
    names = []
    for m in _IDENT.finditer(stripped):
        name = m.group(0)
        end = m.end()
        is_call = stripped[end:].lstrip().startswith("(")
        if is_call:
            if name not in FORMULA_FUNCTIONS:
                problems.append(
                    f"function {name!r} is not allowed in a formula; use {list(FORMULA_FUNCTIONS)}"
                )
        elif "." in name:
            problems.append(f"attribute access {name!r} is not allowed in a formula")
        else:
            names.append(name)
    return names, problems


_ALLOWED_EXPR_NODES = (
    ast.Expression,
    ast.Compare,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
)


def parse_subset_expression(expr: str) -> ast.Expression:
    """Parse a subset expression such as ``TRIAL == 'DLBCL'`` into a restricted AST.

    Only comparisons of column names with constants, ``in`` lists, ``and``/``or``/``not`` are
    allowed; nothing is executed.
    """
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_EXPR_NODES):
            raise ValueError(
                f"{expr!r}: {type(node).__name__} is not allowed; use comparisons of columns "
                "with constants, 'in [...]', and/or/not"
            )
    return tree


def evaluate_subset(expr: str, table: Any) -> Any:
    """Evaluate a subset expression on a patient table (pandas DataFrame) to a boolean Series.

    Column names are matched case-insensitively. Missing values compare as False.

    Examples
    --------
    >>> import pandas as pd
    >>> evaluate_subset("TRIAL in ['DLBCL']", pd.DataFrame({"trial": ["DLBCL", "MM"]})).tolist()
    [True, False]
    """
    import numpy as np
    import pandas as pd

    tree = parse_subset_expression(expr)
    lower = {c.lower(): c for c in table.columns}

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Name):
            key = node.id.lower()
            if key not in lower:
                raise KeyError(f"{expr!r}: no column {node.id!r}; columns: {list(table.columns)}")
            return table[lower[key]]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp):
            val = ev(node.operand)
            return ~val if isinstance(node.op, ast.Not) else -val
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            result = pd.Series(True, index=table.index)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if isinstance(op, ast.In | ast.NotIn):
                    r = left.isin(right)
                    r = ~r if isinstance(op, ast.NotIn) else r
                else:
                    fn = {
                        ast.Eq: np.equal,
                        ast.NotEq: np.not_equal,
                        ast.Lt: np.less,
                        ast.LtE: np.less_equal,
                        ast.Gt: np.greater,
                        ast.GtE: np.greater_equal,
                    }[type(op)]
                    r = fn(left, right)
                result = result & pd.Series(r, index=table.index).fillna(False).astype(bool)
                left = right
            return result
        raise ValueError(f"{expr!r}: unsupported expression")  # pragma: no cover

    out = ev(tree)
    return pd.Series(out, index=table.index).fillna(False).astype(bool)
