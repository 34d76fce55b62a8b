"""A SQLite storage whose disk fills up mid-trial: one line, and the next run resumes the trial.

The disk is real: a small tmpfs (mounting needs root; skipped otherwise), filled by the worker
itself right after its first epoch is reported, so the next write to the storage meets it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study import run
from study.records import TrialAttrs as A
from tests.study.conftest import TINY_STUDY, tiny_args

# the worker: study.run with the disk filled once its first epoch is reported
FILL_AFTER_FIRST_EPOCH = """
import sys
import study.lifecycle.attempt as attempt
from study import run
from study.cli import run_command

report, filler = attempt.report_epoch, sys.argv[1]

def report_then_fill(trial, stats):
    report(trial, stats)
    if stats.epoch == 1:
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(bytes(1 << 16))
                    f.flush()
            except OSError:
                pass

attempt.report_epoch = report_then_fill
run_command("python -m study.run", run.main, sys.argv[2:])
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        # lazily: this process's storage connections may still hold the file open
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


@pytest.mark.slow
def test_a_full_storage_disk_is_one_line_and_the_trial_resumes(
    small_disk: Path, tmp_path: Path
) -> None:
    storage, filler = small_disk / "wrn.db", small_disk / "filler"
    # checkpoints and artifacts on the roomy disk: only the storage's disk fills up
    argv = [
        *tiny_args(storage, "--epochs", "3", "--trials", "1", "--quiet"),
        "--checkpoint-dir",
        str(tmp_path / "checkpoints"),
        "--artifact-dir",
        str(tmp_path / "artifacts"),
    ]
    worker = subprocess.run(
        [sys.executable, "-c", FILL_AFTER_FIRST_EPOCH, str(filler), *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    err = worker.stderr.strip()
    assert worker.returncode == 1 and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert f"storage sqlite:///{storage}: disk full (0.0 MiB free in {small_disk})" in err
    url = f"sqlite:///{storage}"
    (stopped,) = optuna.load_study(study_name=TINY_STUDY, storage=url).get_trials()
    assert stopped.state == TrialState.RUNNING and stopped.intermediate_values
    assert list((tmp_path / "checkpoints").rglob("*.pt"))  # kept for the resume

    filler.unlink()  # room again: the same command resumes the trial (its process is gone)
    assert run.main(argv) == 0
    first, retry = optuna.load_study(study_name=TINY_STUDY, storage=url).get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs[A.FAIL_REASON]
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert retry.user_attrs[A.RESUMED_FROM_EPOCH] >= 1 and sorted(retry.intermediate_values) == [
        1,
        2,
        3,
    ]
