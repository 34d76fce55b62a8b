"""Training throughput of the harness's data paths, side by side, in one run.

``python -m benchmarks.throughput [--device cuda|cpu] [--quick] [--compile] [--out DIR]``

For the two recipes, WRN-28-10 (batch 256, albumentations) and the light WRN-16-8 (batch 512,
grad accumulation 2, randaugment), on synthetic CIFAR-sized data, each path runs the recipe's
training step and is timed over ``--steps`` micro-batches after ``--warmup`` ones:

* ``model-only``: fixed random batches already on the device, the training step only: the
  ceiling for the rest.
* ``gpu``: :class:`wrn.gpu_data.GpuBatches` (device-resident uint8 images, batched per-image
  augmentation), then the step.
* ``cpu-<augmentation>``: :func:`wrn.data.make_loader` with the recipe's augmentation, one
  worker per CPU core, pinned memory on CUDA, then the step.
* ``seed-baseline``: what the seed notebooks do: a plain Dataset with the recipe's per-image
  augmentation, a DataLoader with the notebook's workers (4 for WRN-28-10; 6 and prefetch 3 for
  the light recipe; at most the machine's cores), fp32, NCHW, cudnn autotuning off, and
  ``loss.item()`` after every step.

The step of the first three is wrn/train.py's: MixUp/CutMix as the recipe says, bf16 autocast,
channels_last and fused SGD on CUDA (fp32 on CPU), gradient accumulation and clipping, OneCycle
LR, running sums kept on the device. Per row: images/s, seconds per 45,000-image epoch, MFU
(3 x the forward FLOPs of the model's conv and linear layers per image, over a bf16 matmul peak
measured in the same run; fp32 on CPU), peak memory and the fraction of wall time the GPU sat
idle (from a short torch.profiler window after the timed steps; null on CPU). The ``trials``
section has each model's trial start to first optimiser step on the gpu path and, on CUDA, the
memory left allocated after each of N consecutive mini trials.

``--quick`` swaps in small stand-ins (WRN-10-1 and WRN-10-2, a few hundred images, a few steps)
so that it runs in under a minute on two CPU cores; rows keep the real model names, with
``quick: true`` and the depth, width and batch size actually used.

Results go to ``benchmarks/results/<date>-<device>.json`` and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from search_spaces.loader import load_space
from wrn.augment import (
    TorchvisionTransform,
    albumentations_pipeline,
    build_transform,
    randaugment_pipeline,
)
from wrn.config import TrainConfig
from wrn.data import ImageSet, make_loader, make_synthetic
from wrn.gpu_data import GpuBatches
from wrn.mixing import mix_batch
from wrn.model import WideResNet
from wrn.train import TrainStep

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
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            nesterov=cfg.optim.nesterov,
            weight_decay=cfg.optim.weight_decay,
        )
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
        batch = mix_batch(
            images,
            labels,
            cfg.mixing.mixup_prob,
            cfg.mixing.cutmix_prob,
            cfg.mixing.mix_alpha,
            generator=self.mix_generator,
        )
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


def recipe(model: str, settings: Settings) -> TrainConfig:
    overrides: dict[str, Any] = {"device": settings.device.type, "workers": cpu_cores()}
    if settings.quick:
        overrides.update(QUICK_MODELS[model])
    if settings.batch_size is not None:
        overrides["batch_size"] = settings.batch_size
    return load_space(model).recipe_config(**overrides)


def run_path(
    path: str,
    model: str,
    cfg: TrainConfig,
    data: ImageSet,
    settings: Settings,
    flops_per_image: float,
    peak_flops: float,
) -> dict[str, Any]:
    """Build the path's data source and step, measure them, free them; one result row."""
    device = settings.device
    on_cuda = device.type == "cuda"
    batch_size = cfg.run.batch_size
    augmentation = cfg.data.augmentation
    free_memory(device)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    workers: int | None = None
    source: Iterable | None = None
    if path == "seed-baseline":
        step: Callable[[torch.Tensor, torch.Tensor], bool] = NotebookStep(cfg, device)
        transform = (
            AlbumentationsCall()
            if augmentation == "albumentations"
            else TorchvisionTransform(randaugment_pipeline())
        )
        loader_kwargs = dict(NOTEBOOK_LOADERS[model])
        workers = min(loader_kwargs["num_workers"], cpu_cores())
        loader_kwargs["num_workers"] = workers
        if workers == 0:
            loader_kwargs.pop("prefetch_factor", None)
            loader_kwargs.pop("persistent_workers", None)
        source = DataLoader(
            NotebookDataset(data, transform),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            pin_memory=on_cuda,
            **loader_kwargs,
        )
        batches = endless(source)
    else:
        # never reaches the schedule's end: only the per-step cost matters here
        step = TrainStep(cfg.replace(compile=settings.compile), device, total_steps=10**7)
        if path == "model-only":
            generator = torch.Generator(device=device).manual_seed(0)
            fixed = [
                (
                    torch.randn(batch_size, 3, 32, 32, device=device, generator=generator),
                    torch.randint(100, (batch_size,), device=device, generator=generator),
                )
                for _ in range(2)
            ]
            if step.memory_format is not None:
                fixed = [(x.contiguous(memory_format=step.memory_format), y) for x, y in fixed]
            batches = endless(fixed)
        elif path == "gpu":
            source = GpuBatches(
                data, device, batch_size, True, augmentation, cfg.run.seed, channels_last=on_cuda
            )
            batches = endless(source)
        else:
            workers = cfg.data.workers
            source = make_loader(
                data,
                build_transform(augmentation, train=True),
                batch_size,
                train=True,
                workers=workers,
                seed=cfg.run.seed,
                pin_memory=on_cuda,
            )
            batches = endless(source)
    result = measure(step, batches, batch_size, settings)
    baseline = path == "seed-baseline"
    row = {
        "model": model,
        "path": path,
        "images_per_s": result.pop("images_per_s"),
        "s_per_epoch": result.pop("s_per_epoch"),
        "mfu": None,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / BYTES_PER_GIB
        if on_cuda
        else None,
        "gpu_idle_frac": result.pop("gpu_idle_frac"),
        "augmentation": None if path == "model-only" else augmentation,
        "depth": cfg.model.depth,
        "width": cfg.model.width,
        "batch_size": batch_size,
        "grad_accum": cfg.optim.grad_accum,
        "quick": settings.quick,
        "precision": "bf16" if on_cuda and cfg.run.bf16 and not baseline else "fp32",
        "channels_last": on_cuda and cfg.run.channels_last and not baseline,
        "compile": settings.compile and not baseline,
        "workers": workers,
        **result,
        "train_gflops_per_image": 3 * flops_per_image / 1e9,  # forward + backward
    }
    row["mfu"] = row["images_per_s"] * 3 * flops_per_image / peak_flops
    del step, batches, source  # DataLoader workers stop with their loader
    free_memory(device)
    return row


def warm_up_libraries(device: torch.device) -> None:
    """One tiny training step, so that no trial start below pays the process's one-time costs
    (cuDNN/cuBLAS loading, CUDA context); each still autotunes its own shapes."""
    cfg = TrainConfig.from_flat({"depth": 10, "width": 1, "device": device.type})
    step = TrainStep(cfg, device, total_steps=10**7)
    images = torch.randn(8, 3, 32, 32, device=device)
    step(images, torch.zeros(8, dtype=torch.long, device=device))
    synchronize(device)
    del step, images
    free_memory(device)


def start_to_first_step(
    cfg: TrainConfig, data: ImageSet, settings: Settings
) -> tuple[float, TrainStep, GpuBatches]:
    """Seconds from building the model and the GPU data to the first optimiser step's end."""
    device = settings.device
    synchronize(device)
    start = time.perf_counter()
    step = TrainStep(cfg.replace(compile=settings.compile), device, total_steps=10**7)
    source = GpuBatches(
        data,
        device,
        cfg.run.batch_size,
        True,
        cfg.data.augmentation,
        cfg.run.seed,
        channels_last=device.type == "cuda",
    )
    batches = endless(source)
    while not step(*next(batches)):
        pass
    synchronize(device)
    return time.perf_counter() - start, step, source


def measure_model(
    model: str,
    settings: Settings,
    data: ImageSet,
    peak_flops: float,
    paths: Sequence[str] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    time_start: bool = True,
) -> tuple[list[dict[str, Any]], float | None]:
    """One recipe's rows (by default every path) and its trial start to first step (s).

    ``paths`` may name ``cpu`` for the recipe's ``cpu-<augmentation>`` path; ``on_row`` gets
    each row as soon as it is measured; ``time_start=False`` skips the trial start (None).
    """
    cfg = recipe(model, settings)
    if settings.images < cfg.run.batch_size:
        # the notebook loader drops the last partial batch: it needs one full batch
        raise SystemExit(f"--images must be >= the batch size {cfg.run.batch_size}")
    flops = forward_flops(WideResNet.from_config(cfg.model))
    seconds = None
    if time_start:
        # a new trial's start: its shapes not yet autotuned (or compiled), the process warm
        seconds, step, source = start_to_first_step(cfg, data, settings)
        del step, source
        free_memory(settings.device)
    cpu_path = f"cpu-{cfg.data.augmentation}"
    wanted = paths if paths is not None else ("model-only", "gpu", cpu_path, "seed-baseline")
    rows = []
    for path in wanted:
        path = cpu_path if path == "cpu" else path
        row = run_path(path, model, cfg, data, settings, flops, peak_flops)
        rows.append(row)
        print(
            f"{model:9s} {path:22s} {row['images_per_s']:10.1f} images/s "
            f"{row['s_per_epoch']:8.1f} s/epoch",
            flush=True,
        )
        if on_row is not None:
            on_row(row)
    return rows, seconds


def _process_rss_gib() -> float:
    """Resident memory of this process (GiB), from /proc (Linux); 0.0 where unreadable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / BYTES_PER_GIB


# a leaked WRN-28-10 alone is 139 MiB of weights: 1 MiB of growth in what stays allocated, or
# 16 MiB in the peak (cuDNN may pick workspaces of other sizes per trial), is far below one
FLAT_ALLOCATED_MIB = 1.0
FLAT_PEAK_MIB = 16.0
# on CPU the measure is the process's resident memory, which the allocator's caching moves by
# tens of MiB: only a growth of several models' size would be a leak
FLAT_RSS_MIB = 256.0


def memory_check(cfg: TrainConfig, data: ImageSet, settings: Settings) -> dict[str, Any]:
    """Memory after, and peak during, each of N consecutive mini trials (build, steps, free).

    On CUDA: memory still allocated after each trial and each trial's peak allocation. On CPU
    (only to exercise the code): the process's resident memory after each trial, as both.
    """
    device = settings.device
    on_cuda = device.type == "cuda"
    allocated, peaks = [], []
    for _ in range(settings.trials):
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        _, step, source = start_to_first_step(cfg, data, settings)
        batches = endless(source)
        for _ in range(2 * cfg.optim.grad_accum):
            step(*next(batches))
        synchronize(device)
        del step, source, batches
        free_memory(device)
        if on_cuda:
            allocated.append(torch.cuda.memory_allocated(device) / BYTES_PER_GIB)
            peaks.append(torch.cuda.max_memory_allocated(device) / BYTES_PER_GIB)
        else:
            allocated.append(_process_rss_gib())
            peaks.append(allocated[-1])
    growth_mib = (allocated[-1] - allocated[0]) * 1024
    # a leak raises every later peak; the first trial's may be the highest (autotuning)
    peak_growth_mib = (peaks[-1] - min(peaks)) * 1024
    if on_cuda:
        flat = growth_mib < FLAT_ALLOCATED_MIB and peak_growth_mib < FLAT_PEAK_MIB
    else:
        flat = growth_mib < FLAT_RSS_MIB
    return {
        "model": f"WRN-{cfg.model.depth}-{cfg.model.width}",
        "trials": settings.trials,
        "measure": "cuda_allocated" if on_cuda else "process_rss",
        "allocated_gib": allocated,
        "peak_gib": peaks,
        "growth_mib": growth_mib,
        "peak_growth_mib": peak_growth_mib,
        "flat": bool(flat),
    }


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
        net = f"WRN-{row['depth']}-{row['width']}"
        batch = f"{row['batch_size']}" + (f"x{row['grad_accum']}" if row["grad_accum"] > 1 else "")
        lines.append(
            f"| {row['model']} | {net} | {batch} | {row['path']} | {row['augmentation'] or '–'} "
            f"| {row['precision']} | {row['images_per_s']:,.0f} | {row['s_per_epoch']:,.1f} "
            f"| {_fmt(row['mfu'], '.1%')} | {_fmt(row['peak_mem_gib'], '.2f')} "
            f"| {_fmt(row['gpu_idle_frac'], '.1%')} |"
        )
    trials = report["trials"]
    lines += ["", "Trial start to first optimiser step (gpu path):"]
    for model, seconds in trials["start_to_first_step_s"].items():
        lines.append(f"- {model}: {seconds:.2f} s")
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


# -------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    parser.add_argument("--quick", action="store_true", help="small stand-ins, a few steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    parser.add_argument("--steps", type=int, default=None, help="timed micro-batches per row")
    parser.add_argument("--warmup", type=int, default=None, help="untimed micro-batches first")
    parser.add_argument("--images", type=int, default=None, help="synthetic training images")
    parser.add_argument("--trials", type=int, default=None, help="memory-check trials (CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="instead of the recipes'")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is available")

    def pick(value: int | None, quick: int, full: int, low: int) -> int:
        chosen = value if value is not None else (quick if args.quick else full)
        if chosen < low:
            raise SystemExit(f"values must be >= {low}, got {chosen}")
        return chosen

    return Settings(
        device=torch.device(name),
        quick=args.quick,
        compile=args.compile,
        steps=pick(args.steps, 3, 50, 1),
        warmup=pick(args.warmup, 1, 10, 0),
        images=pick(args.images, 512, EPOCH_IMAGES, 1),
        trials=pick(args.trials, 3, 20, 1),
        profile_steps=0 if name == "cpu" else (4 if args.quick else 10),
        models=tuple(args.models),
        batch_size=None if args.batch_size is None else pick(args.batch_size, 0, 0, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    device = settings.device
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    torch.manual_seed(0)
    peak, peak_dtype = matmul_peak_flops(device, settings.quick)
    data, _ = make_synthetic(100, settings.images, 1)
    warm_up_libraries(device)

    rows: list[dict[str, Any]] = []
    first_step: dict[str, float] = {}
    for model in settings.models:
        model_rows, seconds = measure_model(model, settings, data, peak)
        rows += model_rows
        first_step[model] = seconds if seconds is not None else math.nan

    memory = None
    if device.type == "cuda":
        memory = memory_check(recipe(settings.models[0], settings), data, settings)
    report = {
        "device": device_name(device),
        "device_type": device.type,
        "command": f"python -m benchmarks.throughput {argv_text}".strip(),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "quick": settings.quick,
        "compile": settings.compile,
        "cpu_cores": cpu_cores(),
        "epoch_images": EPOCH_IMAGES,
        "peak_tflops": peak / 1e12,
        "peak_dtype": peak_dtype,
        "rows": rows,
        "trials": {"start_to_first_step_s": first_step, "memory": memory},
    }
    json_path, md_path = write_report(report, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
