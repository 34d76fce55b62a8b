"""Shared fixtures: small files in the real ``cifar-100-python`` pickle layout, tiny configs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from wrn.config import TrainConfig
from wrn.data import make_synthetic

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


def write_cifar100(root: Path, n_train: int = 400, n_test: int = 200, seed: int = 0) -> Path:
    """Write learnable images as ``root/cifar-100-python/{train,test,meta}`` pickles."""
    train, test = make_synthetic(100, n_train, n_test, seed=seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        data = part.images.transpose(0, 3, 1, 2).reshape(len(part), -1)  # HWC -> CHW rows
        entry = {
            "filenames": [f"img_{i}.png" for i in range(len(part))],
            "batch_label": f"{name} batch",
            "fine_labels": part.labels.tolist(),
            "coarse_labels": (part.labels // 5).tolist(),
            "data": np.ascontiguousarray(data),
        }
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f)
    meta = {
        "fine_label_names": [f"class_{i}" for i in range(100)],
        "coarse_label_names": [f"super_{i}" for i in range(20)],
    }
    with (folder / "meta").open("wb") as f:
        pickle.dump(meta, f)
    return root


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar100(tmp_path_factory.mktemp("data"))


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
    return write_cifar100
