"""A worker that lost its trial while it was stopped leaves the retry alone (issue 16, break 7)."""

import hashlib
import signal
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest

import wrn.train as training
from study import run as run_module
from study.lifecycle import fail_and_requeue
from study.storage import MAX_RETRY, open_storage
from tests.study.workers import FAST_TRIAL, run, running_epochs, start, trials, wait_for

RUNNING = optuna.trial.TrialState.RUNNING
COMPLETE = optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL
LEFT = "trial 0 was taken over by trial 1 while this worker was stopped; leaving it"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_trial_taken_over_after_epoch_1_writes_and_reports_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """What another process does to a frozen worker's trial (fail it, queue the retry, start
    the retry on the checkpoint) is done here, from a second storage handle, right after the
    worker's epoch 1; the worker then goes on with epoch 2 as a resumed one would."""
    url = f"sqlite:///{tmp_path}/wrn.db"
    checkpoints = tmp_path / "ckpt"
    taken: dict[str, Any] = {}

    def take_over() -> None:
        storage = open_storage(url)
        study = optuna.load_study(study_name="s", storage=storage)
        checkpoint = Path(study.get_trials()[0].user_attrs["checkpoint"])
        wait_for(checkpoint.exists, what="epoch 1 on disk")  # written in the background
        assert fail_and_requeue(study, storage, 0, "heartbeat stale", MAX_RETRY)
        taken["retry"] = study.ask()  # the retry starts, on the checkpoint of epoch 1
        taken["checkpoint"], taken["digest"] = checkpoint, digest(checkpoint)

    real_train = training.train

    def train(cfg: Any, on_epoch_end: Any = None, **kwargs: Any) -> Any:
        def hook(stats: Any) -> None:
            on_epoch_end(stats)
            if stats.epoch == 1:
                take_over()

        return real_train(cfg, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(training, "train", train)
    args = [*FAST_TRIAL, "--epochs", "3", "--storage", url, "--study-name", "s", "--trials", "1"]
    args += ["--max-failures", "1"]  # a trial left to another process is no failure here
    assert run_module.main([*args, "--checkpoint-dir", str(checkpoints)]) == 0

    first, retry = trials(url, "s")
    assert taken["retry"].number == retry.number == 1
    assert first.state == FAIL and sorted(first.intermediate_values) == [1]
    assert retry.state == RUNNING and sorted(retry.intermediate_values) == [1]
    # the retry's checkpoint is as it was taken over, and nothing else was written
    assert digest(taken["checkpoint"]) == taken["digest"]
    assert files(checkpoints) == [taken["checkpoint"]]
    out = capsys.readouterr()
    said = (out.out + out.err).splitlines()
    assert [line.endswith(LEFT) for line in said if "taken over" in line] == [True]
    assert "Traceback" not in out.out + out.err


def test_ctrl_c_after_the_trial_was_taken_over_queues_no_second_retry(
    capsys: pytest.CaptureFixture,
) -> None:
    from study.lifecycle import Lifecycle

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)

    def taken_then_interrupted(trial: optuna.Trial) -> float:
        assert fail_and_requeue(study, storage, trial.number, "heartbeat stale", MAX_RETRY)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Lifecycle().run_and_tell(study, storage, study.ask(), taken_then_interrupted)
    assert [t.state for t in study.get_trials()] == [FAIL, optuna.trial.TrialState.WAITING]
    assert LEFT in capsys.readouterr().err


@pytest.mark.slow  # real worker processes, one stopped past its heartbeats
def test_a_stopped_worker_resumed_after_its_retry_finished_leaves_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wrn.db"
    name = f"frozen-{uuid.uuid4().hex[:8]}"
    checkpoints = tmp_path / "ckpt"
    args = [*FAST_TRIAL, "--epochs", "4", "--storage", url, "--study-name", name]
    args += ["--trials", "1", "--heartbeat", "1", "--checkpoint-dir", str(checkpoints)]
    log = tmp_path / "frozen.log"
    frozen = start(args, log)
    try:
        wait_for(lambda: running_epochs(url, name) >= 1, what="epoch 1")
        frozen.send_signal(signal.SIGSTOP)
        # another process fails the silent trial and queues its retry, as every worker does
        study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=1))

        def failed() -> bool:
            optuna.storages.fail_stale_trials(study)
            return study.get_trials()[0].state == FAIL

        wait_for(failed, what="the stopped trial failed by its heartbeat")
        retry = run([*args, "--keep-checkpoints"])
        assert retry.returncode == 0, retry.stderr
        kept = files(checkpoints)
        assert len(kept) == 1
        before = digest(kept[0])
    finally:
        frozen.send_signal(signal.SIGCONT)
    assert frozen.wait(timeout=120) == 0
    first, done = trials(url, name)
    assert first.state == FAIL and done.state == COMPLETE
    assert sorted(done.intermediate_values) == [1, 2, 3, 4]
    assert files(checkpoints) == kept and digest(kept[0]) == before
    text = log.read_text()
    assert text.count("was taken over by trial 1") == 1 and "Traceback" not in text
