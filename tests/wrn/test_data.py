import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from wrn.augment import build_transform
from wrn.config import DataConfig
from wrn.data import (
    DataError,
    load_cifar100,
    load_splits,
    make_loader,
    make_synthetic,
    stratified_split,
    write_cifar100,
)


def test_loads_the_cifar_pickle_layout(cifar_dir: Path) -> None:
    train, test = load_cifar100(cifar_dir, download=False)
    assert train.images.shape == (400, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (200, 32, 32, 3)
    assert train.labels.dtype == np.int64 and set(train.labels) == set(range(100))


def test_write_cifar100_round_trips_through_the_loader(tmp_path: Path) -> None:
    train, test = make_synthetic(100, 150, 120, seed=4)
    assert write_cifar100(tmp_path, train, test) == tmp_path
    loaded_train, loaded_test = load_cifar100(tmp_path, download=False)
    for written, loaded in ((train, loaded_train), (test, loaded_test)):
        assert np.array_equal(written.images, loaded.images)
        assert np.array_equal(written.labels, loaded.labels)


def test_pixel_order_is_hwc_from_chw_rows(tmp_path: Path, cifar_writer) -> None:
    cifar_writer(tmp_path, n_train=100, n_test=100)
    with (tmp_path / "cifar-100-python" / "train").open("rb") as f:
        raw = pickle.load(f)["data"]
    train, _ = load_cifar100(tmp_path, download=False)
    # the first 1024 bytes of a row are the red plane, row-major
    assert np.array_equal(train.images[0, :, :, 0].ravel(), raw[0, :1024])
    assert np.array_equal(train.images[0, :, :, 2].ravel(), raw[0, 2048:])


def test_missing_directory_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        load_cifar100(tmp_path / "nowhere", download=False)


def test_download_failure_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr("wrn.data.fetch_and_extract", refuse)
    with pytest.raises(DataError, match="could not be downloaded"):
        load_cifar100(tmp_path, download=True)


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
    monkeypatch.setattr("wrn.data.CIFAR100_URL", url)
    monkeypatch.setattr("wrn.data.CIFAR100_MD5", md5)
    train, test = load_cifar100(tmp_path / "data", download=True)
    assert len(train) == 100 and len(test) == 100


def test_a_corrupt_download_is_refused_and_removed(
    tmp_path: Path, cifar_writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = _archive(tmp_path, cifar_writer)
    monkeypatch.setattr("wrn.data.CIFAR100_URL", url)
    monkeypatch.setattr("wrn.data.CIFAR100_MD5", "0" * 32)
    with pytest.raises(DataError, match="MD5"):
        load_cifar100(tmp_path / "data", download=True)
    assert not (tmp_path / "data").exists()  # nothing left behind


def test_wrong_layout_is_rejected(tmp_path: Path, cifar_writer) -> None:
    cifar_writer(tmp_path, n_train=100, n_test=100)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-100 pickle"):
        load_cifar100(tmp_path, download=False)
    with (tmp_path / "cifar-100-python" / "train").open("wb") as f:
        pickle.dump({"data": np.zeros((3, 10), np.uint8), "fine_labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match="shape"):
        load_cifar100(tmp_path, download=False)


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
        load_cifar100(data, download=False)
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
    train, _ = load_cifar100(data, download=False)
    assert np.array_equal(train.images.transpose(0, 3, 1, 2).reshape(100, -1), entry["data"])


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
    _, test = load_cifar100(cifar_dir, download=False)
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
    from wrn.config import train_batches
    from wrn.gpu_data import GpuBatches

    data, _ = make_synthetic(10, images, 10)
    cpu = make_loader(data, build_transform("basic", train=True), batch_size, True, 0, seed=0)
    gpu = GpuBatches(data, torch.device("cpu"), batch_size, True, "basic", seed=0)
    assert len(cpu) == len(list(cpu)) == train_batches(images, batch_size)
    assert len(gpu) == len(list(gpu)) == train_batches(images, batch_size)


def test_missing_data_names_the_directory_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^\./data/cifar-100-python: "):
        load_cifar100("./data", download=False)


@pytest.mark.parametrize("exists", [False, True])
def test_a_failed_download_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    def half_done(url: str, root: Path, md5: str) -> None:
        # as a real fetch does: the folder, a partial archive, then the network fails
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "cifar-100-python.tar.gz").write_bytes(b"partial")
        raise OSError("network unreachable")

    monkeypatch.setattr("wrn.data.fetch_and_extract", half_done)
    monkeypatch.chdir(tmp_path)
    if exists:  # the user's folder: only what the download made goes
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "mine.txt").write_text("the user's file")
    given = "./data" if exists else "./data/new"
    with pytest.raises(DataError, match=rf"^CIFAR-100 is not in {given} and could not be"):
        load_cifar100(given, download=True)
    assert (tmp_path / "data").exists() == exists  # ./data/new's parent was made too
    if exists:
        assert [p.name for p in (tmp_path / "data").iterdir()] == ["mine.txt"]
