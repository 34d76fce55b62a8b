"""What the machine must offer a trial, and what a trial records as it runs: its setup, each
epoch's value (the one a study prunes on) and its result."""

from __future__ import annotations

import gc

import optuna
import torch

from study.errors import UsageError
from study.metadata import device_name
from study.records import TrialAttrs as A
from wrn.config import TrainConfig
from wrn.model import count_parameters
from wrn.stack import check_torchvision
from wrn.step import build_model, resolve_device
from wrn.train import EpochStats, TrainResult


def require_device(device: str) -> str | None:
    """Refuse, before anything is written, ``--device cuda`` on a machine without a CUDA GPU
    and a torch and torchvision that do not import together; returns the line to show when
    ``--device auto`` falls back to the CPU (None otherwise)."""
    check_torchvision()
    if torch.cuda.is_available():
        return None
    if device == "cuda":
        raise UsageError("--device cuda: no CUDA GPU is available")
    if device == "auto":
        return (
            "no CUDA GPU here: --device auto trains on the CPU, many times slower than a GPU "
            "(the first epoch's time gives the ETA)"
        )
    return None


def free_memory() -> None:
    """Release what a failed trial left on the GPU before the next one starts."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def report_epoch(trial: optuna.Trial, stats: EpochStats) -> None:
    """The per-epoch value a study prunes on and plots: accuracy on the scored split."""
    trial.report(stats.eval_acc, step=stats.epoch)


def record_setup(trial: optuna.Trial, cfg: TrainConfig) -> None:
    """What a trial is, recorded before it trains so pruned and failed trials carry it too."""
    device = str(resolve_device(cfg.run.device))
    with torch.device("meta"):  # counts parameters without allocating them
        num_params = count_parameters(build_model(cfg))
    trial.set_user_attr(A.CONFIG, cfg.to_flat())
    trial.set_user_attr(A.NUM_PARAMS, num_params)
    trial.set_user_attr(A.DEVICE, device)
    trial.set_user_attr(A.DEVICE_NAME, device_name(device))


def record_result(trial: optuna.Trial, result: TrainResult) -> None:
    trial.set_user_attr(A.IMAGES_PER_S, result.images_per_s)
    if result.eval_name != "test":  # the best epoch on the test set is chosen on it: no result
        trial.set_user_attr(A.BEST_ACC, result.best_acc)
        trial.set_user_attr(A.BEST_EPOCH, result.best_epoch)
    trial.set_user_attr(A.HISTORY, result.to_dict()["history"])
