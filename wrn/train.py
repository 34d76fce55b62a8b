"""The training loop: ``train(cfg, on_epoch_end=...) -> TrainResult``."""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wrn.augment import build_transform
from wrn.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unwrap,
)
from wrn.config import TrainConfig
from wrn.data import Splits, load_splits, make_loader
from wrn.gpu_data import GpuBatches, resolve_pipeline
from wrn.mixing import mix_batch
from wrn.model import WideResNet, count_parameters

# keys that change how a run executes, not what it computes (the resolved pipeline is checked
# on its own): a checkpoint may differ in them
_EXECUTION_KEYS = ("device", "workers", "compile", "data_dir", "download", "pipeline")


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but no CUDA GPU is available")
    return torch.device(name)


def build_model(cfg: TrainConfig) -> WideResNet:
    return WideResNet.from_config(cfg.model)


class TrainStep:
    """A run's model, optimiser and schedule, and its training step on one micro-batch.

    The step mixes the batch, runs forward under bf16 autocast (CUDA) and backward, and every
    ``grad_accum`` micro-batches clips the gradient norm and steps the optimiser and schedule.
    Loss and accuracy sums stay on the device, so no step waits for the GPU. The benchmark
    (``benchmarks/throughput.py``) times this same class.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, total_steps: int) -> None:
        self.cfg = cfg
        self.device = device
        on_cuda = device.type == "cuda"
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: autotuning pays back at once
        self.memory_format = torch.channels_last if on_cuda and cfg.run.channels_last else None
        self.model = build_model(cfg).to(device)
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)
        self.use_bf16 = on_cuda and cfg.run.bf16
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            nesterov=cfg.optim.nesterov,
            weight_decay=cfg.optim.weight_decay,
            fused=True if on_cuda else None,
        )
        initial_lr = cfg.optim.lr / cfg.optim.initial_lr_div
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=cfg.optim.lr,
            total_steps=total_steps,
            pct_start=cfg.optim.warmup_frac,
            anneal_strategy="cos",
            div_factor=cfg.optim.initial_lr_div,
            final_div_factor=initial_lr / cfg.optim.final_lr,
            cycle_momentum=False,  # the recipes keep momentum at 0.9 throughout
        )
        self.step_model: nn.Module = torch.compile(self.model) if cfg.run.compile else self.model
        self.mix_generator = torch.Generator()
        self.start_epoch(cfg.run.seed)

    def start_epoch(self, seed: int) -> None:
        """Reset the epoch's sums and seed the mixing draws."""
        self.mix_generator.manual_seed(seed)
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct_sum = torch.zeros((), device=self.device)
        self.seen = 0
        self.micro_batches = 0
        self.step_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # used by the latest step

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> bool:
        """One micro-batch; True when it ended with an optimiser step."""
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)
        if self.memory_format is not None:
            images = images.contiguous(memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        batch = mix_batch(
            images,
            labels,
            cfg.mixing.mixup_prob,
            cfg.mixing.cutmix_prob,
            cfg.mixing.mix_alpha,
            generator=self.mix_generator,
        )
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            logits = self.step_model(batch.images)
        loss = batch.loss(logits.float(), cfg.optim.label_smoothing)
        (loss / cfg.optim.grad_accum).backward()
        self.loss_sum += loss.detach() * len(labels)
        self.correct_sum += batch.correct(logits.detach())
        self.seen += len(labels)
        self.micro_batches += 1
        if self.micro_batches % cfg.optim.grad_accum:
            return False
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return True


def make_batches(
    cfg: TrainConfig, splits: Splits, device: torch.device, pipeline: str, channels_last: bool
) -> tuple[
    Iterable[tuple[torch.Tensor, torch.Tensor]], Iterable[tuple[torch.Tensor, torch.Tensor]]
]:
    """Training and evaluation batches: GPU-resident and GPU-augmented, or a CPU DataLoader."""
    if pipeline == "gpu":
        return tuple(
            GpuBatches(
                part,
                device,
                size,
                train=train,
                augmentation=cfg.data.augmentation,
                seed=cfg.run.seed,
                channels_last=channels_last,
            )
            for part, size, train in (
                (splits.train, cfg.run.batch_size, True),
                (splits.eval, 2 * cfg.run.batch_size, False),
            )
        )
    return tuple(
        make_loader(
            part,
            build_transform(cfg.data.augmentation, train=train),
            size,
            train=train,
            workers=cfg.data.workers,
            seed=cfg.run.seed,
            pin_memory=device.type == "cuda",
        )
        for part, size, train in (
            (splits.train, cfg.run.batch_size, True),
            (splits.eval, 2 * cfg.run.batch_size, False),
        )
    )


def set_epoch(batches: Iterable, epoch: int) -> None:
    if isinstance(batches, GpuBatches):
        batches.set_epoch(epoch)
    else:
        batches.sampler.set_epoch(epoch)


def _epoch_seed(seed: int, epoch: int) -> int:
    # a distinct, reproducible stream per (seed, epoch): a resumed run replays the same epoch
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def _comparable(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if k not in _EXECUTION_KEYS}


def train(
    cfg: TrainConfig,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    *,
    splits: Splits | None = None,
    checkpoint_path: str | Path | None = None,
) -> TrainResult:
    """Train a WideResNet as ``cfg`` says, evaluating after every epoch.

    ``on_epoch_end`` gets each epoch's stats; it may raise to stop training (a pruned trial).
    With ``checkpoint_path``, state is saved after every epoch and, if the file already exists,
    training resumes after its last epoch, replaying exactly what an uninterrupted run does.
    """
    device = resolve_device(cfg.run.device)
    on_cuda = device.type == "cuda"
    torch.manual_seed(cfg.run.seed)
    if splits is None:
        splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)
    pipeline = resolve_pipeline(cfg.data.pipeline, device)
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
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        if _comparable(state.get("config", {})) != _comparable(cfg.to_flat()):
            raise CheckpointError(f"{checkpoint_path}: written by a run with another config")
        if state.get("pipeline", pipeline) != pipeline:
            # the two pipelines draw different augmentations: a resumed run would not replay
            raise CheckpointError(
                f"{checkpoint_path}: written with the {state['pipeline']} data pipeline, "
                f"this run uses {pipeline} (set pipeline={state['pipeline']} to resume)"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        result.history = [EpochStats(**s) for s in state["history"]]
        start_epoch = state["epoch"] + 1

    criterion = nn.CrossEntropyLoss(reduction="sum")

    try:
        for epoch in range(start_epoch, cfg.run.epochs + 1):
            t0 = time.perf_counter()
            seed = _epoch_seed(cfg.run.seed, epoch)
            torch.manual_seed(seed)
            set_epoch(train_loader, epoch)
            step.start_epoch(seed)
            usable = steps_per_epoch * accum  # trailing micro-batches short of a step are skipped
            for i, (images, labels) in enumerate(train_loader):
                if i >= usable:
                    break
                step(images, labels)
            if on_cuda:
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - t0
            seen = step.seen
            train_loss = step.loss_sum.item() / seen
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(epoch, train_loss)

            eval_loss, eval_acc = evaluate(
                step.step_model, eval_loader, device, step.memory_format, step.use_bf16, criterion
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
            if checkpoint_path is not None:
                save_checkpoint(
                    checkpoint_path,
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
    finally:
        # free GPU memory before the next trial, whether this one finished, was pruned or failed
        del step, model, optimizer, scheduler
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()
    return result


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    memory_format: torch.memory_format | None,
    use_bf16: bool,
    criterion: nn.Module,
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy over ``loader``."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if memory_format is not None:
            images = images.contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(images)
        loss_sum += criterion(logits.float(), labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    return loss_sum.item() / seen, correct.item() / seen
