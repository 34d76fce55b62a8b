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
idle (from a short torch.profiler window after the timed steps; null on CPU). A row that
fails keeps its place with an ``error`` and the others run. The ``trials`` section has each
model's trial start to first optimiser step on the gpu path (the second trial of the process,
as every later trial of a study) and the process's one-time warm-up on top of it (the first
trial: the augmentation's compile, cuDNN autotuning), and, on CUDA, the memory left allocated
after each of N consecutive mini trials (:mod:`benchmarks.throughput_trials`).

``--quick`` swaps in small stand-ins (WRN-10-1 and WRN-10-2, a few hundred images, a few steps)
so that it runs in under a minute on two CPU cores; rows keep the real model names, with
``quick: true`` and the depth, width and batch size actually used.

Results go to ``benchmarks/results/<date>-<device>.json`` and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.throughput_core import (
    BYTES_PER_GIB,
    EPOCH_IMAGES,
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
    matmul_peak_flops,
    measure,
    write_report,
)
from benchmarks.throughput_trials import memory_check, trial_start, warm_up_libraries
from search_spaces.loader import load_space
from wrn.augment import TorchvisionTransform, build_transform, randaugment_pipeline
from wrn.config import TrainConfig
from wrn.data import ImageSet, make_loader, make_synthetic
from wrn.gpu_data import GpuBatches
from wrn.model import WideResNet
from wrn.step import TrainStep

Step = Callable[[torch.Tensor, torch.Tensor], bool]


def recipe(model: str, settings: Settings) -> TrainConfig:
    overrides: dict[str, Any] = {"device": settings.device.type, "workers": cpu_cores()}
    if settings.quick:
        overrides.update(QUICK_MODELS[model])
    if settings.batch_size is not None:
        overrides["batch_size"] = settings.batch_size
    return load_space(model).recipe_config(**overrides)


def notebook_loader(model: str, cfg: TrainConfig, data: ImageSet, on_cuda: bool) -> DataLoader:
    """The seed notebook's Dataset and DataLoader (its workers, at most the machine's cores)."""
    transform = (
        AlbumentationsCall()
        if cfg.data.augmentation == "albumentations"
        else TorchvisionTransform(randaugment_pipeline())
    )
    kwargs = dict(NOTEBOOK_LOADERS[model])
    kwargs["num_workers"] = min(kwargs["num_workers"], cpu_cores())
    if kwargs["num_workers"] == 0:
        kwargs.pop("prefetch_factor", None)
        kwargs.pop("persistent_workers", None)
    return DataLoader(
        NotebookDataset(data, transform),
        batch_size=cfg.run.batch_size,
        shuffle=True,
        drop_last=True,
        pin_memory=on_cuda,
        **kwargs,
    )


def harness_source(
    path: str, cfg: TrainConfig, data: ImageSet, step: TrainStep, device: torch.device
) -> Iterable:
    """The batches of the model-only, gpu and cpu paths (those that use wrn/train.py's step)."""
    on_cuda = device.type == "cuda"
    batch_size = cfg.run.batch_size
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
        return fixed
    augmentation = cfg.data.augmentation
    if path == "gpu":
        return GpuBatches(data, device, batch_size, True, augmentation, cfg.run.seed, on_cuda)
    return make_loader(
        data,
        build_transform(augmentation, train=True),
        batch_size,
        train=True,
        workers=cfg.data.workers,
        seed=cfg.run.seed,
        pin_memory=on_cuda,
    )


def path_row(
    path: str, model: str, cfg: TrainConfig, settings: Settings, workers: int | None
) -> dict[str, Any]:
    """A row's description: what ran, before anything is measured."""
    on_cuda = settings.device.type == "cuda"
    baseline = path == "seed-baseline"
    return {
        "model": model,
        "path": path,
        "augmentation": None if path == "model-only" else cfg.data.augmentation,
        "depth": cfg.model.depth,
        "width": cfg.model.width,
        "batch_size": cfg.run.batch_size,
        "grad_accum": cfg.optim.grad_accum,
        "quick": settings.quick,
        "precision": "bf16" if on_cuda and cfg.run.bf16 and not baseline else "fp32",
        "channels_last": on_cuda and cfg.run.channels_last and not baseline,
        "compile": settings.compile and not baseline,
        "workers": workers,
    }


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
    free_memory(device)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    step: Step
    if path == "seed-baseline":
        step = NotebookStep(cfg, device)
        source: Iterable = notebook_loader(model, cfg, data, on_cuda)
        workers: int | None = source.num_workers
    else:
        # never reaches the schedule's end: only the per-step cost matters here
        step = TrainStep(cfg.replace(compile=settings.compile), device, total_steps=10**7)
        source = harness_source(path, cfg, data, step, device)
        workers = cfg.data.workers if path.startswith("cpu-") else None
    batches: Iterator = endless(source)
    result = measure(step, batches, cfg.run.batch_size, settings)
    row = {
        **path_row(path, model, cfg, settings, workers),
        "images_per_s": result.pop("images_per_s"),
        "s_per_epoch": result.pop("s_per_epoch"),
        "mfu": None,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / BYTES_PER_GIB
        if on_cuda
        else None,
        "gpu_idle_frac": result.pop("gpu_idle_frac"),
        **result,
        "train_gflops_per_image": 3 * flops_per_image / 1e9,  # forward + backward
    }
    row["mfu"] = row["images_per_s"] * 3 * flops_per_image / peak_flops
    del step, batches, source  # DataLoader workers stop with their loader
    free_memory(device)
    return row
def failed_row(
    path: str, model: str, cfg: TrainConfig, settings: Settings, error: BaseException
) -> dict[str, Any]:
    """The row of a path that raised: its description, no figures, the error in one line."""
    message = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
    empty = dict.fromkeys(("images_per_s", "s_per_epoch", "mfu", "peak_mem_gib", "gpu_idle_frac"))
    return {**path_row(path, model, cfg, settings, None), **empty, "error": message}


def measure_model(
    model: str,
    settings: Settings,
    data: ImageSet,
    peak_flops: float,
    paths: Sequence[str] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    time_start: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One recipe's rows (by default every path) and its trial start (:func:`trial_start`, or
    ``{"error": ...}``; None with ``time_start=False``).

    ``paths`` may name ``cpu`` for the recipe's ``cpu-<augmentation>`` path; ``on_row`` gets
    each row as soon as it is measured. A path or trial start that raises is recorded as
    such (:func:`failed_row`) and the rest still run: one missing library loses one row.
    """
    cfg = recipe(model, settings)
    if settings.images < cfg.run.batch_size:
        # the notebook loader drops the last partial batch: it needs one full batch
        raise SystemExit(f"--images must be >= the batch size {cfg.run.batch_size}")
    flops = forward_flops(WideResNet.from_config(cfg.model))
    start = None
    if time_start:
        try:
            start = trial_start(cfg, data, settings)
        except Exception as e:  # recorded: the rows below still run
            start = {"error": failed_row("gpu", model, cfg, settings, e)["error"]}
            free_memory(settings.device)
    cpu_path = f"cpu-{cfg.data.augmentation}"
    wanted = paths if paths is not None else ("model-only", "gpu", cpu_path, "seed-baseline")
    rows = []
    for path in wanted:
        path = cpu_path if path == "cpu" else path
        try:
            row = run_path(path, model, cfg, data, settings, flops, peak_flops)
        except Exception as e:  # recorded on the row; the other paths still run
            free_memory(settings.device)
            row = failed_row(path, model, cfg, settings, e)
        rows.append(row)
        figures = (
            f"{row['images_per_s']:10.1f} images/s {row['s_per_epoch']:8.1f} s/epoch"
            if row.get("error") is None
            else f"error: {row['error']}"
        )
        print(f"{model:9s} {path:22s} {figures}", flush=True)
        if on_row is not None:
            on_row(row)
    return rows, start


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
    trials: dict[str, Any] = {"trial_start_s": {}, "process_warmup_s": {}, "errors": {}}
    for model in settings.models:
        model_rows, start = measure_model(model, settings, data, peak)
        rows += model_rows
        for key, value in (start or {}).items():  # trial_start_s, process_warmup_s or error
            trials["errors" if key == "error" else key][model] = value

    trials["memory"] = None
    if device.type == "cuda":
        trials["memory"] = memory_check(recipe(settings.models[0], settings), data, settings)
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
        "trials": trials,
    }
    json_path, md_path = write_report(report, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
