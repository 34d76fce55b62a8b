"""examples/slurm-array.sbatch: its study.run command line, run as two array tasks on one
PostgreSQL study, finishes exactly --trials between them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from tests.study.test_resilience import postgres_url
from tests.study.workers import FAST_TRIAL, ROOT, trials, worker_env

SBATCH = ROOT / "examples" / "slurm-array.sbatch"


def command_line() -> str:
    """The script's ``python -m study.run`` line, its continuation lines joined."""
    text = SBATCH.read_text()
    found = re.search(r"^exec (python -m study\.run (?:.*\\\n)*.*)$", text, re.MULTILINE)
    assert found is not None, f"no 'exec python -m study.run' line in {SBATCH}"
    return found[1].replace("\\\n", " ")


def test_the_command_adds_workers_and_leaves_the_sampler_seed_to_the_salt() -> None:
    words = shlex.split(command_line())
    assert words[words.index("--workers") + 1] == "${SLURM_GPUS_ON_NODE:-1}"
    assert "--sampler-seed" not in words and "grpc" not in command_line()
    directives = [line for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert directives and all(line.startswith("#SBATCH --") for line in directives)


def array_task(task: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """The script as Slurm runs one array task: bash, in the submit folder, with the variables
    Slurm sets; the tiny study's flags are the script's arguments (after the file on sbatch)."""
    slurm = {
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": str(1000 + task),
        "SLURM_ARRAY_JOB_ID": "1000",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_GPUS_ON_NODE": "1",  # --workers 1 on each "node"
    }
    args = [*FAST_TRIAL, "--epochs", "1"]
    return subprocess.Popen(
        ["bash", str(SBATCH), *args],
        cwd=log.parent,  # the script moves to SLURM_SUBMIT_DIR itself
        env={**env, **slurm},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow  # two real study processes
@pytest.mark.postgres
def test_two_array_tasks_finish_exactly_the_trials_between_them(tmp_path: Path) -> None:
    url, name, total = postgres_url(), f"slurm-{uuid.uuid4().hex[:8]}", 3
    env = {
        **worker_env(),
        # the submitting shell's environment: its venv's python first on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "WRN_STORAGE": url,
        "WRN_STUDY": name,
        "WRN_TRIALS": str(total),
        "WRN_DIR": str(tmp_path / "shared"),
    }
    tasks = [array_task(i, env, tmp_path / f"task{i}.out") for i in range(2)]
    codes = [task.wait(timeout=600) for task in tasks]
    logs = [(tmp_path / f"task{i}.out").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert not any("Traceback" in log for log in logs), logs
    result = trials(url, name)
    assert [t.state for t in result] == [optuna.trial.TrialState.COMPLETE] * total, logs
    assert (tmp_path / "shared" / "artifacts").is_dir()  # written under $WRN_DIR only
