"""Several worker processes on one study: SQLite on one machine, PostgreSQL across machines."""

import os
import uuid
from pathlib import Path

import optuna
import pytest

from tests.study.test_resilience import storage_url
from tests.study.workers import FAST_TRIAL, run, trials


@pytest.mark.slow  # worker processes training a real study
@pytest.mark.parametrize(
    ("backend", "workers", "total"),
    [("sqlite", 4, 12), pytest.param("postgres", 2, 6, marks=pytest.mark.postgres)],
)
def test_parallel_workers_finish_every_trial(
    backend: str, workers: int, total: int, tmp_path: Path
) -> None:
    url = storage_url(backend, tmp_path)
    name = f"parallel-{uuid.uuid4().hex[:8]}"
    done = run(
        [
            *FAST_TRIAL,
            "--epochs",
            "1",
            "--storage",
            url,
            "--study-name",
            name,
            "--trials",
            str(total),
            "--workers",
            str(workers),
            "--heartbeat",
            "5",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
        ],
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "locked" not in output and "Traceback" not in output
    result = trials(url, name)
    states = [t.state for t in result]
    # every trial finished, none failed or left running; workers stop at the study's total
    assert states == [optuna.trial.TrialState.COMPLETE] * len(result)
    assert len(result) == total  # exactly the total, however many workers
    # the workers really ran side by side: more than one process recorded trials
    assert len({t.user_attrs["pid"] for t in result}) > 1
    assert f"with {workers} workers" in done.stdout


@pytest.mark.slow  # a proxy server and worker processes
def test_workers_through_the_grpc_storage_proxy(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    import socket
    import subprocess
    import sys

    from tests.study.workers import ROOT, wait_for, worker_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:///{tmp_path}/wrn.db"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "study.proxy", "--storage", db, "--port", str(port)],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proxy.stdout is not None
        wait_for(lambda: b"serving" in proxy.stdout.readline(), timeout=60, what="the proxy")
        done = run(
            [
                *FAST_TRIAL,
                "--epochs",
                "1",
                "--storage",
                f"grpc://127.0.0.1:{port}",
                "--study-name",
                "proxied",
                "--trials",
                "4",
                "--workers",
                "2",
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
                # a grpc:// storage has no folder to put artifacts beside: keep them in tmp
                "--artifact-dir",
                str(tmp_path / "artifacts"),
            ]
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        proxy.terminate()
        proxy.wait()
    # everything went through the proxy into the database
    result = trials(db, "proxied")
    assert len(result) >= 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in result)


def test_each_worker_gets_a_share_of_the_compile_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process's first inductor compile starts one compile worker per core: --workers N
    gives each worker cores / N (at least 1), unless the user chose the number."""
    from study.lifecycle.workers import COMPILE_THREADS_ENV, worker_environments

    monkeypatch.delenv(COMPILE_THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    envs = worker_environments(4, [], "WORKER", {"EXTRA": "1"})
    assert [e[COMPILE_THREADS_ENV] for e in envs] == ["4"] * 4
    assert [e["WORKER"] for e in envs] == ["1", "2", "3", "4"] and envs[0]["EXTRA"] == "1"
    assert {e[COMPILE_THREADS_ENV] for e in worker_environments(32, [], "WORKER", {})} == {"1"}
    monkeypatch.setenv(COMPILE_THREADS_ENV, "2")
    assert {e[COMPILE_THREADS_ENV] for e in worker_environments(4, [], "WORKER", {})} == {"2"}
