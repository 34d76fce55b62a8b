"""``python -m study.rerun``: the best trial retrained on the full training set, tested."""

from pathlib import Path

import optuna
import pytest

from study import rerun, run
from study.cli import run_command
from tests.tiny import tiny_flags


@pytest.fixture(scope="module")
def searched(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("rerun") / "wrn.db"
    argv = [
        "--space",
        "light",
        "--storage",
        f"sqlite:///{storage}",
        "--data-dir",
        str(cifar_dir),
        "--val-size",
        "100",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--trials",
        "2",
        "--pruner",
        "none",
        *tiny_flags("augmentation"),
    ]
    assert run.main(argv) == 0
    return storage


def test_rerun_records_test_accuracy_per_seed(
    searched: Path, cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{searched}"
    argv = [
        "--study-name",
        "light",
        "--storage",
        url,
        "--data-dir",
        str(cifar_dir),
        "--epochs",
        "2",
        "--seeds",
        "2",
        "--device",
        "cpu",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    assert rerun.main(argv) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "± " in out

    source = optuna.load_study(study_name="light", storage=url)
    best = source.best_trial
    record = optuna.load_study(study_name="light-rerun", storage=url)
    trials = record.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.user_attrs["seed"] for t in trials] == [0, 1]
    for t in trials:
        assert t.params == best.params and t.user_attrs["source_trial"] == best.number
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == t.user_attrs["test_acc"]
        config = t.user_attrs["config"]
        # the full training set, scored on the test set, for the requested length
        assert config["eval_split"] == "test" and config["epochs"] == 2
        assert Path(t.user_attrs["checkpoint"]).is_file()
    summary = source.user_attrs[f"rerun_trial{best.number}_e2"]
    assert [r["test_acc"] for r in summary["runs"]] == [t.value for t in trials]
    assert summary["test_acc_mean"] == pytest.approx(sum(t.value for t in trials) / 2)
    assert record.user_attrs["source_study"] == "light"


def test_rerun_defaults_to_the_recipe_length(searched: Path) -> None:
    study = optuna.load_study(study_name="light", storage=f"sqlite:///{searched}")
    assert study.user_attrs["settings"]["recipe_epochs"] == 85
    assert rerun.build_parser().parse_args(["--study-name", "light"]).epochs is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--study-name", "nope"], "no study 'nope'"),
        (["--study-name", "light", "--trial", "99"], "--trial 99"),
        (["--study-name", "light", "--seeds", "0"], "--seeds: must be >= 1"),
        (["--study-name", "light", "--epochs", "-2"], "--epochs: must be >= 1"),
    ],
)
def test_rerun_bad_input(
    searched: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    before = searched.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        run_command(
            "python -m study.rerun", rerun.main, [*argv, "--storage", f"sqlite:///{searched}"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert searched.read_bytes() == before


def test_rerun_of_a_missing_storage_does_not_create_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        run_command(
            "python -m study.rerun",
            rerun.main,
            ["--study-name", "x", "--storage", f"sqlite:///{tmp_path}/none.db"],
        )
    assert "no such storage" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
