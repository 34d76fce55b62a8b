"""A search's trials: the ``Objective`` asked and told one trial at a time, stopping at the
study's total (all workers together, exactly), after too many failures in a row, or on
Ctrl-C/SIGTERM with the running trial queued to resume."""

from __future__ import annotations

import gc
import time
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces import SearchSpace, over_cap
from study.dashboard import note_callback
from study.errors import StudyStoppedError
from study.jobs import SearchJob
from study.lifecycle.attempt import Lifecycle
from study.lifecycle.claims import holding
from study.lifecycle.workers import recover_dead_trials, sigterm_as_interrupt
from study.objective import trial_config
from study.records import TrialAttrs as A
from study.records import is_failure
from study.sampling import Draw
from wrn.data import Splits

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# trials that count towards the total: finished or running (failures and queued ones do not)
ACTIVE = (*FINISHED, TrialState.RUNNING)


class Objective:
    """Train one trial's config and return its final validation accuracy.

    ``base`` holds every non-searched value (recipe, command-line flags); ``fixed`` the ``--set``
    values, which win over both the base and the search. ``life`` runs the trial (checkpoints,
    resume, failure); ``sampler_seed`` is recorded on every trial, so its draws can be replayed
    (``--sampler-seed``).
    """

    def __init__(
        self,
        space: SearchSpace,
        base: dict[str, Any],
        fixed: dict[str, Any],
        splits: Splits | None = None,
        life: Lifecycle | None = None,
        sampler_seed: int | None = None,
    ) -> None:
        self.space = space
        self.base = base
        self.fixed = fixed
        self.splits = splits
        self.life = life or Lifecycle(prune=True)
        self.sampler_seed = sampler_seed

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = trial_config(trial, self.space, self.base, self.fixed)
        if cfg.data.eval_split != "val":
            raise ValueError("a search trial must score on the validation split")
        if self.sampler_seed is not None and A.SAMPLER_SEED not in trial.user_attrs:
            # a retry keeps the seed of the sampler that drew its parameters
            trial.set_user_attr(A.SAMPLER_SEED, self.sampler_seed)
        reason = over_cap(self.space, cfg)
        if reason is not None:
            # above the space's cost cap: pruned before any epoch is spent on it
            trial.set_user_attr(A.PRUNED_REASON, reason)
            raise optuna.TrialPruned(reason)
        return self.life.run(trial, cfg, self.splits)


def optimize(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    job: SearchJob,
    life: Lifecycle,
    splits: Splits | None,
) -> None:
    """Run trials until the study holds ``job.trials`` finished ones (all workers together),
    shown on ``life.progress`` (the caller started it with the study's totals, and closes it)."""
    objective = Objective(job.space, job.base(), job.fixed, splits, life, job.sampler_seed)
    # over-cap draws are recorded and redrawn under the claim lock, never trained or counted
    draw = Draw(job.space, job.base(), job.fixed, job.sampler, job.sampler_startup_trials)
    failures = FailureGuard(job.max_failures)
    note = note_callback(job.flags.storage)
    deadline = None if job.timeout is None else time.monotonic() + job.timeout
    with sigterm_as_interrupt():
        while not failures.stopped and (deadline is None or time.monotonic() < deadline):
            trial = claim(study, storage, job.trials, life, draw)
            if trial is None:
                break
            frozen = life.run_and_tell(study, storage, trial, objective)
            life.show_end(frozen)
            if frozen.number not in life.left:  # left to another process: not a failure here
                failures(study, frozen)
            note(study, frozen)
            gc.collect()
    if failures.stopped:
        raise StudyStoppedError(
            f"stopped after {failures.in_a_row} failed trials in a row "
            f"(last: {failures.last_reason}); see the trials' fail_reason"
        )


def claim(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    total: int,
    life: Lifecycle,
    draw: Draw | None = None,
) -> optuna.Trial | None:
    """The next trial to run, under ``life.claims``: trials whose worker is gone are requeued
    first, then a queued one (a retry) or a new one is taken while the trials finished or
    running fall short of ``total``; None when the study is full (queued ones stay queued).
    ``draw`` asks for it (default: ``study.ask``)."""
    with holding(life.claims):
        recovered = recover_dead_trials(study, storage, life.claims)
        if recovered:
            gone = ", ".join(map(str, recovered))
            life.note(f"trials {gone}: worker gone, queued to resume", always=False)
        if len(study.get_trials(deepcopy=False, states=ACTIVE)) >= total:
            return None
        with warnings.catch_warnings():
            # heartbeats are sent by Lifecycle.run_and_tell, as study.optimize would
            warnings.simplefilter("ignore", UserWarning)
            return study.ask() if draw is None else draw(study)


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
