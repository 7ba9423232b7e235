"""Formatting helpers of the report: numbers, intervals, tables, figures, labels."""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

logger = logging.getLogger("bayes_cart.report")

#: Section keys and headings, in report order.
SECTION_TITLES: dict[str, str] = {
    "data": "1. Data summary",
    "model": "2. Model card",
    "diagnostics": "3. Diagnostics",
    "parameters": "4. Population parameters",
    "contrasts": "5. Contrasts between groups",
    "metrics": "6. Cellular-kinetic metrics and NCA reconciliation",
    "vpc": "7. Visual predictive check",
    "gof": "8. Goodness of fit",
    "individual": "9. Individual fits",
    "virtual": "10. Virtual population",
    "loo": "11. Leave-one-patient-out cross-validation",
}

_FAILED_TEXT = "could not compute"

#: Readable names of derived metrics (prefix -> label, unit).
_METRIC_LABELS: tuple[tuple[str, str, str], ...] = (
    ("Cmax", "Cmax", "DV"),
    ("Tmax", "Tmax", "day"),
    ("AUC_", "AUC", "DV x day"),
    ("persistence", "persistence above the LLOQ", "day"),
    ("doubling_time", "doubling time", "day"),
    ("initial_half_life", "initial half-life", "day"),
    ("terminal_half_life", "terminal half-life", "day"),
    ("memory_fraction_", "memory fraction", "fraction"),
)

_RATE_UNITS = {"1/day", "/day", "day-1", "day^-1", "1/d", "per day"}
_TIME_UNITS = {"day", "days", "d"}


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def _num(x: Any, sig: int = 3) -> str:
    """Format a number with ``sig`` significant digits (plain between 1e-3 and 1e6)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if -3 <= mag < 6:
        return f"{v:.{max(0, sig - 1 - mag)}f}"
    mant, exp = f"{v:.{sig - 1}e}".split("e")
    return f"{mant}e{int(exp)}"


def _ci(mid: Any, lo: Any, hi: Any, sig: int = 3) -> str:
    """``median [low, high]``."""
    return f"{_num(mid, sig)} [{_num(lo, sig)}, {_num(hi, sig)}]"


def _pct(x: Any, digits: int = 0) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def _prob(x: Any) -> str:
    """Format a probability with two decimals ("<0.01" and ">0.99" at the extremes)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if 0 < v < 0.005:
        return "<0.01"
    if 0.995 < v < 1:
        return ">0.99"
    return f"{v:.2f}"


def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a table of formatted cells (object dtype keeps Markup cells as they are)."""
    return pd.DataFrame(list(rows), dtype=object)


def _cv(omega: float) -> float:
    """%CV of a log-normal quantity with log-scale SD ``omega``."""
    return float(np.sqrt(np.expm1(np.asarray(omega, dtype=float) ** 2)) * 100)


def _table(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    caption: str | None = None,
    classes: str = "",
    row_classes: Sequence[str] | None = None,
) -> Markup:
    """Render an HTML table of formatted cells (Markup cells are not escaped)."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    numeric_set = set(numeric)
    rows = []
    for i, rec in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for col, value in zip(frame.columns, rec, strict=True):
            cls = ' class="num"' if col in numeric_set else ""
            text = value if isinstance(value, Markup) else escape("" if value is None else value)
            cells.append(f"<td{cls}>{text}</td>")
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{rc}>{''.join(cells)}</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return Markup(
        f'<div class="table-wrap"><table class="{classes}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _facts(items: Sequence[tuple[str, Any]]) -> Markup:
    """Render a definition list of label/value pairs."""
    body = "".join(
        f"<dt>{escape(k)}</dt><dd>{v if isinstance(v, Markup) else escape(str(v))}</dd>"
        for k, v in items
    )
    return Markup(f'<dl class="facts">{body}</dl>')


def _p(text: str, cls: str = "") -> Markup:
    c = f' class="{cls}"' if cls else ""
    return Markup(f"<p{c}>{escape(text)}</p>")


def _h3(text: str) -> Markup:
    return Markup(f"<h3>{escape(text)}</h3>")


def _ul(items: Sequence[str], cls: str = "") -> Markup:
    c = f' class="{cls}"' if cls else ""
    return Markup(f"<ul{c}>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")


def _figure(fig: Any, alt: str, caption: str | None = None, dpi: int = 90) -> Markup:
    """Embed a matplotlib figure as a PNG data URI and release it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        if fig.canvas.manager is not None:  # a pyplot figure (e.g. a user's): close it
            import matplotlib.pyplot as plt

            plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return Markup(
        f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'
    )


def _failed_box(label: str, reason: str) -> Markup:
    return Markup(
        f'<div class="failed"><strong>{escape(label)}</strong> — {_FAILED_TEXT}: '
        f"{escape(reason)}</div>"
    )


def _metric_label(name: str) -> tuple[str, str]:
    """Readable label and unit of a derived metric (e.g. ``AUC_0_28`` -> ``AUC 0-28 d``)."""
    for prefix, label, unit in _METRIC_LABELS:
        if name.startswith(prefix):
            if prefix == "AUC_":
                a, b = name[4:].split("_", 1)
                return f"AUC {a}-{b} d", unit
            if prefix == "memory_fraction_":
                return f"memory fraction at day {name[len(prefix) :]}", unit
            return label, unit
    return name, ""
