"""examples/slurm-array.sbatch, run as Slurm runs its array tasks against one PostgreSQL
study: two tasks finish exactly --trials between them; a task killed on another node is resumed
by heartbeat."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
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
    task: int, env: dict[str, str], log: Path, *extra: str, node: str | None = None, gpus: int = 1
) -> subprocess.Popen:
    """The script as Slurm runs one array task: bash, in the submit folder, with the variables
    Slurm sets; the tiny study's flags are the script's arguments (after the file on sbatch).
    ``node``: run it as another machine, a UTS namespace with that host name; ``gpus``: the
    node's, so its --workers."""
    slurm = {
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": str(1000 + task),
        "SLURM_ARRAY_JOB_ID": "1000",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_GPUS_ON_NODE": str(gpus),
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


def test_a_second_stop_signal_while_queueing_is_ignored() -> None:
    """Slurm's SIGTERM reaches every worker while their parent passes one on too: the second
    must not break off the first one's queueing of the trial."""
    from study.lifecycle.workers import sigterm_as_interrupt

    queued = False
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # os.kill runs the handler before returning
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGTERM)  # the parent's, while the trial is queued
            os.kill(os.getpid(), signal.SIGINT)
            queued = True
            raise
    assert queued
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after


@pytest.mark.slow  # a node's workers stopped, then the same task submitted again
@pytest.mark.postgres
def test_a_task_stopped_like_slurm_queues_every_trial_and_a_resubmission_ends_it(
    tmp_path: Path,
) -> None:
    """scancel or the time limit: SIGTERM to every process of the task at once (the study.run
    the script became, and its workers). Each running trial is queued to resume; submitting the
    same task again finishes exactly --trials."""
    url, name = postgres_url(), f"slurm-{uuid.uuid4().hex[:8]}"
    env = task_env(url, name, 3, tmp_path / "shared")
    task = array_task(0, env, tmp_path / "task0.out", "--epochs", "6", gpus=2)

    def both_training() -> bool:
        running = [t for t in trials(url, name) if t.state.name == "RUNNING"]
        return sum(len(t.intermediate_values) > 0 for t in running) == 2

    try:
        wait_for(both_training, timeout=300, what="both workers past a first epoch")
        workers = Path(f"/proc/{task.pid}/task/{task.pid}/children").read_text().split()
        for pid in (task.pid, *map(int, workers)):
            os.kill(pid, signal.SIGTERM)
        assert task.wait(timeout=300) == 130
    finally:
        task.kill()
    stopped = trials(url, name)
    assert not [t for t in stopped if t.state.name == "RUNNING"]
    retried = {t.user_attrs.get("retry_of") for t in stopped if t.state.name == "WAITING"}
    assert retried == {t.number for t in stopped if t.state.name == "FAIL"}, [
        (t.number, t.state.name, t.user_attrs.get("retry_of")) for t in stopped
    ]
    again = array_task(0, env, tmp_path / "again.out", "--epochs", "6", gpus=2)
    assert again.wait(timeout=600) == 0, (tmp_path / "again.out").read_text()
    finished = [t for t in trials(url, name) if t.state.name == "COMPLETE"]
    resumed = [t for t in finished if t.user_attrs.get("retry_of") is not None]
    assert len(finished) == 3 and len(resumed) == 2
    assert all(t.user_attrs["resumed_from_epoch"] >= 1 for t in resumed)  # not from zero
