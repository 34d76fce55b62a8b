"""A SQLite storage file, looked at without changing it: whether it is an Optuna storage and
may be written (from its permission bits, which count even for root), connections that never
write to it, a full disk as one error, and its write-ahead log moved into the file.

``study.storage`` turns URLs into these paths; the messages name the file.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from study.errors import StorageError, StorageFullError

if TYPE_CHECKING:
    import optuna

SQLITE_MAGIC = b"SQLite format 3\x00"
_OPTUNA_TABLES = {"studies", "version_info"}


def _writable(path: Path) -> bool:
    # the permission bits count even for root, who os.access says may write anything: a file
    # someone made read-only (chmod 0444) is not written to
    try:
        bits = path.stat().st_mode
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(bits & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _storage_writable(path: Path) -> bool:
    """Whether a SQLite file, its -wal and -shm files (where present) and its folder can all be
    written: WAL mode writes all of them."""
    logs = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    files = [path, *(log for log in logs if log.exists())]
    return all(_writable(p) for p in (*files, path.parent))


def _read_only_error(path: Path) -> StorageError:
    return StorageError(f"{path}: read-only (status and report can read it; this cannot)")


def refuse_unwritable(path: Path) -> None:
    """Refuse (StorageError) a storage file that cannot be written, from file permissions
    alone: nothing is opened or created, so a refused storage and its folder stay as they were.
    A file not there yet needs a writable folder (or one still to be made)."""
    if path.exists():
        if not _storage_writable(path):
            raise _read_only_error(path)
    elif path.parent.is_dir() and not _writable(path.parent):
        raise _read_only_folder_error(path)


def _read_only_folder_error(path: Path) -> StorageError:
    return StorageError(f"{path.parent}: folder is read-only, cannot create {path.name}")


def _read_only_uri(path: Path) -> str:
    """A SQLite URI that reads ``path`` without creating or changing any file.

    With a -wal file beside it (a writer is, or was, at work) ``mode=ro`` sees the writer's
    latest commits. Without one, ``mode=ro`` would create -wal and -shm files (WAL readers
    need them) and leave them behind, so the file is opened ``immutable`` unless it is
    writable (then someone may start writing while we read).
    """
    wal = path.with_name(path.name + "-wal")
    fixed = not wal.exists() and not (_writable(path) and _writable(path.parent))
    return f"file:{quote(str(path.resolve()))}?{'immutable=1' if fixed else 'mode=ro'}"


def _tables(path: Path) -> set[str]:
    """The table names of a SQLite file, read without writing to it."""
    wal = path.with_name(path.name + "-wal")
    # a quick look: immutable creates no -wal/-shm files; a live writer's -wal is read
    mode = "mode=ro" if wal.exists() else "immutable=1"
    uri = f"file:{quote(str(path.resolve()))}?{mode}"
    try:
        con = sqlite3.connect(uri, uri=True)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{path}: not a usable SQLite database ({e})") from None
    return {name for (name,) in rows}


def prepare(path: Path, create: bool, read_only: bool | None) -> bool:
    """Checks the file without changing it; True if it is to be opened read-only."""
    if path.is_dir():
        raise StorageError(f"{path}: is a directory, not a SQLite database")
    if not path.exists():
        _check_new(path, create, read_only)
    elif _check_existing(path, create, read_only):
        return True
    # WAL lets readers (the dashboard, other workers) run while a trial writes; the mode is
    # stored in the file, so setting it once here holds for every later connection
    try:
        con = sqlite3.connect(path, timeout=60)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{path}: not a usable SQLite database ({e})") from None
    return False


def _check_new(path: Path, create: bool, read_only: bool | None) -> None:
    """A storage file to create: its folder made, and writable."""
    if not create:
        raise StorageError(f"{path}: no such storage file")
    if read_only:
        raise StorageError(f"{path}: no such storage file to open read-only")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{path.parent}: cannot create the folder ({e.strerror})") from None
    if not _writable(path.parent):
        raise _read_only_folder_error(path)


def _check_existing(path: Path, create: bool, read_only: bool | None) -> bool:
    """An existing file is an Optuna storage (or empty, to be made one); True if it is to be
    opened read-only."""
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise StorageError(f"{path}: not a SQLite database")
    writable = _storage_writable(path)
    if read_only is None:  # a command that may create a storage means to write to it
        read_only = not writable and not create
    if not read_only and not writable:
        raise _read_only_error(path)  # before any read: a reader changes the -shm file
    tables = _tables(path) if head else set()
    if tables and not tables >= _OPTUNA_TABLES:
        raise StorageError(f"{path}: a SQLite database without Optuna's tables")
    if not tables and not create:
        raise StorageError(f"{path}: an empty SQLite file, no Optuna storage in it yet")
    if read_only and not tables:
        raise StorageError(f"{path}: read-only and empty, no Optuna storage in it")
    return read_only


def read_only_connect(path: Path) -> Callable[[], sqlite3.Connection]:
    """A factory of connections that cannot write to ``path``."""
    uri = _read_only_uri(path)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)

    return connect


def raise_when_full(engine: Any, shown: str, path: Path) -> None:
    """Make a failed write on a full disk a ``StorageFullError`` naming the storage and the
    space left (Optuna passes it on as it is, where it wraps database errors)."""
    import sqlalchemy

    def handle_error(context: Any) -> None:
        if getattr(context.original_exception, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            try:
                free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
            except OSError:
                free = "free space unknown"
            raise StorageFullError(
                f"storage {shown}: disk full ({free} in {path.parent}); make room, then "
                "run the same command: a trial stopped by this resumes from its checkpoint"
            ) from None

    sqlalchemy.event.listen(engine, "handle_error", handle_error)


def checkpoint_wal(storage: optuna.storages.BaseStorage) -> None:
    """Move a SQLite storage's write-ahead log into its database file, so that the ``.db``
    file alone holds every write (copied, it is the whole storage). Other back ends: nothing.

    A log that cannot be moved now (another process is reading it, a full disk) stays, and
    SQLite still reads it with the file."""
    import sqlalchemy

    engine = getattr(storage, "engine", None)
    if engine is None or engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except (sqlalchemy.exc.SQLAlchemyError, StorageError):
        pass
