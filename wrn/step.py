"""One run's machinery: device, model, optimiser and schedule (``TrainStep``), batches, eval.

``wrn.train`` drives these per epoch; ``benchmarks/throughput.py`` times ``TrainStep`` alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable

import torch
from torch import nn

from wrn.config import TrainConfig
from wrn.data import Splits, make_loader
from wrn.mixing import MixedBatch, mix_batch
from wrn.model import WideResNet

# wrn.augment and wrn.gpu_data pull in torchvision (and with it torch._dynamo), albumentations
# and cv2, several seconds of start-up: they are imported where a run builds its batches


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but no CUDA GPU is available")
    return torch.device(name)


def autotune_cudnn(device: torch.device) -> None:
    """Turn on cuDNN autotuning on CUDA (fixed shapes: it pays back at once), except in a
    deterministic process (``torch.use_deterministic_algorithms``, e.g. through
    ``benchmarks.deterministic``): autotuning may pick other kernels in each process."""
    if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True


def build_model(cfg: TrainConfig) -> WideResNet:
    return WideResNet.from_config(cfg.model)


def build_optimizer(cfg: TrainConfig, model: nn.Module, fused: bool) -> torch.optim.SGD:
    """The run's SGD (``cfg.optim``); ``fused``: one kernel for the whole step (CUDA)."""
    o = cfg.optim
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov,
        weight_decay=o.weight_decay,
        fused=True if fused else None,
    )


def mix(
    cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> MixedBatch:
    """The batch after the run's MixUp/CutMix draw (``cfg.mixing``)."""
    m = cfg.mixing
    return mix_batch(
        images, labels, m.mixup_prob, m.cutmix_prob, m.mix_alpha, generator=generator
    )


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
        autotune_cudnn(device)
        self.memory_format = torch.channels_last if on_cuda and cfg.run.channels_last else None
        self.model = build_model(cfg).to(device)
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)
        self.use_bf16 = on_cuda and cfg.run.bf16
        self.optimizer = build_optimizer(cfg, self.model, fused=on_cuda)
        initial_lr = cfg.optim.lr / cfg.optim.initial_lr_div
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=cfg.optim.lr,
            total_steps=total_steps,
            pct_start=cfg.optim.warmup_frac,
            anneal_strategy="cos",
            div_factor=cfg.optim.initial_lr_div,
            final_div_factor=initial_lr / cfg.optim.final_lr,
            # the recipes keep momentum fixed; cycle_momentum runs PyTorch's default cycle, from
            # 0.85 (capped at momentum) at the LR peak back up to momentum
            cycle_momentum=cfg.optim.cycle_momentum,
            base_momentum=min(0.85, cfg.optim.momentum),
            max_momentum=cfg.optim.momentum,
        )
        if cfg.run.compile:
            _start_compiled_run(cfg, device)
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
        batch = mix(cfg, images, labels, self.mix_generator)
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


# The graph key of the last compiled run in this process (Dynamo's caches are per process).
_last_graph_key: tuple | None = None


def _graph_key(cfg: TrainConfig, device: torch.device) -> tuple:
    """What a compiled model's graphs depend on: the architecture (whether there is dropout,
    not its p, which is an input: wrn.model.Dropout), the batch shapes, precision, layout."""
    model = {
        **dataclasses.asdict(cfg.model),
        "dropout": cfg.model.dropout > 0,
        "first_dropout": cfg.model.first_dropout > 0,
    }
    run = (cfg.run.batch_size, cfg.run.bf16, cfg.run.channels_last, str(device))
    return (*sorted(model.items()), run)


def _start_compiled_run(cfg: TrainConfig, device: torch.device) -> None:
    """Keep Dynamo's graphs for a run of the last run's graph key (a study's trials of one
    depth and width reuse them); drop them for another. Dynamo's caches are per code object:
    every architecture adds its graphs (train, eval) to WideResNet.forward's, and at the
    recompile limit (8) compiling would stop. Inductor's on-disk cache keeps them anyway."""
    global _last_graph_key
    key = _graph_key(cfg, device)
    if key != _last_graph_key:
        torch._dynamo.reset()
        _last_graph_key = key


def recompile_limit_is_an_error() -> contextlib.AbstractContextManager:
    """Make Dynamo raise, not fall back to eager with a warning, when it hits its limit."""
    import torch._dynamo

    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):  # new, old name
        if hasattr(torch._dynamo.config, name):
            return torch._dynamo.config.patch(**{name: True})
    return contextlib.nullcontext()


def make_batches(
    cfg: TrainConfig, splits: Splits, device: torch.device, pipeline: str, channels_last: bool
) -> tuple[
    Iterable[tuple[torch.Tensor, torch.Tensor]], Iterable[tuple[torch.Tensor, torch.Tensor]]
]:
    """Training and evaluation batches: GPU-resident and GPU-augmented, or a CPU DataLoader."""
    if pipeline == "gpu":
        from wrn.gpu_data import GpuBatches

        return tuple(
            GpuBatches(
                part,
                device,
                size,
                train=train,
                augmentation=cfg.data.augmentation,
                seed=cfg.run.seed,
                channels_last=channels_last,
                fill=cfg.data.aug_fill,
                extra_rotate=cfg.data.extra_rotate,
            )
            for part, size, train in (
                (splits.train, cfg.run.batch_size, True),
                (splits.eval, 2 * cfg.run.batch_size, False),
            )
        )
    from wrn.augment import build_transform

    return tuple(
        make_loader(
            part,
            build_transform(
                cfg.data.augmentation,
                train=train,
                fill=cfg.data.aug_fill,
                extra_rotate=cfg.data.extra_rotate,
            ),
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
    if hasattr(batches, "set_epoch"):  # GpuBatches
        batches.set_epoch(epoch)
    else:
        batches.sampler.set_epoch(epoch)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    memory_format: torch.memory_format | None,
    use_bf16: bool,
    criterion: nn.Module,
    pad: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy over ``loader``.

    With ``pad``, a last partial batch is padded with zero images to the first batch's size
    and the padding's logits are dropped: a compiled model then sees one input shape, not a
    second (dynamic) graph per run.
    """
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    full = 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        n = len(labels)
        full = full or n
        if pad and n < full:
            images = torch.cat([images, images.new_zeros((full - n, *images.shape[1:]))])
        if memory_format is not None:
            images = images.contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(images)[:n]
        loss_sum += criterion(logits.float(), labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    return loss_sum.item() / seen, correct.item() / seen
