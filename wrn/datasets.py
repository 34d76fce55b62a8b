"""The image data sets read from disk: CIFAR-100, CIFAR-10 and Fashion-MNIST.

Each is read from its usual layout (the ``cifar-*-python`` pickles; Fashion-MNIST's four idx
files, gzipped or not), fetched with its checksum when missing and a network is there, and
identified by a fingerprint of the files read, so a study can tell later that it is given the
same data. Every set comes out as 32x32 RGB uint8 images: Fashion-MNIST's 28x28 grey photos are
padded by 2 pixels and copied to R, G and B.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wrn.config import DATASET_CLASSES


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
class Download:
    url: str
    md5: str  # of the file as served
    unpack: bool  # a .tar.gz, extracted into the data directory


@dataclass(frozen=True)
class Source:
    """Where a data set lives under ``data_dir`` and how it is read and fetched."""

    name: str  # the DataConfig.dataset value
    title: str
    folder: str  # under data_dir; downloads go there (or its archive unpacks to it)
    files: tuple[str, ...]  # every file the reader needs, in the order they are fingerprinted
    downloads: tuple[Download, ...]
    read: Callable[[Path, Source], tuple[ImageSet, ImageSet]]
    # other folders, relative to data_dir, that hold the same files in a common layout
    also_in: tuple[str, ...] = ()

    @property
    def classes(self) -> int:
        return DATASET_CLASSES[self.name]


@dataclass(frozen=True)
class DataIdentity:
    """What a run read: enough to tell a later command that it is given other data."""

    dataset: str
    folder: str  # absolute; "" for the synthetic set
    train_images: int
    test_images: int
    fingerprint: str  # sha256 of the files read (16 hex digits), or of the synthetic recipe


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


def _read_pickle(path: Path, title: str) -> dict:
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
        raise DataError(f"{path}: not a {title} pickle ({type(e).__name__})") from None


def _cifar_batch(path: Path, title: str, label_key: str, classes: int) -> ImageSet:
    entry = _read_pickle(path, title)
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise DataError(f"{path}: not a {title} batch (needs 'data' and {label_key!r})")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path}: labels must be in [0, {classes})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC
    return ImageSet(np.ascontiguousarray(images), labels)


def _concat(parts: list[ImageSet]) -> ImageSet:
    return ImageSet(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    )


def _read_cifar(folder: Path, source: Source) -> tuple[ImageSet, ImageSet]:
    """The pickles: the last file is the test batch, the one before it the label names."""
    *train_files, meta_file, test_file = source.files
    names_key, label_key = (
        ("fine_label_names", "fine_labels") if source.classes == 100 else ("label_names", "labels")
    )
    meta = _read_pickle(folder / meta_file, source.title)
    if not isinstance(meta, dict) or len(meta.get(names_key, ())) != source.classes:
        raise DataError(f"{folder / meta_file}: needs {source.classes} {names_key!r}")

    def batch(name: str) -> ImageSet:
        return _cifar_batch(folder / name, source.title, label_key, source.classes)

    return _concat([batch(f) for f in train_files]), batch(test_file)


def _open_idx(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__})") from None


def _idx(path: Path, dims: int) -> np.ndarray:
    """An idx file (the MNIST format): a big-endian header of dims, then uint8 values."""
    raw = _open_idx(path)
    header = 4 + 4 * dims
    if len(raw) < header or raw[:4] != bytes((0, 0, 8, dims)):
        raise DataError(f"{path}: not an idx file of {dims}-d uint8 data")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path}: {len(raw) - header} bytes of data, the header says {shape}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_path(folder: Path, name: str) -> Path:
    """``name`` (``*.gz``) or its uncompressed twin, whichever is there."""
    plain = folder / name.removesuffix(".gz")
    return plain if plain.is_file() and not (folder / name).is_file() else folder / name


def _read_fashion(folder: Path, source: Source) -> tuple[ImageSet, ImageSet]:
    parts = []
    for images_file, labels_file in zip(source.files[::2], source.files[1::2], strict=True):
        grey = _idx(_idx_path(folder, images_file), 3)
        labels = _idx(_idx_path(folder, labels_file), 1).astype(np.int64)
        if grey.shape[1:] != (28, 28) or len(labels) != len(grey):
            raise DataError(f"{folder}: {images_file} and {labels_file} do not match")
        if len(labels) and labels.max() >= source.classes:
            raise DataError(f"{folder / labels_file}: labels must be in [0, {source.classes})")
        padded = np.pad(grey, ((0, 0), (2, 2), (2, 2)))  # 28x28 -> 32x32, as for a WRN on CIFAR
        parts.append(ImageSet(np.ascontiguousarray(np.repeat(padded[..., None], 3, -1)), labels))
    return parts[0], parts[1]


_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_SOURCES = (
    Source(
        name="cifar100",
        title="CIFAR-100",
        folder="cifar-100-python",
        files=("train", "meta", "test"),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                unpack=True,
            ),
        ),
        read=_read_cifar,
    ),
    Source(
        name="cifar10",
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        files=(*(f"data_batch_{i}" for i in range(1, 6)), "batches.meta", "test_batch"),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                unpack=True,
            ),
        ),
        read=_read_cifar,
    ),
    Source(
        name="fashion-mnist",
        title="Fashion-MNIST",
        folder="fashion-mnist",
        files=(
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
        downloads=tuple(
            Download(_FASHION_URL + name, md5, unpack=False)
            for name, md5 in (
                ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
            )
        ),
        read=_read_fashion,
        # the files themselves in data_dir (Debian's /usr/share/datasets/fashion-mnist), or
        # torchvision's layout
        also_in=(".", "FashionMNIST/raw"),
    ),
)
SOURCES: dict[str, Source] = {s.name: s for s in _SOURCES}


def shown(data_dir: str | Path, name: str = "") -> str:
    """A path as the user gave it (``./data``, not ``data``), optionally with a child."""
    text = os.fspath(data_dir)
    return f"{text.rstrip('/')}/{name}" if name else text


def _file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or for an idx file its uncompressed twin; None when neither is there."""
    for path in (folder / name, folder / name.removesuffix(".gz")):
        if path.is_file():
            return path
    return None


def find(source: Source, data_dir: str | Path) -> Path | None:
    """The folder under ``data_dir`` that holds all of ``source``'s files, if one does."""
    for relative in (source.folder, *source.also_in):
        folder = Path(data_dir) / relative
        if all(_file(folder, name) for name in source.files):
            return folder
    return None


def fetch_and_extract(download: Download, folder: Path) -> None:
    """Download into ``folder`` (in 1 MiB reads), check the MD5, unpack a tarball.

    urllib rather than torchvision's helper: importing torchvision costs over a second, and
    the refusal of a missing data directory should come as fast as any other bad input.
    """
    import tarfile
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / download.url.rsplit("/", 1)[1]
    digest = hashlib.md5()
    with urllib.request.urlopen(download.url, timeout=60) as response, target.open("wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != download.md5:
        raise OSError(
            f"MD5 {digest.hexdigest()} of {target.name} is not the expected {download.md5}"
        )
    if download.unpack:
        with tarfile.open(target, "r:gz") as tar:
            tar.extractall(folder, filter="data")  # "data": no absolute paths, links or devices


def _download(source: Source, data_dir: str | Path) -> None:
    """Fetch every file of ``source``; on failure remove whatever the attempt created."""
    root = Path(data_dir)
    # the outermost missing ancestor: removing it removes every directory the download made
    missing = [p for p in (root, *root.parents) if not p.exists()]
    created = missing[-1] if missing else None
    archives = [root / d.url.rsplit("/", 1)[1] for d in source.downloads if d.unpack]
    leftovers = [p for p in (root / source.folder, *archives) if not p.exists()]
    download = source.downloads[0]
    try:
        for download in source.downloads:
            fetch_and_extract(download, root if download.unpack else root / source.folder)
    except BaseException as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        for p in leftovers:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise  # Ctrl-C: cleaned up, still an interrupt
        raise DataError(
            f"{source.title} is not in {shown(data_dir)} and could not be downloaded from "
            f"{download.url} ({type(e).__name__}: {e}); put the {source.folder} folder there"
        ) from None


def locate(dataset: str, data_dir: str | Path, download: bool = True) -> Path:
    """The folder ``dataset`` is read from, fetched first when missing and ``download``."""
    source = SOURCES[dataset]
    folder = find(source, data_dir)
    if folder is None:
        if not download:
            raise DataError(
                f"{shown(data_dir, source.folder)}: {source.title} files "
                f"{'/'.join(source.files)} missing"
            )
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            raise DataError(f"{shown(data_dir)}: not a directory")
        _download(source, data_dir)
        folder = Path(data_dir) / source.folder
    return folder


def load(dataset: str, data_dir: str | Path, download: bool = True) -> tuple[ImageSet, ImageSet]:
    """The training and test sets of ``dataset`` from ``data_dir``; errors name it as given.

    The files themselves are not checksummed (only downloads are), so any folder of the same
    layout loads; :func:`identify` tells one such folder from another.
    """
    source = SOURCES[dataset]
    return source.read(locate(dataset, data_dir, download), source)


def identify(dataset: str, data_dir: str | Path) -> DataIdentity:
    """``dataset``'s identity in ``data_dir``: its folder, image counts and file fingerprint."""
    source = SOURCES[dataset]
    folder = locate(dataset, data_dir, download=False)
    train, test = source.read(folder, source)
    digest = hashlib.sha256()
    for name in source.files:
        path = _file(folder, name)
        assert path is not None  # locate found them all
        with path.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return DataIdentity(
        dataset, str(folder.resolve()), len(train), len(test), digest.hexdigest()[:16]
    )
