"""Image sets written in each data set's on-disk layout: what tests and benchmarks generate
small copies of, read back by :mod:`wrn.datasets` exactly as the real files are."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from wrn.datasets import SOURCES, ImageSet


def _rows(part: ImageSet) -> np.ndarray:
    return np.ascontiguousarray(part.images.transpose(0, 3, 1, 2).reshape(len(part), -1))


def _pickle(path: Path, entry: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(entry, f)


def write_cifar100(root: Path, train: ImageSet, test: ImageSet) -> Path:
    """Write ``train`` and ``test`` as ``root/cifar-100-python/{train,test,meta}`` pickles.

    The layout :func:`wrn.datasets.load` reads (images as uint8 CHW rows, 100 fine label
    names); returns ``root``, the ``data_dir`` to load it from.
    """
    folder = Path(root) / SOURCES["cifar100"].folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        rows = part.images.transpose(0, 3, 1, 2).reshape(len(part), -1)  # HWC -> CHW rows
        entry = {
            "filenames": [f"img_{i}.png" for i in range(len(part))],
            "batch_label": f"{name} batch",
            "fine_labels": [int(x) for x in part.labels],
            "coarse_labels": [int(x) // 5 for x in part.labels],
            "data": np.ascontiguousarray(rows),
        }
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f)
    meta = {
        "fine_label_names": [f"class_{i}" for i in range(100)],
        "coarse_label_names": [f"super_{i}" for i in range(20)],
    }
    with (folder / "meta").open("wb") as f:
        pickle.dump(meta, f)
    return Path(root)


def write_cifar10(root: Path, train: ImageSet, test: ImageSet, batches: int = 5) -> Path:
    """``root/cifar-10-batches-py``: ``train`` over ``data_batch_1..5``, ``test_batch``, meta."""
    folder = Path(root) / SOURCES["cifar10"].folder
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(len(train)), batches)
    for i, index in enumerate(parts, start=1):
        part = train.subset(index)
        _pickle(folder / f"data_batch_{i}", {"data": _rows(part), "labels": part.labels.tolist()})
    _pickle(folder / "test_batch", {"data": _rows(test), "labels": test.labels.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"class_{i}" for i in range(10)]})
    return Path(root)


def _write_idx(path: Path, values: np.ndarray) -> None:
    header = bytes((0, 0, 8, values.ndim)) + b"".join(
        int(d).to_bytes(4, "big") for d in values.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(values, dtype=np.uint8).tobytes())


def write_fashion_mnist(folder: Path, train: ImageSet, test: ImageSet) -> Path:
    """Fashion-MNIST's four gzipped idx files in ``folder``: the red plane's central 28x28."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = SOURCES["fashion-mnist"].files
    pairs = zip(names[::2], names[1::2], strict=True)
    for (images_file, labels_file), part in zip(pairs, (train, test), strict=True):
        _write_idx(folder / images_file, part.images[:, 2:30, 2:30, 0])
        _write_idx(folder / labels_file, part.labels)
    return folder
