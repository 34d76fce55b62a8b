from pathlib import Path

import numpy as np
import pytest
import torch

from wrn.augment import build_transform
from wrn.config import DataConfig
from wrn.data import DataError, load_splits, make_loader, make_synthetic, stratified_split
from wrn.datasets import load


def test_stratified_split_is_balanced_and_fixed_by_seed() -> None:
    labels = np.repeat(np.arange(100), 500)  # CIFAR-100: 500 per class
    train_idx, val_idx = stratified_split(labels, 5000, seed=3)
    assert len(val_idx) == 5000 and len(train_idx) == 45_000
    assert not set(train_idx) & set(val_idx)
    assert np.all(np.bincount(labels[val_idx], minlength=100) == 50)
    again, _ = stratified_split(labels, 5000, seed=3)
    other, _ = stratified_split(labels, 5000, seed=4)
    assert np.array_equal(train_idx, again) and not np.array_equal(train_idx, other)


def test_stratified_split_with_fewer_val_images_than_classes() -> None:
    labels = np.repeat(np.arange(100), 4)
    _, val_idx = stratified_split(labels, 30, seed=0)
    assert len(val_idx) == 30 and len(set(labels[val_idx])) == 30


@pytest.mark.parametrize("size", [0, 400, 401])
def test_stratified_split_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(DataError, match="val_size"):
        stratified_split(np.zeros(400, np.int64), size, seed=0)


def test_val_split_never_contains_test_images(cifar_dir: Path) -> None:
    cfg = DataConfig(data_dir=str(cifar_dir), download=False, val_size=100)
    splits = load_splits(cfg, 100, seed=0)
    assert splits.eval_name == "val" and len(splits.train) == 300 and len(splits.eval) == 100
    _, test = load("cifar100", cifar_dir, download=False)
    rerun = load_splits(DataConfig(data_dir=str(cifar_dir), eval_split="test"), 100, seed=0)
    assert rerun.eval_name == "test" and len(rerun.train) == 400
    assert np.array_equal(rerun.eval.images, test.images)


def test_synthetic_is_learnable_and_fixed() -> None:
    train, test = make_synthetic(10, 500, 100)
    again, _ = make_synthetic(10, 500, 100)
    assert np.array_equal(train.images, again.images)
    # class means differ far more than the noise within a class: a linear probe separates them
    means = np.stack([train.images[train.labels == c].mean(0) for c in range(10)])
    nearest = [np.argmin(((means - img) ** 2).sum(axis=(1, 2, 3))) for img in test.images]
    assert np.mean(np.array(nearest) == test.labels) > 0.9


def test_loader_batches_are_independent_of_worker_count() -> None:
    train, _ = make_synthetic(10, 64, 10)
    batches = []
    for workers in (0, 2):
        loader = make_loader(
            train, build_transform("basic", train=True), 16, train=True, workers=workers, seed=5
        )
        loader.sampler.set_epoch(2)
        batches.append(torch.cat([x for x, _ in loader]))
    assert torch.equal(batches[0], batches[1])
    loader.sampler.set_epoch(3)
    assert not torch.equal(torch.cat([x for x, _ in loader]), batches[1])


@pytest.mark.parametrize(("images", "batch_size"), [(100, 32), (96, 32), (32, 32), (20, 32)])
def test_both_pipelines_make_the_batches_check_runnable_counts(
    images: int, batch_size: int
) -> None:
    from wrn.epoch_plan import train_batches
    from wrn.gpu_data import GpuBatches

    data, _ = make_synthetic(10, images, 10)
    cpu = make_loader(data, build_transform("basic", train=True), batch_size, True, 0, seed=0)
    gpu = GpuBatches(data, torch.device("cpu"), batch_size, True, "basic", seed=0)
    assert len(cpu) == len(list(cpu)) == train_batches(images, batch_size)
    assert len(gpu) == len(list(gpu)) == train_batches(images, batch_size)
