"""Shared fixtures: small files in the real ``cifar-100-python`` pickle layout, tiny configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from wrn.config import TrainConfig
from wrn.data import make_synthetic, write_cifar100

# a WRN-10-1 on a few hundred images: the whole training path in well under a second per epoch
TINY = {
    "depth": 10,
    "width": 1,
    "batch_size": 32,
    "epochs": 2,
    "workers": 0,
    "device": "cpu",
    "augmentation": "basic",
    "mixup_prob": 0.0,
    "cutmix_prob": 0.0,
    "lr": 0.1,
}


def write_synthetic_cifar(
    root: Path, n_train: int = 400, n_test: int = 200, seed: int = 0
) -> Path:
    """Learnable images written as ``root/cifar-100-python/{train,test,meta}``."""
    return write_cifar100(root, *make_synthetic(100, n_train, n_test, seed=seed))


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_cifar(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_config() -> TrainConfig:
    """WRN-10-1 on 600 synthetic 10-class images, CPU, two epochs."""
    return TrainConfig.from_flat(
        {
            **TINY,
            "dataset": "synthetic",
            "num_classes": 10,
            "synthetic_train_size": 600,
            "synthetic_test_size": 100,
            "val_size": 100,
        }
    )


@pytest.fixture
def cifar_writer():
    return write_synthetic_cifar
