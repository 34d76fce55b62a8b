"""Helpers for tests that run ``python -m study.run`` as real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from benchmarks.kill_resume import FAST_TRIAL, running_epochs

__all__ = ["FAST_TRIAL", "running_epochs"]  # shared with the kill-and-resume benchmark

ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    # one thread per worker: several workers share this machine's two cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "study.run", *args],
        cwd=ROOT,
        env=worker_env(),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials()
    except KeyError:
        return []
