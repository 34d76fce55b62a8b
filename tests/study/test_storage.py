from pathlib import Path

import pytest

from study.storage import StorageError, open_storage, redact


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
