"""The data sets on disk: each layout read, fetched with its checksum, refused when wrong,
identified by a fingerprint; small generated files only (nothing is downloaded)."""

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest

from wrn.config import TrainConfig
from wrn.data import data_identity, load_splits, make_synthetic
from wrn.dataset_writers import write_cifar10, write_cifar100, write_fashion_mnist
from wrn.datasets import SOURCES, DataError, Download, identify, load


def _serve(monkeypatch: pytest.MonkeyPatch, url: str, md5: str) -> None:
    """CIFAR-100's download pointed at a local archive."""
    source = SOURCES["cifar100"]
    served = dataclasses.replace(source, downloads=(Download(url, md5, unpack=True),))
    monkeypatch.setitem(SOURCES, "cifar100", served)


def test_loads_the_cifar_pickle_layout(cifar_dir: Path) -> None:
    train, test = load("cifar100", cifar_dir, download=False)
    assert train.images.shape == (400, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (200, 32, 32, 3)
    assert train.labels.dtype == np.int64 and set(train.labels) == set(range(100))


def test_write_cifar100_round_trips_through_the_loader(tmp_path: Path) -> None:
    train, test = make_synthetic(100, 150, 120, seed=4)
    assert write_cifar100(tmp_path, train, test) == tmp_path
    loaded_train, loaded_test = load("cifar100", tmp_path, download=False)
    for written, loaded in ((train, loaded_train), (test, loaded_test)):
        assert np.array_equal(written.images, loaded.images)
        assert np.array_equal(written.labels, loaded.labels)


def test_pixel_order_is_hwc_from_chw_rows(tmp_path: Path, cifar_writer) -> None:
    cifar_writer(tmp_path, n_train=100, n_test=100)
    with (tmp_path / "cifar-100-python" / "train").open("rb") as f:
        raw = pickle.load(f)["data"]
    train, _ = load("cifar100", tmp_path, download=False)
    # the first 1024 bytes of a row are the red plane, row-major
    assert np.array_equal(train.images[0, :, :, 0].ravel(), raw[0, :1024])
    assert np.array_equal(train.images[0, :, :, 2].ravel(), raw[0, 2048:])


def test_missing_directory_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        load("cifar100", tmp_path / "nowhere", download=False)


def test_download_failure_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr("wrn.datasets.fetch_and_extract", refuse)
    with pytest.raises(DataError, match="could not be downloaded"):
        load("cifar100", tmp_path, download=True)


def _archive(tmp_path: Path, cifar_writer) -> tuple[str, str]:
    """A small tarball in the official archive's layout, served from a file:// URL."""
    import hashlib
    import tarfile

    source = tmp_path / "source"
    cifar_writer(source, n_train=100, n_test=100)
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-100-python", arcname="cifar-100-python")
    return archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_fetches_checks_and_unpacks_the_archive(
    tmp_path: Path, cifar_writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, md5 = _archive(tmp_path, cifar_writer)
    _serve(monkeypatch, url, md5)
    train, test = load("cifar100", tmp_path / "data", download=True)
    assert len(train) == 100 and len(test) == 100


def test_a_corrupt_download_is_refused_and_removed(
    tmp_path: Path, cifar_writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = _archive(tmp_path, cifar_writer)
    _serve(monkeypatch, url, "0" * 32)
    with pytest.raises(DataError, match="MD5"):
        load("cifar100", tmp_path / "data", download=True)
    assert not (tmp_path / "data").exists()  # nothing left behind


def test_wrong_layout_is_rejected(tmp_path: Path, cifar_writer) -> None:
    cifar_writer(tmp_path, n_train=100, n_test=100)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-100 pickle"):
        load("cifar100", tmp_path, download=False)
    with (tmp_path / "cifar-100-python" / "train").open("wb") as f:
        pickle.dump({"data": np.zeros((3, 10), np.uint8), "fine_labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match="shape"):
        load("cifar100", tmp_path, download=False)


class _Poison:
    """Pickles as a call of os.system: loading it with pickle.load runs the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["train", "meta"])
def test_a_poisoned_pickle_is_refused_unrun(tmp_path: Path, cifar_writer, name: str) -> None:
    data = cifar_writer(tmp_path / "data", n_train=100, n_test=100)
    marker = tmp_path / "ran"
    entry = {"data": _Poison(marker), "fine_labels": [0], "fine_label_names": [_Poison(marker)]}
    path = data / "cifar-100-python" / name
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError, match=rf"^{path}: refused: the pickle names posix\.system"):
        load("cifar100", data, download=False)
    assert not marker.exists()


# numpy 1.x (and the official CIFAR-100 files, Python 2's protocol 2) name numpy.core
@pytest.mark.parametrize(
    ("protocol", "numpy_1"),
    [(p, False) for p in range(pickle.HIGHEST_PROTOCOL + 1)] + [(p, True) for p in range(3)],
)
def test_every_pickle_protocol_of_the_format_loads(
    tmp_path: Path, cifar_writer, protocol: int, numpy_1: bool
) -> None:
    data = cifar_writer(tmp_path, n_train=100, n_test=100)
    path = data / "cifar-100-python" / "train"
    with path.open("rb") as f:
        entry = pickle.load(f)
    entry["labels_array"] = np.asarray(entry["fine_labels"])  # an int64 array and a scalar too
    entry["first_label"] = entry["labels_array"][0]
    raw = pickle.dumps(entry, protocol=protocol)
    if numpy_1:  # protocols 0-2 name globals in newline-ended text: no lengths to fix
        raw = raw.replace(b"numpy._core", b"numpy.core")
        assert b"numpy.core.multiarray\n_reconstruct" in raw
    path.write_bytes(raw)
    train, _ = load("cifar100", data, download=False)
    assert np.array_equal(train.images.transpose(0, 3, 1, 2).reshape(100, -1), entry["data"])


def test_missing_data_names_the_directory_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^\./data/cifar-100-python: "):
        load("cifar100", "./data", download=False)


@pytest.mark.parametrize("exists", [False, True])
def test_a_failed_download_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    def half_done(download: Download, root: Path) -> None:
        # as a real fetch does: the folder, a partial archive, then the network fails
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "cifar-100-python.tar.gz").write_bytes(b"partial")
        raise OSError("network unreachable")

    monkeypatch.setattr("wrn.datasets.fetch_and_extract", half_done)
    monkeypatch.chdir(tmp_path)
    if exists:  # the user's folder: only what the download made goes
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "mine.txt").write_text("the user's file")
    given = "./data" if exists else "./data/new"
    with pytest.raises(DataError, match=rf"^CIFAR-100 is not in {given} and could not be"):
        load("cifar100", given, download=True)
    assert (tmp_path / "data").exists() == exists  # ./data/new's parent was made too
    if exists:
        assert [p.name for p in (tmp_path / "data").iterdir()] == ["mine.txt"]


def test_cifar10_batches_load_as_one_training_set(tmp_path: Path) -> None:
    train, test = make_synthetic(10, 230, 50, seed=1)
    write_cifar10(tmp_path, train, test)
    loaded_train, loaded_test = load("cifar10", tmp_path, download=False)
    assert np.array_equal(loaded_train.images, train.images)  # five batches, in order
    assert np.array_equal(loaded_train.labels, train.labels)
    assert np.array_equal(loaded_test.images, test.images)


@pytest.mark.parametrize("layout", ["fashion-mnist", ".", "FashionMNIST/raw", "uncompressed"])
def test_fashion_mnist_reads_its_idx_files_in_each_usual_layout(
    tmp_path: Path, layout: str
) -> None:
    train, test = make_synthetic(10, 120, 40, seed=2)
    folder = write_fashion_mnist(
        tmp_path / ("." if layout == "uncompressed" else layout), train, test
    )
    if layout == "uncompressed":
        import gzip

        for gz in folder.glob("*.gz"):
            gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
            gz.unlink()
    loaded_train, loaded_test = load("fashion-mnist", tmp_path, download=False)
    assert loaded_train.images.shape == (120, 32, 32, 3)
    grey = train.images[:, 2:30, 2:30, 0]
    assert np.array_equal(loaded_train.images[:, 2:30, 2:30, 1], grey)  # grey in R, G and B
    assert not loaded_train.images[:, :2].any() and not loaded_train.images[:, :, 30:].any()
    assert np.array_equal(loaded_train.labels, train.labels) and len(loaded_test) == 40


def test_a_truncated_idx_file_is_refused_in_one_line(tmp_path: Path) -> None:
    import gzip

    train, test = make_synthetic(10, 50, 20, seed=2)
    folder = write_fashion_mnist(tmp_path / "fashion-mnist", train, test)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(DataError, match="the header says"):
        load("fashion-mnist", tmp_path, download=False)


def test_fashion_mnist_downloads_each_file_with_its_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    train, test = make_synthetic(10, 60, 20, seed=3)
    served = write_fashion_mnist(tmp_path / "served", train, test)
    source = SOURCES["fashion-mnist"]
    downloads = tuple(
        Download((served / n).as_uri(), hashlib.md5((served / n).read_bytes()).hexdigest(), False)
        for n in source.files
    )
    monkeypatch.setitem(SOURCES, "fashion-mnist", dataclasses.replace(source, downloads=downloads))
    loaded, _ = load("fashion-mnist", tmp_path / "data", download=True)
    assert len(loaded) == 60 and (tmp_path / "data" / "fashion-mnist").is_dir()
    wrong = (*downloads[:3], dataclasses.replace(downloads[3], md5="0" * 32))
    monkeypatch.setitem(SOURCES, "fashion-mnist", dataclasses.replace(source, downloads=wrong))
    with pytest.raises(DataError, match="MD5"):
        load("fashion-mnist", tmp_path / "other", download=True)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(("dataset", "classes"), [("cifar10", 10), ("fashion-mnist", 10)])
def test_the_model_follows_the_data_sets_classes(dataset: str, classes: int) -> None:
    cfg = TrainConfig().replace(dataset=dataset)
    assert cfg.model.num_classes == classes
    assert TrainConfig.from_flat({"dataset": dataset}).model.num_classes == classes
    assert TrainConfig().replace(dataset="synthetic", num_classes=7).model.num_classes == 7


def test_a_model_with_other_classes_than_its_data_set_is_refused(tmp_path: Path) -> None:
    train, test = make_synthetic(10, 60, 20, seed=3)
    write_cifar10(tmp_path, train, test)
    cfg = TrainConfig.from_flat(
        {"dataset": "cifar10", "num_classes": 100, "data_dir": str(tmp_path)}
    )
    with pytest.raises(DataError, match="CIFAR-10 has 10 classes; the model has 100"):
        load_splits(cfg.data, cfg.model.num_classes, seed=0)


def test_the_identity_tells_one_folder_from_another(tmp_path: Path, cifar_writer) -> None:
    first = identify("cifar100", cifar_writer(tmp_path / "a", n_train=100, n_test=50, seed=0))
    again = identify("cifar100", cifar_writer(tmp_path / "b", n_train=100, n_test=50, seed=0))
    other = identify("cifar100", cifar_writer(tmp_path / "c", n_train=100, n_test=50, seed=1))
    assert (first.train_images, first.test_images) == (100, 50)
    assert first.folder == str((tmp_path / "a" / "cifar-100-python").resolve())
    assert first.fingerprint == again.fingerprint != other.fingerprint
    cfg = TrainConfig.from_flat({"dataset": "synthetic", "num_classes": 10})
    assert data_identity(cfg.data, 10) == data_identity(cfg.data, 10)
    assert data_identity(cfg.data, 10).fingerprint != data_identity(cfg.data, 5).fingerprint
