"""Method-comparison studies: replicate simulation-estimation, on Dask, resumable.

A study (``studies/*.toml``, :func:`load_study`) crosses scenarios (a truth and a design) with
methods (the one-stage Bayesian fit, its BLQ variants, the two-stage EBE test, or a registered
method) over replicates. One task per (scenario, replicate, method)
(:func:`bayes_cart.study.task.run_task`) simulates its dataset from a seed derived from (study
seed, scenario, replicate), applies the method and returns a small record;
:func:`run_study` runs the pending tasks on Dask and stores each record atomically in the study
directory; :func:`write_summary` turns the records into ``fits.parquet`` and ``metrics.csv``
(bias, RMSE, coverage with Monte Carlo SEs, power / type-I error, failures, timings).

Modules, one job each: ``spec`` (the study spec), ``truth`` (true values by quantity name),
``seeds``, ``datasets`` (one replicate's data), ``methods`` (the registry), ``posterior``
(draws by quantity name), ``bayes_method``, ``two_stage``, ``task``, ``store`` (the
directory), ``runner`` (Dask), ``summary`` (the tables), ``progress`` (the progress bar),
``report_tables`` (the tables of the HTML study report,
:func:`bayes_cart.report.study_report.write_study_report`).
"""

from __future__ import annotations

from bayes_cart.study.methods import (
    MethodContext,
    MethodOutput,
    register_method,
    registered_methods,
    summarise_draws,
)
from bayes_cart.study.runner import RunProgress, run_study
from bayes_cart.study.spec import (
    StudySpec,
    StudySpecError,
    list_studies,
    load_study,
    study_from_dict,
)
from bayes_cart.study.store import StudyStore
from bayes_cart.study.summary import fits_table, metrics_table, status_table, write_summary
from bayes_cart.study.task import Task, run_task, study_tasks

__all__ = [
    "MethodContext",
    "MethodOutput",
    "RunProgress",
    "StudySpecError",
    "StudySpec",
    "StudyStore",
    "Task",
    "fits_table",
    "list_studies",
    "load_study",
    "metrics_table",
    "register_method",
    "registered_methods",
    "run_study",
    "run_task",
    "status_table",
    "study_from_dict",
    "study_tasks",
    "summarise_draws",
    "write_summary",
]
