"""Shared pieces of ``benchmarks.throughput``: settings, machine facts, the seed notebooks'
loop, timing and GPU-idle measurement, and the markdown/JSON writers."""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from wrn.augment import albumentations_pipeline
from wrn.config import TrainConfig
from wrn.data import ImageSet
from wrn.model import WideResNet
from wrn.network import network_name
from wrn.step import build_optimizer, mix

EPOCH_IMAGES = 45_000  # a search trial's training split: 50,000 minus the 5,000 validation
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODELS = ("wrn28_10", "light")
# stand-ins for --quick: small enough for a CPU, same recipes otherwise
QUICK_MODELS = {
    "wrn28_10": {"depth": 10, "width": 1, "batch_size": 64},
    "light": {"depth": 10, "width": 2, "batch_size": 64},
}
# the seed notebooks' DataLoader settings (wrn-light.md: 6 workers, prefetch 3, persistent)
NOTEBOOK_LOADERS = {
    "wrn28_10": {"num_workers": 4},
    "light": {"num_workers": 6, "prefetch_factor": 3, "persistent_workers": True},
}
BYTES_PER_GIB = 2**30


@dataclass
class Settings:
    device: torch.device
    quick: bool
    compile: bool
    steps: int  # timed micro-batches per row
    warmup: int  # untimed micro-batches first (worker start-up, autotuning, compilation)
    images: int  # synthetic training images
    trials: int  # mini trials of the memory check (CUDA only)
    profile_steps: int  # micro-batches in the GPU-idle window (CUDA only)
    models: tuple[str, ...]
    batch_size: int | None  # overrides every recipe's micro-batch size


# ------------------------------------------------------------------------------ machine


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def matmul_peak_flops(device: torch.device, quick: bool) -> tuple[float, str]:
    """Matmul throughput (FLOP/s), the best of a few timed loops: bf16 on CUDA, fp32 on CPU.

    The best rather than the mean, so that other work on a shared machine lowers it less.
    """
    if device.type == "cuda":
        n, iters, dtype = 8192, 50, torch.bfloat16  # ~1.1 TFLOP per matmul
    else:
        (n, iters), dtype = ((1024, 3) if quick else (2048, 5)), torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b, out=out)
    best = math.inf
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * iters / best, "bf16" if dtype == torch.bfloat16 else "fp32"


def forward_flops(model: nn.Module, image_size: int = 32) -> int:
    """FLOPs of one image's forward pass through the conv and linear layers (2 per MAC)."""
    total = 0

    def conv(module: nn.Conv2d, _: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        total += out.numel() * (2 * per_output + (module.bias is not None))

    def linear(module: nn.Linear, _: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (2 * module.in_features + (module.bias is not None))

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total


# ------------------------------------------------------------------------ training steps


class NotebookStep:
    """The seed notebooks' loop: fp32, NCHW, default SGD, ``loss.item()`` every step."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False  # the default a notebook runs with
        self.model = WideResNet.from_config(cfg.model).to(device)
        self.optimizer = build_optimizer(cfg, self.model, fused=False)  # a notebook's default
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.optim.lr, total_steps=10**7
        )
        self.mix_generator = torch.Generator().manual_seed(cfg.run.seed)
        self.running_loss = 0.0
        self.micro_batches = 0
        self.model.train()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> bool:
        cfg = self.cfg
        images, labels = images.to(self.device), labels.to(self.device)
        batch = mix(cfg, images, labels, self.mix_generator)
        loss = batch.loss(self.model(batch.images), cfg.optim.label_smoothing)
        (loss / cfg.optim.grad_accum).backward()
        self.running_loss += loss.item()
        self.micro_batches += 1
        if self.micro_batches % cfg.optim.grad_accum:
            return False
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()
        return True


class NotebookDataset(Dataset):
    """A notebook-style Dataset: index -> (augmented image, label)."""

    def __init__(self, data: ImageSet, transform: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.data.images[index]), int(self.data.labels[index])


class AlbumentationsCall:
    """``compose(image=...)["image"]``, as a notebook calls its Albumentations pipeline."""

    def __init__(self) -> None:
        self.compose = albumentations_pipeline()

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.compose(image=image)["image"]


# ---------------------------------------------------------------------------- measuring


def endless(batches: Iterable) -> Iterator:
    """Batches across epochs, calling ``set_epoch`` where the source has one."""
    epoch = 0
    while True:
        epoch += 1
        set_epoch = getattr(batches, "set_epoch", None)
        if set_epoch is None:
            set_epoch = getattr(getattr(batches, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        yield from batches


def idle_fraction(start: float, end: float, spans: Iterable[tuple[float, float]]) -> float:
    """Fraction of [start, end] covered by none of the (possibly overlapping) spans."""
    busy, cursor = 0.0, start
    for lo, hi in sorted(spans):
        lo, hi = max(lo, cursor), min(hi, end)
        if hi > lo:
            busy += hi - lo
            cursor = hi
    return 1.0 - busy / (end - start)


GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")  # kineto activity types that occupy the GPU


def gpu_idle_fraction(
    run: Callable[[int], None], steps: int, device: torch.device
) -> float | None:
    """Fraction of a window of ``steps`` micro-batches during which no GPU work ran.

    The busy time is the union of the kernel, memcpy and memset intervals that torch.profiler
    records (not its annotations or sync records); the window is a CPU range from the first
    launch to the closing synchronize. The profiler's own overhead slows the host a little, so
    this errs towards idle. None if the profiler recorded no GPU work.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    synchronize(device)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities) as prof, record_function("benchmark_window"):
        run(steps)
        synchronize(device)
    events = prof.events()
    windows = [
        e for e in events if e.name == "benchmark_window" and e.device_type == DeviceType.CPU
    ]
    work = [
        e
        for e in events
        if e.device_type == DeviceType.CUDA
        and (e.activity_type in GPU_WORK if e.activity_type else not e.is_user_annotation)
    ]
    if not windows or not work:
        return None
    spans = [(e.time_range.start, e.time_range.end) for e in work]
    return idle_fraction(windows[0].time_range.start, windows[0].time_range.end, spans)


def measure(
    step: Callable[[torch.Tensor, torch.Tensor], bool],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    settings: Settings,
) -> dict[str, Any]:
    """Warm up, time ``settings.steps`` micro-batches, then (CUDA) profile a short window."""
    device = settings.device

    def run(n: int) -> None:
        for _ in range(n):
            step(*next(batches))

    run(settings.warmup)
    synchronize(device)
    start = time.perf_counter()
    run(settings.steps)
    synchronize(device)
    seconds = time.perf_counter() - start
    idle = None
    if device.type == "cuda" and settings.profile_steps > 0:
        try:
            idle = gpu_idle_fraction(run, settings.profile_steps, device)
        except Exception as e:  # the profiler is an extra: its failure must not lose the row
            print(f"GPU idle window failed ({type(e).__name__}: {e}); gpu_idle_frac null")
    images_per_s = settings.steps * batch_size / seconds
    return {
        "images_per_s": images_per_s,
        "s_per_epoch": EPOCH_IMAGES / images_per_s,
        "gpu_idle_frac": idle,
        "steps": settings.steps,
        "warmup_steps": settings.warmup,
        "seconds": seconds,
    }


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ output


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Training throughput: {report['device']}",
        "",
        f"`{report['command']}` on {report['date']} (torch {report['torch']}).",
        "",
        f"Matmul peak measured in the run: {report['peak_tflops']:.2f} TFLOP/s "
        f"({report['peak_dtype']}). s/epoch is for {EPOCH_IMAGES:,} images.",
    ]
    if report["quick"]:
        lines += [
            "",
            "**Quick run**: small stand-ins for the models (depth, width and batch below), "
            "a few steps per path; the numbers show the harness works, not real speeds.",
        ]
    lines += [
        "",
        "| model | net | batch | path | augmentation | precision | images/s | s/epoch | MFU "
        "| peak mem GiB | GPU idle |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        net = network_name(row["depth"], row["width"])
        batch = f"{row['batch_size']}" + (f"x{row['grad_accum']}" if row["grad_accum"] > 1 else "")
        lines.append(
            f"| {row['model']} | {net} | {batch} | {row['path']} | {row['augmentation'] or '–'} "
            f"| {row['precision']} | {_fmt(row['images_per_s'], ',.0f')} "
            f"| {_fmt(row['s_per_epoch'], ',.1f')} | {_fmt(row['mfu'], '.1%')} "
            f"| {_fmt(row['peak_mem_gib'], '.2f')} | {_fmt(row['gpu_idle_frac'], '.1%')} |"
        )
    failed = [row for row in report["rows"] if row.get("error")]
    lines += [f"- {row['model']} {row['path']}: {row['error']}" for row in failed]
    trials = report["trials"]
    lines += ["", "Trial start to first optimiser step (gpu path; a later trial of the process):"]
    for model, seconds in trials["trial_start_s"].items():
        warmup = trials["process_warmup_s"].get(model)
        lines.append(f"- {model}: {seconds:.2f} s (the process's first: +{_fmt(warmup, '.2f')} s)")
    lines += [f"- {model}: {error}" for model, error in trials["errors"].items()]
    memory = trials["memory"]
    if memory is None:
        lines.append("\nMemory check over consecutive trials: CUDA only.")
    else:
        values = ", ".join(f"{v:.3f}" for v in memory["allocated_gib"])
        lines += [
            "",
            f"Memory allocated after each of {memory['trials']} consecutive {memory['model']} "
            f"mini trials (GiB): {values}; growth {memory['growth_mib']:.1f} MiB "
            f"({'flat' if memory['flat'] else 'NOT flat'}).",
        ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date']}-{slug(report['device'])}"
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
