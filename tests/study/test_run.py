"""``python -m study.run`` end to end on generated ``cifar-100-python`` files, tiny WRN-10-1."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from study import run
from study.cli import run_command
from tests.study.conftest import copy_db, tiny_args
from tests.tiny import tiny_flags

TINY_SET = tiny_flags()


def run_args(storage: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "--storage",
        f"sqlite:///{storage}",
        "--data-dir",
        str(data_dir),
        "--val-size",
        "100",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--checkpoint-dir",
        str(storage.parent / "checkpoints"),
        *TINY_SET,
        *extra,
    ]


def load(storage: Path, name: str = "wrn28_10") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")


@pytest.fixture(scope="module")
def finished_study(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("study") / "wrn.db"
    assert run.main(run_args(storage, cifar_dir, "--trials", "3", "--pruner", "none")) == 0
    return storage


def test_trials_record_per_epoch_values_and_metadata(finished_study: Path) -> None:
    study = load(finished_study)
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == t.intermediate_values[2]
        assert set(t.params) == {
            "dropout",
            "label_smoothing",
            "mixup_prob",
            "cutmix_prob",
            "weight_decay",
            "lr",
        }  # depth and width were fixed by --set
        config = t.user_attrs["config"]
        assert (config["depth"], config["width"], config["epochs"]) == (10, 1, 2)
        assert config["eval_split"] == "val" and config["val_size"] == 100
        assert t.user_attrs["num_params"] == 83_700
        assert len(t.user_attrs["epoch_seconds"]) == 2
        assert t.user_attrs["images_per_s"] > 0 and t.user_attrs["device"] == "cpu"
    attrs = study.user_attrs
    assert attrs["settings"]["space"]["name"] == "wrn28_10"
    assert attrs["settings"]["fixed"] == {"depth": 10, "width": 1, "batch_size": 32, "workers": 0}
    assert attrs["settings"]["dataset"] == "cifar100"
    assert attrs["settings"]["recipe_epochs"] == 200
    assert {"torch", "optuna", "albumentations", "python"} <= set(attrs["packages"])
    assert attrs["code_version"]


def test_resuming_runs_only_the_missing_trials(
    finished_study: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "wrn.db"
    copy_db(finished_study, storage)
    before = {t.number: t.datetime_start for t in load(storage).get_trials()}
    assert run.main(run_args(storage, cifar_dir, "--trials", "4", "--pruner", "none")) == 0
    trials = load(storage).get_trials()
    assert len(trials) == 4
    assert {t.number: t.datetime_start for t in trials[:3]} == before
    # a finished study runs nothing more
    assert run.main(run_args(storage, cifar_dir, "--trials", "4", "--pruner", "none")) == 0
    assert len(load(storage).get_trials()) == 4
    # and a resumed study samples new points rather than replaying the first draws
    assert trials[3].params != trials[0].params


@pytest.mark.slow  # a real 8-trial study
def test_pruning_prunes_in_a_real_study(tmp_path: Path) -> None:
    space = tmp_path / "wide_lr.toml"
    text = (Path(run.__file__).parent.parent / "search_spaces" / "light.toml").read_text()
    # a learning-rate range wide enough that some trials learn nothing
    text = text.replace('name = "light"', 'name = "wide_lr"')
    space.write_text(text)
    storage = tmp_path / "wrn.db"
    args = [
        "--space",
        str(space),
        "--storage",
        f"sqlite:///{storage}",
        "--dataset",
        "synthetic",
        "--set",
        "synthetic_train_size=400",
        "--set",
        "synthetic_test_size=50",
        "--set",
        "num_classes=10",
        "--val-size",
        "100",
        "--device",
        "cpu",
        "--epochs",
        "3",
        *TINY_SET,
        "--set",
        "augmentation=basic",
        "--set",
        "grad_accum=1",
        "--trials",
        "8",
        "--sampler",
        "random",
        "--pruner-startup-trials",
        "2",
        "--pruner-warmup-epochs",
        "0",
        "--seed",
        "3",
        "--sampler-seed",  # the stream this test was written against (seeds are salted)
        "3",
    ]
    assert run.main(args) == 0
    trials = load(storage, "wide_lr").get_trials()
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 8 and pruned and len(complete) >= 2
    for t in pruned:
        assert len(t.intermediate_values) < 3
        median = sorted(c.intermediate_values[max(t.intermediate_values)] for c in complete)
        assert t.intermediate_values[max(t.intermediate_values)] <= median[len(median) // 2]


def test_changed_settings_on_an_existing_study_are_refused(
    finished_study: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "wrn.db"
    copy_db(finished_study, storage)
    before = storage.read_bytes()
    with pytest.raises(run.UsageError, match="epochs"):
        run.main(
            run_args(storage, cifar_dir, "--trials", "5", "--pruner", "none", "--epochs", "3")
        )
    assert load(storage).get_trials().__len__() == 3
    assert storage.read_bytes() == before


def fails(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_command("python -m study.run", run.main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    return err


BAD_FLAGS = [
    (["--trials", "0"], "--trials: must be >= 1"),
    (["--trials", "many"], "--trials: expected an integer"),
    (["--epochs", "-1"], "--epochs: must be >= 1"),
    (["--val-size", "-5"], "--val-size: must be >= 1"),
    (["--val-size", "400"], "val_size must be in [1, 399]"),
    (["--workers", "0"], "--workers: must be >= 1"),
    (["--max-failures", "0"], "--max-failures: must be >= 1"),
    (["--heartbeat", "0"], "--heartbeat: must be >= 1"),
    (["--timeout", "-3"], "--timeout"),
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--seed", str(2**31)], "--seed: must be < 2**31"),
    (["--sampler-seed", str(2**40)], "--sampler-seed: must be < 2**31"),
    (["--space", "no_such_space"], "no_such_space"),
    (["--pruner", "asha"], "invalid choice"),
    (["--sampler", "grid"], "invalid choice"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--device", "tpu"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--set", "depth=11"], "6n+4"),
    (["--set", "width=0"], "width: must be >= 1"),
    (["--set", "batch_size=-8"], "batch_size"),
    (["--set", "colour=red"], "unknown config key 'colour'"),
    (["--set", "dropout=1.5"], "dropout"),
    (["--set", "lr=fast"], "lr: expected float"),
    (["--set", "nesterov=perhaps"], "nesterov"),
    (["--set", "augmentation=autoaugment"], "augmentation"),
    (["--set", "depth"], "KEY=VALUE"),
    (["--set", "eval_split=test"], "never scores on the test set"),
    (["--storage", "notaurl"], "malformed storage URL"),
    (["--storage", "postgresql://u:hunter2@127.0.0.1:1/db"], "cannot open storage"),
    (["--storage", "grpc://127.0.0.1:1"], "cannot reach the storage proxy"),
    (["--storage", "grpc://no-port"], "expected grpc://HOST:PORT"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_FLAGS)
def test_bad_input_is_one_line_and_leaves_storage_byte_identical(
    capsys: pytest.CaptureFixture,
    cifar_dir: Path,
    finished_study: Path,
    tmp_path: Path,
    extra: list[str],
    message: str,
) -> None:
    storage = tmp_path / "wrn.db"
    copy_db(finished_study, storage)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("wrn.db*")}
    fails(capsys, run_args(storage, cifar_dir, "--trials", "5") + extra, message)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("wrn.db*")} == before
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(("extra", "message"), BAD_FLAGS[:4])
def test_bad_input_creates_no_storage(
    capsys: pytest.CaptureFixture, cifar_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    fails(capsys, run_args(tmp_path / "wrn.db", cifar_dir, "--trials", "1") + extra, message)
    assert not (tmp_path / "wrn.db").exists()


def test_password_is_not_printed(
    capsys: pytest.CaptureFixture, cifar_dir: Path, tmp_path: Path
) -> None:
    url = "postgresql://alice:hunter2@127.0.0.1:1/optuna"
    err = fails(capsys, [*run_args(tmp_path / "x.db", cifar_dir), "--storage", url], "alice:***@")
    assert "hunter2" not in err


LIGHT = Path(run.__file__).parent.parent / "search_spaces" / "light.toml"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('name = "light"', "name = [unclosed", "invalid TOML"),
        ("depth = 16", "depth = 11", "recipe.depth"),
        ('name = "light"', 'name = "bad"\nsurprise = 1', "surprise"),
        ("high = 0.4", "high = 1.4", "dropout"),
    ],
)
def test_malformed_space_file_is_one_line(
    capsys: pytest.CaptureFixture,
    cifar_dir: Path,
    tmp_path: Path,
    old: str,
    new: str,
    message: str,
) -> None:
    space = tmp_path / "bad.toml"
    text = LIGHT.read_text()
    assert old in text
    space.write_text(text.replace(old, new, 1))
    fails(capsys, [*run_args(tmp_path / "wrn.db", cifar_dir), "--space", str(space)], message)
    assert not (tmp_path / "wrn.db").exists()


def test_data_dir_of_the_wrong_layout(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"PK\x03\x04 a zip, not a pickle")
    fails(capsys, run_args(tmp_path / "wrn.db", tmp_path / "data"), "not a CIFAR-100 pickle")
    assert not (tmp_path / "wrn.db").exists()


def test_missing_data_dir_is_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    fails(
        capsys,
        run_args(tmp_path / "wrn.db", tmp_path / "nodata", "--trials", "1"),
        "could not be downloaded",
    )
    assert not (tmp_path / "wrn.db").exists()


def test_a_file_that_is_not_a_database_is_refused_unchanged(
    capsys: pytest.CaptureFixture, cifar_dir: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "notes.db"
    storage.write_text("my precious notes\n")
    fails(capsys, run_args(storage, cifar_dir, "--trials", "1"), "not a SQLite database")
    assert storage.read_text() == "my precious notes\n"


def test_command_line_error_exit_code_and_single_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", "--trials", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "python -m study.run: error: argument --trials: must be >= 1, got 0"
    )


def test_an_unrunnable_config_is_refused_before_the_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # 500 training images make 15 batches of 32: an optimiser step of 1000 never comes
    storage = tmp_path / "wrn.db"
    argv = tiny_args(storage, "--epochs", "1", "--trials", "5", "--set", "grad_accum=1000")
    err = fails(capsys, argv, "grad_accum: 1000 micro-batches")
    assert "500 training images make 15 batches" in err
    assert list(tmp_path.iterdir()) == []
