"""A search's trials: ``study.optimize`` over the ``Objective``, stopping at the study's total,
after too many failures in a row, or on Ctrl-C/SIGTERM with the running trial queued."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces import SearchSpace
from study.cli import StudyStoppedError
from study.dashboard import note_callback
from study.lifecycle.attempt import Lifecycle, TrialFailedError
from study.lifecycle.workers import queue_interrupted
from study.objective import Objective, Quota
from study.progress import Progress
from study.records import TrialAttrs as A
from study.records import is_failure

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


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
) -> None:
    """Run trials until the study holds ``args.trials`` finished ones (all workers together)."""
    progress = Progress()
    life = Lifecycle(
        checkpoint_dir=Path(args.checkpoint_dir),
        keep_checkpoints=args.keep_checkpoints,
        artifact_store=store,
        prune=True,
        progress=progress,
        say=lambda text: print(text, file=sys.stderr, flush=True),
    )
    quota = Quota(study, args.trials)
    objective = Objective(space, base, fixed, splits, life, quota, sampler_seed)
    failures = FailureGuard(args.max_failures)

    def report_end(study: optuna.Study, trial: FrozenTrial) -> None:
        progress.trial_end(trial.number, trial.state.name, trial.value)
        if trial.user_attrs.get(A.NOT_RUN):
            return
        if trial.state == TrialState.FAIL:
            reason = trial.user_attrs.get(A.FAIL_REASON, "unknown error")
            print(f"trial {trial.number} failed: {reason}", file=sys.stderr)
        elif trial.state == TrialState.PRUNED and progress.enabled:
            print(
                f"trial {trial.number} pruned: {trial.user_attrs.get(A.PRUNED_REASON)}",
                file=sys.stderr,
            )

    # SIGTERM (a scheduler, `kill`) stops like Ctrl-C: the trial's last epoch stays saved
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        study.optimize(
            objective,
            # failed trials do not count towards --trials: run until the callbacks stop us
            n_trials=None,
            timeout=args.timeout,
            catch=(TrialFailedError,),
            callbacks=[
                report_end,
                failures,
                note_callback(args.storage),  # best so far, refreshed after each trial
                # trials running elsewhere count, so the workers together do not overshoot;
                # the Quota refuses a trial that two workers started at once
                optuna.study.MaxTrialsCallback(
                    args.trials, states=(*FINISHED, TrialState.RUNNING)
                ),
            ],
            gc_after_trial=True,
        )
    except KeyboardInterrupt:
        if objective.interrupted_trial is not None:
            print(
                queue_interrupted(study, storage, objective.interrupted_trial),
                file=sys.stderr,
                flush=True,
            )
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failures.stopped:
        raise StudyStoppedError(
            f"stopped after {failures.in_a_row} failed trials in a row "
            f"(last: {failures.last_reason}); see the trials' fail_reason"
        )


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
        if trial.user_attrs.get(A.NOT_RUN):
            return
        if not is_failure(trial):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.last_reason = trial.user_attrs.get(A.FAIL_REASON, "unknown error")
        if self.in_a_row >= self.limit:
            self.stopped = True
            study.stop()
