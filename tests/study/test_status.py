"""``python -m study.status``: a table of the studies in a storage."""

from __future__ import annotations

import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study import run, status
from study.chance import at_chance
from study.cli import run_command
from study.lifecycle import report_epoch
from tests.tiny import tiny_flags
from wrn.train import EpochStats

TINY = tiny_flags("augmentation")


pytestmark = pytest.mark.usefixtures("one_thread")


def epoch_stats(epoch: int, acc: float) -> EpochStats:
    return EpochStats(epoch, 4.0, acc, 4.0, acc, 0.1, 1800.0, 100.0)


@pytest.fixture(scope="module")
def storage(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A search study the harness ran (2 trials), plus trials in every other state."""
    url = f"sqlite:///{tmp_path_factory.mktemp('status') / 'wrn.db'}"
    argv = [
        *("--storage", url, "--data-dir", str(cifar_dir), "--val-size", "100"),
        *("--device", "cpu", "--epochs", "1", "--pruner", "none", "--trials", "2", *TINY),
        *("--sampler-seed", "0"),  # the same two trials every run: their scores are fixed
    ]
    assert run.main(argv) == 0
    study = optuna.load_study(study_name="wrn28_10", storage=url)
    running = study.ask()  # as a worker leaves it mid-trial
    running.set_user_attr("config", {"epochs": 30})
    running.set_user_attr("epoch_seconds", [1800.0, 1800.0])
    report_epoch(running, epoch_stats(1, 0.25))
    report_epoch(running, epoch_stats(2, 0.31))
    failed = study.ask()
    failed.set_user_attr("epoch_seconds", [3600.0])
    study.tell(failed, state=TrialState.FAIL)
    pruned = study.ask()
    report_epoch(pruned, epoch_stats(1, 0.01))
    study.tell(pruned, state=TrialState.PRUNED)
    other = optuna.create_study(study_name="scratch", storage=url, direction="minimize")
    other.add_trial(optuna.trial.create_trial(value=2.0))
    other.add_trial(optuna.trial.create_trial(value=1.5))
    return url


def test_status_table(storage: str, capsys: pytest.CaptureFixture) -> None:
    assert status.main(["--storage", storage]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("study"))
    assert header.split() == [
        "study",
        "kind",
        "complete",
        "pruned",
        "fail",
        "running",
        "waiting",
        "best",
        "trial",
        "CPU-h",  # the trials ran on the CPU: not "GPU-h"
    ]
    study = optuna.load_study(study_name="wrn28_10", storage=storage)
    best = study.best_trial
    row = next(line for line in lines if line.startswith("wrn28_10 "))
    cells = row.split()
    assert cells[:7] == ["wrn28_10", "search", "2", "1", "1", "1", "0"]
    # a WRN-10-1 after 1 epoch on 300 images of 100 classes scores about chance: starred when
    # within two standard errors of it (3 of 100 right is just above: CI saw 0.0300 unstarred)
    star = "*" if at_chance(best.value, 100, 100) else ""
    assert cells[7:9] == [f"{best.value:.4f}{star}", str(best.number)]
    # two searched epochs plus 2 h of the running and failed trials' recorded epoch times
    assert 2.0 <= float(cells[9]) < 2.01
    # a minimising study's best is its lowest value
    assert lines[[line.split()[0] for line in lines].index("scratch")].split()[7] == "1.5000"
    assert "running now: 1" in out
    assert "wrn28_10 trial 2: epoch 2/30, last value 0.3100, started" in out
    # aligned columns: the last one is right-aligned, so every table line is equally long
    table = [line for line in lines if line.startswith(("study", "---", "wrn28_10", "scratch"))]
    assert len(table) == 4 and len({len(line) for line in table}) == 1, table
    assert {line.index(" search") for line in table if " search" in line} == {
        header.index(" kind")
    }


def test_running_lines_say_how_long() -> None:
    started = datetime.datetime(2025, 1, 1, 12, 0)
    row = status.StudyRow(
        "s",
        "search",
        dict.fromkeys(status.STATE_COLUMNS, 0),
        None,
        None,
        0.0,
        [status.RunningTrial(4, 3, 20, 0.5, started)],
    )
    lines = status.format_running([row], now=started + datetime.timedelta(minutes=42))
    assert lines == ["  s trial 4: epoch 3/20, last value 0.5000, started 42 min ago"]


def test_trial_seconds_falls_back_to_the_history() -> None:
    rerun_like = optuna.trial.create_trial(
        value=0.5, user_attrs={"history": [{"seconds": 2.0}, {"seconds": 3.0}]}
    )
    assert status.trial_seconds(rerun_like) == 5.0
    assert status.trial_seconds(optuna.trial.create_trial(value=0.5)) == 0.0


def test_a_multi_objective_study_is_counted_without_a_best(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'multi.db'}"
    study = optuna.create_study(study_name="pareto", storage=url, directions=["maximize"] * 2)
    study.add_trial(optuna.trial.create_trial(values=[0.5, 0.2]))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    (row,) = status.collect(optuna.storages.RDBStorage(url))
    assert row.counts["complete"] == 1 and row.counts["pruned"] == 1
    assert row.best_value is None and row.best_number is None


def test_empty_and_missing_storage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)  # an initialised storage with no study
    assert status.main(["--storage", url]) == 0
    assert "no studies yet" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        run_command(
            "python -m study.status",
            status.main,
            ["--storage", f"sqlite:///{tmp_path / 'none.db'}"],
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such storage" in err
    assert not (tmp_path / "none.db").exists()
