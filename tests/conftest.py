"""Shared fixtures: small files in the real ``cifar-100-python`` pickle layout, tiny configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.tiny import TINY
from wrn.config import TrainConfig
from wrn.data import make_synthetic
from wrn.dataset_writers import write_cifar100


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


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for a module (``pytest.mark.usefixtures("one_thread")``).

    A WRN-10-1 on 32 images gains nothing from more, and other test processes share the cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def quiet_optuna() -> Iterator[None]:
    """Optuna's info logs and its experimental-feature warnings off (a test drives pruners)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
