"""Opening Optuna's RDB storage (SQLite by default): one-line errors, no leaked passwords.

A bare path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` is taken as a SQLite file, so
``--storage studies/smoke.db`` means ``sqlite:///studies/smoke.db``. A file that cannot be
written (no write permission on it or its folder) is opened read-only: ``status`` and
``report`` still work on it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from study.errors import StorageError
from study.sqlite_file import prepare, raise_when_full, read_only_connect, refuse_unwritable

if TYPE_CHECKING:  # optuna and sqlalchemy load lazily: `--help` and usage errors skip them
    import optuna

DEFAULT_STORAGE = "sqlite:///studies/wrn.db"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
EXPECTED_FORMS = (
    "expected sqlite:///PATH.db (or a bare PATH.db), postgresql://USER:PASSWORD@HOST:PORT/DB "
    "or grpc://HOST:PORT"
)
# scheme://user:password@rest; the password runs to the last "@" before any query string, so a
# password holding "@" is masked whole
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:/@?]*:)(?P<password>[^?]*)@(?P<tail>.*)$")


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


def require_writable(url: str) -> None:
    """Refuse (StorageError) a SQLite storage that cannot be written, from its permissions
    alone (``sqlite_file.refuse_unwritable``); other back ends are checked when opened."""
    path = sqlite_path(url)
    if path is not None:
        refuse_unwritable(path)


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
        raise_when_full(storage.engine, redact(url), path)
    return storage


def read_study_attrs(url: str) -> dict[str, dict[str, Any]]:
    """Each study's user attributes by name, read without writing (a SQLite file through a
    read-only connection; one not made yet holds none): a refusal after it leaves the storage
    byte-identical."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return {}
    storage = open_storage(url, create=False, read_only=path is not None)
    studies = {s.study_name: dict(s.user_attrs) for s in storage.get_all_studies()}
    if hasattr(storage, "engine"):  # let go of the read-only connection before writing
        storage.engine.dispose()
    return studies


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
        if prepare(path, create, read_only):
            # the tables and version rows are there (checked); optuna must not try to add them
            return {"creator": read_only_connect(path)}, {"skip_table_creation": True}
        # wait for another worker's write instead of failing with "database is locked"
        return {"connect_args": {"timeout": 60}}, {}
    if backend in ("postgresql", "mysql"):
        return {"pool_pre_ping": True}, {}
    return {}, {}


def storage_flags(url: str, always: bool = False) -> list[str]:
    """``--storage URL`` for a suggested command (password masked), or nothing for the default
    storage unless ``always``."""
    return [] if url == DEFAULT_STORAGE and not always else ["--storage", redact(url)]
