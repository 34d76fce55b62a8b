"""What a study's trials cost beyond their steps, for ``benchmarks.throughput``: the process's
one-time warm-up, each trial's start to its first optimiser step, and memory over trials."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.throughput_core import (
    BYTES_PER_GIB,
    Settings,
    endless,
    free_memory,
    synchronize,
)
from wrn.config import TrainConfig
from wrn.data import ImageSet
from wrn.gpu_data import GpuBatches
from wrn.network import network_name
from wrn.step import TrainStep


def warm_up_libraries(device: torch.device) -> None:
    """One tiny training step, so that no measurement below pays the process's library
    loading (CUDA context, cuDNN and cuBLAS handles). Shape-specific costs (cuDNN autotuning,
    the augmentation's compile) are the first trial's: see :func:`trial_start`."""
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


def trial_start(cfg: TrainConfig, data: ImageSet, settings: Settings) -> dict[str, float]:
    """Two trials' starts in this process, as a study runs them: the first pays the process's
    one-time costs for the recipe (the augmentation's compile, cuDNN autotuning of its
    shapes), the second is what every later trial waits. ``trial_start_s`` is the second,
    ``process_warmup_s`` what the first took on top of it."""
    seconds = []
    for _ in range(2):
        took, step, source = start_to_first_step(cfg, data, settings)
        seconds.append(took)
        del step, source
        free_memory(settings.device)
    return {"trial_start_s": seconds[1], "process_warmup_s": seconds[0] - seconds[1]}


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
        "model": network_name(cfg.model.depth, cfg.model.width),
        "trials": settings.trials,
        "measure": "cuda_allocated" if on_cuda else "process_rss",
        "allocated_gib": allocated,
        "peak_gib": peaks,
        "growth_mib": growth_mib,
        "peak_growth_mib": peak_growth_mib,
        "flat": bool(flat),
    }
