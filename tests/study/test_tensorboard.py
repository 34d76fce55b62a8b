"""``--tensorboard DIR``: each trial a TensorBoard run with its curves and its hparams."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from study import run
from tests.tiny import tiny_flags

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator"
)
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")


@pytest.mark.usefixtures("one_thread")
def test_each_trial_is_a_run_with_its_curve_and_hparams(cifar_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wrn.db'}"
    argv = [
        *("--storage", url, "--data-dir", str(cifar_dir), "--val-size", "100", "--quiet"),
        *("--device", "cpu", "--epochs", "2", "--pruner", "none", "--trials", "2"),
        *("--tensorboard", str(tmp_path / "tb"), "--study-name", "tiny/study"),
        *tiny_flags("augmentation"),
    ]
    assert run.main(argv) == 0
    trials = optuna.load_study(study_name="tiny/study", storage=url).trials
    runs = sorted((tmp_path / "tb" / "tiny-study").iterdir())  # the name's slug: no subfolder
    assert [r.name for r in runs] == ["trial-0", "trial-1"]
    for trial, folder in zip(trials, runs, strict=True):
        events = event_accumulator.EventAccumulator(str(folder))
        events.Reload()
        curve = [(e.step, e.value) for e in events.Scalars("val_acc")]
        assert curve == [
            (step, pytest.approx(value, abs=1e-6))
            for step, value in sorted(trial.intermediate_values.items())
        ]
        assert {"train_loss", "lr", "hparams/val_acc"} <= set(events.Tags()["scalars"])
        start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
        assert set(info.hparams) == {*trial.params, "state"}
        assert info.hparams["state"].string_value == "COMPLETE"


def test_without_the_package_the_flag_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(SystemExit) as stopped:
        run.build_parser().parse_args(["--tensorboard", "tb"])
    assert stopped.value.code == 2
    assert "needs the tensorboard package" in capsys.readouterr().err
