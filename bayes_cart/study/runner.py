"""Run a study's pending tasks on Dask distributed (or in this process) and store each record.

:func:`run_study` opens the study directory (:class:`bayes_cart.study.store.StudyStore`),
skips the tasks already recorded, and submits the others as Dask futures, one per task. The
client writes each record as it arrives (:func:`distributed.as_completed`), so killing the
study loses only the tasks in flight and a rerun of the same command finishes the rest.

Workers: by default a :class:`distributed.LocalCluster` of one process per core, one thread
each, with the thread pools of BLAS, OpenMP, Numba and XLA held to one thread per worker
(:data:`WORKER_ENV`) so that parallel fits do not oversubscribe the cores; each fit samples its
chains one after another (``cores = 1`` of the method). ``scheduler="tcp://host:8786"`` uses an
existing cluster instead (start its workers with ``--nthreads 1`` and the same environment).
``workers=0`` runs every task in this process, one after another (debugging, tiny studies).

A task that runs longer than the study's ``timeout_s`` is recorded as ``timeout`` and its
worker is restarted (Dask only). Methods registered with
:func:`bayes_cart.study.register_method` outside bayes_cart are shipped to the workers by value.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bayes_cart.study.methods import get_method, register_method
from bayes_cart.study.store import StudyStore
from bayes_cart.study.task import Task, failed_record, run_task, study_tasks

__all__ = ["WORKER_ENV", "RunProgress", "default_workers", "run_study"]

#: Environment of every local worker process: one thread for each numerical library.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}

_TOPIC = "bayes-cart-study"


@dataclass
class RunProgress:
    """Where a run stands (passed to ``on_progress`` after every change).

    Attributes
    ----------
    total : int
        Tasks of the study.
    done, failed : int
        Recorded tasks (``failed``: error or timeout), before this run included.
    running : int
        Tasks executing now.
    skipped : int
        Tasks found recorded when the run started.
    elapsed : float
        Seconds since the run started.
    """

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    last: str = ""
    workers: int = 0

    @property
    def remaining(self) -> int:
        """Tasks not recorded yet."""
        return self.total - self.done

    @property
    def eta(self) -> float | None:
        """Seconds left at this run's pace (None before its first task finishes)."""
        finished_now = self.done - self.skipped
        if finished_now <= 0:
            return None
        return self.elapsed / finished_now * self.remaining


@dataclass
class RunResult:
    """What a run did: tasks run now, found already done, failed, and the wall time."""

    total: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    unfinished: int
    keys_run: list[str] = field(default_factory=list)


def default_workers() -> int:
    """Worker processes of a local cluster: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _method_functions(study: Any) -> bytes:
    """Pickle the function of every method kind the study uses, resolved in the client.

    Functions from outside bayes_cart (a user's module, a test's) are pickled by value, so
    the workers (and the scheduler, which unpickles the graph) need not import their module.
    """
    import cloudpickle

    out = {}
    for method in study.methods.values():
        fn = get_method(method.kind)
        module = getattr(fn, "__module__", "") or ""
        if not module.startswith("bayes_cart") and module in sys.modules and module != "__main__":
            cloudpickle.register_pickle_by_value(sys.modules[module])
        out[method.kind] = fn
    return cloudpickle.dumps(out)


def _worker_task(study: Any, task: Task, functions: bytes) -> dict[str, Any]:
    """Run one task inside a Dask worker (announces its start, for the progress and timeouts)."""
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)
    try:
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(_TOPIC, {"key": task.key, "worker": worker.address, "t": time.time()})
    except (ImportError, ValueError):  # pragma: no cover - not inside a worker
        pass
    import cloudpickle

    for kind, fn in cloudpickle.loads(functions).items():  # the client's methods
        register_method(kind, fn, replace=True)
    return run_task(study, task)


def _pending(store: StudyStore, study: Any, retry_failed: bool) -> tuple[list[Task], dict]:
    finished = store.finished()
    if retry_failed:
        for key, status in list(finished.items()):
            if status != "ok":
                store.remove(key)
                del finished[key]
    return [t for t in study_tasks(study) if t.key not in finished], finished


def run_study(
    study: Any,
    directory: Any,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    retry_failed: bool = False,
    max_tasks: int | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
) -> RunResult:
    """Run every pending task of ``study`` and record it in ``directory``.

    Parameters
    ----------
    study : bayes_cart.study.spec.StudySpec
        The study (:func:`bayes_cart.study.load_study`).
    directory : str or Path
        The study directory (created; a directory of another spec is refused).
    workers : int, optional
        Worker processes of the local cluster (default :func:`default_workers`); 0 runs the
        tasks in this process.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); ``workers`` is then
        ignored.
    retry_failed : bool
        Run the tasks recorded as failed again (by default a failure is a result).
    max_tasks : int, optional
        Run at most this many pending tasks (then stop, as if interrupted).
    on_progress : callable, optional
        Called with a :class:`RunProgress` whenever it changes.

    Returns
    -------
    RunResult
        Counts and the wall time of this run.
    """
    start = time.perf_counter()
    store = StudyStore.open(directory, study)
    pending, finished = _pending(store, study, retry_failed)
    failed_before = sum(s != "ok" for s in finished.values())
    if max_tasks is not None:
        pending = pending[:max_tasks]
    progress = RunProgress(
        total=len(study_tasks(study)),
        done=len(finished),
        failed=failed_before,
        skipped=len(finished),
    )
    report = on_progress or (lambda p: None)

    def record(rec: dict[str, Any]) -> None:
        store.write(rec)
        progress.done += 1
        progress.failed += rec["status"] != "ok"
        progress.last = rec["key"]
        keys_run.append(rec["key"])

    keys_run: list[str] = []
    if pending and workers == 0 and scheduler is None:
        progress.workers = 1
        for task in pending:
            progress.running = 1
            progress.elapsed = time.perf_counter() - start
            report(progress)
            record(run_task(study, task))
        progress.running = 0
    elif pending:
        _run_dask(study, pending, record, progress, report, start, workers, scheduler)
    progress.elapsed = time.perf_counter() - start
    report(progress)
    return RunResult(
        total=progress.total,
        ran=len(keys_run),
        skipped=progress.skipped,
        failed=sum(s != "ok" for s in store.finished().values()),
        seconds=progress.elapsed,
        unfinished=progress.total - len(store.finished()),
        keys_run=keys_run,
    )


def _run_dask(
    study: Any,
    pending: list[Task],
    record: Callable[[dict[str, Any]], None],
    progress: RunProgress,
    report: Callable[[RunProgress], None],
    start: float,
    workers: int | None,
    scheduler: str | None,
) -> None:
    import dask
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=workers or default_workers(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=WORKER_ENV,
                # the nanny's "still alive after 4 s, killing" at shutdown is noise here
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
        else:
            client = Client(scheduler)
    started: dict[str, tuple[float, str]] = {}

    def on_event(event: Any) -> None:
        _, msg = event
        started[msg["key"]] = (time.monotonic(), msg["worker"])

    try:
        client.subscribe_topic(_TOPIC, on_event)
        functions = _method_functions(study)
        study_future = client.scatter(study, broadcast=True)
        futures = {
            client.submit(
                _worker_task,
                study_future,
                task,
                functions,
                key=f"study-{study.hash}-{task.key}",  # unique on a shared scheduler
                pure=False,
            ): task
            for task in pending
        }
        ac = as_completed(futures)
        open_keys = {t.key for t in futures.values()}
        timeout = study.timeout_s
        while open_keys:
            for future in ac.next_batch(block=False) if ac.has_ready() else []:
                task = futures[future]
                if task.key not in open_keys:
                    continue  # timed out and recorded already
                open_keys.discard(task.key)
                if future.status == "finished":
                    record(future.result())
                else:
                    exc = future.exception() if future.status == "error" else None
                    message = f"{type(exc).__name__}: {exc}" if exc else f"future {future.status}"
                    record(failed_record(study, task, "error", message))
            now = time.monotonic()
            if timeout is not None:
                for future, task in futures.items():
                    begun = started.get(task.key)
                    if task.key in open_keys and begun and now - begun[0] > timeout:
                        open_keys.discard(task.key)
                        record(
                            failed_record(
                                study, task, "timeout", f"ran longer than timeout_s = {timeout:g}"
                            )
                        )
                        future.cancel()
                        client.restart_workers([begun[1]], raise_for_error=False)
            progress.running = sum(1 for k in open_keys if k in started)
            progress.workers = len(client.nthreads())
            progress.elapsed = time.perf_counter() - start
            report(progress)
            if open_keys and not ac.has_ready():
                time.sleep(0.25)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
