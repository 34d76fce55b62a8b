"""Planned runs (rerun seeds, ablation variants): each one trial, whoever trains it.

``run_planned`` trains a list of runs and cooperates with other processes working on the same
study: a queued retry is taken first and resumes from its checkpoint, a run RUNNING elsewhere is
waited for, and each run is recorded once.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from study.lifecycle.attempt import Lifecycle
from study.lifecycle.claims import holding
from study.lifecycle.workers import record_worker
from study.objective import suggest
from study.records import TrialAttrs as A
from wrn.config import TrainConfig
from wrn.data import Splits


@dataclass(frozen=True)
class PlannedRun:
    """One training run a command wants, identified across processes and restarts by ``key``."""

    key: str
    cfg: TrainConfig
    params: dict[str, Any]  # shown as trial parameters (the dashboard's columns)
    attrs: dict[str, Any]  # user attrs recorded on the trial (variant, seed, source_trial ...)
    value_attr: str | None = None  # also record the final value under this attr (test_acc)


def completed_runs(trials: Sequence[FrozenTrial]) -> dict[str, FrozenTrial]:
    """The complete trial of each planned run (the latest if a run was ever recorded twice)."""
    return {
        t.user_attrs[A.RUN_KEY]: t
        for t in trials
        if t.state == TrialState.COMPLETE and A.RUN_KEY in t.user_attrs
    }


def run_planned(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    runs: Sequence[PlannedRun],
    distributions: dict[str, BaseDistribution],
    splits_for: Callable[[TrainConfig], Splits | None],
    life: Lifecycle,
    after_trial: Callable[[FrozenTrial], None] = lambda t: None,
    poll_s: float = 2.0,
) -> dict[str, float]:
    """Train every run of ``runs`` not yet complete; return the value of each.

    Other processes may work on the same study: a run RUNNING elsewhere is waited for (its
    worker's death is noticed by pid on this host, by heartbeat elsewhere), a queued retry is
    taken first and resumes from its checkpoint, and each run is recorded once.
    """
    planned = {r.key: r for r in runs}
    while True:
        claimed = _next(study, storage, planned, life)
        if isinstance(claimed, dict):
            return claimed
        if claimed is None:
            time.sleep(poll_s)  # the rest runs in another process
            continue
        trial, key = claimed
        if key is not None:
            frozen = _run(study, storage, planned, trial, key, distributions, splits_for, life)
            life.show_end(frozen)
            after_trial(frozen)


def _next(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    planned: dict[str, PlannedRun],
    life: Lifecycle,
) -> dict[str, float] | tuple[optuna.Trial, str | None] | None:
    """Under ``life.claims``: requeue trials whose worker is gone, then take a queued retry or
    claim a run not yet done or running (see ``_ask``); every run's value once all are done,
    None while the rest runs elsewhere."""
    with holding(life.claims):
        life.recover(study, storage)
        trials = study.get_trials(deepcopy=False)
        done = completed_runs(trials)
        if all(k in done for k in planned):
            return {k: float(done[k].value) for k in planned}
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        busy = {t.user_attrs.get(A.RUN_KEY) for t in trials if t.state == TrialState.RUNNING}
        todo = [k for k in planned if k not in done and k not in busy]
        if not waiting and not todo:
            return None
        return _ask(study, planned, todo)


def _run(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    planned: dict[str, PlannedRun],
    trial: optuna.Trial,
    key: str,
    distributions: dict[str, BaseDistribution],
    splits_for: Callable[[TrainConfig], Splits | None],
    life: Lifecycle,
) -> FrozenTrial:
    """Train the claimed ``trial`` (run ``key``: a planned run, or a retry of one) and tell
    the study."""
    run = planned.get(key)
    if run is None and A.CONFIG not in trial.user_attrs:  # a retry this plan cannot run
        trial.set_user_attr(A.FAIL_REASON, f"run {key!r} has no recorded config to resume")
        return study.tell(trial, state=TrialState.FAIL)
    cfg = TrainConfig.from_flat(trial.user_attrs[A.CONFIG]) if run is None else run.cfg
    label: dict[str, Any] = {"run": key}  # the display names the run by its key ("dropout/seed0")
    if run is not None:
        _tag(trial, run, distributions)
        if run.attrs.get(A.CHANGED):  # and with what the variant changed
            label["changed"] = run.attrs[A.CHANGED]

    def train(trial: optuna.Trial) -> float:
        value = life.run(trial, cfg, splits_for(cfg), label=label)
        if run is not None and run.value_attr is not None:
            trial.set_user_attr(run.value_attr, value)
        return value

    return life.run_and_tell(study, storage, trial, train)


def _ask(
    study: optuna.Study, planned: dict[str, PlannedRun], todo: list[str]
) -> tuple[optuna.Trial, str | None]:
    """The oldest queued trial (a retry, with its run key) or, with none, a fresh one claiming
    a run of ``todo`` (key None, and the trial pruned, if every run was claimed meanwhile)."""
    with warnings.catch_warnings():
        # heartbeats are sent by Lifecycle.run_and_tell, as study.optimize would
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    record_worker(trial)  # this worker's from now, under the lock: a retry inherits a dead pid
    key = trial.user_attrs.get(A.RUN_KEY)
    if key is not None:
        return trial, key
    key = _claim(study, trial, todo)
    if key is None:  # every run was claimed by another process meanwhile
        trial.set_user_attr(A.PRUNED_REASON, "not run: another process took the last run")
        study.tell(trial, state=TrialState.PRUNED)
        return trial, None
    # a fresh trial's parameters are the run's, through a sampler that fixes them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler(
            planned[key].params, optuna.samplers.RandomSampler()
        )
    return trial, key


def _tag(trial: optuna.Trial, run: PlannedRun, distributions: dict[str, BaseDistribution]) -> None:
    """The plan's tags (also on a retry whose inherited ones were changed) and parameters."""
    for name, value in run.attrs.items():
        trial.set_user_attr(name, value)
    for name, dist in distributions.items():
        if name in run.params:
            suggest(trial, name, dist)


def _claim(study: optuna.Study, trial: optuna.Trial, todo: list[str]) -> str | None:
    """Tag the fresh ``trial`` with the first run of ``todo`` no lower-numbered trial holds.

    Each process writes its tag and then looks: of two that chose the same run at once, the
    later-numbered one sees the other and moves on.
    """
    for key in todo:
        trial.set_user_attr(A.RUN_KEY, key)
        holders = [
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(A.RUN_KEY) == key
            and t.number != trial.number
            and (
                t.state == TrialState.COMPLETE
                or t.state == TrialState.WAITING
                or (t.state == TrialState.RUNNING and t.number < trial.number)
            )
        ]
        if not holders:
            return key
    return None


def splits_loader(split_seed: int) -> Callable[[TrainConfig], Splits]:
    """Loads a config's data splits, once per distinct data config and class count.

    Every run of a command uses the study's split (``split_seed``), whatever its training seed.
    """
    from wrn.data import load_splits

    cache: dict[str, Splits] = {}

    def load(cfg: TrainConfig) -> Splits:
        key = repr((cfg.data, cfg.model.num_classes))
        if key not in cache:
            cache[key] = load_splits(cfg.data, cfg.model.num_classes, split_seed)
        return cache[key]

    return load
