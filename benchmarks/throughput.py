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
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.throughput_core import (  # noqa: F401 - re-exported for callers and tests
    BYTES_PER_GIB,
    EPOCH_IMAGES,
    GPU_WORK,
    MODELS,
    NOTEBOOK_LOADERS,
    QUICK_MODELS,
    RESULTS_DIR,
    AlbumentationsCall,
    NotebookDataset,
    NotebookStep,
    Settings,
    cpu_cores,
    device_name,
    endless,
    forward_flops,
    free_memory,
    gpu_idle_fraction,
    idle_fraction,
    markdown,
    matmul_peak_flops,
    measure,
    slug,
    synchronize,
    write_report,
)
from search_spaces.loader import load_space
from wrn.augment import TorchvisionTransform, build_transform, randaugment_pipeline
from wrn.config import TrainConfig
from wrn.data import ImageSet, make_loader, make_synthetic
from wrn.gpu_data import GpuBatches
from wrn.model import WideResNet
from wrn.train import TrainStep


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
