"""Turning an Optuna trial into a TrainConfig, and reporting and pruning on validation accuracy.

This module is the only caller of ``trial.report``.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from search_spaces import ParamSpec, SearchSpace
from study.metadata import device_name
from study.progress import Progress
from wrn.config import TrainConfig
from wrn.data import Splits
from wrn.model import count_parameters
from wrn.train import EpochStats, TrainResult, build_model, resolve_device, train


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
    return [spec for name, spec in space.params.items() if name not in fixed]


def trial_config(
    trial: optuna.Trial, space: SearchSpace, base: dict[str, Any], fixed: dict[str, Any]
) -> TrainConfig:
    """The trial's full config: the base values, then the sampled ones, then ``--set`` values."""
    sampled = {spec.name: suggest(trial, spec) for spec in searched_params(space, fixed)}
    return TrainConfig.from_flat({**base, **sampled, **fixed})


class Objective:
    """Train one trial's config and return its final validation accuracy.

    ``base`` holds every non-searched value (recipe, command-line flags); ``fixed`` the ``--set``
    values, which win over both the base and the search.
    """

    def __init__(
        self,
        space: SearchSpace,
        base: dict[str, Any],
        fixed: dict[str, Any],
        splits: Splits | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.space = space
        self.base = base
        self.fixed = fixed
        self.splits = splits
        self.progress = progress or Progress(enabled=False)

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = trial_config(trial, self.space, self.base, self.fixed)
        if cfg.data.eval_split != "val":
            raise ValueError("a search trial must score on the validation split")
        record_setup(trial, cfg)
        self.progress.trial_start(trial.number, trial.params)
        epoch_seconds: list[float] = []

        def on_epoch_end(stats: EpochStats) -> None:
            epoch_seconds.append(stats.seconds)
            trial.set_user_attr("epoch_seconds", epoch_seconds)
            trial.set_user_attr("images_per_s", stats.images_per_s)
            report_epoch(trial, stats)
            self.progress.epoch(
                trial.number, stats.epoch, cfg.run.epochs, stats.eval_acc, stats.seconds
            )
            # after the last epoch the compute is spent: keep the result rather than prune it
            if stats.epoch < cfg.run.epochs and trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at epoch {stats.epoch}: val_acc {stats.eval_acc:.4f}"
                )

        result = train(cfg, on_epoch_end=on_epoch_end, splits=self.splits)
        record_result(trial, result)
        return result.final_acc


def report_epoch(trial: optuna.Trial, stats: EpochStats) -> None:
    """The per-epoch value a study prunes on and plots: accuracy on the scored split."""
    trial.report(stats.eval_acc, step=stats.epoch)


def record_setup(trial: optuna.Trial, cfg: TrainConfig) -> None:
    """What a trial is, recorded before it trains so pruned and failed trials carry it too."""
    device = str(resolve_device(cfg.run.device))
    with torch.device("meta"):  # counts parameters without allocating them
        num_params = count_parameters(build_model(cfg))
    trial.set_user_attr("config", cfg.to_flat())
    trial.set_user_attr("num_params", num_params)
    trial.set_user_attr("device", device)
    trial.set_user_attr("device_name", device_name(device))


def record_result(trial: optuna.Trial, result: TrainResult) -> None:
    trial.set_user_attr("images_per_s", result.images_per_s)
    trial.set_user_attr("best_acc", result.best_acc)
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("history", result.to_dict()["history"])
