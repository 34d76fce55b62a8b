"""The parts of ``python -m benchmarks.acceptance``, each run in its own process.

Each part function takes the run's :class:`Options` and an ``emit`` callback, and calls
``emit({top-level key: value, ...})`` whenever it has a result worth keeping, so that a part
stopped at its time budget still leaves what it measured.
"""

from __future__ import annotations

import gzip
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import throughput as tp
from benchmarks import throughput_core as core
from benchmarks.throughput_trials import memory_check, warm_up_libraries
from search_spaces.loader import load_space
from wrn.config import TrainConfig, comparable
from wrn.data import ImageSet, Splits, make_synthetic
from wrn.dataset_writers import write_cifar100
from wrn.datasets import load
from wrn.network import network_name
from wrn.train import train

Emit = Callable[[dict[str, Any]], None]
ROOT = Path(__file__).resolve().parents[1]
GB = 1e9  # bytes: the JSON's peak_mem_gb is decimal gigabytes
EAGER_PATHS = ("model-only", "gpu", "seed-baseline")
# compiled: the path trials run only; a cold WRN-28-10 compile alone takes about a minute
COMPILED_PATHS = ("gpu",)
# where the four Fashion-MNIST .gz files are looked for when --fashion-gz is not given: the
# git-ignored folder carried to the GPU machine, then Debian's dataset-fashion-mnist
FASHION_GZ_DIRS = (ROOT / ".fashion-gz", Path("/usr/share/datasets/fashion-mnist"))
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_MAGIC = {True: 2051, False: 2049}  # idx3 (images) and idx1 (labels) headers

# Fashion-MNIST: the light recipe (WRN-16-8) with 10 classes, shortened to 30 epochs (about
# 70 s at 30,000 images/s on an H100, 60,000 images per epoch). A 30-epoch run gains from
# lighter augmentation and more, larger steps than the 85-epoch CIFAR-100 recipe: pad-and-crop
# plus flip instead of RandAugment (heavy augmentation pays back only over long schedules), no
# gradient accumulation (twice the optimiser steps), OneCycle max LR 0.2 for batch 512 and
# weight decay 5e-4 (the usual values of short CIFAR schedules).
FASHION_EPOCHS = 30
FASHION_RECIPE = {
    "num_classes": 10,
    "augmentation": "basic",
    "grad_accum": 1,
    "lr": 0.2,
    "weight_decay": 5e-4,
}
# --quick stand-ins: a WRN-10-1 on a few hundred images
QUICK_NET = {"depth": 10, "width": 1, "batch_size": 32}
QUICK_FASHION_IMAGES = (256, 128)  # train, test


@dataclass
class Options:
    device: torch.device
    quick: bool
    fashion_gz: Path | None = None
    fashion_epochs: int | None = None
    fashion_sets: dict[str, Any] = field(default_factory=dict)
    fashion_train: int | None = None  # a fixed random subset of the training images
    fashion_test: int | None = None


# ---------------------------------------------------------------------------- throughput


def settings(opts: Options, compile: bool, models: Sequence[str] = core.MODELS) -> core.Settings:
    on_cuda = opts.device.type == "cuda"
    return core.Settings(
        device=opts.device,
        quick=opts.quick,
        compile=compile,
        steps=3 if opts.quick else 50,
        warmup=1 if opts.quick else 10,
        images=256 if opts.quick else core.EPOCH_IMAGES,
        trials=3 if opts.quick else 20,
        profile_steps=(4 if opts.quick else 10) if on_cuda else 0,
        models=tuple(models),
        batch_size=32 if opts.quick else None,  # None: each recipe's own
    )


def table_row(row: dict[str, Any]) -> dict[str, Any]:
    """A throughput.py row with the acceptance keys: compiled paths named, memory in GB."""
    gib = row.get("peak_mem_gib")
    return {
        "model": row["model"],
        "path": row["path"] + ("+compile" if row["compile"] else ""),
        "images_per_s": row["images_per_s"],
        "mfu": row["mfu"],
        "peak_mem_gb": None if gib is None else gib * core.BYTES_PER_GIB / GB,
        **{k: v for k, v in row.items() if k not in ("model", "path", "images_per_s", "mfu")},
    }


def _throughput(opts: Options, emit: Emit, compile: bool) -> None:
    """Each model's rows and trial start; a failing row, start or model is recorded on it (in
    ``throughput`` or ``trial_start_errors``) and the rest still run."""
    device = opts.device
    # CPU compiles take ~30 s each: --quick compiles one model
    models = ("wrn28_10",) if compile and opts.quick else core.MODELS
    s = settings(opts, compile, models)
    torch.manual_seed(0)
    peak, peak_dtype = core.matmul_peak_flops(device, opts.quick)
    data, _ = make_synthetic(100, s.images, 1)
    warm_up_libraries(device)
    rows: list[dict[str, Any]] = []
    starts: dict[str, dict[str, Any]] = {"trial_start_s": {}, "process_warmup_s": {}}
    start_errors: dict[str, str] = {}

    def publish() -> None:
        out: dict[str, Any] = {"throughput": rows}
        if not compile:
            out.update(starts, trial_start_errors=start_errors)
            out.update(peak_tflops=peak / 1e12, peak_dtype=peak_dtype)
        emit(out)

    def on_row(row: dict[str, Any]) -> None:
        rows.append(table_row(row))
        publish()

    for model in models:
        paths = COMPILED_PATHS if compile else EAGER_PATHS
        try:
            # the compiled trial start would add two more compilations per model: not timed
            _, start = tp.measure_model(
                model, s, data, peak, paths, on_row, time_start=not compile
            )
        except Exception as e:  # the model's setup itself: its rows are lost, not the others'
            start = {"error": f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]}
        for key, value in (start or {}).items():
            (start_errors if key == "error" else starts[key])[model] = value
        publish()


def throughput_part(opts: Options, emit: Emit) -> None:
    """Eager rows of both recipes, and each recipe's trial start to first optimiser step."""
    _throughput(opts, emit, compile=False)


def compiled_part(opts: Options, emit: Emit) -> None:
    """The gpu rows again with torch.compile (--quick: one model)."""
    _throughput(opts, emit, compile=True)


def memory_part(opts: Options, emit: Emit) -> None:
    """Memory over 20 consecutive WRN-28-10 mini trials (throughput.memory_check)."""
    s = settings(opts, compile=False)
    data, _ = make_synthetic(100, s.images, 1)
    warm_up_libraries(opts.device)
    emit({"memory_over_trials": memory_check(tp.recipe("wrn28_10", s), data, s)})


# ---------------------------------------------------------------------------- checkpoints


def epoch_intervals(cfg: TrainConfig, splits: Splits, checkpoint: Path | None) -> list[float]:
    """Seconds between successive epoch ends (checkpoint saves included, first epoch not)."""
    ends: list[float] = []
    stamp = lambda _: ends.append(time.perf_counter())  # noqa: E731
    train(cfg, stamp, splits=splits, checkpoint_path=checkpoint)
    return [b - a for a, b in itertools.pairwise(ends)]


def checkpoint_part(opts: Options, emit: Emit) -> None:
    """Extra epoch time from checkpointing every epoch: the same WRN-28-10 epochs, twice."""
    epochs = 3 if opts.quick else 4  # the first epoch (autotuning) is not counted
    n_train, n_eval = (128, 64) if opts.quick else (core.EPOCH_IMAGES, 5000)
    overrides: dict[str, Any] = {"device": opts.device.type, "epochs": epochs, "workers": 0}
    if opts.quick:
        overrides.update(QUICK_NET, pipeline="gpu")  # the CUDA path's code, on CPU tensors
    cfg = load_space("wrn28_10").recipe_config(**overrides)
    train_set, eval_set = make_synthetic(100, n_train, n_eval)
    splits = Splits(train_set, eval_set, "val", 100)
    with tempfile.TemporaryDirectory(prefix="acceptance-ckpt-") as folder:
        path = Path(folder) / "trial.pt"
        plain = epoch_intervals(cfg, splits, None)
        saving = epoch_intervals(cfg, splits, path)
        size_mb = path.stat().st_size / 1e6 if path.exists() else None
    frac = statistics.mean(saving) / statistics.mean(plain) - 1.0
    print(f"checkpoint overhead {frac:+.2%} ({size_mb} MB per checkpoint)", flush=True)
    emit(
        {
            "checkpoint_overhead_frac": frac,
            "checkpoint_overhead": {
                "model": network_name(cfg.model.depth, cfg.model.width),
                "epochs": epochs,
                "train_images": n_train,
                "eval_images": n_eval,
                "checkpoint_every": cfg.to_flat().get("checkpoint_every", 1),
                "checkpoint_mb": size_mb,
                "epoch_s_without": plain,
                "epoch_s_with": saving,
            },
        }
    )


# ------------------------------------------------------------------------- kill and resume

# CUDA: a WRN-16-8 on 20,000 synthetic images of 100 classes, the wrn28_10 space's recipe and
# GPU augmentation, MixUp/CutMix as sampled: under a second per epoch on an H100, long enough
# to SIGKILL mid-trial, short enough for three uninterrupted-or-resumed runs in the budget.
# The workers run deterministically (benchmarks.deterministic): values must be equal exactly.
CUDA_TRIAL = [
    "--dataset", "synthetic", "--device", "cuda", "--val-size", "2000", "--pruner", "none",
    "--sampler", "random", "--set", "depth=16", "--set", "width=8",
    "--set", "synthetic_train_size=20000", "--set", "synthetic_test_size=100",
]  # fmt: skip


def kill_resume_part(opts: Options, emit: Emit) -> None:
    """SIGKILL a worker mid-trial twice, restart it; compare the retry with uninterrupted runs."""
    from benchmarks import kill_resume as kr  # imports optuna: only in this part's process
    from study.records import TrialAttrs

    if opts.quick:
        args = [a if a != "cpu" else opts.device.type for a in kr.FAST_TRIAL]
        epochs, trials, kill_after, references = 4, 1, [2], 1
    else:
        args = [a if a != "cuda" else opts.device.type for a in CUDA_TRIAL]
        epochs, trials, kill_after, references = 8, 2, [2, 5], 2
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if opts.device.type == "cpu":
        env["OMP_NUM_THREADS"] = "1"  # two cores shared with other work
    with tempfile.TemporaryDirectory(prefix="acceptance-kill-") as tmp:
        folder = Path(tmp)
        killed = kr.kill_and_resume(args, folder / "killed", epochs, trials, kill_after, env)
        retry = kr.retried_trial(killed["trials"])
        result: dict[str, Any] = {
            "device": retry.user_attrs.get(TrialAttrs.DEVICE, opts.device.type),
            "trials_lost": killed["trials_lost"],
            "trials": trials,
            "epochs": epochs,
            "killed_at_epochs": killed["killed_at_epochs"],
            "resumed_from_epoch": retry.user_attrs.get(TrialAttrs.RESUMED_FROM_EPOCH),
            "resumed_values": kr.per_epoch(retry),
            "values_equal": None,
        }
        emit({"kill_resume": result})
        runs = [
            kr.uninterrupted_values(args, folder / f"ref{i}", epochs, env, 600, retry.params)
            for i in range(references)
        ]
    config, reference = runs[0]
    noise = None  # two uninterrupted runs' gap: not 0 would mean training is not repeatable
    if len(runs) > 1:
        noise = kr.compare_values(runs[1][1], reference, 0.0)["max_abs_diff"]
    same = kr.compare_values(result["resumed_values"], reference, 0.0)  # exactly, as on CPU
    retry_config = retry.user_attrs.get(TrialAttrs.CONFIG)
    # what the runs compute: execution keys (data_dir as a resumed study resolves it) aside
    configs_equal = (
        None
        if config is None or retry_config is None
        else comparable(config) == comparable(retry_config)
    )
    result.update(
        same,
        configs_equal=configs_equal,
        reference_values=reference,
        run_to_run_diff=noise,
    )
    result["values_equal"] = bool(same["values_equal"] and configs_equal is not False)
    emit({"kill_resume": result})


# ----------------------------------------------------------------------------- real data


def _read_idx(path: Path, images: bool) -> np.ndarray:
    """An idx file's payload (uint8), its header checked: images (N, 28, 28) or labels (N,)."""
    try:
        with gzip.open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__})") from None
    offset = 16 if images else 8
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= offset else None
    if magic != IDX_MAGIC[images]:
        raise ValueError(f"{path}: not an idx{3 if images else 1} file")
    data = np.frombuffer(raw, np.uint8, offset=offset)
    return data.reshape(-1, 28, 28) if images else data


def find_fashion_gz(given: Path | None) -> Path:
    names = [n for pair in FASHION_FILES.values() for n in pair]
    for folder in [given] if given is not None else FASHION_GZ_DIRS:
        if all((folder / n).is_file() for n in names):
            return folder
    where = given if given is not None else " or ".join(map(str, FASHION_GZ_DIRS))
    raise FileNotFoundError(f"no Fashion-MNIST files ({', '.join(names)}) in {where}")


def fashion_to_cifar(
    src: Path, out_dir: Path, train: int | None = None, test: int | None = None
) -> dict[str, int]:
    """Fashion-MNIST's idx .gz files as ``out_dir/cifar-100-python``, as fashion-cifar does.

    28x28 grey padded to 32x32 and copied to R, G and B; 100 declared classes (10 used); a
    subset is a fixed random sample (numpy seed 0). Returns the images written per split.
    """
    parts = {}
    for split, n in (("train", train), ("test", test)):
        images_file, labels_file = FASHION_FILES[split]
        images = _read_idx(src / images_file, True)
        labels = _read_idx(src / labels_file, False)
        if len(images) != len(labels):
            raise ValueError(f"{src}: {len(images)} {split} images but {len(labels)} labels")
        keep = np.random.default_rng(0).permutation(len(images))[:n]
        padded = np.pad(images[keep], ((0, 0), (2, 2), (2, 2)))
        rgb = np.repeat(padded[:, :, :, None], 3, axis=3)  # grey to R, G and B (HWC)
        parts[split] = ImageSet(rgb, labels[keep].astype(np.int64))
    write_cifar100(out_dir, parts["train"], parts["test"])
    return {split: len(part) for split, part in parts.items()}


def fashion_config(opts: Options) -> TrainConfig:
    epochs = opts.fashion_epochs or (2 if opts.quick else FASHION_EPOCHS)
    overrides: dict[str, Any] = {
        **FASHION_RECIPE,
        "device": opts.device.type,
        "epochs": epochs,
        "eval_split": "test",
        "workers": 0 if opts.quick else -1,
    }
    if opts.quick:
        overrides.update(QUICK_NET, pipeline="gpu")  # the CUDA path's code, on CPU tensors
    return load_space("light").recipe_config(**{**overrides, **opts.fashion_sets})


def real_data_part(opts: Options, emit: Emit) -> None:
    """WRN-16-8 trained on the whole Fashion-MNIST training set, scored on its test set."""
    cfg = fashion_config(opts)
    quick_train, quick_test = QUICK_FASHION_IMAGES
    n_train = opts.fashion_train or (quick_train if opts.quick else None)
    n_test = opts.fashion_test or (quick_test if opts.quick else None)
    src = find_fashion_gz(opts.fashion_gz)
    with tempfile.TemporaryDirectory(prefix="acceptance-fashion-") as tmp:
        counts = fashion_to_cifar(src, Path(tmp), n_train, n_test)
        train_set, test_set = load("cifar100", tmp, download=False)  # the project's own reader
    splits = Splits(train_set, test_set, "test", cfg.model.num_classes)
    net = network_name(cfg.model.depth, cfg.model.width)
    result: dict[str, Any] = {
        "dataset": "fashion-mnist",
        "model": net,
        "epochs": cfg.run.epochs,
        "test_acc": None,
        "seconds": None,
        "train_images": counts["train"],
        "test_images": counts["test"],
        "source": str(src),
        "overrides": {**FASHION_RECIPE, **opts.fashion_sets},
        "test_acc_per_epoch": [],
    }

    def on_epoch(stats: Any) -> None:
        result["test_acc_per_epoch"].append(stats.eval_acc)
        print(f"fashion epoch {stats.epoch}: test {stats.eval_acc:.4f}", flush=True)
        emit({"real_data": result})

    start = time.perf_counter()
    trained = train(cfg, on_epoch, splits=splits)
    result.update(
        test_acc=trained.final_acc,
        seconds=time.perf_counter() - start,
        train_seconds=sum(trained.epoch_seconds),
        images_per_s=trained.images_per_s,
    )
    emit({"real_data": result})


PARTS: dict[str, Callable[[Options, Emit], None]] = {
    "throughput": throughput_part,
    "memory": memory_part,
    "checkpoint": checkpoint_part,
    "real_data": real_data_part,
    "kill_resume": kill_resume_part,
    "compiled": compiled_part,
}

