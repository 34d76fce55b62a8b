"""What broke in the trial lifecycle (issue 9) and now holds, for search, rerun and ablation."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import wrn.train as training
from study import rerun, run, status
from study.cli import run_command
from study.records import trial_seconds, wall_seconds
from tests.study.conftest import TINY_STUDY, copy_db, tiny_args
from tests.study.workers import ROOT, running_epochs, trials, wait_for, worker_env

COMPLETE, FAIL, WAITING = TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING


def interrupt_after(epoch: int) -> Callable[..., Any]:
    """A ``train`` that stops like Ctrl-C once ``epoch`` is reported (its checkpoint is saved)."""
    real = training.train

    def train(cfg: Any, on_epoch_end: Any = None, **kwargs: Any) -> Any:
        def hook(stats: Any) -> None:
            on_epoch_end(stats)
            if stats.epoch >= epoch:
                raise KeyboardInterrupt

        return real(cfg, on_epoch_end=hook, **kwargs)

    return train


def url(storage: Path) -> str:
    return f"sqlite:///{storage}"


def interrupted_search(tmp_path: Path, epochs: int = 3) -> list[str]:
    """A 1-trial search stopped by Ctrl-C after its first epoch; returns its arguments."""
    argv = tiny_args(tmp_path / "wrn.db", "--epochs", str(epochs), "--trials", "1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train", interrupt_after(1))
        with pytest.raises(KeyboardInterrupt):
            run.main(argv)
    return argv


def test_ctrl_c_says_what_was_saved_and_is_no_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = interrupted_search(tmp_path)
    err = capsys.readouterr().err
    assert "trial 0 saved at epoch 1 and queued; run the same command to resume" in err
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith(f"study '{TINY_STUDY}':"))
    assert "fail" not in summary and "1 complete" in summary
    assert status.main(["--storage", url(tmp_path / "wrn.db")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny"))
    # columns: study kind complete pruned fail running waiting
    assert row.split()[2:7] == ["1", "0", "0", "0", "0"]


def test_status_counts_each_resumed_epoch_once(tmp_path: Path) -> None:
    argv = interrupted_search(tmp_path, epochs=3)
    assert run.main(argv) == 0
    final = trials(url(tmp_path / "wrn.db"), TINY_STUDY)
    done = next(t for t in final if t.state == COMPLETE)
    assert done.user_attrs["resumed_from_epoch"] == 1
    epochs_trained = sum(len(t.user_attrs["epoch_seconds"]) for t in final)
    assert epochs_trained == 3  # epoch 1 by the interrupted attempt, 2 and 3 by the retry
    history = done.user_attrs["history"]  # every epoch once, restored ones included
    assert sum(wall_seconds(t) for t in final) == pytest.approx(sum(h["seconds"] for h in history))
    compute = sum(h["cpu_seconds"] for h in history)  # what each epoch consumed, on CPU
    assert sum(trial_seconds(t) for t in final) == pytest.approx(compute)


def test_corrupt_checkpoint_is_set_aside_and_the_trial_reruns(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = interrupted_search(tmp_path, epochs=2)
    (checkpoint,) = (tmp_path / "checkpoints" / TINY_STUDY).glob("trial-0-*.pt")
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a crash
    assert run.main(argv) == 0
    final = trials(url(tmp_path / "wrn.db"), TINY_STUDY)
    assert [t.state for t in final] == [FAIL, COMPLETE]
    redone = final[1]
    assert redone.params == final[0].params  # the same configuration, trained from epoch 0
    assert redone.user_attrs["resumed_from_epoch"] == 0
    assert sorted(redone.intermediate_values) == [1, 2]
    reason = redone.user_attrs["checkpoint_discarded"]
    assert "unreadable checkpoint" in reason and f"{checkpoint.name}.corrupt-" in reason
    kept = list(checkpoint.parent.glob(f"{checkpoint.name}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == data[: len(data) // 2]
    out = capsys.readouterr()
    lines = [x for x in (out.out + out.err).splitlines() if "checkpoint not usable" in x]
    assert len(lines) == 1 and "Traceback" not in out.err


def test_separate_runs_draw_their_own_points_and_record_the_seed(tmp_path: Path) -> None:
    def first_trial(name: str, *extra: str) -> optuna.trial.FrozenTrial:
        storage = tmp_path / f"{name}.db"
        argv = tiny_args(storage, "--epochs", "1", "--trials", "1", "--seed", "5", *extra)
        argv[argv.index("--sampler") + 1] = "random"
        assert run.main(argv) == 0
        return trials(url(storage), TINY_STUDY)[0]

    a, b = first_trial("a"), first_trial("b")  # the same command, as on two machines
    assert a.params != b.params
    assert a.user_attrs["sampler_seed"] != b.user_attrs["sampler_seed"]
    replay = first_trial("c", "--sampler-seed", str(a.user_attrs["sampler_seed"]))
    assert replay.params == a.params


@pytest.mark.slow  # four worker processes
def test_workers_stop_at_exactly_the_total(tmp_path: Path) -> None:
    storage = tmp_path / "wrn.db"
    argv = tiny_args(storage, "--epochs", "1", "--trials", "2", "--workers", "4")
    done = subprocess.run(
        [sys.executable, "-m", "study.run", *argv],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert [t.state for t in trials(url(storage), TINY_STUDY)] == [COMPLETE, COMPLETE]


def start(module: str, argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        env=worker_env(),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def rerun_args(storage: Path, *extra: str) -> list[str]:
    return [
        "--study-name",
        TINY_STUDY,
        "--storage",
        url(storage),
        "--device",
        "cpu",
        "--checkpoint-dir",
        str(storage.parent / "ckpt"),
        *extra,
    ]


KILLED = [
    ("study.rerun", f"{TINY_STUDY}-rerun", ["--epochs", "5", "--seeds", "1"]),
    ("study.ablate", f"{TINY_STUDY}-ablation", ["--epochs", "5", "--seeds", "1"]),
]


@pytest.mark.slow  # real command processes, SIGKILLed and restarted
@pytest.mark.parametrize(("module", "record", "extra"), KILLED)
def test_killed_rerun_and_ablation_resume_their_trial(
    tiny_study: Path, tmp_path: Path, module: str, record: str, extra: list[str]
) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    argv = rerun_args(storage, *extra)
    log = tmp_path / "log"
    worker = start(module, argv, log)
    wait_for(lambda: running_epochs(url(storage), record) >= 2, what="two epochs")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    finished = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr
    assert "worker gone, queued to resume" in finished.stdout
    final = trials(url(storage), record)
    assert not [t for t in final if t.state not in (COMPLETE, FAIL)]
    killed = final[0]
    assert killed.state == FAIL and killed.user_attrs["fail_reason"] == "worker process died"
    resumed = next(
        t
        for t in final
        if t.user_attrs.get("first_attempt") == killed.number and t.state == COMPLETE
    )
    assert resumed.user_attrs["resumed_from_epoch"] >= 2
    assert sorted(resumed.intermediate_values) == [1, 2, 3, 4, 5]
    # each run (seed, variant) recorded once
    keys = [t.user_attrs["run_key"] for t in final if t.state == COMPLETE]
    assert len(keys) == len(set(keys))


@pytest.mark.slow  # two ablation processes at once
def test_two_ablations_on_one_study_share_the_work(tiny_study: Path, tmp_path: Path) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    argv = rerun_args(storage, "--epochs", "2", "--seeds", "2")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start("study.ablate", argv, logs[0])]
    record = f"{TINY_STUDY}-ablation"
    # the second joins once the first is at work, a run of its own RUNNING
    wait_for(
        lambda: any(t.state == TrialState.RUNNING for t in trials(url(storage), record)),
        what="the first ablation's first run",
    )
    procs.append(start("study.ablate", argv, logs[1]))
    codes = [p.wait(timeout=900) for p in procs]
    text = "".join(log.read_text() for log in logs)
    assert codes == [0, 0], text
    assert "Traceback" not in text
    final = trials(url(storage), record)
    assert [t for t in final if t.state != COMPLETE] == []
    pairs = [(t.user_attrs["variant"], t.user_attrs["seed"]) for t in final]
    assert len(pairs) == len(set(pairs))
    # both processes trained: neither waited for the other to do everything
    assert len({t.user_attrs["pid"] for t in final}) == 2


def test_rerun_top_k_retrains_the_k_best(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    assert rerun.main(rerun_args(storage, "--top", "2", "--epochs", "1", "--seeds", "2")) == 0
    source = optuna.load_study(study_name=TINY_STUDY, storage=url(storage))
    best_two = sorted(source.get_trials(states=(COMPLETE,)), key=lambda t: -t.value)[:2]
    record = trials(url(storage), f"{TINY_STUDY}-rerun")
    assert sorted((t.user_attrs["source_trial"], t.user_attrs["seed"]) for t in record) == sorted(
        (t.number, s) for t in best_two for s in (0, 1)
    )
    for t in record:
        assert t.state == COMPLETE and t.value == t.user_attrs["test_acc"]
    for t in best_two:
        summary = source.user_attrs[f"rerun_trial{t.number}_e1"]
        assert len(summary["runs"]) == 2
    # resumable: the same command again trains nothing
    assert rerun.main(rerun_args(storage, "--top", "2", "--epochs", "1", "--seeds", "2")) == 0
    assert len(trials(url(storage), f"{TINY_STUDY}-rerun")) == 4


def test_changed_settings_name_the_recorded_value(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    before = storage.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        run_command("python -m study.run", run.main, tiny_args(storage, "--epochs", "3"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "study 'tiny' was run with epochs=1; this command asks for epochs=3" in err
    assert len(err.splitlines()) == 1 and storage.read_bytes() == before


def test_status_reads_a_read_only_storage(
    tiny_study: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[dict] = []
    real_open = status.open_storage

    def spy(*args: Any, **kwargs: Any) -> Any:
        opened.append(kwargs)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(status, "open_storage", spy)
    # (as root the permissions do not stop a write; the bytes below still must not change)
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    for p in tmp_path.glob("wrn.db*"):
        p.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        # the database and its write-ahead log (the -shm file is SQLite's shared-memory index)
        files = [storage, Path(f"{storage}-wal")]
        before = [p.read_bytes() for p in files if p.exists()]
        assert status.main(["--storage", url(storage)]) == 0
        assert "tiny" in capsys.readouterr().out
        assert [p.read_bytes() for p in files if p.exists()] == before
        # never opened for writing, whoever runs it (root ignores the file permissions)
        assert opened and all(k.get("read_only") is True for k in opened)
    finally:
        tmp_path.chmod(0o755)


PROBE = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__')\n"
    "finally:\n"
    "    print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
)


@pytest.mark.parametrize("module", ["study.run", "study.rerun", "study.ablate", "study.status"])
@pytest.mark.parametrize("flags", [["--help"], ["--no-such-flag"], ["--seed", str(2**31)]])
def test_help_and_bad_flags_do_not_import_torch(module: str, flags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, *flags],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 2), done.stderr
    assert "TORCH False" in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_anywhere_in_a_trial_queues_it_to_resume(capsys: pytest.CaptureFixture) -> None:
    """The one run path (search and planned runs alike): an interrupt before any epoch, even
    before training starts, leaves the trial failed as interrupted with a queued retry."""
    from study.lifecycle import Lifecycle

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    trial = study.ask()

    def interrupted(trial: optuna.Trial) -> float:
        raise KeyboardInterrupt  # e.g. while the trial's parameters are sampled

    with pytest.raises(KeyboardInterrupt):
        Lifecycle().run_and_tell(study, storage, trial, interrupted)
    first, retry = study.get_trials()
    assert (first.state, retry.state) == (FAIL, WAITING)
    assert first.user_attrs["interrupted"] is True
    assert "trial 0 had no finished epoch; queued to run again" in capsys.readouterr().err

    def broken(trial: optuna.Trial) -> float:
        raise AssertionError("a bug")

    with pytest.raises(AssertionError):
        Lifecycle().run_and_tell(study, storage, study.ask(), broken)
    assert study.get_trials()[-1].state == FAIL  # told, not left RUNNING
