"""The commands' live display: timestamped lines in a log, --quiet, a resumed study's best, and
the command line recorded on the study."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from study import run
from study.records import StudyAttrs, invocations, masked_argv
from tests.study.conftest import TINY_STUDY, copy_db, tiny_args
from tests.study.workers import ROOT, worker_env

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"


def run_logged(argv: list[str], log: Path) -> str:
    """``python -m study.run ARGV`` with stdout to the file ``log`` (not a terminal)."""
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "study.run", *argv],
            cwd=ROOT,
            env=worker_env(),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    return log.read_text()


@pytest.mark.slow  # study and rerun processes
def test_a_logged_study_has_timestamped_epoch_and_trial_lines_and_quiet_has_none(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "wrn.db"
    text = run_logged(tiny_args(storage, "--epochs", "2", "--trials", "1"), tmp_path / "a.log")
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert re.fullmatch(rf"{STAMP} {TINY_STUDY}: 0 of 1 trials finished, best -, 2 epochs each",
                        lines[0])  # fmt: skip
    assert any(re.fullmatch(rf"{STAMP} trial 0 start: .+", line) for line in lines)
    for epoch in (1, 2):
        assert any(
            re.fullmatch(rf"{STAMP} trial 0 epoch {epoch}/2 val_acc 0\.\d{{4}} \(.+ img/s\).*", x)
            for x in lines
        ), text
    assert any(
        re.fullmatch(rf"{STAMP} trial 0 complete val_acc 0\.\d{{4}} \(1 of 1 trials\).*", line)
        for line in lines
    ), text

    quiet = run_logged(
        tiny_args(storage, "--epochs", "2", "--trials", "2", "--quiet"), tmp_path / "q.log"
    )
    assert "epoch" not in quiet and "start" not in quiet
    assert f"study '{TINY_STUDY}': 2 complete" in quiet  # the final summary stays

    study = optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{storage}")
    recorded = invocations(study.user_attrs)
    assert [i.command for i in recorded] == ["study.run", "study.run"]
    assert recorded[-1].argv[-1] == "--quiet" and "--trials" in recorded[-1].argv


def test_a_resumed_study_shows_the_best_recorded_in_storage(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    study = optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{storage}")
    best = study.best_value
    # the fixture's own arguments: nothing left to run, the display starts and ends
    argv = tiny_args(storage, "--epochs", "1", "--trials", "2", "--sampler-seed", "0")
    assert run.main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(
        rf"{STAMP} {TINY_STUDY}: 2 of 2 trials finished, best {best:.4f}, 1 epochs each", first
    )


def test_recorded_commands_mask_the_password() -> None:
    argv = [
        "--storage",
        "postgresql://me:s3cr%40t@db:5432/wrn",
        "--storage=postgresql://me:pw@db/wrn",
        "--note",
        "s3cr%40t",
        "--set",
        "depth=10",
    ]
    masked = masked_argv(argv)
    assert masked == [
        "--storage",
        "postgresql://me:***@db:5432/wrn",
        "--storage=postgresql://me:***@db/wrn",
        "--note",
        "***",
        "--set",
        "depth=10",
    ]
    assert not any("s3cr" in a or ":pw@" in a for a in masked)


def test_a_study_keeps_its_last_five_commands() -> None:
    from study.records import COMMANDS_KEPT, record_command

    study = optuna.create_study()
    for n in range(COMMANDS_KEPT + 2):
        record_command(study, "study.run", ["--trials", str(n)])
    kept = study.user_attrs[StudyAttrs.COMMANDS]
    assert [c["argv"][1] for c in kept] == [str(n) for n in range(2, COMMANDS_KEPT + 2)]
    assert invocations(study.user_attrs)[-1].shell() == "python -m study.run --trials 6"


def test_rerun_shows_runs_by_test_accuracy_and_names_its_metric(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from study import rerun

    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    argv = ["--study-name", TINY_STUDY, "--storage", f"sqlite:///{storage}", "--device", "cpu",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--epochs", "1"]  # fmt: skip
    assert rerun.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    name = f"{TINY_STUDY}-rerun"
    # no "best": the best of test scores is chosen on the test set
    assert re.fullmatch(rf"{STAMP} {name}: 0 of 1 runs finished, 1 epochs each", lines[0])
    assert any(re.fullmatch(rf"{STAMP} run 0 epoch 1/1 test_acc 0\.\d{{4}} .+", x) for x in lines)
    done = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    assert done.metric_names == ["test_acc"]  # not "Objective 0" in optuna-dashboard
    assert invocations(done.user_attrs)[-1].argv == argv
    # run again: nothing to train, and the first line counts the run read from storage
    assert rerun.main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"{name}: 1 of 1 runs finished, 1 epochs each")


def _objective(monkeypatch: pytest.MonkeyPatch, curves: dict[float, list[float]]) -> Any:
    """An Objective over wrn28_10 whose trial's accuracy curve is chosen by its dropout."""
    import wrn.train as training
    from search_spaces import load_space
    from study.lifecycle.search import Objective
    from wrn.train import EpochStats, TrainResult

    def fake_train(cfg: Any, on_epoch_end: Any = None, **kwargs: Any) -> TrainResult:
        result = TrainResult("val", "cpu", 1)
        for epoch, acc in enumerate(curves[cfg.model.dropout], start=1):
            stats = EpochStats(epoch, 1.0, acc, 1.0, acc, 0.1, 0.5, 100.0)
            result.history.append(stats)
            on_epoch_end(stats)
        return result

    monkeypatch.setattr(training, "train", fake_train)
    space = load_space("wrn28_10")
    fixed = {"depth": 10, "width": 1, "label_smoothing": 0.1, "mixup_prob": 0.0,
             "cutmix_prob": 0.0, "weight_decay": 5e-4, "lr": 0.1, "device": "cpu"}  # fmt: skip
    return Objective(space, {**space.recipe, "epochs": 4}, fixed)


@pytest.mark.parametrize("guarded", [True, False])
def test_the_last_epoch_is_left_to_the_pruner(
    monkeypatch: pytest.MonkeyPatch, guarded: bool
) -> None:
    from study.pruning import build_pruner

    good, bad = [0.3, 0.5, 0.6, 0.7], [0.05, 0.06, 0.07, 0.08]
    objective = _objective(monkeypatch, {0.1: good, 0.4: bad})
    # the first judged epoch is the last (4): the study's pruners never prune there
    pruner = (
        build_pruner("median", epochs=4, warmup_frac=0.3, startup_trials=1, wait_epochs=3)
        if guarded
        else optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=4)
    )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for dropout in (0.1, 0.4):
        study.enqueue_trial({"dropout": dropout})
    study.optimize(objective, n_trials=2)
    last = study.trials[1]
    assert sorted(last.intermediate_values) == [1, 2, 3, 4]
    # no second guard in the lifecycle: an unguarded pruner's verdict at the last epoch stands
    expected = optuna.trial.TrialState.COMPLETE if guarded else optuna.trial.TrialState.PRUNED
    assert last.state == expected


def test_a_resumed_trial_starts_at_its_saved_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.study.test_lifecycle_breaks import interrupted_search

    argv = interrupted_search(tmp_path, epochs=2)  # trial 0 stopped after epoch 1, queued
    captured = capsys.readouterr()
    assert "trial 0 saved at epoch 1 and queued" in captured.err
    assert run.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    # the retry (trial 1) resumes: its line says so and only epoch 2 is trained and shown
    assert any(re.fullmatch(rf"{STAMP} trial 1 start \(resumed after epoch 1\): .+", x)
               for x in lines), lines  # fmt: skip
    assert not any(" trial 1 epoch 1/2 " in x for x in lines)
    assert any(re.match(rf"{STAMP} trial 1 epoch 2/2 val_acc ", x) for x in lines)
