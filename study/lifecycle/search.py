"""A search's trials: the ``Objective`` asked and told one trial at a time, stopping at the
study's total of configurations (all workers together, exactly), after too many failures in a
row, or on Ctrl-C/SIGTERM with the running trial queued to resume. With ``--pruner promote`` a
claim promotes a paused trial before it starts a configuration (``promote``), and a worker with
nothing to claim waits while others train (their trials may pause and be promoted)."""

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
from study.lifecycle.promote import Promoter
from study.lifecycle.workers import record_worker, sigterm_as_interrupt
from study.objective import trial_config
from study.promotion import rungs
from study.records import TrialAttrs as A
from study.records import configuration_of, configurations, is_failure
from study.sampling import Draw
from wrn.config import TrainConfig
from wrn.data import Splits

POLL_S = 2.0  # seconds a free worker waits before it looks again for a promotion


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
    promoter = promoter_of(job, life)
    with sigterm_as_interrupt():
        while not failures.stopped and (deadline is None or time.monotonic() < deadline):
            trial = claim(study, storage, job.trials, life, draw, promoter)
            if trial is None and promoter is not None and _training(study):
                time.sleep(POLL_S)  # a trial running elsewhere may pause: a promotion
                continue
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


def promoter_of(job: SearchJob, life: Lifecycle) -> Promoter | None:
    """``--pruner promote``'s rule for this search (None for the other pruners)."""
    if job.pruner.kind != "promote":
        return None
    frac = TrainConfig.from_flat({**job.base(), **job.fixed}).optim.warmup_frac
    reduction = job.pruner.reduction
    promoter = Promoter(
        rungs(job.epochs, frac, reduction, job.pruner.wait_epochs),
        job.trials,
        life.checkpoint_dir,
        life.keep_checkpoints,
        reduction,
    )
    at = ", ".join(map(str, promoter.rungs[:-1])) or "none (no rung before the last)"
    life.note(
        f"promote: trials pause at epoch {at} of {job.epochs}, the top 1/{reduction} promoted",
        always=False,
    )
    return promoter


def claim(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    total: int,
    life: Lifecycle,
    draw: Draw | None = None,
    promoter: Promoter | None = None,
) -> optuna.Trial | None:
    """The next trial to run, under ``life.claims``: trials whose worker is gone are requeued
    first; then a queued one (a retry, or a promotion) is taken, else a paused trial is
    promoted (``promoter``), else a new configuration is started while the configurations
    finished or running fall short of ``total``; None when the study is full (queued retries
    of configurations beyond it stay queued). ``draw`` asks (default: ``study.ask``)."""
    with holding(life.claims):
        life.recover(study, storage)
        trials = study.get_trials(deepcopy=False)
        counted = configurations(trials)
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        if promoter is not None:
            _delete_hopeless(study, trials, promoter, life)
        if waiting:  # study.ask takes the oldest queued trial
            if len(counted) >= total and configuration_of(waiting[0]) not in counted:
                return None
        elif promoter is not None and (paused := promoter.next_promotion(trials)) is not None:
            rung = promoter.promote(study, paused)
            life.note(
                f"trial {paused.number}: promoted, to train on to epoch {rung}", always=False
            )
        elif len(counted) >= total:
            return None
        with warnings.catch_warnings():
            # heartbeats are sent by Lifecycle.run_and_tell, as study.optimize would
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask() if draw is None else draw(study)
        # this worker's from now, under the lock: a retry inherits its dead worker's pid
        record_worker(trial)
        if promoter is not None:
            promoter.mark(trial)
        return trial


def _delete_hopeless(
    study: optuna.Study, trials: list[FrozenTrial], promoter: Promoter, life: Lifecycle
) -> None:
    deleted = promoter.delete_hopeless(study.study_name, trials)
    if deleted:
        which = ", ".join(map(str, deleted))
        life.note(f"paused trials {which}: no promotion can reach them, checkpoints deleted")


def _training(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


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
