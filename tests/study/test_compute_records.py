"""A trial's cost is what it consumed (GPU seconds on CUDA, CPU seconds on CPU), labelled by
what was measured; wall clock only for trials recorded before the measurement."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from study import run
from study.records import TrialAttrs as A
from study.records import compute_unit, epoch_compute, trial_seconds, wall_seconds
from tests.tiny import tiny_flags


def _trial(device: str, wall: list[float], compute: list[float] | None) -> FrozenTrial:
    attrs = {A.DEVICE: device, A.EPOCH_SECONDS: wall}
    if compute is not None:
        attrs[A.EPOCH_COMPUTE_SECONDS] = compute
    return create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=attrs)


def test_cost_is_the_measured_compute_not_the_wall_clock() -> None:
    loaded = _trial("cpu", wall=[7.5, 7.5], compute=[1.0, 1.0])  # a machine under load
    assert trial_seconds(loaded) == 2.0 and wall_seconds(loaded) == 15.0
    assert epoch_compute(loaded) == [1.0, 1.0]
    assert compute_unit([loaded]) == "CPU-seconds"
    gpu = _trial("cuda:0", wall=[4.0], compute=[2.5])  # a GPU shared by two workers
    assert trial_seconds(gpu) == 2.5 and compute_unit([gpu]) == "GPU-seconds"


def test_an_unmeasured_trial_counts_wall_clock_and_says_so() -> None:
    old = _trial("cuda:0", wall=[3.0, 3.0], compute=None)
    assert trial_seconds(old) == 6.0 and epoch_compute(old) == [3.0, 3.0]
    assert compute_unit([old, _trial("cuda:0", [1.0], [1.0])]) == "GPU-seconds (wall clock)"


@pytest.mark.usefixtures("one_thread")
def test_a_trial_records_each_epochs_cpu_seconds(cifar_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wrn.db'}"
    argv = [
        *("--storage", url, "--data-dir", str(cifar_dir), "--val-size", "100", "--quiet"),
        *("--device", "cpu", "--epochs", "2", "--pruner", "none", "--trials", "1"),
        *tiny_flags("augmentation"),
    ]
    assert run.main(argv) == 0
    (trial,) = optuna.load_study(study_name="wrn28_10", storage=url).trials
    compute = trial.user_attrs[A.EPOCH_COMPUTE_SECONDS]
    assert len(compute) == 2 and all(c > 0 for c in compute)
    assert trial_seconds(trial) == pytest.approx(sum(compute))


def test_studies_on_other_hardware_are_not_compared() -> None:
    from types import SimpleNamespace

    from study.reporting.data import comparable_hardware

    cpu, gpu = SimpleNamespace(hardware={"x86_64"}), SimpleNamespace(hardware={"NVIDIA H200"})
    assert comparable_hardware([cpu, SimpleNamespace(hardware={"x86_64"})])
    assert not comparable_hardware([cpu, gpu])
    assert comparable_hardware([cpu, SimpleNamespace(hardware=set())])  # nothing ran yet


def test_status_says_what_its_hours_measured() -> None:
    from study.status import StudyRow, hours_meaning

    def row(measured: bool) -> StudyRow:
        return StudyRow("s", "search", {}, None, None, 1.0, devices={"cpu"}, measured=measured)

    assert hours_meaning([row(True)]) == "(CPU-h: each trial's process CPU time)"
    assert hours_meaning([row(True), row(False)]).endswith(
        "; wall-clock epoch times for trials recorded before that was measured)"
    )
