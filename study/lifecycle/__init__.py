"""The one trial lifecycle of search, rerun and ablation (see ``attempt``, ``recording``,
``workers``, ``planned``, ``claims``). Imports torch: commands import it after their arguments
are checked."""

from study.lifecycle.attempt import Lifecycle, TrialFailedError
from study.lifecycle.claims import ClaimLock, storage_key
from study.lifecycle.planned import PlannedRun, completed_runs, run_planned, splits_loader
from study.lifecycle.recording import (
    free_memory,
    record_result,
    record_setup,
    report_epoch,
    require_device,
)
from study.lifecycle.workers import (
    fail_and_requeue,
    process_start_time,
    queue_interrupted,
    record_worker,
    recover_dead_trials,
    worker_alive,
)

__all__ = [
    "ClaimLock",
    "Lifecycle",
    "PlannedRun",
    "TrialFailedError",
    "completed_runs",
    "fail_and_requeue",
    "free_memory",
    "process_start_time",
    "queue_interrupted",
    "record_result",
    "record_setup",
    "record_worker",
    "recover_dead_trials",
    "report_epoch",
    "require_device",
    "run_planned",
    "splits_loader",
    "storage_key",
    "worker_alive",
]
