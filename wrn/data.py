"""CIFAR-100 (the standard ``cifar-100-python`` pickles), a synthetic stand-in, splits, loaders."""

from __future__ import annotations

import os
import pickle
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from wrn.augment import Transform, reseed
from wrn.config import DataConfig

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"  # of the official archive
CIFAR100_DIR = "cifar-100-python"
SYNTHETIC_DATA_SEED = 20240607  # the synthetic set is one fixed dataset, whatever the run seed


class DataError(ValueError):
    """The data directory is missing, unreadable or not in the expected layout."""


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # (N, 32, 32, 3) uint8, HWC
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    eval: ImageSet
    eval_name: str  # "val" (held out of train) or "test"
    num_classes: int


# The only globals a CIFAR pickle names: numpy arrays (dtype, ndarray, and the reconstructors of
# protocols 0-4 and 5, under numpy 1.x's and 2.x's module names), numpy scalars, and bytes as
# protocols 0-2 write them. Anything else (os.system, builtins.eval ...) would run code on load.
_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class _RefusedPickle(pickle.UnpicklingError):
    pass


class _CifarUnpickler(pickle.Unpickler):
    """Builds dicts, lists, str, bytes, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise _RefusedPickle(f"{module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path}: file is missing") from None
    except _RefusedPickle as e:
        raise DataError(
            f"{path}: refused: the pickle names {e}, which no CIFAR file holds "
            "(a CIFAR pickle holds only dicts, lists, strings, numbers and numpy arrays)"
        ) from None
    except Exception as e:  # truncated or foreign files raise many different errors
        raise DataError(f"{path}: not a CIFAR-100 pickle ({type(e).__name__})") from None


def _read_batch(path: Path) -> ImageSet:
    entry = _read_pickle(path)
    if not isinstance(entry, dict) or "data" not in entry or "fine_labels" not in entry:
        raise DataError(f"{path}: not a CIFAR-100 batch (needs 'data' and 'fine_labels')")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= 100):
        raise DataError(f"{path}: fine labels must be in [0, 100)")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC
    return ImageSet(np.ascontiguousarray(images), labels)


def write_cifar100(root: Path, train: ImageSet, test: ImageSet) -> Path:
    """Write ``train`` and ``test`` as ``root/cifar-100-python/{train,test,meta}`` pickles.

    The layout :func:`load_cifar100` reads (images as uint8 CHW rows, 100 fine label names);
    returns ``root``, the ``data_dir`` to load it from.
    """
    folder = Path(root) / CIFAR100_DIR
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


def cifar100_present(data_dir: Path) -> bool:
    root = Path(data_dir) / CIFAR100_DIR
    return all((root / name).is_file() for name in ("train", "test", "meta"))


def _shown(data_dir: str | Path, name: str = "") -> str:
    """A path as the user gave it (``./data``, not ``data``), optionally with a child."""
    text = os.fspath(data_dir)
    return f"{text.rstrip('/')}/{name}" if name else text


def fetch_and_extract(url: str, folder: Path, md5: str) -> None:
    """Download ``url`` into ``folder`` (in 1 MiB reads), check its MD5, unpack the tarball.

    urllib rather than torchvision's helper: importing torchvision costs over a second, and
    the refusal of a missing data directory should come as fast as any other bad input.
    """
    import hashlib
    import tarfile
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / url.rsplit("/", 1)[1]
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != md5:
        raise OSError(f"MD5 {digest.hexdigest()} of {archive.name} is not the expected {md5}")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(folder, filter="data")  # "data": no absolute paths, links or devices


def download_cifar100(data_dir: str | Path) -> None:
    """Fetch and unpack the official archive; its MD5 is verified before extraction.

    On failure, whatever the attempt created (the directory itself, the archive, a partial
    ``cifar-100-python``) is removed again.
    """
    folder = Path(data_dir)
    # the outermost missing ancestor: removing it removes every directory the download made
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    created = missing[-1] if missing else None
    leftovers = [
        p
        for p in (folder / CIFAR100_DIR, folder / CIFAR100_URL.rsplit("/", 1)[1])
        if not p.exists()
    ]
    try:
        fetch_and_extract(CIFAR100_URL, folder, CIFAR100_MD5)
    except BaseException as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for p in leftovers:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise  # Ctrl-C: cleaned up, still an interrupt
        raise DataError(
            f"CIFAR-100 is not in {_shown(data_dir)} and could not be downloaded from "
            f"{CIFAR100_URL} ({type(e).__name__}: {e}); put the cifar-100-python folder there"
        ) from None


def load_cifar100(data_dir: str | Path, download: bool = True) -> tuple[ImageSet, ImageSet]:
    """The training (50,000) and test (10,000) sets from ``data_dir/cifar-100-python``.

    The pickles themselves are not checksummed, so any directory of the same layout loads.
    Errors name the directory as given (``./data``).
    """
    given = data_dir
    data_dir = Path(data_dir)
    if not cifar100_present(data_dir):
        if not download:
            raise DataError(
                f"{_shown(given, CIFAR100_DIR)}: CIFAR-100 files train/test/meta missing"
            )
        if data_dir.exists() and not data_dir.is_dir():
            raise DataError(f"{_shown(given)}: not a directory")
        download_cifar100(given)
    root = data_dir / CIFAR100_DIR
    meta = _read_pickle(root / "meta")
    if not isinstance(meta, dict) or len(meta.get("fine_label_names", ())) != 100:
        raise DataError(f"{root / 'meta'}: needs 100 'fine_label_names'")
    return _read_batch(root / "train"), _read_batch(root / "test")


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


def load_splits(cfg: DataConfig, num_classes: int, seed: int) -> Splits:
    """The training set and the set scored each epoch (validation split, or test for reruns)."""
    if cfg.dataset == "synthetic":
        train, test = make_synthetic(
            num_classes, cfg.synthetic_train_size, cfg.synthetic_test_size
        )
    else:
        if num_classes != 100:
            raise DataError(f"CIFAR-100 has 100 classes; the model has {num_classes}")
        train, test = load_cifar100(cfg.data_dir, cfg.download)
    if cfg.eval_split == "test":
        return Splits(train, test, "test", num_classes)
    train_idx, val_idx = stratified_split(train.labels, cfg.val_size, seed)
    return Splits(train.subset(train_idx), train.subset(val_idx), "val", num_classes)


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
