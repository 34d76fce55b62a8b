"""``python -m study.export``: a study's trials as a CSV a researcher loads in one line."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
import pytest

from study import export
from study.cli import run_command
from study.records import TrialAttrs as A
from study.storage import open_storage


@pytest.fixture
def storage(tmp_path: Path) -> str:
    """A study with one trial in each way a trial ends, written as the lifecycle writes them."""
    url = f"sqlite:///{tmp_path / 'wrn.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    for number, (lr, curve) in enumerate([(0.1, [0.2, 0.5, 0.7]), (0.3, [0.1]), (0.2, [])]):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)})
        assert trial.params["lr"] and trial.number == number
        trial.set_user_attr(A.CONFIG, {"epochs": 3, "lr": lr})
        trial.set_user_attr(A.EPOCH_SECONDS, [2.0] * len(curve))
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, step=epoch)
        if number == 0:
            study.tell(trial, curve[-1])
        elif number == 1:
            trial.set_user_attr(A.PRUNED_REASON, "below the median at epoch 1")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            trial.set_user_attr(A.FAIL_REASON, "CUDA out of memory")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return url


def test_every_trial_is_a_row_with_params_curve_cost_and_reason(
    storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trials.csv"
    assert export.main(["--storage", storage, "--study-name", "s", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: 3 trials of s")
    table = pd.read_csv(out)
    assert list(table["number"]) == [0, 1, 2]
    assert list(table["state"]) == ["COMPLETE", "PRUNED", "FAIL"]
    # a pruned trial's value is its last reported one (Optuna's rule); a failed one has none
    assert list(table["val_acc"][:2]) == [0.7, 0.1] and math.isnan(table["val_acc"][2])
    assert [table[f"val_acc_epoch_{e}"][0] for e in (1, 2, 3)] == [0.2, 0.5, 0.7]
    assert table["val_acc_epoch_1"][1] == 0.1 and math.isnan(table["val_acc_epoch_2"][1])
    assert list(table["seconds"]) == [6.0, 2.0, 0.0]
    assert table[A.PRUNED_REASON][1] == "below the median at epoch 1"
    assert table[A.FAIL_REASON][2] == "CUDA out of memory"
    assert "params_lr" in table.columns


def test_optunas_own_dataframe_works_in_the_installed_environment(storage: str) -> None:
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials_dataframe()) == 3  # needs pandas, a dependency


@pytest.mark.parametrize(
    ("out", "message"),
    [("t.txt", "the suffix must be one of .csv, .parquet"), ("nowhere/t.csv", "no folder")],
)
def test_bad_output_is_one_line_before_the_storage_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, message: str
) -> None:
    db = tmp_path / "none.db"
    argv = ["--storage", str(db), "--study-name", "s", "--out", str(tmp_path / out)]
    with pytest.raises(SystemExit) as stopped:
        run_command("python -m study.export", export.main, argv)
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line and not db.exists()


def test_an_unknown_study_names_the_ones_there(
    storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--storage", storage, "--study-name", "t", "--out", str(tmp_path / "t.csv")]
    with pytest.raises(SystemExit):
        run_command("python -m study.export", export.main, argv)
    assert "no study 't' in the storage (studies: s)" in capsys.readouterr().err
