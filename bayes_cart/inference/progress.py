"""Sampler progress: nutpie's per-chain state, as a value, a rich table or one line of text.

nutpie reports, per chain and several times a second, the draws done (warm-up included), the
divergences so far, whether the chain is still tuning, its current step size and the leapfrog
steps of its latest trajectory. :func:`sample_nutpie` runs ``nutpie.sample`` with that report
sent to a callback as a :class:`SamplerProgress`; :class:`ProgressDisplay` shows it, live in a
terminal (one row per chain, drawn with rich) or as a periodic single line elsewhere (CI logs).

How the report is obtained depends on the nutpie version:

* nutpie >= 0.16.9: its public ``progress_callback`` (chain objects, exact step sizes);
* nutpie 0.16.8 and earlier 0.16 releases: nutpie's own template progress handler (the one
  its notebook display uses) with a plain-text template, :data:`PROGRESS_TEMPLATE`, parsed
  by :func:`parse_template`. nutpie formats the step size there with two decimals, so a step
  size below 0.005 reads ``< 0.005``; the gradients per draw still show a chain that crawls;
* anything else: sampling without a report (``nutpie.sample(progress_bar=False)``).

The rendering functions (:func:`progress_table`, :func:`progress_line`) are pure functions of a
:class:`SamplerProgress`, so they are tested on synthetic states.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

#: How often nutpie sends a report (milliseconds).
PROGRESS_RATE_MS = 500

#: Seconds between two lines of :class:`ProgressDisplay` when stdout is not a terminal.
LINE_INTERVAL_S = 60.0

#: Plain-text template for nutpie's template progress handler: one line per chain.
PROGRESS_TEMPLATE = (
    "{% for chain in chains %}"
    "{{ chain.finished_draws }} {{ chain.total_draws }} {{ chain.divergences }} "
    "{{ chain.step_size }} {{ chain.latest_num_steps }} {{ chain.total_num_steps }} "
    "{{ chain.tuning }} {{ chain.started }}\n"
    "{% endfor %}"
)

DisplayMode = Literal["live", "lines", "off"]


@dataclass(frozen=True)
class ChainProgress:
    """One chain's state.

    Attributes
    ----------
    finished_draws, total_draws : int
        Draws done and to do, warm-up included (``total_draws = tune + draws``).
    divergences : int
        Divergent transitions so far.
    step_size : float
        Current step size of the integrator.
    latest_steps : int
        Leapfrog steps (gradient evaluations) of the latest draw.
    total_steps : int or None
        Leapfrog steps so far (None when nutpie does not say).
    tuning : bool
        Still in the warm-up (adaptation) phase.
    started : bool
        The chain has started (chains beyond the cores wait their turn).
    step_size_exact : bool
        False when nutpie gave the step size rounded to two decimals (nutpie <= 0.16.8).
    """

    finished_draws: int
    total_draws: int
    divergences: int = 0
    step_size: float = float("nan")
    latest_steps: int = 0
    total_steps: int | None = None
    tuning: bool = True
    started: bool = True
    step_size_exact: bool = True

    @property
    def finished(self) -> bool:
        """All draws done."""
        return self.total_draws > 0 and self.finished_draws >= self.total_draws

    @property
    def phase(self) -> str:
        """``waiting``, ``tuning``, ``sampling`` or ``done``."""
        if self.finished:
            return "done"
        if not self.started:
            return "waiting"
        return "tuning" if self.tuning else "sampling"

    @property
    def mean_steps(self) -> float:
        """Mean leapfrog steps per draw so far (NaN when unknown)."""
        if self.total_steps is None or self.finished_draws == 0:
            return float("nan")
        return self.total_steps / self.finished_draws


@dataclass(frozen=True)
class SamplerProgress:
    """The state of one sampler run (one call of ``nutpie.sample``).

    Attributes
    ----------
    chains : tuple of ChainProgress
        One per chain of this run.
    tune, draws : int
        Warm-up and kept draws per chain.
    elapsed : float
        Seconds since the run started.
    label : str
        What the run is: ``sampling``, a restart of stuck chains, a second try, added chains.
    chain_offset : int
        Number of the first chain (chains are numbered from 0, as in the InferenceData).
    run : int
        Identifies the run (one per ``nutpie.sample`` call), so a display can tell a new run
        from a late report of a finished one.
    cores : int
        Chains run in parallel (0: unknown); used for the time left.
    """

    chains: tuple[ChainProgress, ...]
    tune: int
    draws: int
    elapsed: float = 0.0
    label: str = "sampling"
    chain_offset: int = 0
    run: int = 0
    cores: int = 0

    @property
    def finished_draws(self) -> int:
        """Draws done over all chains (warm-up included)."""
        return sum(c.finished_draws for c in self.chains)

    @property
    def total_draws(self) -> int:
        """Draws to do over all chains (warm-up included)."""
        return sum(c.total_draws for c in self.chains)

    @property
    def divergences(self) -> int:
        """Divergent transitions so far over all chains."""
        return sum(c.divergences for c in self.chains)

    @property
    def finished(self) -> bool:
        """Every chain is done."""
        return bool(self.chains) and all(c.finished for c in self.chains)

    @property
    def remaining(self) -> float | None:
        """Seconds left at the pace so far (None before the first draw or when finished).

        nutpie's own estimate: the time per draw on one core so far, and the chains' remaining
        draws spread over ``cores`` (the waiting chains after the running ones).
        """
        done = self.finished_draws
        if done == 0 or self.finished:
            return None
        cores = self.cores or len(self.chains)
        per_draw = self.elapsed * cores / done
        loads = [0.0] * cores
        for c in self.chains:
            loads[loads.index(min(loads))] += per_draw * (c.total_draws - c.finished_draws)
        return max(loads)


# ------------------------------------------------------------------------- parsing


def parse_template(
    text: str, tune: int, draws: int, elapsed: float = 0.0, label: str = "sampling"
) -> SamplerProgress:
    r"""Parse the output of :data:`PROGRESS_TEMPLATE` into a :class:`SamplerProgress`.

    Parameters
    ----------
    text : str
        nutpie's rendered template: one line per chain, ``finished total divergences
        step_size latest_steps total_steps tuning started``.
    tune, draws : int
        Warm-up and kept draws per chain.
    elapsed : float
        Seconds since the run started.
    label : str
        What the run is.

    Returns
    -------
    SamplerProgress

    Raises
    ------
    ValueError
        When a line does not have the template's eight fields (nutpie reports a template
        error as text).

    Examples
    --------
    >>> p = parse_template("150 2000 0 0.05 63 9000 true true\n0 2000 0 0.00 0 0 true false\n",
    ...                    1000, 1000)
    >>> [c.phase for c in p.chains], p.finished_draws
    (['tuning', 'waiting'], 150)
    """
    chains = []
    for line in text.strip().splitlines():
        fields = line.split()
        if len(fields) != 8:
            raise ValueError(f"unexpected progress line from nutpie: {line!r}")
        fin, tot, div, step, latest, total, tuning, started = fields
        chains.append(
            ChainProgress(
                finished_draws=int(fin),
                total_draws=int(tot),
                divergences=int(div),
                step_size=float(step),
                latest_steps=int(latest),
                total_steps=int(total),
                tuning=tuning == "true",
                started=started == "true",
                step_size_exact=False,
            )
        )
    return SamplerProgress(tuple(chains), tune, draws, elapsed=elapsed, label=label)


def from_nutpie_chains(
    chains: Sequence[Any], tune: int, draws: int, elapsed: float = 0.0, label: str = "sampling"
) -> SamplerProgress:
    """Build a :class:`SamplerProgress` from nutpie's ``ChainProgress`` objects (>= 0.16.9)."""
    out = []
    for c in chains:
        total = getattr(c, "total_num_steps", None)
        out.append(
            ChainProgress(
                finished_draws=int(c.finished_draws),
                total_draws=int(c.total_draws),
                divergences=int(c.divergences),
                step_size=float(c.step_size),
                latest_steps=int(getattr(c, "latest_num_steps", 0)),
                total_steps=None if total is None else int(total),
                tuning=bool(c.tuning),
                started=bool(c.started),
            )
        )
    return SamplerProgress(tuple(out), tune, draws, elapsed=elapsed, label=label)


# ----------------------------------------------------------------------- rendering


def format_step_size(chain: ChainProgress) -> str:
    """Format a step size: three significant digits, or ``< 0.005`` when nutpie rounded it.

    Examples
    --------
    >>> format_step_size(ChainProgress(10, 20, step_size=0.000451))
    '0.000451'
    >>> format_step_size(ChainProgress(10, 20, step_size=0.0, step_size_exact=False))
    '< 0.005'
    """
    s = chain.step_size
    if s != s:  # NaN
        return "-"
    if not chain.step_size_exact:
        return "< 0.005" if s < 0.005 else f"{s:.2f}"
    return f"{s:.3g}"


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``; ``-`` for None.

    Examples
    --------
    >>> format_seconds(42.4), format_seconds(185), format_seconds(3725)
    ('42 s', '3 min 05 s', '1 h 02 min')
    """
    if seconds is None or seconds != seconds:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _slow_chains(progress: SamplerProgress) -> set[int]:
    """Chains whose step size is below a tenth of the median of the running chains."""
    import math

    sizes = [
        c.step_size
        for c in progress.chains
        if c.started and c.finished_draws > 0 and c.step_size == c.step_size
    ]
    if len(sizes) < 2:
        return set()
    median = sorted(sizes)[len(sizes) // 2]
    if not median > 0 or not math.isfinite(median):
        return set()
    return {
        i
        for i, c in enumerate(progress.chains)
        if c.started and c.finished_draws > 0 and c.step_size < 0.1 * median
    }


def _header(progress: SamplerProgress) -> str:
    n = len(progress.chains)
    text = (
        f"{progress.label}: {n} chain{'s' if n != 1 else ''} x ({progress.tune} tune + "
        f"{progress.draws} draws), {format_seconds(progress.elapsed)}"
    )
    if progress.finished:
        return text + ", done"
    left = progress.remaining
    return text + (f", {format_seconds(left)} left" if left is not None else "")


def progress_line(progress: SamplerProgress) -> str:
    r"""One line of text: the run, then per chain its phase, draws, divergences, step size.

    Examples
    --------
    >>> p = SamplerProgress((ChainProgress(1500, 2000, 1, 0.052, 127, tuning=False),),
    ...                     1000, 1000, elapsed=60.0)
    >>> print(progress_line(p).replace(" | ", "\n"))
    sampling: 1 chain x (1000 tune + 1000 draws), 1 min 00 s, 20 s left
    chain 0 sampling 500/1000, 1 divergence, step 0.052, 127 grad/draw
    """
    parts = [_header(progress)]
    slow = _slow_chains(progress)
    for i, c in enumerate(progress.chains):
        number = progress.chain_offset + i
        if c.phase == "waiting":
            parts.append(f"chain {number} waiting")
            continue
        if c.tuning and not c.finished:
            where = f"tune {c.finished_draws}/{progress.tune}"
        else:
            where = f"{min(c.finished_draws - progress.tune, progress.draws)}/{progress.draws}"
        word = "sampling" if c.phase == "sampling" else c.phase
        div = f"{c.divergences} divergence{'s' if c.divergences != 1 else ''}"
        flag = " (small step: stuck?)" if i in slow else ""
        parts.append(
            f"chain {number} {word} {where}, {div}, step {format_step_size(c)}{flag}, "
            f"{c.latest_steps} grad/draw"
        )
    return " | ".join(parts)


def progress_table(progress: SamplerProgress) -> Any:
    """Return a rich table: a row per chain (phase, draws, divergences, step size, gradients).

    Returns
    -------
    rich.table.Table
    """
    from rich import box
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    slow = _slow_chains(progress)
    caption = (
        "! step size below a tenth of the other chains' median: a stuck chain?" if slow else None
    )
    # fits 80 columns: a light box, short headers (div.: divergences so far; grad/draw: the
    # latest draw's leapfrog steps; mean: their mean so far)
    table = Table(
        title=_header(progress),
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=False,
    )
    for col, just in (
        ("chain", "right"),
        ("phase", "left"),
        ("draws", "right"),
        ("", "left"),
        ("div.", "right"),
        ("step size", "right"),
        ("grad/draw", "right"),
        ("mean", "right"),
    ):
        table.add_column(col, justify=just)
    for i, c in enumerate(progress.chains):
        phase = {"tuning": "[cyan]tuning[/cyan]", "sampling": "[green]sampling[/green]"}.get(
            c.phase, c.phase
        )
        div = f"[red]{c.divergences}[/red]" if c.divergences else "0"
        step = format_step_size(c) if c.started else "-"
        if i in slow:
            step = f"[yellow]{step} ![/yellow]"
        mean = c.mean_steps
        table.add_row(
            str(progress.chain_offset + i),
            phase,
            f"{c.finished_draws}/{c.total_draws}",
            ProgressBar(total=max(c.total_draws, 1), completed=c.finished_draws, width=12),
            div,
            step,
            str(c.latest_steps) if c.started else "-",
            f"{mean:.0f}" if mean == mean else "-",
        )
    return table


# -------------------------------------------------------------------------- display


@dataclass
class ProgressDisplay:
    """Show :class:`SamplerProgress` reports: live table, periodic lines, or nothing.

    Use as a context manager around the fit and pass the instance as ``on_progress``
    (:func:`bayes_cart.inference.sampling.fit`). Each sampler run (the first one, restarts, a second
    try, added chains) gets its own table or lines; a run's last state stays on screen.

    Parameters
    ----------
    console : rich.console.Console
        Where to show it.
    mode : {"live", "lines", "off"}
        ``live``: a table redrawn in place (a terminal); ``lines``: one line when a run
        starts, every ``interval`` seconds and when it ends (logs); ``off``: nothing.
    interval : float
        Seconds between two lines in ``lines`` mode.
    """

    console: Any
    mode: DisplayMode = "live"
    interval: float = LINE_INTERVAL_S
    _live: Any = field(default=None, init=False, repr=False)
    _run: int | None = field(default=None, init=False, repr=False)
    _closed: set = field(default_factory=set, init=False, repr=False)
    _last: SamplerProgress | None = field(default=None, init=False, repr=False)
    _last_line: float = field(default=0.0, init=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def active(self) -> bool:
        """Whether anything is shown."""
        return self.mode != "off"

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __call__(self, progress: SamplerProgress) -> None:
        """Show ``progress`` (called by the sampler, possibly from another thread)."""
        if self.mode == "off":
            return
        with self._lock:
            if progress.run in self._closed:
                return  # a late report of a run already shown to its end
            if progress.run != self._run:
                self._end_run()
                self._run = progress.run
                self._start_run(progress)
            self._last = progress
            if self.mode == "live" and self._live is not None:
                self._live.update(progress_table(progress))
            elif self.mode == "lines":
                now = time.monotonic()
                if progress.finished or now - self._last_line >= self.interval:
                    self._print_line(progress, now)
            if progress.finished:
                self._end_run()

    def close(self) -> None:
        """End the current run's display (its last state stays shown)."""
        with self._lock:
            self._end_run()

    def _start_run(self, progress: SamplerProgress) -> None:
        if self.mode == "live":
            from rich.live import Live

            self._live = Live(
                progress_table(progress),
                console=self.console,
                refresh_per_second=4,
                transient=False,
            )
            self._live.start()
        else:
            self._print_line(progress, time.monotonic())

    def _print_line(self, progress: SamplerProgress, now: float) -> None:
        self.console.print(progress_line(progress), markup=False, highlight=False, soft_wrap=True)
        self._last_line = now

    def _end_run(self) -> None:
        if self._run is not None:
            self._closed.add(self._run)
        if self._live is not None:
            if self._last is not None:
                self._live.update(progress_table(self._last))
            self._live.stop()
            self._live = None


# ------------------------------------------------------------------------- sampling


_RUNS = itertools.count(1)


def _public_callback_supported(nutpie: Any) -> bool:
    try:
        return "progress_callback" in inspect.signature(nutpie.sample).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C function without signature
        return False


def _template_sampler_class(nutpie: Any) -> Any:
    """Return a ``_BackgroundSampler`` subclass reporting through nutpie's template handler.

    Returns None when this nutpie does not have the pieces (then no progress is reported).
    """
    try:
        from nutpie import _lib
        from nutpie.sample import _BackgroundSampler
    except ImportError:  # pragma: no cover - another nutpie layout
        return None
    if not hasattr(_lib.ProgressType, "template_callback"):  # pragma: no cover
        return None

    class _TemplateSampler(_BackgroundSampler):
        """``nutpie.sample``'s background sampler with a template progress callback.

        Mirrors ``_BackgroundSampler.__init__`` for the in-memory (arrow) store; the only
        difference is the progress type, which nutpie otherwise chooses by environment
        (notebook: template, terminal: indicatif).
        """

        def __init__(self, compiled, settings, init_mean, cores, progress_type, save_warmup):
            self._settings = settings
            self._compiled_model = compiled
            self._save_warmup = save_warmup
            self._return_raw_trace = False
            self._html = None
            self._store = _lib.PyStorage.arrow()
            self._sampler = compiled._make_sampler(
                settings, init_mean, cores, progress_type, self._store
            )

    return _TemplateSampler


def sample_nutpie(
    compiled: Any,
    on_progress: Callable[[SamplerProgress], None],
    *,
    chains: int,
    tune: int,
    draws: int,
    seed: int,
    cores: int,
    label: str = "sampling",
    chain_offset: int = 0,
    rate_ms: int = PROGRESS_RATE_MS,
    save_warmup: bool = False,
    low_rank_modified_mass_matrix: bool = False,
    **settings: Any,
) -> Any:
    """Run ``nutpie.sample`` and send its per-chain progress to ``on_progress``.

    Parameters
    ----------
    compiled : nutpie compiled model
        From ``nutpie.compile_pymc_model``.
    on_progress : callable
        Called with a :class:`SamplerProgress` every ``rate_ms`` milliseconds, from a
        background thread.
    chains, tune, draws, seed, cores : int
        As for ``nutpie.sample``.
    label : str
        What this run is (shown in the header).
    chain_offset : int
        Number of the first chain (0-based, as in the InferenceData).
    rate_ms : int
        Milliseconds between two reports.
    save_warmup, low_rank_modified_mass_matrix : bool
        As for ``nutpie.sample``.
    **settings
        Further sampler settings (``target_accept``, ``maxdepth``), as for ``nutpie.sample``.

    Returns
    -------
    arviz.InferenceData
        What ``nutpie.sample`` returns.
    """
    import numpy as np
    import nutpie

    t0 = time.perf_counter()
    common = {"chains": chains, "tune": tune, "draws": draws, "seed": seed, "cores": cores}

    run = next(_RUNS)

    def _report(progress: SamplerProgress) -> None:
        try:
            on_progress(replace(progress, chain_offset=chain_offset, run=run, cores=cores))
        except Exception:  # noqa: BLE001 - a display must never stop the sampler
            pass

    if _public_callback_supported(nutpie):

        def raw(chain_list: Sequence[Any]) -> None:
            elapsed = time.perf_counter() - t0
            _report(from_nutpie_chains(chain_list, tune, draws, elapsed, label))

        return nutpie.sample(
            compiled,
            **common,
            progress_bar=False,
            progress_callback=raw,
            progress_rate=rate_ms,
            save_warmup=save_warmup,
            low_rank_modified_mass_matrix=low_rank_modified_mass_matrix,
            **settings,
        )
    sampler_class = _template_sampler_class(nutpie)
    if sampler_class is None:  # pragma: no cover - no progress from this nutpie
        return nutpie.sample(
            compiled,
            **common,
            progress_bar=False,
            save_warmup=save_warmup,
            low_rank_modified_mass_matrix=low_rank_modified_mass_matrix,
            **settings,
        )
    from nutpie import _lib

    def templated(text: str) -> None:
        elapsed = time.perf_counter() - t0
        try:
            progress = parse_template(text, tune, draws, elapsed, label)
        except ValueError:
            return
        _report(progress)

    # the settings exactly as nutpie.sample builds them
    make = (
        _lib.PyNutsSettings.LowRank if low_rank_modified_mass_matrix else _lib.PyNutsSettings.Diag
    )
    nuts = make(seed)
    nuts.num_tune = tune
    nuts.num_draws = draws
    nuts.num_chains = chains
    for name, value in settings.items():
        setattr(nuts, name, value)
    progress_type = _lib.ProgressType.template_callback(
        rate_ms, PROGRESS_TEMPLATE, cores, templated
    )
    sampler = sampler_class(
        compiled, nuts, np.zeros(compiled.n_dim), cores, progress_type, save_warmup
    )
    try:
        return sampler.wait()
    except KeyboardInterrupt:
        return sampler.abort()
    except BaseException:
        sampler.cancel()
        raise
