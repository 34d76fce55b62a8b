"""Opening Optuna's RDB storage (SQLite by default): one-line errors, no leaked passwords.

A bare path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` is taken as a SQLite file, so
``--storage studies/smoke.db`` means ``sqlite:///studies/smoke.db``. A file that cannot be
written (no write permission on it or its folder) is opened read-only: ``status`` and
``report`` still work on it.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:  # optuna and sqlalchemy load lazily: `--help` and usage errors skip them
    import optuna

DEFAULT_STORAGE = "sqlite:///studies/wrn.db"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
EXPECTED_FORMS = (
    "expected sqlite:///PATH.db (or a bare PATH.db), postgresql://USER:PASSWORD@HOST:PORT/DB "
    "or grpc://HOST:PORT"
)
# scheme://user:password@rest; the password runs to the last "@" before any query string, so a
# password holding "@" is masked whole
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:/@?]*:)(?P<password>[^?]*)@(?P<tail>.*)$")
_OPTUNA_TABLES = {"studies", "version_info"}


class StorageError(RuntimeError):
    """The storage URL is malformed, unreachable, or not an Optuna database."""


class StorageFullError(StorageError):
    """A write to a SQLite storage failed because its disk is full (SQLITE_FULL)."""


def full_storage(error: BaseException | None) -> StorageFullError | None:
    """The ``StorageFullError`` that ``error`` is, or was raised while handling (on a full disk
    every later write fails too, so a command ends in one of those), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, StorageFullError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def normalize_storage(text: str) -> str:
    """``text`` as a storage URL: a bare ``PATH.db`` (``.sqlite``, ``.sqlite3``) becomes
    ``sqlite:///PATH.db``; anything else is returned as typed."""
    text = text.strip()
    if "://" not in text and text.lower().endswith(SQLITE_SUFFIXES):
        return "sqlite:///" + os.path.expanduser(text)
    return text


def _split_password(url: str) -> tuple[str, str, str] | None:
    """(everything before the password, the password, "@" and everything after) or None."""
    m = _USERINFO.match(url)
    if m is None:
        return None
    return m["head"], m["password"], "@" + m["tail"]


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs (even if malformed)."""
    url = normalize_storage(url)
    parts = _split_password(url)
    return url if parts is None else f"{parts[0]}***{parts[2]}"


def default_checkpoint_dir(url: str) -> Path:
    """Where checkpoints go unless ``--checkpoint-dir`` says: ``checkpoints/`` beside a SQLite
    file (``studies/checkpoints`` for ``studies/wrn.db``), else ``studies/checkpoints``."""
    path = sqlite_path(url)
    return Path("studies/checkpoints") if path is None else path.parent / "checkpoints"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (or bare path), or None for other back ends
    and :memory:."""
    url = normalize_storage(url)
    if not url.startswith("sqlite://"):
        return None
    database = url.removeprefix("sqlite://").removeprefix("/").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(database)


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


def require_writable(url: str) -> None:
    """Refuse (StorageError) a SQLite storage that cannot be written, from file permissions
    alone: nothing is opened or created, so a refused storage and its folder stay as they were.
    A file not there yet needs a writable folder (or one still to be made)."""
    path = sqlite_path(url)
    if path is None:
        return
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


def _prepare_sqlite(path: Path, create: bool, read_only: bool | None) -> bool:
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


def _read_only_connect(path: Path) -> Callable[[], sqlite3.Connection]:
    """A factory of connections that cannot write to ``path``."""
    uri = _read_only_uri(path)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)

    return connect


# a trial whose worker died is retried this many times, inheriting its per-epoch values
MAX_RETRY = 3


def retry_callback() -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """The heartbeat's callback: a trial failed for its silence is queued to resume with its
    params, user attrs and per-epoch values, once (``study.lifecycle.claims.requeue_stale``;
    only commands that train, which have imported it, fail stale trials)."""

    def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from study.lifecycle.claims import requeue_stale

        requeue_stale(study, trial)

    return requeue


def database_url(url: str) -> tuple[str, str]:
    """A database storage's SQLAlchemy URL (an "@" in its password escaped) and back end
    ("sqlite", "postgresql", ...), for a connection of one's own (the claim lock's)."""
    url, _, backend = _rdb_url(normalize_storage(url))
    return url, backend


def open_grpc(url: str) -> optuna.storages.BaseStorage:
    """A client of Optuna's gRPC storage proxy (``python -m study.proxy``) at grpc://HOST:PORT."""
    import optuna

    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StorageError(f"malformed storage URL {redact(url)!r}: expected grpc://HOST:PORT")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
        proxy.get_all_studies()  # fail now, not in the middle of a trial
    except ImportError:
        raise StorageError('no gRPC client is installed (pip install -e ".[grpc]")') from None
    except Exception as e:
        details = e.details() if hasattr(e, "details") else str(e)  # grpc.RpcError
        reason = (str(details).splitlines() or [type(e).__name__])[0][:200]
        raise StorageError(f"cannot reach the storage proxy at {host}:{port}: {reason}") from None
    return proxy


def _server_url(url: str) -> tuple[str, str]:
    """A server URL checked and made parseable (an "@" in the password escaped), and its
    password (for masking driver messages)."""
    malformed = f"malformed storage URL {redact(url)!r}"
    parts = _split_password(url)
    password = ""
    if parts is not None:
        head, password, tail = parts
        url = head + password.replace("@", "%40") + tail
    hostpart = url.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    if hostpart.startswith("["):
        if "]" not in hostpart:
            raise StorageError(f"{malformed}: unclosed '[' in the host; {EXPECTED_FORMS}")
        hostpart = hostpart[hostpart.index("]") + 1 :]
    if ":" in hostpart:
        port = hostpart.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise StorageError(f"{malformed}: port {port!r} is not 1-65535; {EXPECTED_FORMS}")
    return url, password


def check_url(text: str) -> str:
    """``text`` normalised, its syntax checked without importing a driver: the ``--storage``
    argument type, so a malformed URL fails in the time of a usage error, before any data load.
    """
    url = normalize_storage(text)
    if "://" not in url:
        if Path(url).is_dir():
            raise StorageError(f"{url}: is a directory, not a SQLite database ({EXPECTED_FORMS})")
        raise StorageError(f"malformed storage URL {redact(url)!r}: {EXPECTED_FORMS}")
    if url.startswith("grpc://"):
        host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StorageError(f"malformed storage URL {redact(url)!r}: expected grpc://HOST:PORT")
    elif not url.startswith("sqlite://"):
        _server_url(url)
    return url


def _mask(text: str, password: str) -> str:
    for form in {password, password.replace("@", "%40"), quote(password, safe="")}:
        if form:
            text = text.replace(form, "***")
    return text


def open_storage(
    url: str,
    create: bool = True,
    heartbeat_interval: int | None = None,
    read_only: bool | None = None,
) -> optuna.storages.BaseStorage:
    """Open (and with ``create``, initialise) the storage at ``url`` (a bare ``.db`` path too).

    With ``heartbeat_interval`` (seconds), running trials send heartbeats; a trial silent for
    three intervals is failed and retried by whichever worker looks next. ``read_only``: True
    opens a SQLite file without ever writing to it (``status``, ``report``); False refuses one
    that cannot be written (commands that write: pass it with ``create=False``); None
    (default): read-only when it cannot be written and ``create`` is False, writable when
    ``heartbeat_interval`` is given (trials run). A refused storage is left byte-identical. A
    write to a SQLite storage on a full disk raises ``StorageFullError``.
    """
    url = normalize_storage(url)
    if url.startswith("grpc://"):
        return open_grpc(url)  # heartbeats need direct database access; the proxy has none
    import optuna
    import sqlalchemy

    if read_only is None and heartbeat_interval is not None:
        read_only = False
    url, password, backend = _rdb_url(url)
    engine_kwargs, rdb_kwargs = _rdb_options(url, backend, create, read_only)
    if heartbeat_interval is not None and not rdb_kwargs:
        rdb_kwargs = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": 3 * heartbeat_interval,
            "heartbeat_stale_trial_callback": retry_callback(),
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **rdb_kwargs)
    except ImportError:
        raise StorageError(
            f"no database driver for {backend} is installed "
            '(for PostgreSQL: pip install -e ".[postgres]")'
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = _mask(reason, password)
        raise StorageError(f"cannot open storage {redact(url)}: {reason[:200]}") from None
    path = sqlite_path(url)
    if path is not None:
        _raise_when_full(storage.engine, url, path)
    return storage


def _raise_when_full(engine: Any, url: str, path: Path) -> None:
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
                f"storage {redact(url)}: disk full ({free} in {path.parent}); make room, then "
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


def _rdb_url(url: str) -> tuple[str, str, str]:
    """A database URL checked and made parseable, its password (for masking driver messages;
    "" if none) and its back end ("sqlite", "postgresql", ...)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    password = ""
    if "://" not in url:
        if Path(url).is_dir():
            raise StorageError(f"{url}: is a directory, not a SQLite database ({EXPECTED_FORMS})")
        raise StorageError(f"malformed storage URL {redact(url)!r}: {EXPECTED_FORMS}")
    if not url.startswith("sqlite://"):
        url, password = _server_url(url)
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(f"malformed storage URL {redact(url)!r}: {EXPECTED_FORMS}") from None
    return url, password or str(parsed.password or ""), parsed.get_backend_name()


def _rdb_options(
    url: str, backend: str, create: bool, read_only: bool | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's and the RDBStorage's keyword arguments for this back end; a SQLite file is
    checked (and, to be written, put in WAL mode) first."""
    path = sqlite_path(url) if url.startswith("sqlite://") else None
    if path is not None:
        if _prepare_sqlite(path, create, read_only):
            # the tables and version rows are there (checked); optuna must not try to add them
            return {"creator": _read_only_connect(path)}, {"skip_table_creation": True}
        # wait for another worker's write instead of failing with "database is locked"
        return {"connect_args": {"timeout": 60}}, {}
    if backend in ("postgresql", "mysql"):
        return {"pool_pre_ping": True}, {}
    return {}, {}


def storage_flags(url: str, always: bool = False) -> list[str]:
    """``--storage URL`` for a suggested command (password masked), or nothing for the default
    storage unless ``always``."""
    return [] if url == DEFAULT_STORAGE and not always else ["--storage", redact(url)]
