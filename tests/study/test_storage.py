import shutil
from pathlib import Path
from typing import Any

import pytest

from study.storage import StorageError, normalize_storage, open_storage, redact
from tests.study.conftest import TINY_STUDY, copy_db, tiny_args


def test_sqlite_storage_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "wrn.db"
    storage = open_storage(f"sqlite:///{path}")
    assert path.is_file() and storage.get_all_studies() == []
    import sqlite3

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_password_is_never_shown() -> None:
    url = "postgresql://alice:s3cret@db.example:5432/optuna"
    assert "s3cret" not in redact(url) and "alice" in redact(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed storage URL"),
        ("nosuchdb://host/db", "cannot open storage"),
        ("postgresql://alice:s3cret@127.0.0.1:1/optuna", "cannot open storage|no database driver"),
    ],
)
def test_bad_urls_are_one_line_without_password(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as info:
        open_storage(url)
    assert "s3cret" not in str(info.value) and "\n" not in str(info.value)


def test_not_a_database_and_directory(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"\x00\x01 garbage")
    with pytest.raises(StorageError, match="not a SQLite database"):
        open_storage(f"sqlite:///{tmp_path}/x.db")
    assert (tmp_path / "x.db").read_bytes() == b"\x00\x01 garbage"
    with pytest.raises(StorageError, match="directory"):
        open_storage(f"sqlite:///{tmp_path}")


def _study_file(tmp_path: Path) -> Path:
    """A SQLite storage holding study "s" with two finished trials (engine closed)."""
    import optuna

    path = tmp_path / "wrn.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for value in (0.25, 0.5):
        study.add_trial(optuna.trial.create_trial(value=value))
    storage.engine.dispose()
    return path


@pytest.mark.parametrize("suffix", [".db", ".sqlite", ".sqlite3"])
def test_bare_path_is_a_sqlite_storage(tmp_path: Path, monkeypatch, suffix: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_storage(f"studies/smoke{suffix}") == f"sqlite:///studies/smoke{suffix}"
    storage = open_storage(f"studies/smoke{suffix}")
    assert (tmp_path / "studies" / f"smoke{suffix}").is_file()
    assert storage.get_all_studies() == []
    assert redact(f"studies/smoke{suffix}") == f"sqlite:///studies/smoke{suffix}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:pw@host:99999/db", "port '99999'"),
        ("postgresql://u:pw@host:abc/db", "port 'abc'"),
        ("postgresql://u:pw@[::1/db", "unclosed"),
        ("studies/smoke", "expected sqlite:///PATH.db"),
    ],
)
def test_malformed_urls_show_what_was_typed_and_the_form(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as info:
        open_storage(url)
    text = str(info.value)
    assert "\n" not in text and "pw" not in text and "postgresql://USER:PASSWORD@" in text
    assert redact(url).split("@")[-1] in text  # what was typed, host and all


def test_password_with_at_sign_is_masked_whole() -> None:
    url = "postgresql://u:p@ss@127.0.0.1:1/db"
    assert redact(url) == "postgresql://u:***@127.0.0.1:1/db"
    assert redact("postgresql://u:p@ss@[::1/db") == "postgresql://u:***@[::1/db"
    with pytest.raises(StorageError) as info:  # refused connection or no driver: one line
        open_storage(url)
    text = str(info.value)
    assert "p@ss" not in text and "ss@" not in text and "\n" not in text


def test_errors_leave_the_file_byte_identical(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"  # someone else's SQLite file: not made an Optuna storage
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(StorageError, match="without Optuna's tables"):
        open_storage(str(other))
    assert other.read_bytes() == before
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StorageError, match="empty"):
        open_storage(str(empty), create=False)
    assert empty.read_bytes() == b""
    with pytest.raises(StorageError, match="is a directory") as info:
        open_storage(str(tmp_path))  # a bare directory: not taken for a file
    assert "sqlite:///PATH.db" in str(info.value)


def test_read_only_file_is_readable_and_untouched(tmp_path: Path) -> None:
    import optuna

    path = _study_file(tmp_path)
    before = path.read_bytes()
    path.chmod(0o444)
    try:
        storage = open_storage(str(path), create=False)
        assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2
        storage.engine.dispose()
        with pytest.raises(StorageError, match="read-only"):
            open_storage(str(path), create=False, read_only=False)
        with pytest.raises(StorageError, match="read-only"):  # study.run would write to it
            open_storage(str(path), heartbeat_interval=60)
    finally:
        path.chmod(0o644)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrn.db"]


def test_read_only_folder_is_readable_and_untouched(tmp_path: Path) -> None:
    import optuna

    path = _study_file(tmp_path)
    before = path.read_bytes()
    tmp_path.chmod(0o555)
    try:
        storage = open_storage(f"sqlite:///{path}", create=False)
        assert optuna.load_study(study_name="s", storage=storage).best_value == 0.5
        storage.engine.dispose()
        forced = open_storage(f"sqlite:///{path}", create=False, read_only=True)
        assert [s.study_name for s in forced.get_all_studies()] == ["s"]
        forced.engine.dispose()
    finally:
        tmp_path.chmod(0o755)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrn.db"]


def _command(name: str) -> Any:
    import importlib

    return importlib.import_module(f"study.{name}")


def _retrain_args(storage: Path, command: str) -> list[str]:
    """Arguments of ``study.rerun``/``study.ablate`` of the tiny study, everything beside it."""
    extra = ["--seeds", "1"] if command == "ablate" else []
    return [
        "--study-name",
        TINY_STUDY,
        "--storage",
        f"sqlite:///{storage}",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--checkpoint-dir",
        str(storage.parent / "checkpoints"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("command", "study_name"), [("rerun", "tiny-rerun"), ("ablate", "tiny-ablation")]
)
def test_the_db_file_alone_holds_a_finished_command(
    tiny_study: Path, tmp_path: Path, command: str, study_name: str
) -> None:
    import optuna

    # the search (the session's tiny study): its .db file alone, without its -wal
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tiny_study, alone / "wrn.db")
    assert (
        len(optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{alone}/wrn.db").trials)
        == 2
    )
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    assert _command(command).main(_retrain_args(storage, command)) == 0
    shutil.copy(storage, alone / "copy.db")  # what `cp studies/wrn.db` copies
    trials = optuna.load_study(study_name=study_name, storage=f"sqlite:///{alone}/copy.db").trials
    assert trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def _snapshot_of_a_live_storage(source: Path, folder: Path) -> Path:
    """``source`` as a killed worker leaves it: the database with its -wal and -shm files."""
    import sqlite3

    live = copy_db(source, folder.parent / "live.db")
    con = sqlite3.connect(live)
    con.execute("PRAGMA wal_autocheckpoint = 0")  # the write stays in the -wal file
    con.execute("PRAGMA user_version = 7")
    con.commit()
    folder.mkdir()
    for suffix in ("", "-wal", "-shm"):  # copied while the connection holds them
        shutil.copy(f"{live}{suffix}", folder / f"wrn.db{suffix}")
    con.close()
    return folder / "wrn.db"


def _contents(folder: Path) -> dict[str, bytes | None]:
    return {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}


@pytest.mark.parametrize("command", ["run", "rerun", "ablate"])
def test_a_refused_read_only_storage_and_its_folder_are_untouched(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    from study.cli import run_command

    storage = _snapshot_of_a_live_storage(tiny_study, tmp_path / "ro")
    folder = storage.parent
    argv = (
        tiny_args(storage, "--epochs", "1", "--trials", "3")
        if command == "run"
        else _retrain_args(storage, command)
    )
    # read-only by its permission bits, as study.storage judges it (root could still write)
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = _contents(folder)
        with pytest.raises(SystemExit) as exit_info:
            run_command(f"python -m study.{command}", _command(command).main, argv)
        after = _contents(folder)
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "read-only" in err and len(err.splitlines()) == 1, err
    assert after == before  # no artifacts/ or checkpoints/, the -shm file as it was
