"""A search's trials: the ``Objective`` asked and told one trial at a time, stopping at the
study's total (all workers together, exactly), after too many failures in a row, or on
Ctrl-C/SIGTERM with the running trial queued to resume."""

from __future__ import annotations

import fcntl
import gc
import hashlib
import signal
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces import SearchSpace
from study.dashboard import note_callback
from study.errors import StudyStoppedError
from study.lifecycle.attempt import Lifecycle, TrialFailedError
from study.lifecycle.workers import Heartbeat, queue_interrupted, trial_id
from study.objective import Objective
from study.progress import Progress
from study.records import TrialAttrs as A
from study.records import is_failure

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# trials that count towards the total: finished, running or queued to run (failures do not)
CLAIMED = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)


def optimize(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    args: Any,
    space: SearchSpace,
    base: dict[str, Any],
    fixed: dict[str, Any],
    splits: Any,
    store: Any,
    sampler_seed: int,
    progress: Progress | None = None,
) -> None:
    """Run trials until the study holds ``args.trials`` finished ones (all workers together),
    shown on ``progress`` (the caller started it with the study's totals, and closes it)."""
    life = Lifecycle(
        checkpoint_dir=Path(args.checkpoint_dir),
        keep_checkpoints=args.keep_checkpoints,
        artifact_store=store,
        prune=True,
        progress=progress or Progress(quiet=True),
    )
    objective = Objective(space, base, fixed, splits, life, sampler_seed=sampler_seed)
    failures = FailureGuard(args.max_failures)

    def report_end(study: optuna.Study, trial: FrozenTrial) -> None:
        life.show_end(trial)

    callbacks = [report_end, failures, note_callback(args.storage)]
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    # SIGTERM (a scheduler, `kill`) stops like Ctrl-C: the trial's last epoch stays saved
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while not failures.stopped and (deadline is None or time.monotonic() < deadline):
            trial = claim(study, args.trials, ClaimLock(args.storage, study.study_name))
            if trial is None:
                break
            frozen = run_one(study, storage, trial, objective)
            for callback in callbacks:
                callback(study, frozen)
            gc.collect()
    except KeyboardInterrupt:
        if objective.interrupted_trial is not None:
            life.note(queue_interrupted(study, storage, objective.interrupted_trial))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failures.stopped:
        raise StudyStoppedError(
            f"stopped after {failures.in_a_row} failed trials in a row "
            f"(last: {failures.last_reason}); see the trials' fail_reason"
        )


class ClaimLock:
    """Serialises "count the study's trials, then ask for one" among the processes of this
    machine, so that workers started together never make more trials than the study's total.

    Processes on other machines (a shared PostgreSQL) are not covered: there the window is
    the few milliseconds between the count and the ask.
    """

    def __init__(self, storage_url: str, study_name: str) -> None:
        digest = hashlib.sha256(f"{storage_url}\0{study_name}".encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"wrn-study-{digest}.lock"
        self.file: Any = None

    def __enter__(self) -> ClaimLock:
        self.file = self.path.open("a")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def claim(study: optuna.Study, total: int, lock: ClaimLock) -> optuna.Trial | None:
    """The next trial to run: a queued one (a retry) first, else a new one while the trials
    finished, running or queued fall short of ``total``; None when the study is full."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat-stale trials of other hosts
    with lock:
        trials = study.get_trials(deepcopy=False, states=CLAIMED)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and len(trials) >= total:
            return None
        with warnings.catch_warnings():
            # heartbeats are sent by Heartbeat in run_one, as study.optimize would
            warnings.simplefilter("ignore", UserWarning)
            return study.ask()


def run_one(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    trial: optuna.Trial,
    objective: Objective,
) -> FrozenTrial:
    """Run ``objective`` on ``trial`` with heartbeats and tell the study how it ended."""
    with Heartbeat(storage, trial_id(storage, study, trial.number)):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except TrialFailedError:
            return study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            # Ctrl-C (queued by the caller) or a bug: the trial is not left RUNNING
            study.tell(trial, state=TrialState.FAIL)
            raise
    return study.tell(trial, value)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class FailureGuard:
    """Stops the study after ``limit`` failed trials in a row (a broken setup, not bad luck)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.stopped = False
        self.last_reason = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not is_failure(trial):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.last_reason = trial.user_attrs.get(A.FAIL_REASON, "unknown error")
        if self.in_a_row >= self.limit:
            self.stopped = True  # the trial loop checks this before asking for another
