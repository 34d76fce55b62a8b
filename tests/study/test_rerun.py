"""``python -m study.rerun``: the best trial retrained on the full training set, tested."""

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial

from study import rerun, run, status
from study.cli import run_command
from study.records import seed_result
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
    assert "final-epoch test accuracy:" in out and "± " in out and " over 2 seeds" in out
    assert " best " not in out  # the best of test scores is chosen on the test set

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
        # the per-epoch test curve is kept, but no maximum over it
        assert "best_acc" not in t.user_attrs and "best_epoch" not in t.user_attrs
    summary = source.user_attrs[f"rerun_trial{best.number}_e2"]
    assert [r["test_acc"] for r in summary["runs"]] == [t.value for t in trials]
    assert summary["test_acc_mean"] == pytest.approx(sum(t.value for t in trials) / 2)
    assert record.user_attrs["source_study"] == "light"
    assert status.main(["--storage", url]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("light-rerun"))
    accs = [t.value for t in trials]
    # the mean ± std over seeds, and the search trial it is of
    assert re.search(rf"{re.escape(seed_result(accs))}\s+{best.number}\s", row)


def test_status_shows_a_rerun_s_mean_over_seeds_not_its_maximum(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'wrn.db'}"
    search = optuna.create_study(study_name="s", storage=url, direction="maximize")
    search.set_user_attr("kind", "search")
    for value in (0.3, 0.5, 0.4):  # trial 1 wins on validation
        search.add_trial(create_trial(value=value))
    reruns = optuna.create_study(study_name="s-rerun", storage=url, direction="maximize")
    reruns.set_user_attr("kind", "rerun")
    reruns.set_user_attr("source_study", "s")
    config = {"epochs": 6, "eval_split": "test"}
    for source, seed, acc in ((1, 0, 0.60), (1, 1, 0.70), (2, 0, 0.90)):
        attrs = {"source_trial": source, "seed": seed, "test_acc": acc, "config": config}
        reruns.add_trial(create_trial(value=acc, user_attrs=attrs))
    assert status.main(["--storage", url]) == 0
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if x.startswith("s-rerun"))
    assert re.search(r"0\.6500 ± 0\.0707 over 2 seeds\s+1\s", row)  # trial 1's, not 0.9000
    assert "0.9000" not in row and "never a maximum over seeds or epochs" in out


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
