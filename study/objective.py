"""Turning an Optuna trial into a TrainConfig; the trial itself runs in ``study.lifecycle``."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import ParamSpec, SearchSpace, over_cap
from study.lifecycle import Lifecycle
from study.lifecycle import process_start_time as process_start_time  # re-export for tests
from study.lifecycle import report_epoch as report_epoch  # re-export: tests/study/test_report
from study.records import TrialAttrs as A
from wrn.config import TrainConfig
from wrn.data import Splits


def suggest(trial: optuna.Trial, spec: ParamSpec) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(spec.name, list(spec.choices))
    if spec.type == "int":
        return trial.suggest_int(
            spec.name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
        )
    return trial.suggest_float(
        spec.name, float(spec.low), float(spec.high), step=spec.step, log=spec.log
    )


def searched_params(space: SearchSpace, fixed: dict[str, Any]) -> list[ParamSpec]:
    """The space's parameters that ``--set`` did not fix."""
    return space.searched(fixed)


def trial_config(
    trial: optuna.Trial, space: SearchSpace, base: dict[str, Any], fixed: dict[str, Any]
) -> TrainConfig:
    """The trial's full config: the base values, then the sampled ones, then ``--set`` values."""
    sampled = {spec.name: suggest(trial, spec) for spec in searched_params(space, fixed)}
    return TrainConfig.from_flat({**base, **sampled, **fixed})


class Objective:
    """Train one trial's config and return its final validation accuracy.

    ``base`` holds every non-searched value (recipe, command-line flags); ``fixed`` the ``--set``
    values, which win over both the base and the search. ``life`` runs the trial (checkpoints,
    resume, failure); ``sampler_seed``
    is recorded on every trial, so its draws can be replayed (``--sampler-seed``).
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
        self.interrupted_trial: int | None = None  # stopped by Ctrl-C or SIGTERM

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
        try:
            return self.life.run(trial, cfg, self.splits)
        except KeyboardInterrupt:
            self.interrupted_trial = trial.number
            raise
