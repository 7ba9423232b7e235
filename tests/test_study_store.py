"""The study directory: resumable, atomic, refuses another spec, failures are records."""

from __future__ import annotations

import json

import pytest
import study_doubles  # noqa: F401 (registers the test methods)
from study_doubles import study_dict

import bayes_cart as bc
from bayes_cart.study import StudyStore, run_study, study_from_dict, study_tasks


def _study(**kw):
    return study_from_dict(study_dict(**kw))


def _quantities(directory):
    return {
        r["key"]: (r["seed"], r["quantities"]) for r in StudyStore.existing(directory).records()
    }


def test_a_rerun_computes_nothing(tmp_path):
    study = _study(replicates=2)
    first = run_study(study, tmp_path / "s", workers=0)
    assert first.ran == 8 and first.skipped == 0 and first.unfinished == 0
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "tasks").iterdir()}
    again = run_study(study, tmp_path / "s", workers=0)
    assert again.ran == 0 and again.skipped == 8
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "tasks").iterdir()} == files
    assert (tmp_path / "s" / "spec.json").exists()  # (study.toml too when read from a file)
    assert json.loads((tmp_path / "s" / "study.json").read_text())["hash"] == study.hash


def test_an_interrupted_study_resumes_without_loss_or_duplicates(tmp_path):
    study = _study(replicates=3)
    part = run_study(study, tmp_path / "resumed", workers=0, max_tasks=5)
    assert part.ran == 5 and part.unfinished == 7
    (tmp_path / "resumed" / "tasks" / ".tmp-killed.json").write_text("{half a rec")  # a kill
    rest = run_study(study, tmp_path / "resumed", workers=0)
    assert rest.ran == 7 and rest.skipped == 5 and rest.unfinished == 0
    assert not set(part.keys_run) & set(rest.keys_run)
    assert sorted(part.keys_run + rest.keys_run) == sorted(t.key for t in study_tasks(study))
    assert not list((tmp_path / "resumed" / "tasks").glob(".tmp-*"))
    run_study(study, tmp_path / "straight", workers=0)
    assert _quantities(tmp_path / "resumed") == _quantities(tmp_path / "straight")


def test_more_replicates_extend_the_study(tmp_path):
    run_study(_study(replicates=1), tmp_path / "s", workers=0)
    more = run_study(_study(replicates=2), tmp_path / "s", workers=0)
    assert more.ran == 4 and more.skipped == 4
    assert StudyStore.existing(tmp_path / "s").study().replicates == 2


def test_a_changed_spec_is_refused(tmp_path):
    run_study(_study(replicates=1), tmp_path / "s", workers=0)
    changed = study_dict(replicates=1)
    changed["study"]["seed"] = 8
    with pytest.raises(bc.OutputError, match="holds the results of another study spec"):
        run_study(study_from_dict(changed), tmp_path / "s", workers=0)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(bc.OutputError, match="not empty and not a study directory"):
        run_study(_study(replicates=1), tmp_path / "other", workers=0)


def test_a_failing_method_is_recorded_and_counted(tmp_path):
    methods = {"exact": {"kind": "conjugate"}, "bad": {"kind": "failing"}}
    result = run_study(_study(replicates=2, methods=methods), tmp_path / "s", workers=0)
    assert result.ran == 8 and result.failed == 4 and result.unfinished == 0
    store = StudyStore.existing(tmp_path / "s")
    bad = [r for r in store.records() if r["method"] == "bad"]
    assert {r["status"] for r in bad} == {"error"}
    assert all(r["error"].startswith("RuntimeError: this method always fails") for r in bad)
    # failures are results: not rerun, unless asked
    assert run_study(_study(replicates=2, methods=methods), tmp_path / "s", workers=0).ran == 0
    retried = run_study(
        _study(replicates=2, methods=methods), tmp_path / "s", workers=0, retry_failed=True
    )
    assert retried.ran == 4


def test_an_unreadable_record_is_run_again(tmp_path):
    study = _study(replicates=1)
    run_study(study, tmp_path / "s", workers=0)
    victim = next((tmp_path / "s" / "tasks").glob("*.json"))
    victim.write_text('{"key": "trunc')
    with pytest.warns(UserWarning, match="unreadable task record"):
        again = run_study(study, tmp_path / "s", workers=0)
    assert again.keys_run == [victim.stem]


def test_kill_9_in_the_middle_loses_and_duplicates_nothing(tmp_path):
    """A real SIGKILL of a running study process, then the same run again."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    directory = tmp_path / "s"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import study_doubles as d; from bayes_cart.study import run_study, study_from_dict;"
        "run_study(study_from_dict(d.study_dict(replicates=30, methods={'e': {'kind': "
        "'sleepy', 'options': {'seconds': 0.02}}})), sys.argv[2], workers=0)"
    )
    tests_dir = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", script, tests_dir, str(directory)])
    tasks = directory / "tasks"

    def records_on_disk():  # a kill may leave a temporary file: not a record
        return [p for p in tasks.glob("*.json") if not p.name.startswith(".tmp-")]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(records_on_disk()) < 10:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(records_on_disk())
    assert 10 <= killed_at < 60
    study = _study(replicates=30, methods={"e": {"kind": "sleepy", "options": {"seconds": 0}}})
    # not the same spec (seconds differ): refused, so use the one that was killed
    with pytest.raises(bc.OutputError):
        run_study(study, directory, workers=0)
    same = _study(replicates=30, methods={"e": {"kind": "sleepy", "options": {"seconds": 0.02}}})
    store = StudyStore.existing(directory)
    assert len(store.records()) == killed_at and not store.unreadable  # every file whole
    rest = run_study(same, directory, workers=0)
    assert rest.skipped == killed_at and rest.ran == 60 - killed_at and rest.unfinished == 0
    keys = [r["key"] for r in store.records()]
    assert len(keys) == len(set(keys)) == 60
