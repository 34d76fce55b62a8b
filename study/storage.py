"""Opening Optuna's RDB storage (SQLite by default): one-line errors, no leaked passwords."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

DEFAULT_STORAGE = "sqlite:///studies/wrn.db"
SQLITE_MAGIC = b"SQLite format 3\x00"


class StorageError(RuntimeError):
    """The storage URL is malformed, unreachable, or not an Optuna database."""


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, or None for other back ends and :memory:."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _prepare_sqlite(path: Path, create: bool) -> None:
    if path.is_dir():
        raise StorageError(f"{path}: is a directory, not a SQLite database")
    if path.exists():
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise StorageError(f"{path}: not a SQLite database")
    elif not create:
        raise StorageError(f"{path}: no such storage file")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    # WAL lets readers (the dashboard, other workers) run while a trial writes; the mode is
    # stored in the file, so setting it once here holds for every later connection
    try:
        con = sqlite3.connect(path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{path}: not a usable SQLite database ({e})") from None


# a trial whose worker died is retried this many times, inheriting its per-epoch values
MAX_RETRY = 3


def retry_callback(
    max_retry: int | None = MAX_RETRY,
) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Requeues a failed trial with its params, user attrs and per-epoch values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=max_retry, inherit_intermediate_values=True
        )


def open_grpc(url: str) -> optuna.storages.BaseStorage:
    """A client of Optuna's gRPC storage proxy (``python -m study.proxy``) at grpc://HOST:PORT."""
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise StorageError(f"malformed storage URL {url!r}: expected grpc://HOST:PORT")
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


def open_storage(
    url: str, create: bool = True, heartbeat_interval: int | None = None
) -> optuna.storages.BaseStorage:
    """Open (and with ``create``, initialise) the storage at ``url``.

    With ``heartbeat_interval`` (seconds), running trials send heartbeats; a trial silent for
    three intervals is failed and retried by whichever worker looks next.
    """
    if url.startswith("grpc://"):
        return open_grpc(url)  # heartbeats need direct database access; the proxy has none
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"malformed storage URL {redact(url)!r}") from None
    backend = parsed.get_backend_name()
    engine_kwargs: dict = {}
    path = sqlite_path(url)
    if path is not None:
        _prepare_sqlite(path, create)
        # wait for another worker's write instead of failing with "database is locked"
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif backend == "sqlite":
        pass
    elif backend in ("postgresql", "mysql"):
        engine_kwargs = {"pool_pre_ping": True}
    heartbeat: dict = {}
    if heartbeat_interval is not None:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": 3 * heartbeat_interval,
            "heartbeat_stale_trial_callback": retry_callback(),
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except ImportError:
        raise StorageError(
            f"no database driver for {backend} is installed "
            '(for PostgreSQL: pip install -e ".[postgres]")'
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if parsed.password:  # drivers may echo the connection string back
            reason = reason.replace(str(parsed.password), "***")
        raise StorageError(f"cannot open storage {redact(url)}: {reason[:200]}") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]
