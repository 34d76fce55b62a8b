"""Nothing lost: killed, interrupted and failing trials; dead-worker recovery; checkpoints."""

import errno
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

import wrn.train as training
from study import run as run_module
from study.cli import run_command
from study.lifecycle import process_start_time, recover_dead_trials
from study.storage import open_storage
from tests.study.workers import FAST_TRIAL, run, running_epochs, start, trials, wait_for
from wrn.checkpoint import load_checkpoint
from wrn.train import EpochStats, NonFiniteLossError, TrainResult

COMPLETE = optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL


def postgres_url() -> str:
    url = os.environ.get("WRN_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("WRN_REQUIRE_POSTGRES"):
            pytest.fail("WRN_REQUIRE_POSTGRES is set but WRN_TEST_POSTGRES_URL is not")
        pytest.skip("set WRN_TEST_POSTGRES_URL=postgresql://... to test against PostgreSQL")
    return url


def storage_url(backend: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/wrn.db" if backend == "sqlite" else postgres_url()


def chain(all_trials: list[optuna.trial.FrozenTrial], first: int) -> list:
    """A trial and its retries, in order."""
    return [t for t in all_trials if t.user_attrs.get("first_attempt", t.number) == first]


@pytest.mark.slow  # real study processes, SIGKILLed and restarted
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_killed_worker_resumes_from_its_last_epoch(backend: str, tmp_path: Path) -> None:
    url = storage_url(backend, tmp_path)
    name = f"kill-{uuid.uuid4().hex[:8]}"
    common = [*FAST_TRIAL, "--epochs", "5", "--seed", "1", "--sampler-seed", "1"]
    # the same first trial, uninterrupted, in a storage of its own
    ref_url = f"sqlite:///{tmp_path}/reference.db"
    done = run(
        [
            *common,
            "--storage",
            ref_url,
            "--study-name",
            "ref",
            "--trials",
            "1",
            "--checkpoint-dir",
            str(tmp_path / "ref-ckpt"),
        ]
    )
    assert done.returncode == 0, done.stderr
    reference = trials(ref_url, "ref")[0]

    args = [
        *common,
        "--storage",
        url,
        "--study-name",
        name,
        "--trials",
        "2",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    log = tmp_path / "workers.log"
    for epochs_before_kill in (2, 4):  # two kill-and-restart cycles on the same trial
        worker = start(args, log)
        wait_for(lambda n=epochs_before_kill: running_epochs(url, name) >= n, what="epochs")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finished = run(args)
    assert finished.returncode == 0, finished.stderr
    assert "worker gone, queued to resume" in finished.stdout

    final = trials(url, name)
    first = chain(final, 0)
    assert [t.state for t in first] == [FAIL, FAIL, COMPLETE]
    assert all(t.user_attrs["fail_reason"] == "worker process died" for t in first[:2])
    done_trial = first[-1]
    assert done_trial.user_attrs["fail_reason"] is None
    assert done_trial.user_attrs["previous_failure"] == "worker process died"
    # resumed from a checkpoint, not from zero, and reported what an uninterrupted run does
    resumed_at = done_trial.user_attrs["resumed_from_epoch"]
    assert resumed_at >= 4
    assert done_trial.intermediate_values == reference.intermediate_values
    assert done_trial.value == reference.value
    assert done_trial.params == reference.params
    # nothing lost: the study holds its two finished trials and every failure was retried
    assert len([t for t in final if t.state == COMPLETE]) == 2
    assert all(
        chain(final, t.user_attrs.get("first_attempt", t.number))[-1].state == COMPLETE
        for t in final
    )
    assert not list((tmp_path / "ckpt").rglob("*.pt"))  # finished trials leave no checkpoint
    assert "Traceback" not in log.read_text()


@pytest.mark.slow  # a real study process, stopped and restarted
def test_sigterm_saves_and_the_next_run_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wrn.db"
    args = [
        *FAST_TRIAL,
        "--epochs",
        "4",
        "--storage",
        url,
        "--study-name",
        "term",
        "--trials",
        "1",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    worker = start(args, tmp_path / "worker.log")
    wait_for(lambda: running_epochs(url, "term") >= 2, what="two epochs")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 130
    interrupted = trials(url, "term")
    assert interrupted[0].state == FAIL and interrupted[0].user_attrs["interrupted"] is True
    assert interrupted[1].state == optuna.trial.TrialState.WAITING
    assert list((tmp_path / "ckpt").rglob("trial-0-*.pt"))
    assert "Traceback" not in (tmp_path / "worker.log").read_text()

    finished = run(args)
    assert finished.returncode == 0, finished.stderr
    resumed = trials(url, "term")[1]
    assert resumed.state == COMPLETE and resumed.user_attrs["resumed_from_epoch"] >= 2
    assert resumed.user_attrs["interrupted"] is False
    assert sorted(resumed.intermediate_values) == [1, 2, 3, 4]


def test_recovery_touches_only_this_hosts_dead_workers(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/wrn.db")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": process_start_time(os.getpid()),
    }
    owners = [
        me,
        {**me, "pid": dead.pid},
        {**me, "host": "another-machine", "pid": dead.pid},
        {**me, "pid_start": (me["pid_start"] or 0) + 1},
    ]  # a reused pid is not ours
    for attrs in owners:
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
    assert recover_dead_trials(study, storage) == [1, 3]
    states = [t.state for t in study.get_trials()]
    running = optuna.trial.TrialState.RUNNING
    waiting = optuna.trial.TrialState.WAITING
    assert states == [running, FAIL, running, FAIL, waiting, waiting]
    assert recover_dead_trials(study, storage) == []  # nothing twice


def scripted_train(plan: dict[int, Any]) -> Any:
    """A ``train`` stand-in: trial i raises plan[i] if given, else learns a little."""
    calls = {"n": 0}

    def fake(cfg: Any, on_epoch_end: Any = None, **kwargs: Any) -> TrainResult:
        number = calls["n"]
        calls["n"] += 1
        if number in plan:
            raise plan[number]
        result = TrainResult("val", "cpu", 1)
        for epoch in range(1, cfg.run.epochs + 1):
            stats = EpochStats(epoch, 1.0, 0.1 * epoch, 1.0, 0.1 * epoch, 0.1, 0.01, 1e4)
            result.history.append(stats)
            on_epoch_end(stats)
        return result

    return fake


def in_process_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *FAST_TRIAL,
        "--epochs",
        "2",
        "--storage",
        f"sqlite:///{tmp_path}/wrn.db",
        "--study-name",
        "s",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        *extra,
    ]


def test_oom_nan_and_errors_are_contained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plan = {
        0: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        1: NonFiniteLossError(1, float("nan")),
        2: RuntimeError("cudnn exploded"),
    }
    monkeypatch.setattr(training, "train", scripted_train(plan))
    assert run_module.main(in_process_args(tmp_path, "--trials", "3")) == 0
    result = trials(f"sqlite:///{tmp_path}/wrn.db", "s")
    # failures do not count towards --trials, the pruned trial does
    assert [t.state.name for t in result] == ["FAIL", "PRUNED", "FAIL", "COMPLETE", "COMPLETE"]
    assert result[0].user_attrs["fail_reason"].startswith("CUDA out of memory")
    assert result[1].user_attrs["pruned_reason"].startswith("non-finite loss")
    assert result[2].user_attrs["fail_reason"] == "RuntimeError: cudnn exploded"
    assert "cudnn exploded" in result[2].user_attrs["fail_traceback"]
    err = capsys.readouterr().err
    assert "trial 0 failed: CUDA out of memory" in err and "Traceback" not in err


def test_too_many_failures_in_a_row_stop_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plan = {i: RuntimeError("broken setup") for i in range(10)}
    monkeypatch.setattr(training, "train", scripted_train(plan))
    with pytest.raises(SystemExit) as exit_info:
        run_command(
            "python -m study.run",
            run_module.main,
            in_process_args(tmp_path, "--trials", "5", "--max-failures", "3"),
        )
    assert exit_info.value.code == 1
    lines = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert lines == [
        "python -m study.run: error: stopped after 3 failed trials in a row "
        "(last: RuntimeError: broken setup); see the trials' fail_reason"
    ]
    assert len(trials(f"sqlite:///{tmp_path}/wrn.db", "s")) == 3


@pytest.mark.parametrize("keep", [False, True])
def test_checkpoints_of_finished_trials_are_removed_unless_kept(
    tmp_path: Path, keep: bool
) -> None:
    extra = ["--keep-checkpoints"] if keep else []
    assert run_module.main(in_process_args(tmp_path, "--trials", "2", *extra)) == 0
    files = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "ckpt").rglob("*.pt"))
    assert files == (["trial-0", "trial-1"] if keep else [])


@contextmanager
def full_disk(
    kind: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], None]]:
    """``folder`` fills up after one checkpoint of WRN-10-1 (about 650 KB): a real 1 MiB tmpfs
    (root only), or a write that fails with ENOSPC from the second one on. Yields ``free``,
    which makes room."""
    folder.mkdir()
    if kind == "patched":
        fsync, writes = os.fsync, []

        def full(fd: int) -> None:
            writes.append(fd)
            if len(writes) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            fsync(fd)

        monkeypatch.setattr(os, "fsync", full)
        yield monkeypatch.undo
        return
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]
    try:
        done = subprocess.run(mount, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command to make a small disk")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {done.stderr.strip()}")
    remount = ["mount", "-o", "remount,size=16m", str(folder)]
    try:
        yield lambda: subprocess.run(remount, check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("kind", ["tmpfs", "patched"])
def test_a_full_checkpoint_disk_keeps_the_checkpoint_and_queues_the_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, kind: str
) -> None:
    url, disk = f"sqlite:///{tmp_path}/wrn.db", tmp_path / "small"
    # one trial of 2 epochs; a failure in a row would stop the study
    args = in_process_args(tmp_path, "--trials", "1", "--max-failures", "1")
    args += ["--checkpoint-dir", str(disk)]
    with full_disk(kind, disk, monkeypatch) as free:
        with pytest.raises(SystemExit) as exit_info:
            run_command("python -m study.run", run_module.main, args)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if "error:" in x]
        assert len(lines) == 1 and "no space left on device" in lines[0]
        assert lines[0].endswith(
            "trial 0 is queued to resume from epoch 1 (its checkpoint kept): "
            "free space and run the same command"
        )
        assert "Traceback" not in err
        stopped, queued = trials(url, "s")
        assert stopped.state == FAIL and queued.state == optuna.trial.TrialState.WAITING
        assert stopped.user_attrs["interrupted"] is True  # not a failure
        assert "no space left on device" in stopped.user_attrs["fail_reason"]
        (kept,) = (p for p in disk.rglob("*") if p.is_file())
        assert kept.name.startswith("trial-0-") and load_checkpoint(kept)["epoch"] == 1

        free()
        assert run_module.main(args) == 0
    done = trials(url, "s")[1]
    assert done.state == COMPLETE and done.user_attrs["resumed_from_epoch"] == 1
    assert "no space left on device" in done.user_attrs["previous_failure"]
