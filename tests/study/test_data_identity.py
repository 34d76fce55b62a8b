"""The data a study searched on is recorded on it; later commands default to its folder, refuse
other data in one line, and the commands the tool prints keep ``--data-dir``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from study import ablate, dashboard, rerun, run
from study.cli import run_command
from study.records import AblationSettings, SearchSettings, StudyAttrs
from study.records.settings import DataRecord
from study.reporting.commands import ablation_flags, search_flags
from tests.conftest import write_synthetic_cifar
from tests.study.conftest import copy_db
from tests.tiny import tiny_flags

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "light"


def url(storage: Path) -> str:
    return f"sqlite:///{storage}"


def search_args(storage: Path, *extra: str) -> list[str]:
    return [
        *("--space", "light", "--storage", url(storage), "--val-size", "100"),
        *("--device", "cpu", "--epochs", "1", "--pruner", "none"),
        *("--checkpoint-dir", str(storage.parent / "checkpoints")),
        *tiny_flags("augmentation"),
        *extra,
    ]


def rerun_args(storage: Path, *extra: str) -> list[str]:
    return [
        *("--study-name", NAME, "--storage", url(storage), "--epochs", "1", "--device", "cpu"),
        *("--checkpoint-dir", str(storage.parent / "checkpoints")),
        *extra,
    ]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two CIFAR-100 folders of the same size and layout but other images."""
    root = tmp_path_factory.mktemp("two-sets")
    return write_synthetic_cifar(root / "a", seed=0), write_synthetic_cifar(root / "b", seed=1)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, folders: tuple[Path, Path]) -> Path:
    """A finished 1-trial search on folder ``a``; copy it with ``copy_db`` before writing."""
    storage = tmp_path_factory.mktemp("searched") / "wrn.db"
    assert run.main(search_args(storage, "--data-dir", str(folders[0]), "--trials", "1")) == 0
    return storage


@pytest.fixture
def storage(searched: Path, tmp_path: Path) -> Path:
    return copy_db(searched, tmp_path / "wrn.db")


def settings(storage: Path) -> SearchSettings:
    study = optuna.load_study(study_name=NAME, storage=url(storage))
    recorded = SearchSettings.of(study.user_attrs)
    assert recorded is not None
    return recorded


def refused(capsys: pytest.CaptureFixture, prog: str, main, argv: list[str]) -> str:
    """Run a command that must be refused: exit 2, one line, no traceback; its line."""
    with pytest.raises(SystemExit) as exit_info:
        run_command(f"python -m {prog}", main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def db_bytes(storage: Path) -> dict[str, bytes]:
    """The database and its write-ahead log (the -shm index changes on any open)."""
    files = (storage, Path(f"{storage}-wal"))
    return {p.name: p.read_bytes() for p in files if p.exists()}


def test_a_search_records_its_folder_and_the_data_s_identity(
    storage: Path, folders: tuple[Path, Path]
) -> None:
    data = settings(storage).data
    assert data is not None and data.data_dir == str(folders[0].resolve())
    identity = data.identity
    assert identity.dataset == "cifar100"
    assert identity.folder == str((folders[0] / "cifar-100-python").resolve())
    assert (identity.train_images, identity.test_images) == (400, 200)
    assert len(identity.fingerprint) == 16


def test_settings_read_back_with_their_data_and_an_older_record_as_unknown(
    storage: Path,
) -> None:
    recorded = settings(storage)
    assert SearchSettings.from_dict(recorded.to_dict()) == recorded
    older = {k: v for k, v in recorded.to_dict().items() if k != "data"}
    assert SearchSettings.from_dict(older).data is None
    assert DataRecord.from_dict({"data_dir": "/x"}) is None  # not one this code wrote


def test_a_rerun_on_another_data_folder_is_refused_in_one_line(
    storage: Path, folders: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    a, b = folders
    before = db_bytes(storage)
    err = refused(capsys, "study.rerun", rerun.main, rerun_args(storage, "--data-dir", str(b)))
    recorded = settings(storage).data
    assert recorded is not None
    assert f"searched on cifar100 in {a.resolve() / 'cifar-100-python'}" in err
    assert recorded.identity.fingerprint in err and f"--data-dir {b} holds cifar100" in err
    assert f"pass --data-dir {a.resolve()}" in err
    assert db_bytes(storage) == before  # nothing written: no NAME-rerun study
    assert not (storage.parent / "checkpoints" / f"{NAME}-rerun").exists()


def test_an_ablation_on_another_data_folder_is_refused(
    storage: Path, folders: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    argv = [*rerun_args(storage, "--data-dir", str(folders[1])), "--seeds", "1"]
    err = refused(capsys, "study.ablate", ablate.main, argv)
    assert "searched on cifar100" in err and f"--data-dir {folders[1]} holds" in err


def test_a_rerun_without_data_dir_reads_the_recorded_folder_not_dot_data(
    storage: Path,
    folders: tuple[Path, Path],
    tmp_path: Path,
    cifar_writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "elsewhere"
    cifar_writer(cwd / "data", seed=2)  # ./data holds other images of the same layout
    monkeypatch.chdir(cwd)
    assert rerun.main(rerun_args(storage)) == 0
    trials = optuna.load_study(study_name=f"{NAME}-rerun", storage=url(storage)).get_trials()
    assert [t.user_attrs["config"]["data_dir"] for t in trials] == [str(folders[0].resolve())]


def test_a_resumed_search_on_another_data_dir_is_refused_unchanged(
    storage: Path, folders: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    before = db_bytes(storage)
    argv = search_args(storage, "--data-dir", str(folders[1]), "--trials", "2")
    err = refused(capsys, "study.run", run.main, argv)
    assert f"--data-dir {folders[1]} holds cifar100" in err and "new --study-name" in err
    assert db_bytes(storage) == before


def test_a_resumed_search_without_data_dir_reads_the_recorded_folder(
    storage: Path,
    folders: tuple[Path, Path],
    tmp_path: Path,
    cifar_writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "elsewhere"
    cifar_writer(cwd / "data", seed=2)
    monkeypatch.chdir(cwd)
    assert run.main(search_args(storage, "--trials", "2")) == 0
    trials = optuna.load_study(study_name=NAME, storage=url(storage)).get_trials()
    assert trials[-1].user_attrs["config"]["data_dir"] == str(folders[0].resolve())


def test_printed_commands_keep_the_data_dir(storage: Path, folders: tuple[Path, Path]) -> None:
    flag = f"--data-dir {folders[0].resolve()}"
    study = optuna.load_study(study_name=NAME, storage=url(storage))
    note = dashboard.study_note(study, url(storage))
    lines = [line for line in note.splitlines() if line.startswith("python -m study.")]
    rerun_line = next(line for line in lines if line.startswith("python -m study.rerun"))
    ablate_line = next(line for line in lines if line.startswith("python -m study.ablate"))
    assert flag in rerun_line and flag in ablate_line
    assert flag in " ".join(search_flags(settings(storage), url(storage)))
    ablation = AblationSettings(NAME, dataset="cifar100", data_dir=str(folders[0].resolve()))
    assert flag in " ".join(ablation_flags(ablation, url(storage), walked_path=False))
    synthetic = dataclasses.replace(ablation, dataset="synthetic")
    assert "--data-dir" not in ablation_flags(synthetic, url(storage), walked_path=False)


def test_a_study_recorded_before_data_records_is_not_refused(
    storage: Path, folders: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    study = optuna.load_study(study_name=NAME, storage=url(storage))
    older = {k: v for k, v in study.user_attrs[StudyAttrs.SETTINGS].items() if k != "data"}
    study.set_user_attr(StudyAttrs.SETTINGS, older)
    assert settings(storage).data is None  # unknown
    assert rerun.main(rerun_args(storage, "--data-dir", str(folders[1]))) == 0
    assert f"recorded no data identity (made before them): --data-dir {folders[1]}" in (
        capsys.readouterr().out
    )
