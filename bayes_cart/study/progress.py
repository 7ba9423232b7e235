"""The progress display of a study run: done / failed / running / ETA.

:func:`progress_line` renders a :class:`bayes_cart.study.runner.RunProgress` as one line (a
pure function, for logs and tests); :class:`StudyProgressBar` shows it as a rich progress bar
in a terminal, and elsewhere (CI logs, a file) prints the line at most once a minute and when
a task fails.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["StudyProgressBar", "format_seconds", "progress_line"]


def format_seconds(seconds: float | None) -> str:
    """``3725`` -> ``'1h02m'``, ``65`` -> ``'1m05s'``, None -> ``'?'``.

    Examples
    --------
    >>> format_seconds(3725), format_seconds(65), format_seconds(None)
    ('1h02m', '1m05s', '?')
    """
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_line(p: Any) -> str:
    """One line: tasks done of total, failed, running, elapsed and ETA.

    Examples
    --------
    >>> from bayes_cart.study.runner import RunProgress
    >>> progress_line(RunProgress(total=10, done=4, failed=1, running=2, skipped=2, elapsed=60))
    '4/10 tasks done (2 from before), 1 failed, 2 running, 1m00s elapsed, ETA 3m00s'
    """
    before = f" ({p.skipped} from before)" if p.skipped else ""
    return (
        f"{p.done}/{p.total} tasks done{before}, {p.failed} failed, {p.running} running, "
        f"{format_seconds(p.elapsed)} elapsed, ETA {format_seconds(p.eta)}"
    )


class StudyProgressBar:
    """``on_progress`` of :func:`bayes_cart.study.run_study` for the command line.

    Parameters
    ----------
    console : rich.console.Console
        Where to draw.
    mode : {"live", "lines", "off"}
        A rich progress bar, a line a minute, or nothing.
    """

    def __init__(self, console: Any, mode: str = "live") -> None:
        self.console = console
        self.mode = mode
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0
        self._failed = 0

    def __enter__(self) -> StudyProgressBar:
        if self.mode == "live":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]study[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "[red]{task.fields[failed]} failed[/] · {task.fields[running]} running · "
                    "ETA {task.fields[eta]}"
                ),
                console=self.console,
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, p: Any) -> None:
        """Show ``p`` (a :class:`bayes_cart.study.runner.RunProgress`)."""
        if self.mode == "off":
            return
        if self._bar is not None:
            fields = {"failed": p.failed, "running": p.running, "eta": format_seconds(p.eta)}
            if self._task is None:
                self._task = self._bar.add_task("study", total=p.total, **fields)
            self._bar.update(self._task, completed=p.done, **fields)
            return
        now = time.monotonic()
        if now - self._last_line >= 60 or p.failed != self._failed or p.remaining == 0:
            self._last_line, self._failed = now, p.failed
            self.console.print(progress_line(p), markup=False, highlight=False)
