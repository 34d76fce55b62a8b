"""Turning an Optuna trial into a TrainConfig, and reporting and pruning on validation accuracy.

This module is the only caller of ``trial.report``.
"""

from __future__ import annotations

import gc
import os
import socket
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import optuna
import torch

from search_spaces import ParamSpec, SearchSpace
from study.dashboard import upload_checkpoint, upload_learning_curve
from study.metadata import device_name
from study.progress import Progress
from wrn.checkpoint import saved_history
from wrn.config import TrainConfig
from wrn.data import Splits
from wrn.model import count_parameters
from wrn.train import (
    EpochStats,
    NonFiniteLossError,
    TrainResult,
    build_model,
    resolve_device,
    train,
)


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


class TrialFailedError(RuntimeError):
    """A trial failed; the reason is recorded on it and the study goes on."""


class Objective:
    """Train one trial's config and return its final validation accuracy.

    ``base`` holds every non-searched value (recipe, command-line flags); ``fixed`` the ``--set``
    values, which win over both the base and the search. With ``checkpoint_dir``, each trial
    saves its state after every epoch, and a retry of a trial whose worker died resumes there.
    """

    def __init__(
        self,
        space: SearchSpace,
        base: dict[str, Any],
        fixed: dict[str, Any],
        splits: Splits | None = None,
        progress: Progress | None = None,
        checkpoint_dir: str | Path | None = None,
        keep_checkpoints: bool = False,
        artifact_store: Any | None = None,
    ) -> None:
        self.space = space
        self.base = base
        self.fixed = fixed
        self.splits = splits
        self.progress = progress or Progress(enabled=False)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.keep_checkpoints = keep_checkpoints
        self.artifact_store = artifact_store  # learning curves (and kept checkpoints) go here
        self.interrupted_trial: int | None = None  # stopped by Ctrl-C or SIGTERM

    def checkpoint_path(self, trial: optuna.Trial) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        # every retry of a trial inherits its user attrs, so shares the first attempt's file
        root = trial.user_attrs.get("first_attempt", trial.number)
        trial.set_user_attr("first_attempt", root)
        return self.checkpoint_dir / trial.study.study_name / f"trial-{root}.pt"

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = trial_config(trial, self.space, self.base, self.fixed)
        if cfg.data.eval_split != "val":
            raise ValueError("a search trial must score on the validation split")
        record_setup(trial, cfg)
        record_worker(trial)
        checkpoint = self.checkpoint_path(trial)
        # the epochs an earlier attempt saved, then this attempt's: the learning-curve artifact
        history = resume_history(trial, checkpoint)
        epoch_seconds = [s.seconds for s in history]
        self.progress.trial_start(trial.number, trial.params)

        def on_epoch_end(stats: EpochStats) -> None:
            history.append(stats)
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
                    f"median of earlier trials at epoch {stats.epoch} "
                    f"(val_acc {stats.eval_acc:.4f})"
                )

        try:
            result = train(
                cfg, on_epoch_end=on_epoch_end, splits=self.splits, checkpoint_path=checkpoint
            )
        except optuna.TrialPruned as e:
            trial.set_user_attr("pruned_reason", str(e))
            self._remove(checkpoint)
            raise
        except NonFiniteLossError as e:
            # a diverged run cannot recover: prune it now rather than train on NaNs
            trial.set_user_attr("pruned_reason", f"non-finite loss: {e}")
            self._remove(checkpoint)
            raise optuna.TrialPruned(f"non-finite loss: {e}") from None
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # checkpoint kept: the next run resumes
            self.interrupted_trial = trial.number
            raise
        except torch.cuda.OutOfMemoryError:
            reason = f"CUDA out of memory (batch_size {cfg.run.batch_size})"
            self._fail(trial, checkpoint, reason)
        except Exception as e:
            self._fail(trial, checkpoint, f"{type(e).__name__}: {e}", traceback.format_exc())
        finally:
            # before Optuna tells the trial (a finished trial takes no artifacts), so pruned,
            # failed and interrupted trials get their curve too
            if self.artifact_store is not None:
                upload_learning_curve(trial, self.artifact_store, history)
        record_result(trial, result)
        if self.artifact_store is not None and self.keep_checkpoints and checkpoint is not None:
            upload_checkpoint(trial, self.artifact_store, checkpoint)
        self._remove(checkpoint)
        return result.final_acc

    def _fail(
        self, trial: optuna.Trial, checkpoint: Path | None, reason: str, trace: str | None = None
    ) -> NoReturn:
        trial.set_user_attr("fail_reason", reason[:500])
        if trace:
            trial.set_user_attr("fail_traceback", trace[-4000:])
        self._remove(checkpoint, force=True)
        free_memory()
        raise TrialFailedError(reason) from None

    def _remove(self, checkpoint: Path | None, force: bool = False) -> None:
        if checkpoint is not None and (force or not self.keep_checkpoints):
            checkpoint.unlink(missing_ok=True)


def free_memory() -> None:
    """Release what a failed trial left on the GPU before the next one starts."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def process_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record_worker(trial: optuna.Trial) -> None:
    """Where the trial runs, so a restarted worker on this host can see it has died.

    A retry inherits its failed attempt's user attrs; their failure markers move aside so
    that they describe the attempt that failed, not this one.
    """
    if trial.user_attrs.get("fail_reason"):
        trial.set_user_attr("previous_failure", trial.user_attrs["fail_reason"])
        trial.set_user_attr("fail_reason", None)
    if trial.user_attrs.get("interrupted"):
        trial.set_user_attr("interrupted", False)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("pid_start", process_start_time(os.getpid()))


def worker_alive(attrs: dict[str, Any]) -> bool | None:
    """Whether the worker recorded in ``attrs`` still runs; None if it ran on another host."""
    if attrs.get("host") != socket.gethostname() or "pid" not in attrs:
        return None
    pid = int(attrs["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the process exists, owned by another user
        pass
    start = process_start_time(pid)
    return attrs.get("pid_start") is None or start is None or start == attrs["pid_start"]


def resume_history(trial: optuna.Trial, checkpoint: Path | None) -> list[EpochStats]:
    """The epochs a checkpoint already holds, reporting any not yet reported."""
    if checkpoint is None or not checkpoint.exists():
        return []
    history = [EpochStats(**h) for h in saved_history(checkpoint)]
    with warnings.catch_warnings():
        # epochs the retried trial inherited are already reported; Optuna ignores the repeat
        warnings.simplefilter("ignore")
        for stats in history:
            report_epoch(trial, stats)
    trial.set_user_attr("resumed_from_epoch", len(history))
    return history


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
