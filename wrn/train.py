"""The training loop: ``train(cfg, on_epoch_end=...) -> TrainResult``."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wrn.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    load_checkpoint,
    remove_orphan_tmp,
    rng_state,
    set_rng_state,
    unwrap,
)
from wrn.config import TrainConfig, comparable
from wrn.data import Splits, load_splits
from wrn.model import count_parameters
from wrn.seeding import epoch_seed

# re-exported: callers import these from wrn.train
from wrn.step import (
    TrainStep,
    build_model,
    evaluate,
    make_batches,
    recompile_limit_is_an_error,
    resolve_device,
    set_epoch,
)

__all__ = [
    "BatchProgress",
    "EpochStats",
    "NonFiniteLossError",
    "TrainResult",
    "TrainStep",
    "build_model",
    "evaluate",
    "make_batches",
    "resolve_device",
    "set_epoch",
    "train",
]

PROGRESS_INTERVAL = 0.5  # seconds of wall time between on_batch calls


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"training loss is {loss} in epoch {epoch}")
        self.epoch = epoch
        self.loss = loss


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mix-weighted, label-smoothed
    train_acc: float  # mix-weighted, as the WRN-28-10 recipe's note explains
    eval_loss: float  # plain cross-entropy
    eval_acc: float  # on the validation split (search) or the test set (rerun)
    lr: float  # used by the epoch's last optimiser step
    seconds: float  # training and evaluation
    images_per_s: float  # training images per second, data loading included


@dataclass(frozen=True)
class BatchProgress:
    """Where the running epoch stands, for a live display (see ``train(on_batch=...)``)."""

    epoch: int  # 1-based
    batch: int  # micro-batches done this epoch, 1-based
    batches: int  # micro-batches this epoch
    images: int  # training images seen this epoch
    seconds: float  # since the epoch started
    loss: float  # running mean training loss of the epoch
    first_step: bool  # the call right after the run's first optimiser step


@dataclass
class TrainResult:
    eval_name: str  # "val" or "test"
    device: str
    num_params: int
    history: list[EpochStats] = field(default_factory=list)

    @property
    def final_acc(self) -> float:
        return self.history[-1].eval_acc

    @property
    def best_acc(self) -> float:
        return max(s.eval_acc for s in self.history)

    @property
    def best_epoch(self) -> int:
        return max(self.history, key=lambda s: s.eval_acc).epoch

    @property
    def epoch_seconds(self) -> list[float]:
        return [s.seconds for s in self.history]

    @property
    def images_per_s(self) -> float:
        return sum(s.images_per_s for s in self.history) / len(self.history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "eval_name": self.eval_name,
            "device": self.device,
            "num_params": self.num_params,
            "final_acc": self.final_acc,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "images_per_s": self.images_per_s,
            "history": [dataclasses.asdict(s) for s in self.history],
        }


def _resume_state(path: Path, cfg: TrainConfig, pipeline: str) -> dict[str, Any]:
    """A checkpoint of this run, read to CPU memory and checked against ``cfg``."""
    # CPU, whatever the device: RNG states must be CPU tensors, and the model and optimiser
    # copy their entries to their parameters' device as they load them
    state = load_checkpoint(path, map_location="cpu")
    if comparable(state.get("config", {})) != comparable(cfg.to_flat()):
        raise CheckpointError(f"{path}: written by a run with another config")
    if state.get("pipeline", pipeline) != pipeline:
        # the two pipelines draw different augmentations: a resumed run would not replay
        raise CheckpointError(
            f"{path}: written with the {state['pipeline']} data pipeline, "
            f"this run uses {pipeline} (set pipeline={state['pipeline']} to resume)"
        )
    return state


def train(
    cfg: TrainConfig,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    *,
    splits: Splits | None = None,
    checkpoint_path: str | Path | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> TrainResult:
    """Train a WideResNet as ``cfg`` says, evaluating after every epoch.

    ``on_epoch_end`` gets each epoch's stats; it may raise to stop training (a pruned trial).
    With ``checkpoint_path``, state is saved every ``checkpoint_every`` epochs and after the
    last, written in the background; ``train`` returns or raises only once the pending write is
    on disk. If the file already exists, training resumes after its epoch, replaying exactly
    what an uninterrupted run does. ``on_batch`` gets the epoch's progress right after the
    run's first optimiser step, then at most every ``PROGRESS_INTERVAL`` seconds and after each
    epoch's last batch (only then is the loss read from the device).
    """
    from wrn.gpu_data import resolve_pipeline

    device = resolve_device(cfg.run.device)
    on_cuda = device.type == "cuda"
    pipeline = resolve_pipeline(cfg.data.pipeline, device)
    state: dict[str, Any] | None = None
    if checkpoint_path is not None:
        checkpoint_path = Path(checkpoint_path)
        remove_orphan_tmp(checkpoint_path)  # left by killed processes
        if checkpoint_path.exists():
            # before the data and model are built: a wrong checkpoint is refused at once
            state = _resume_state(checkpoint_path, cfg, pipeline)
    torch.manual_seed(cfg.run.seed)
    if splits is None:
        splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)
    train_loader, eval_loader = make_batches(
        cfg, splits, device, pipeline, channels_last=on_cuda and cfg.run.channels_last
    )
    accum = cfg.optim.grad_accum
    steps_per_epoch = len(train_loader) // accum
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(splits.train)} training images make {len(train_loader)} batches of "
            f"{cfg.run.batch_size}, fewer than grad_accum={accum}"
        )
    step = TrainStep(cfg, device, total_steps=cfg.run.epochs * steps_per_epoch)
    model, optimizer, scheduler = step.model, step.optimizer, step.scheduler
    num_params = count_parameters(model)

    result = TrainResult(splits.eval_name, str(device), num_params)
    start_epoch = 1
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        result.history = [EpochStats(**s) for s in state["history"]]
        start_epoch = state["epoch"] + 1
        del state  # its CPU tensors are copied into the model and optimiser

    criterion = nn.CrossEntropyLoss(reduction="sum")
    writer = CheckpointWriter(checkpoint_path) if checkpoint_path is not None else None
    every = cfg.run.checkpoint_every
    first_step_reported = on_batch is None
    guards = contextlib.ExitStack()

    try:
        if cfg.run.compile:
            guards.enter_context(recompile_limit_is_an_error())
        for epoch in range(start_epoch, cfg.run.epochs + 1):
            t0 = time.perf_counter()
            seed = epoch_seed(cfg.run.seed, epoch)
            torch.manual_seed(seed)
            set_epoch(train_loader, epoch)
            step.start_epoch(seed)
            usable = steps_per_epoch * accum  # trailing micro-batches short of a step are skipped
            last_report = t0
            for i, (images, labels) in enumerate(train_loader):
                if i >= usable:
                    break
                stepped = step(images, labels)
                if on_batch is None:
                    continue
                now = time.perf_counter()
                first = stepped and not first_step_reported
                if first or (
                    first_step_reported
                    and (i + 1 == usable or now - last_report >= PROGRESS_INTERVAL)
                ):
                    first_step_reported = True
                    last_report = now
                    on_batch(
                        BatchProgress(
                            epoch=epoch,
                            batch=i + 1,
                            batches=usable,
                            images=step.seen,
                            seconds=now - t0,
                            loss=step.loss_sum.item() / step.seen,
                            first_step=first,
                        )
                    )
            if on_cuda:
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - t0
            seen = step.seen
            train_loss = step.loss_sum.item() / seen
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(epoch, train_loss)

            eval_loss, eval_acc = evaluate(
                step.step_model,
                eval_loader,
                device,
                step.memory_format,
                step.use_bf16,
                criterion,
                pad=cfg.run.compile,
            )
            stats = EpochStats(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=step.correct_sum.item() / seen,
                eval_loss=eval_loss,
                eval_acc=eval_acc,
                lr=float(step.last_lr),
                seconds=time.perf_counter() - t0,
                images_per_s=seen / train_seconds,
            )
            result.history.append(stats)
            if writer is not None and (epoch % every == 0 or epoch == cfg.run.epochs):
                writer.save(
                    {
                        "model": unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch,
                        "history": [dataclasses.asdict(s) for s in result.history],
                        "rng": rng_state(),
                        "config": cfg.to_flat(),
                        "pipeline": pipeline,
                    },
                )
            if on_epoch_end is not None:
                on_epoch_end(stats)
        if writer is not None:
            writer.wait()  # the last epoch is on disk; a write error is raised here
    except BaseException as e:
        if writer is not None:
            # a pruned, failed or interrupted run keeps its last saved epoch on disk
            try:
                writer.wait()
            except BaseException as write_error:
                e.add_note(f"the checkpoint write failed too: {write_error}")
        raise
    finally:
        guards.close()
        # free GPU memory before the next trial, whether this one finished, was pruned or failed
        del step, model, optimizer, scheduler
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()
    return result

