"""Workers of a study: who runs a trial, whether it still does, and recovering it if not.

Only public Optuna APIs: a trial's storage id comes from
``storage.get_trial_id_from_study_id_trial_number``, on the storage the command opened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from study.errors import StorageFullError
from study.gpus import VISIBLE_ENV, visible_entries
from study.lifecycle.claims import ClaimLock, holding, requeue
from study.records import TrialAttrs as A
from study.storage import MAX_RETRY


def process_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record_worker(trial: optuna.Trial) -> None:
    """Where the trial runs, so a restarted worker on this host can see it has died.

    A retry inherits its failed attempt's user attrs; their failure markers move aside so
    that they describe the attempt that failed, not this one.
    """
    if trial.user_attrs.get(A.FAIL_REASON):
        trial.set_user_attr(A.PREVIOUS_FAILURE, trial.user_attrs[A.FAIL_REASON])
        trial.set_user_attr(A.FAIL_REASON, None)
    if trial.user_attrs.get(A.INTERRUPTED):
        trial.set_user_attr(A.INTERRUPTED, False)
    trial.set_user_attr(A.HOST, socket.gethostname())
    trial.set_user_attr(A.PID, os.getpid())
    trial.set_user_attr(A.PID_START, process_start_time(os.getpid()))


def worker_alive(attrs: dict[str, Any]) -> bool | None:
    """Whether the worker recorded in ``attrs`` still runs; None if it ran on another host."""
    if attrs.get(A.HOST) != socket.gethostname() or A.PID not in attrs:
        return None
    pid = int(attrs[A.PID])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the process exists, owned by another user
        pass
    start = process_start_time(pid)
    return attrs.get(A.PID_START) is None or start is None or start == attrs[A.PID_START]


def trial_id(storage: optuna.storages.BaseStorage, study: optuna.Study, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def fail_and_requeue(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    number: int,
    reason: str | None,
    max_retry: int | None = None,
) -> bool:
    """Fail a RUNNING trial (with ``reason``) and queue a retry that inherits its attrs and
    per-epoch values (``claims.requeue``: ``max_retry`` None for an interruption); False if it
    had already finished (another process got there first). Call it under the ClaimLock."""
    tid = trial_id(storage, study, number)
    try:  # attrs first: a finished trial cannot be changed
        if storage.get_trial(tid).state != TrialState.RUNNING:
            return False
        if reason is not None:
            storage.set_trial_user_attr(tid, A.FAIL_REASON, reason)
        if not storage.set_trial_state_values(tid, TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    requeue(study, storage.get_trial(tid), reason, max_retry)
    return True


def recover_dead_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, lock: ClaimLock | None = None
) -> list[int]:
    """Fail and requeue the study's trials whose worker is gone, each once (under ``lock``).

    On this host a trial whose process is gone is requeued at once; other hosts' trials are
    requeued when their heartbeat is stale. Returns the numbers of this host's dead ones.
    """
    with holding(lock):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # its callback: claims.requeue_stale
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [
            t.number
            for t in running
            if worker_alive(t.user_attrs) is False
            and fail_and_requeue(study, storage, t.number, "worker process died", MAX_RETRY)
        ]


def queue_interrupted(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    number: int,
    lock: ClaimLock | None = None,
) -> str:
    """Queue a trial stopped by Ctrl-C/SIGTERM to resume (once, under ``lock``), and say what
    was saved."""
    with holding(lock):
        frozen = storage.get_trial(trial_id(storage, study, number))
        if frozen.state == TrialState.RUNNING:
            fail_and_requeue(study, storage, number, None)
        elif frozen.state == TrialState.FAIL:
            requeue(study, frozen, None, None)
    epochs = len(frozen.intermediate_values)
    return (
        f"trial {number} saved at epoch {epochs} and queued; run the same command to resume"
        if epochs
        else f"trial {number} had no finished epoch; queued to run again with the same command"
    )


class Heartbeat:
    """Sends a trial's heartbeats while it trains outside ``study.optimize`` (ask and tell)."""

    def __init__(self, storage: optuna.storages.BaseStorage, tid: int) -> None:
        self.storage, self.tid = storage, tid
        self.stop = threading.Event()
        # RDB storages opened with heartbeat_interval; others (the gRPC proxy) have none
        interval = getattr(storage, "get_heartbeat_interval", None)
        self.interval = interval() if interval is not None else None
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            # on a full disk the trial's own next write stops the command, in one line
            with contextlib.suppress(StorageFullError):
                self.storage.record_heartbeat(self.tid)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


COMPILE_THREADS_ENV = "TORCHINDUCTOR_COMPILE_THREADS"


def visible_gpus(device: str) -> list[str]:
    """The GPUs this process sees, as ``CUDA_VISIBLE_DEVICES`` entries (``--gpus`` or the user
    set it; else all of them); none for ``--device cpu``."""
    if device == "cpu":
        return []
    import torch

    count = torch.cuda.device_count()
    visible = visible_entries()
    return [str(i) for i in range(count)] if visible is None else visible[:count]


def worker_environments(
    workers: int, gpus: Sequence[str], worker_env: str, env: dict[str, str]
) -> list[dict[str, str]]:
    """Each worker's environment: ``worker_env`` its number from 1, ``env``, one of ``gpus``
    (worker i the (i mod len)-th, as ``CUDA_VISIBLE_DEVICES``), and a share of the cores for
    inductor's compile processes (each process would start one per core) unless the user chose
    their number."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    children = []
    for i in range(workers):
        child = {COMPILE_THREADS_ENV: threads, **os.environ, **env, worker_env: str(i + 1)}
        if gpus:
            child[VISIBLE_ENV] = gpus[i % len(gpus)]
        children.append(child)
    return children


def run_workers(
    command: list[str], workers: int, device: str, worker_env: str, env: dict[str, str]
) -> int:
    """Run ``workers`` copies of ``python COMMAND --workers 1`` over the visible GPUs
    (environments from ``worker_environments``); the highest exit status."""
    gpus = visible_gpus(device)
    procs = [
        subprocess.Popen([sys.executable, *command, "--workers", "1"], env=child)
        for child in worker_environments(workers, gpus, worker_env, env)
    ]
    try:
        with sigterm_as_interrupt():
            codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # each worker saves and queues its trial, then exits
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    return max(codes)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) stops like Ctrl-C while this holds: the running trial's
    last epoch stays saved and it is queued to resume. Once stopping, more SIGTERMs and Ctrl-Cs
    are ignored until the block ends: Slurm signals every process of a job and a terminal's
    Ctrl-C reaches every worker, while their parent passes the stop on too, and a second
    interrupt while the trial is being queued would leave it failed and never queued."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, left as it is
                signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: Any) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt
