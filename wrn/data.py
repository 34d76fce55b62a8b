"""The data a run trains on: a data set from disk (:mod:`wrn.datasets`) or a synthetic stand-in,
its validation split, and the loaders."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from wrn.augment import Transform, reseed
from wrn.config import DataConfig
from wrn.datasets import SOURCES, DataError, DataIdentity, ImageSet, identify, load

SYNTHETIC_DATA_SEED = 20240607  # the synthetic set is one fixed dataset, whatever the run seed


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    eval: ImageSet
    eval_name: str  # "val" (held out of train) or "test"
    num_classes: int


def make_synthetic(
    num_classes: int, n_train: int, n_test: int, seed: int = SYNTHETIC_DATA_SEED
) -> tuple[ImageSet, ImageSet]:
    """Learnable stand-in for CIFAR: each class is a blocky colour template plus pixel noise."""
    rng = np.random.default_rng(seed)
    # 4x4 colour cells upsampled to 32x32: coarse enough that crops and flips keep the class
    templates = rng.integers(40, 216, size=(num_classes, 4, 4, 3), dtype=np.int16)
    templates = templates.repeat(8, axis=1).repeat(8, axis=2)

    def draw(n: int) -> ImageSet:
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        images = np.empty((n, 32, 32, 3), dtype=np.uint8)
        for start in range(0, n, 8192):  # bounded memory for CIFAR-sized sets
            part = labels[start : start + 8192]
            noise = rng.normal(0.0, 48.0, size=(len(part), 32, 32, 3)).astype(np.int16)
            images[start : start + len(part)] = np.clip(templates[part] + noise, 0, 255)
        return ImageSet(images, labels)

    return draw(n_train), draw(n_test)


def stratified_split(
    labels: np.ndarray, val_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices; each class keeps its share of the validation set."""
    n = len(labels)
    if not 0 < val_size < n:
        raise DataError(
            f"val_size must be in [1, {n - 1}] for {n} training images, got {val_size}"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * val_size / n
    take = np.floor(exact).astype(int)
    # largest remainders get the leftover slots, ties broken at random
    short = val_size - take.sum()
    order = np.lexsort((rng.random(len(classes)), -(exact - take)))
    take[order[:short]] += 1
    val = [
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx


def _synthetic(cfg: DataConfig, num_classes: int) -> tuple[ImageSet, ImageSet]:
    return make_synthetic(num_classes, cfg.synthetic_train_size, cfg.synthetic_test_size)


def load_splits(cfg: DataConfig, num_classes: int, seed: int) -> Splits:
    """The training set and the set scored each epoch (validation split, or test for reruns)."""
    if cfg.dataset == "synthetic":
        train, test = _synthetic(cfg, num_classes)
    else:
        source = SOURCES[cfg.dataset]
        if num_classes != source.classes:
            raise DataError(
                f"{source.title} has {source.classes} classes; the model has {num_classes}"
            )
        train, test = load(cfg.dataset, cfg.data_dir, cfg.download)
    if cfg.eval_split == "test":
        return Splits(train, test, "test", num_classes)
    train_idx, val_idx = stratified_split(train.labels, cfg.val_size, seed)
    return Splits(train.subset(train_idx), train.subset(val_idx), "val", num_classes)


def data_identity(cfg: DataConfig, num_classes: int) -> DataIdentity:
    """What ``cfg`` reads: a data set's folder, counts and file fingerprint, or the synthetic
    set's recipe (it is one fixed set for given sizes and classes)."""
    if cfg.dataset != "synthetic":
        return identify(cfg.dataset, cfg.data_dir)
    recipe = (
        f"{SYNTHETIC_DATA_SEED}:{num_classes}:{cfg.synthetic_train_size}:{cfg.synthetic_test_size}"
    )
    return DataIdentity(
        "synthetic",
        "",
        cfg.synthetic_train_size,
        cfg.synthetic_test_size,
        hashlib.sha256(recipe.encode()).hexdigest()[:16],
    )


def sample_seed_everything(seed: int) -> None:
    """Seed every RNG an augmentation might draw from (python, numpy, torch)."""
    random.seed(seed)
    np.random.seed(seed)
    # the CPU generator alone: torch.manual_seed also reseeds CUDA and costs ~75 us per image
    torch.default_generator.manual_seed(seed)


class AugmentedImages(Dataset):
    """Items are ``(index, seed)`` pairs, so each image's augmentation is fixed by the sampler.

    This makes an epoch's batches independent of the worker count and exactly reproducible
    when a run resumes mid-way, with persistent workers too.
    """

    def __init__(self, data: ImageSet, transform: Transform) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        sample_seed_everything(seed)
        reseed(self.transform, seed)  # albumentations keeps its own RNG
        return self.transform(self.data.images[index]), int(self.data.labels[index])


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, per-image seed)``; the order and seeds depend only on (seed, epoch)."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n = n
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**31 - 1, size=self.n)
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))


def resolve_workers(workers: int) -> int:
    return min(8, os.cpu_count() or 1) if workers < 0 else workers


def make_loader(
    data: ImageSet,
    transform: Transform,
    batch_size: int,
    train: bool,
    workers: int,
    seed: int,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``data``; call ``loader.sampler.set_epoch(e)`` before each epoch."""
    workers = resolve_workers(workers)
    return DataLoader(
        AugmentedImages(data, transform),
        batch_size=batch_size,
        sampler=EpochSampler(len(data), shuffle=train, seed=seed),
        # full batches keep BatchNorm statistics and the LR schedule's step count stable
        drop_last=train and len(data) > batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
