"""Several worker processes on one study: SQLite on one machine, PostgreSQL across machines."""

import uuid
from pathlib import Path

import optuna
import pytest

from tests.study.test_resilience import storage_url
from tests.study.workers import FAST_TRIAL, run, trials


@pytest.mark.parametrize(("backend", "workers", "total"), [("sqlite", 4, 12), ("postgres", 2, 6)])
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
    assert total <= len(result) < total + workers
    # the workers really ran side by side: more than one process recorded trials
    assert len({t.user_attrs["pid"] for t in result}) > 1
    assert f"with {workers} workers" in done.stdout
