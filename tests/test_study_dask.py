"""The Dask runner: a LocalCluster of worker processes, a scheduler and a worker started apart,
timeouts (test methods, so it is quick)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import study_doubles  # noqa: F401 (registers the test methods in the client)
from study_doubles import study_dict

from bayes_cart.study import StudyStore, run_study, study_from_dict, study_tasks


def test_local_cluster_runs_every_task_once_with_registered_methods(tmp_path):
    methods = {"exact": {"kind": "conjugate"}, "bad": {"kind": "failing"}}
    study = study_from_dict(study_dict(replicates=2, methods=methods))
    seen = []
    result = run_study(study, tmp_path / "s", workers=2, on_progress=seen.append)
    assert result.ran == 8 and result.failed == 4 and result.unfinished == 0
    records = StudyStore.existing(tmp_path / "s").records()
    assert sorted(r["key"] for r in records) == sorted(t.key for t in study_tasks(study))
    workers = {r["worker"] for r in records}
    assert all(w.split(":")[1] != str(__import__("os").getpid()) for w in workers)  # not here
    assert seen[-1].done == 8 and seen[-1].failed == 4 and seen[-1].running == 0
    # the same results as in process
    run_study(study, tmp_path / "serial", workers=0)
    serial = {r["key"]: r["quantities"] for r in StudyStore.existing(tmp_path / "serial").records()}
    assert {r["key"]: r["quantities"] for r in records} == serial


@pytest.mark.slow  # a worker restart: about 15 s
def test_a_task_over_the_timeout_is_recorded_and_its_worker_restarted(tmp_path):
    methods = {"slow": {"kind": "sleepy", "options": {"seconds": 120}}}
    raw = study_dict(replicates=1, methods=methods, timeout_s=3)
    raw["scenarios"].pop("effect")
    start = time.perf_counter()
    result = run_study(study_from_dict(raw), tmp_path / "s", workers=1)
    assert time.perf_counter() - start < 60
    (record,) = StudyStore.existing(tmp_path / "s").records()
    assert record["status"] == "timeout" and "timeout_s = 3" in record["error"]
    assert result.failed == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a scheduler and a worker process: about 15 s
def test_an_existing_scheduler_and_worker_started_as_processes(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        study = study_from_dict(study_dict(replicates=1, methods={"exact": {"kind": "conjugate"}}))
        result = run_study(study, tmp_path / "s", scheduler=address)
        assert result.ran == 2 and result.failed == 0
    finally:
        for p in (worker, scheduler):
            p.terminate()
            p.wait(timeout=30)
