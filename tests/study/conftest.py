"""Shared fixtures of the study tests: the tiny CPU study flags and a finished tiny study that
tests copy (never change) before they add to it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.kill_resume import FAST_TRIAL

TINY_STUDY = "tiny"
# a search's recorded settings, as study.run writes them, for studies a test builds by hand
SEARCH_SETTINGS = {
    "space": {"name": "wrn28_10", "search": {"epochs": 30}},
    "fixed": {"depth": 10, "width": 1},
    "epochs": 2,
    "recipe_epochs": 200,
    "dataset": "synthetic",
    "val_size": 500,
    "seed": 0,
    "pruner": "median",
    "sampler": "tpe",
}


def tiny_args(storage: Path, *extra: str) -> list[str]:
    """A WRN-10-1 search on synthetic data, CPU, everything written beside ``storage``."""
    return [
        *FAST_TRIAL,
        "--storage",
        f"sqlite:///{storage}",
        "--study-name",
        TINY_STUDY,
        "--checkpoint-dir",
        str(storage.parent / "checkpoints"),
        *extra,
    ]


def copy_db(source: Path, target: Path) -> Path:
    """Copy a SQLite storage with its write-ahead log (WAL mode keeps recent writes there)."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-trial, 1-epoch search ``tiny``; copy it with ``copy_db`` before writing."""
    from study import run

    storage = tmp_path_factory.mktemp("tiny-study") / "wrn.db"
    argv = tiny_args(storage, "--epochs", "1", "--trials", "2", "--sampler-seed", "0")
    assert run.main(argv) == 0
    return storage


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited: what a killed worker leaves on its trial."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    return dead.pid
