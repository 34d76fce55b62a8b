"""examples/slurm-array.sbatch, run as Slurm runs its array tasks against one PostgreSQL
study: two tasks finish exactly --trials between them; a task killed on another node is resumed
by heartbeat."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from study.lifecycle.claims import STALE_REASON
from tests.study.test_resilience import postgres_url
from tests.study.workers import FAST_TRIAL, ROOT, running_epochs, trials, wait_for, worker_env

SBATCH = ROOT / "examples" / "slurm-array.sbatch"
AS_HOST = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"']  # then NAME COMMAND...


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


def array_task(
    task: int, env: dict[str, str], log: Path, *extra: str, node: str | None = None
) -> subprocess.Popen:
    """The script as Slurm runs one array task: bash, in the submit folder, with the variables
    Slurm sets; the tiny study's flags are the script's arguments (after the file on sbatch).
    ``node``: run it as another machine, a UTS namespace with that host name."""
    slurm = {
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": str(1000 + task),
        "SLURM_ARRAY_JOB_ID": "1000",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_GPUS_ON_NODE": "1",  # --workers 1 on each "node"
    }
    args = [*FAST_TRIAL, "--epochs", "1", *extra]
    on = (
        []
        if node is None
        else ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', node]
    )
    return subprocess.Popen(
        [*on, "bash", str(SBATCH), *args],
        cwd=log.parent,  # the script moves to SLURM_SUBMIT_DIR itself
        env={**env, **slurm},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def task_env(url: str, name: str, total: int, shared: Path) -> dict[str, str]:
    return {
        **worker_env(),
        # the submitting shell's environment: its venv's python first on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "WRN_STORAGE": url,
        "WRN_STUDY": name,
        "WRN_TRIALS": str(total),
        "WRN_DIR": str(shared),
    }


@pytest.mark.slow  # two real study processes
@pytest.mark.postgres
def test_two_array_tasks_finish_exactly_the_trials_between_them(tmp_path: Path) -> None:
    url, name, total = postgres_url(), f"slurm-{uuid.uuid4().hex[:8]}", 3
    env = task_env(url, name, total, tmp_path / "shared")
    tasks = [array_task(i, env, tmp_path / f"task{i}.out") for i in range(2)]
    codes = [task.wait(timeout=600) for task in tasks]
    logs = [(tmp_path / f"task{i}.out").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert not any("Traceback" in log for log in logs), logs
    result = trials(url, name)
    assert [t.state for t in result] == [optuna.trial.TrialState.COMPLETE] * total, logs
    assert (tmp_path / "shared" / "artifacts").is_dir()  # written under $WRN_DIR only


def other_nodes_possible() -> bool:
    probe = [*AS_HOST, "node-probe", "true"]
    return shutil.which("unshare") is not None and subprocess.run(probe).returncode == 0


@pytest.mark.slow  # two real study processes, one SIGKILLed
@pytest.mark.postgres
def test_a_task_killed_on_another_node_is_resumed_by_heartbeat(tmp_path: Path) -> None:
    """The node of task 0 dies mid-trial (SIGKILL, its host name not this one's): task 1, on
    this host, requeues the trial once its heartbeat is three --heartbeat intervals old, and
    resumes it from its checkpoint on the shared folder."""
    if not other_nodes_possible():
        pytest.skip("needs unshare --uts (root) to run a task under another host name")
    url, name = postgres_url(), f"slurm-{uuid.uuid4().hex[:8]}"
    env = task_env(url, name, 2, tmp_path / "shared")
    beat = ("--epochs", "4", "--heartbeat", "1")
    lost = array_task(0, env, tmp_path / "task0.out", *beat, node="lost-node")
    try:
        wait_for(lambda: running_epochs(url, name) >= 2, timeout=300, what="two epochs")
    finally:
        lost.kill()  # the node is gone: no SIGTERM, no last write
        lost.wait()
    survivor = array_task(1, env, tmp_path / "task1.out", *beat)
    assert survivor.wait(timeout=600) == 0, (tmp_path / "task1.out").read_text()
    result = trials(url, name)
    first = [t for t in result if t.user_attrs.get("first_attempt", t.number) == 0]
    assert [t.state.name for t in first] == ["FAIL", "COMPLETE"]
    assert first[0].user_attrs["host"] == "lost-node"
    assert first[1].user_attrs["previous_failure"] == STALE_REASON
    assert first[1].user_attrs["resumed_from_epoch"] >= 1  # from its checkpoint, not from zero
    assert len([t for t in result if t.state.name == "COMPLETE"]) == 2
