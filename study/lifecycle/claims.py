"""Claims on a study's trials, one process at a time: recovering a trial whose worker is gone,
queueing its retry and taking the next trial to run happen under one lock of the storage, with
the trials re-read inside it, so that no trial is requeued twice and no queued trial is handed
to two workers (SQLite's ``SELECT ... FOR UPDATE`` locks nothing).

The lock is the storage's, however its URL is spelled: for SQLite a lock file (in the temp
folder) named by the database file's real path, covering the processes of this machine; for
PostgreSQL an advisory lock in the database itself, covering every machine that shares it; for
other URLs (the gRPC proxy, MySQL) a lock file named by the URL without its password.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import tempfile
import threading
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.records import StudyAttrs as S
from study.records import TrialAttrs as A
from study.records import dropped_trials
from study.storage import MAX_RETRY, database_url, normalize_storage, redact, sqlite_path

# session-level advisory locks are per database: one id serves every study in it
ADVISORY_LOCK_ID = int.from_bytes(hashlib.sha256(b"wrn study claims").digest()[:8], signed=True)
STALE_REASON = "no heartbeat for three --heartbeat intervals (worker stopped or machine lost)"


def storage_key(url: str) -> str:
    """What names a storage for its claim lock: a SQLite file's real path (``studies/x.db``,
    ``./studies/x.db`` and the absolute path are one storage), else the URL without password."""
    path = sqlite_path(url)
    return f"sqlite:{os.path.realpath(path)}" if path is not None else redact(url)


class ClaimLock:
    """The cross-process lock of one storage's claims (see the module's docstring).

    Re-entrant within a process: code holding it may call code that takes it again.
    """

    def __init__(self, storage_url: str) -> None:
        self._url = normalize_storage(storage_url)  # may hold a password: never shown
        self.key = storage_key(self._url)
        self.postgres = self._url.startswith(("postgresql", "postgres:"))
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"wrn-claims-{digest}.lock"
        self._guard = threading.RLock()  # threads of this process, then other processes
        self._depth = 0
        self._held: Any = None
        self._engine: Any = None

    def __enter__(self) -> ClaimLock:
        self._guard.acquire()
        try:
            if self._depth == 0:
                self._held = self._lock_database() if self.postgres else self._lock_file()
        except BaseException:
            self._guard.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                held, self._held = self._held, None
                self._unlock_database(held) if self.postgres else os.close(held)
        finally:
            self._guard.release()

    def _lock_file(self) -> int:
        try:  # an existing file opens read-only, whoever made it (flock needs no write access)
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd  # closing it releases the lock, as does the process's death

    def _lock_database(self) -> Any:
        import sqlalchemy

        if self._engine is None:  # a connection of its own, not one of the storage's pool
            url, _ = database_url(self._url)
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            lock = sqlalchemy.text("SELECT pg_advisory_lock(:id)")
            connection.execute(lock, {"id": ADVISORY_LOCK_ID})
        except BaseException:
            connection.close()
            raise
        return connection  # the lock also ends with the connection (a killed worker's does)

    def _unlock_database(self, connection: Any) -> None:
        import sqlalchemy

        try:
            unlock = sqlalchemy.text("SELECT pg_advisory_unlock(:id)")
            connection.execute(unlock, {"id": ADVISORY_LOCK_ID})
        finally:
            connection.close()


def holding(lock: ClaimLock | None) -> AbstractContextManager[Any]:
    """``lock``, or nothing where no other process works on the study (``Lifecycle()``)."""
    return nullcontext() if lock is None else lock


def retry_of(trials: list[FrozenTrial], number: int) -> int | None:
    """The trial queued to retry trial ``number``, if one was."""
    return next((t.number for t in trials if t.user_attrs.get(A.RETRY_OF) == number), None)


def requeue(
    study: optuna.Study, failed: FrozenTrial, reason: str | None, max_retry: int | None
) -> bool:
    """Queue a retry of the failed trial: its parameters, user attrs (``retry_of`` its number,
    ``fail_reason`` the reason) and per-epoch values. Call it under the study's ClaimLock.

    Nothing if a retry was queued already (by another process). ``max_retry``: a lost worker's
    trial is retried that many times; then its configuration is dropped, and the study records
    it (``dropped_trials``). None: an interruption, not counted, retried always. True if queued.
    """
    trials = study.get_trials(deepcopy=False)
    if retry_of(trials, failed.number) is not None:
        return False
    retries = int(failed.user_attrs.get(A.RETRIES, 0))
    if max_retry is not None and retries >= max_retry:
        dropped = dropped_trials(study.user_attrs)
        if failed.number not in dropped:
            study.set_user_attr(S.DROPPED_TRIALS, sorted([*dropped, failed.number]))
        return False
    retry = copy.deepcopy(failed)
    retry.user_attrs = {
        **failed.user_attrs,
        A.RETRY_OF: failed.number,
        A.RETRIES: retries + (max_retry is not None),
    }
    if reason is not None:
        retry.user_attrs[A.FAIL_REASON] = reason  # the retry says why (previous_failure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's own requeue, so that its retry history (system attrs) holds
        optuna.storages.RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(
            study, retry
        )
    return True


def requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """The heartbeat's callback (``fail_stale_trials`` failed ``trial``): queue its retry,
    saying why. Its caller holds the ClaimLock (``workers.recover_dead_trials``)."""
    if trial.state == TrialState.FAIL:
        requeue(study, trial, STALE_REASON, MAX_RETRY)
