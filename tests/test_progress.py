"""Sampler progress (issue 9, target 7): parsing, rendering, the display and its wiring."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bayes_cart.inference.progress import (
    PROGRESS_TEMPLATE,
    ChainProgress,
    ProgressDisplay,
    SamplerProgress,
    format_seconds,
    format_step_size,
    parse_template,
    progress_line,
    progress_table,
)

runner = CliRunner()


def _state(**kw) -> SamplerProgress:
    """Four chains as in issue 9: one crawling with a tiny step size, one waiting for a core."""
    chains = (
        ChainProgress(1500, 2000, 0, 0.052, 127, 180_000, tuning=False),
        ChainProgress(400, 2000, 64, 4.5e-6, 1023, 400_000, tuning=True),
        ChainProgress(0, 2000, started=False),
        ChainProgress(2000, 2000, 0, 0.055, 127, 250_000, tuning=False),
    )
    return SamplerProgress(chains, 1000, 1000, elapsed=600.0, cores=2, **kw)


def _text(renderable, width: int = 140) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_state_summary_and_phases():
    p = _state()
    assert [c.phase for c in p.chains] == ["sampling", "tuning", "waiting", "done"]
    assert p.finished_draws == 3900 and p.total_draws == 8000 and p.divergences == 64
    assert not p.finished
    assert p.chains[0].mean_steps == pytest.approx(120.0)
    # nutpie's estimate: 600 s * 2 cores / 3900 draws per draw, the draws left spread over
    # two cores in chain order: 500 (chain 0) + 2000 (chain 2) on one, 1600 on the other
    assert p.remaining == pytest.approx(600 * 2 / 3900 * 2500)


def test_line_names_every_chain_with_draws_divergences_and_step_size():
    line = progress_line(_state(label="sampling"))
    head, *chains = line.split(" | ")
    assert head.startswith("sampling: 4 chains x (1000 tune + 1000 draws), 10 min 00 s, ")
    assert head.endswith(" left")
    assert chains[0] == "chain 0 sampling 500/1000, 0 divergences, step 0.052, 127 grad/draw"
    assert chains[1] == (
        "chain 1 tuning tune 400/1000, 64 divergences, step 4.5e-06 (small step: stuck?), "
        "1023 grad/draw"
    )
    assert chains[2] == "chain 2 waiting"
    assert chains[3] == "chain 3 done 1000/1000, 0 divergences, step 0.055, 127 grad/draw"
    assert "\n" not in line


def test_line_numbers_chains_from_the_offset_and_says_done():
    chains = (ChainProgress(100, 100, 1, 0.3, 7, 700, tuning=False),)
    p = SamplerProgress(chains, 50, 50, elapsed=3.0, label="restart of chain 2", chain_offset=2)
    line = progress_line(p)
    assert line.startswith("restart of chain 2: 1 chain x (50 tune + 50 draws), 3 s, done")
    assert "chain 2 done 50/50, 1 divergence, step 0.3, 7 grad/draw" in line


def test_table_has_a_row_per_chain_and_fits_80_columns():
    text = _text(progress_table(_state(label="more chains", chain_offset=4)), width=80)
    assert "more chains: 4 chains x (1000 tune + 1000 draws)" in text
    lines = text.splitlines()
    header = next(line for line in lines if "phase" in line).split()
    assert header == ["chain", "phase", "draws", "div.", "step", "size", "grad/draw", "mean"]
    rows = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["4", "5", "6", "7"]  # numbered from the offset
    assert rows[0][1:3] == ["sampling", "1500/2000"] and rows[0][-4:] == [
        "0",
        "0.052",
        "127",
        "120",
    ]
    assert rows[1][1:3] == ["tuning", "400/2000"] and rows[1][-5:] == [
        "64",
        "4.5e-06",
        "!",
        "1023",
        "1000",
    ]
    assert rows[2] == ["6", "waiting", "0/2000", "0", "-", "-", "-"]
    assert rows[3][1:3] == ["done", "2000/2000"]
    assert "! step size below a tenth of the other chains' median" in text
    assert all(len(line.rstrip()) <= 80 for line in lines) and "…" not in text


def test_parse_nutpie_template_output():
    text = (
        "1200 2000 3 0.05 63 90000 false true\n"
        "400 2000 0 0.00 1023 400000 true true\n"
        "0 2000 0 0.00 0 0 true false\n"
    )
    p = parse_template(text, 1000, 1000, elapsed=12.0, label="sampling")
    assert [c.phase for c in p.chains] == ["sampling", "tuning", "waiting"]
    assert p.chains[0].divergences == 3 and p.chains[0].latest_steps == 63
    assert p.chains[0].mean_steps == pytest.approx(75.0)
    # nutpie <= 0.16.8 rounds the step size to two decimals
    assert format_step_size(p.chains[0]) == "0.05"
    assert format_step_size(p.chains[1]) == "< 0.005"
    with pytest.raises(ValueError, match="unexpected progress line"):
        parse_template("Could not render: unknown variable", 1, 1)


def test_template_asks_for_every_parsed_field():
    for name in (
        "finished_draws",
        "total_draws",
        "divergences",
        "step_size",
        "latest_num_steps",
        "total_num_steps",
        "tuning",
        "started",
    ):
        assert f"chain.{name}" in PROGRESS_TEMPLATE


def test_formats():
    assert format_seconds(59.6) == "1 min 00 s"
    assert format_seconds(None) == "-"
    assert format_step_size(ChainProgress(0, 1)) == "-"


def _run(run: int, done: int, label: str = "sampling") -> SamplerProgress:
    chains = (ChainProgress(done, 20, 0, 0.4, 7, 7 * done, tuning=done < 10),)
    return SamplerProgress(chains, 10, 10, elapsed=float(done), label=label, run=run)


def test_lines_mode_prints_start_interval_and_end_only():
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, width=300), mode="lines", interval=3600)
    with display:
        for done in range(0, 21):
            display(_run(1, done))
        display(_run(1, 20))  # a late report of the finished run: ignored
        display(_run(2, 0, "restart of chain 1"))
        display(_run(2, 5, "restart of chain 1"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # run 1 starts, run 1 ends, run 2 starts (cut short)
    assert lines[0].startswith("sampling: 1 chain") and "tune 0/10" in lines[0]
    assert "done" in lines[1] and "10/10" in lines[1]
    assert lines[2].startswith("restart of chain 1:")


def test_live_and_off_modes():
    out = io.StringIO()
    console = Console(file=out, width=150, force_terminal=True, color_system=None)
    with ProgressDisplay(console, mode="live") as display:
        for done in (0, 10, 20):
            display(_run(1, done))
    assert "sampling: 1 chain" in out.getvalue() and "20/20" in out.getvalue()
    quiet = io.StringIO()
    with ProgressDisplay(Console(file=quiet), mode="off") as display:
        display(_run(1, 20))
    assert quiet.getvalue() == ""
    assert not display.active


def test_cli_display_mode():
    from bayes_cart.cli.common import sampler_progress

    assert sampler_progress(Console(file=io.StringIO()), None).mode == "lines"  # not a tty
    assert sampler_progress(Console(file=io.StringIO(), force_terminal=True), None).mode == "live"
    assert sampler_progress(Console(file=io.StringIO(), force_terminal=True), False).mode == "off"


@pytest.fixture
def captured_fit(monkeypatch):
    """``bayes_cart.inference.sampling.fit`` records its arguments and stops the command."""
    import bayes_cart.inference.sampling as sampling

    calls = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(sampling, "fit", record)
    return calls


@pytest.mark.parametrize(("flag", "mode"), [(None, "lines"), ("--no-progress", None)])
def test_fit_command_wires_the_display(tmp_path, captured_fit, flag, mode):
    from bayes_cart.cli import app

    data = tmp_path / "data.csv"
    data.write_text("ID,TIME,DV\n1,1,5\n1,7,40\n1,28,3\n2,1,2\n2,7,30\n2,28,1\n")
    args = ["fit", str(data), "--out", str(tmp_path / "o")] + ([flag] if flag else [])
    result = runner.invoke(app, args)
    assert "stopped by the test" in result.output, result.output
    (kwargs,) = captured_fit
    display = kwargs["on_progress"]
    assert (display.mode if display is not None else None) == mode
    assert kwargs["progress"] is False  # nutpie's own bar stays off outside a terminal


def test_sample_posterior_reports_progress():
    """The hook on a tiny model: reports per chain, to the end, and the same draws."""
    import pymc as pm

    from bayes_cart.inference.sampling import sample_posterior

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Normal("y", mu, 1.0, observed=np.array([0.1, -0.3, 0.4]))
    reports: list[SamplerProgress] = []
    idata, _ = sample_posterior(
        model, chains=2, tune=60, draws=40, random_seed=3, on_progress=reports.append
    )
    assert reports, "no progress reported"
    last = reports[-1]
    assert last.finished and last.label == "sampling" and len(last.chains) == 2
    assert all(c.total_draws == 100 and c.finished_draws == 100 for c in last.chains)
    assert all(np.isfinite(c.step_size) and c.step_size > 0 for c in last.chains)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 40
    same, _ = sample_posterior(model, chains=2, tune=60, draws=40, random_seed=3)
    np.testing.assert_array_equal(idata.posterior["mu"].values, same.posterior["mu"].values)


def test_newer_nutpie_progress_callback(monkeypatch):
    """nutpie >= 0.16.9: its public ``progress_callback`` with chain objects (exact step size)."""
    import sys
    import types

    from bayes_cart.inference.progress import from_nutpie_chains, sample_nutpie

    calls = {}

    def sample(compiled, *, progress_callback=None, progress_bar=True, **kwargs):
        calls.update(kwargs, progress_bar=progress_bar)
        chain = types.SimpleNamespace(
            finished_draws=30,
            total_draws=30,
            divergences=2,
            step_size=0.00123,
            latest_num_steps=255,
            total_num_steps=3000,
            tuning=False,
            started=True,
        )
        progress_callback([chain, chain])
        return "trace"

    monkeypatch.setitem(sys.modules, "nutpie", types.SimpleNamespace(sample=sample))
    reports = []
    out = sample_nutpie(
        object(),
        reports.append,
        chains=2,
        tune=10,
        draws=20,
        seed=1,
        cores=2,
        label="x",
        target_accept=None,
    )
    assert out == "trace" and calls["progress_bar"] is False and calls["target_accept"] is None
    (p,) = reports
    assert p.label == "x" and p.cores == 2 and p.finished and p.divergences == 4
    assert format_step_size(p.chains[0]) == "0.00123"
    assert p.chains[0].mean_steps == pytest.approx(100.0)
    assert from_nutpie_chains([], 1, 1).chains == ()


def test_each_run_of_a_fit_is_labelled(monkeypatch):
    """Added chains and the second run after divergences report their own label and chains."""
    import pymc as pm

    import bayes_cart.inference.sampling as sampling

    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    monkeypatch.setattr(  # one more batch while there are fewer than 4 chains
        sampling,
        "needs_more_draws",
        lambda idata, max_factor: int(idata.posterior.sizes["chain"] < 4),
    )
    real = sampling._divergences
    calls = []

    def five_the_first_time(idata):
        calls.append(1)
        return 5 if len(calls) == 1 else real(idata)

    monkeypatch.setattr(sampling, "_divergences", five_the_first_time)
    reports: list[SamplerProgress] = []
    sampling.sample_posterior(model, chains=2, tune=40, draws=20, on_progress=reports.append)
    runs = {}
    for p in reports:
        runs.setdefault(p.run, (p.label, p.chain_offset, len(p.chains)))
    assert list(runs.values()) == [
        ("sampling", 0, 2),
        ("more chains", 2, 2),
        ("second run at target_accept 0.95", 0, 2),
        ("more chains", 2, 2),
    ]
