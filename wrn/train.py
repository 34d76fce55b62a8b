"""The training loop: ``train(cfg, on_epoch_end=...) -> TrainResult``."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wrn.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    check_owner,
    load_checkpoint,
    remove_orphan_tmp,
    rng_state,
    set_rng_state,
    unwrap,
)
from wrn.compute import ComputeClock
from wrn.config import TrainConfig, comparable
from wrn.data import Splits, load_splits
from wrn.epoch_plan import check_runnable
from wrn.network import count_params
from wrn.seeding import epoch_seed
from wrn.step import (
    TrainStep,
    evaluate,
    make_batches,
    recompile_limit_is_an_error,
    resolve_device,
    set_epoch,
)

__all__ = ["BatchProgress", "EpochStats", "NonFiniteLossError", "TrainResult", "train"]

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
    seconds: float  # training and evaluation, wall clock
    images_per_s: float  # training images per second, data loading included
    # what the epoch consumed (wrn.compute): this process's CPU seconds and, on CUDA, the GPU
    # seconds of its steps and evaluation (None on CPU, and in histories older than these)
    cpu_seconds: float | None = None
    device_seconds: float | None = None


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


def _resume_state(
    path: Path, cfg: TrainConfig, pipeline: str, owner: dict[str, Any] | None
) -> dict[str, Any]:
    """A checkpoint of this run, read to CPU memory and checked against ``cfg``."""
    # CPU, whatever the device: RNG states must be CPU tensors, and the model and optimiser
    # copy their entries to their parameters' device as they load them
    state = load_checkpoint(path, map_location="cpu")
    check_owner(path, state, owner)
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
    owner: dict[str, Any] | None = None,
    may_write: Callable[[], bool] | None = None,
    save_at: Collection[int] = (),
) -> TrainResult:
    """Train a WideResNet as ``cfg`` says, evaluating after every epoch.

    ``on_epoch_end`` gets each epoch's stats; it may raise to stop training (a pruned trial).
    With ``checkpoint_path``, state is saved every ``checkpoint_every`` epochs and after the
    last, written in the background; ``train`` returns or raises only once the pending write is
    on disk. If the file already exists, training resumes after its epoch, replaying exactly
    what an uninterrupted run does. ``on_batch`` gets the epoch's progress right after the
    run's first optimiser step, then at most every ``PROGRESS_INTERVAL`` seconds and after each
    epoch's last batch (only then is the loss read from the device). ``owner``: an opaque
    identity written into the checkpoint; a checkpoint of another owner is refused.
    ``may_write``: asked before each save lands; False (another process took the run over)
    drops it and the run ends in ``CheckpointLostError``. ``save_at``: epochs also saved,
    whatever ``checkpoint_every`` (where ``on_epoch_end`` will stop a run to continue later).
    """
    run = _start(cfg, splits, checkpoint_path, owner, may_write)
    progress = _Progress(on_batch) if on_batch is not None else None
    guards = contextlib.ExitStack()
    try:
        if cfg.run.compile:
            guards.enter_context(recompile_limit_is_an_error())
        for epoch in range(run.start_epoch, cfg.run.epochs + 1):
            stats = _train_epoch(run, epoch, progress)
            run.result.history.append(stats)
            if run.writer is not None and (
                epoch % cfg.run.checkpoint_every == 0
                or epoch == cfg.run.epochs
                or epoch in save_at
            ):
                run.writer.save(_checkpoint_state(run, epoch))
            if on_epoch_end is not None:
                on_epoch_end(stats)
        if run.writer is not None:
            run.writer.wait()  # the last epoch is on disk; a write error is raised here
    except BaseException as e:
        if run.writer is not None:
            # a pruned, failed or interrupted run keeps its last saved epoch on disk
            try:
                run.writer.wait()
            except BaseException as write_error:
                e.add_note(f"the checkpoint write failed too: {write_error}")
        raise
    finally:
        guards.close()
        # free GPU memory before the next trial, whether this one finished, was pruned or failed
        result = run.release()
        gc.collect()
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
    return result


@dataclass
class _Run:
    """What one call of ``train`` works with: device, batches, the step, the result so far."""

    cfg: TrainConfig
    device: torch.device
    pipeline: str  # "gpu" or "cpu", as resolved
    train_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None
    eval_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None
    step: TrainStep | None
    usable: int  # micro-batches an epoch trains on: whole optimiser steps only
    result: TrainResult
    start_epoch: int
    writer: CheckpointWriter | None
    owner: dict[str, Any] | None = None

    def release(self) -> TrainResult:
        """Drop the model, optimiser and batches (frames still holding ``self`` keep no memory)."""
        self.step = self.train_batches = self.eval_batches = None
        return self.result


def _start(
    cfg: TrainConfig,
    splits: Splits | None,
    checkpoint_path: str | Path | None,
    owner: dict[str, Any] | None,
    may_write: Callable[[], bool] | None = None,
) -> _Run:
    """Device, data, model and schedule; with a checkpoint, the state it saved."""
    from wrn.gpu_data import resolve_pipeline

    device = resolve_device(cfg.run.device)
    pipeline = resolve_pipeline(cfg.data.pipeline, device)
    state: dict[str, Any] | None = None
    if checkpoint_path is not None:
        checkpoint_path = Path(checkpoint_path)
        remove_orphan_tmp(checkpoint_path)  # left by killed processes
        if checkpoint_path.exists():
            # before the data and model are built: a wrong checkpoint is refused at once
            state = _resume_state(checkpoint_path, cfg, pipeline, owner)
    torch.manual_seed(cfg.run.seed)
    if splits is None:
        splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)
    channels_last = device.type == "cuda" and cfg.run.channels_last
    train_batches, eval_batches = make_batches(cfg, splits, device, pipeline, channels_last)
    check_runnable(cfg, len(splits.train))
    steps_per_epoch = len(train_batches) // cfg.optim.grad_accum
    step = TrainStep(cfg, device, total_steps=cfg.run.epochs * steps_per_epoch)
    run = _Run(
        cfg,
        device,
        pipeline,
        train_batches,
        eval_batches,
        step,
        usable=steps_per_epoch * cfg.optim.grad_accum,
        result=TrainResult(splits.eval_name, str(device), count_params(cfg.model)),
        start_epoch=1,
        writer=None if checkpoint_path is None else CheckpointWriter(checkpoint_path, may_write),
        owner=owner,
    )
    if state is not None:
        step.model.load_state_dict(state["model"])
        step.optimizer.load_state_dict(state["optimizer"])
        step.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        run.result.history = [EpochStats(**s) for s in state["history"]]
        run.start_epoch = state["epoch"] + 1
    return run


class _Progress:
    """Calls ``on_batch`` right after the run's first optimiser step, then at most every
    ``PROGRESS_INTERVAL`` seconds and after each epoch's last batch."""

    def __init__(self, on_batch: Callable[[BatchProgress], None]) -> None:
        self.on_batch = on_batch
        self.first_step_reported = False

    def start(self, epoch: int, batches: int, t0: float) -> None:
        self.epoch, self.batches, self.t0 = epoch, batches, t0
        self.last_report = t0

    def batch(self, step: TrainStep, batch: int, stepped: bool) -> None:
        """After micro-batch ``batch`` (1-based); ``stepped``: it ended with an optimiser step."""
        now = time.perf_counter()
        first = stepped and not self.first_step_reported
        if not first and not (
            self.first_step_reported
            and (batch == self.batches or now - self.last_report >= PROGRESS_INTERVAL)
        ):
            return
        self.first_step_reported = True
        self.last_report = now
        self.on_batch(
            BatchProgress(
                epoch=self.epoch,
                batch=batch,
                batches=self.batches,
                images=step.seen,
                seconds=now - self.t0,
                loss=step.loss_sum.item() / step.seen,  # only here is the loss read
                first_step=first,
            )
        )


def _train_epoch(run: _Run, epoch: int, progress: _Progress | None) -> EpochStats:
    """One epoch's optimiser steps, then the evaluation; raises on a non-finite loss."""
    assert run.step is not None and run.train_batches is not None
    clock = ComputeClock(run.device)
    clock.start()
    t0 = time.perf_counter()
    seed = epoch_seed(run.cfg.run.seed, epoch)
    torch.manual_seed(seed)
    set_epoch(run.train_batches, epoch)
    run.step.start_epoch(seed)
    if progress is not None:
        progress.start(epoch, run.usable, t0)
    for i, (images, labels) in enumerate(run.train_batches):
        if i >= run.usable:  # trailing micro-batches short of a step are skipped
            break
        with clock.work():
            stepped = run.step(images, labels)
        if progress is not None:
            progress.batch(run.step, i + 1, stepped)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - t0
    seen = run.step.seen
    train_loss = run.step.loss_sum.item() / seen
    if not math.isfinite(train_loss):
        raise NonFiniteLossError(epoch, train_loss)
    with clock.work():
        eval_loss, eval_acc = evaluate(
            run.step.step_model,
            run.eval_batches,
            run.device,
            run.step.memory_format,
            run.step.use_bf16,
            nn.CrossEntropyLoss(reduction="sum"),
            pad=run.cfg.run.compile,
        )
    if run.device.type == "cuda":
        torch.cuda.synchronize()  # the evaluation's end event has completed
    consumed = clock.stop()
    return EpochStats(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=run.step.correct_sum.item() / seen,
        eval_loss=eval_loss,
        eval_acc=eval_acc,
        lr=float(run.step.last_lr),
        seconds=time.perf_counter() - t0,
        images_per_s=seen / train_seconds,
        cpu_seconds=consumed.cpu_seconds,
        device_seconds=consumed.device_seconds,
    )


def _checkpoint_state(run: _Run, epoch: int) -> dict[str, Any]:
    """What a checkpoint holds after ``epoch``: enough to replay the rest exactly."""
    assert run.step is not None
    return {
        "model": unwrap(run.step.model).state_dict(),
        "optimizer": run.step.optimizer.state_dict(),
        "scheduler": run.step.scheduler.state_dict(),
        "epoch": epoch,
        "history": [dataclasses.asdict(s) for s in run.result.history],
        "rng": rng_state(),
        "config": run.cfg.to_flat(),
        "pipeline": run.pipeline,
        "owner": run.owner,
    }
