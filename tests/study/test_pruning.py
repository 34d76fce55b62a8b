"""study.pruning: schedule-aware pruners, driven with ask/tell on in-memory studies."""

from __future__ import annotations

import optuna
import pytest
from optuna.pruners import BasePruner, HyperbandPruner

from study.pruning import (
    PATIENCE,
    PRUNERS,
    build_pruner,
    default_wait_epochs,
    describe_default,
    describe_kinds,
    hyperband_rungs,
    peak_epoch,
)

# (epochs, warmup_frac) of the two spaces' searches and of the benchmark's CPU table
SCHEDULES = [(30, 0.3), (20, 0.3), (12, 0.3)]
# promote prunes nothing itself: the lifecycle pauses its trials (tests/study/test_promote.py)
PRUNING_KINDS = [k for k in PRUNERS if k not in ("none", "promote")]


pytestmark = pytest.mark.usefixtures("quiet_optuna")


def run_study(pruner: BasePruner, epochs: int, good: int = 10, bad: int = 24) -> list[int]:
    """``good`` trials with accuracies rising to ~0.9, then ``bad`` ones sinking from 0.02, each
    reporting epoch by epoch until pruned, as the objective does. The epochs at which bad
    trials were pruned."""
    study = optuna.create_study(direction="maximize", pruner=pruner, study_name="prune-test")
    pruned: list[int] = []
    for i in range(good + bad):
        trial = study.ask()
        for epoch in range(1, epochs + 1):
            acc = 0.5 + 0.4 * epoch / epochs - 0.001 * i if i < good else 0.02 - 0.001 * epoch
            trial.report(acc, epoch)
            if trial.should_prune():
                if i >= good:
                    pruned.append(epoch)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, acc)
    return pruned


def test_peak_epoch_is_the_end_of_the_onecycle_warmup() -> None:
    assert peak_epoch(30, 0.3) == 9  # not 10: 0.3 * 30 is 9.000000000000002 in floats
    assert peak_epoch(20, 0.3) == 6
    assert peak_epoch(12, 0.3) == 4
    assert peak_epoch(10, 0.25) == 3
    assert peak_epoch(2, 0.1) == 1


@pytest.mark.parametrize(("epochs", "warmup_frac"), SCHEDULES)
def test_default_waits_at_least_until_the_lr_peak(epochs: int, warmup_frac: float) -> None:
    peak = peak_epoch(epochs, warmup_frac)
    assert peak <= default_wait_epochs(epochs, warmup_frac) < epochs


@pytest.mark.parametrize("kind", PRUNING_KINDS)
@pytest.mark.parametrize(("epochs", "warmup_frac"), SCHEDULES)
def test_not_pruned_before_the_lr_peak(kind: str, epochs: int, warmup_frac: float) -> None:
    pruner = build_pruner(kind, epochs=epochs, warmup_frac=warmup_frac)
    pruned = run_study(pruner, epochs)
    assert pruned, "hopeless trials should be pruned at some point"
    first = default_wait_epochs(epochs, warmup_frac) + 1
    assert min(pruned) > peak_epoch(epochs, warmup_frac)
    assert min(pruned) >= first
    if kind in ("median", "percentile", "hyperband"):
        # judged as soon as the warm-up is over: Hyperband's first rung is right after it
        assert min(pruned) == first


@pytest.mark.parametrize(("epochs", "warmup_frac"), SCHEDULES)
def test_hyperband_first_rung_is_after_the_warmup(epochs: int, warmup_frac: float) -> None:
    pruner = build_pruner("hyperband", epochs=epochs, warmup_frac=warmup_frac)
    assert isinstance(pruner, HyperbandPruner)  # Optuna's isinstance checks still see one
    assert min(run_study(pruner, epochs)) == default_wait_epochs(epochs, warmup_frac) + 1


@pytest.mark.parametrize("kind", PRUNING_KINDS)
def test_never_pruned_at_the_last_epoch(kind: str) -> None:
    epochs = 8
    # the first judged epoch is the last one: only the guard keeps the trial
    pruner = build_pruner(kind, epochs=epochs, warmup_frac=0.3, wait_epochs=epochs - 1)
    assert run_study(pruner, epochs) == []
    pruner = build_pruner(kind, epochs=epochs, warmup_frac=0.3, wait_epochs=0)
    assert epochs not in run_study(pruner, epochs)


def test_an_unguarded_median_would_prune_at_the_last_epoch() -> None:
    # the test above can fail: Optuna's own MedianPruner judges the final step
    plain = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=8)
    assert run_study(plain, 8) == [8] * 24


@pytest.mark.parametrize("kind", ["median", "percentile", "hyperband"])
def test_wait_epochs_override(kind: str) -> None:
    pruner = build_pruner(kind, epochs=20, warmup_frac=0.3, wait_epochs=1)
    assert min(run_study(pruner, 20)) == 2
    pruner = build_pruner(kind, epochs=20, warmup_frac=0.3, wait_epochs=12)
    assert min(run_study(pruner, 20)) == 13


@pytest.mark.parametrize("kind", PRUNING_KINDS)
def test_startup_trials_are_respected(kind: str) -> None:
    pruner = build_pruner(kind, epochs=12, warmup_frac=0.3, startup_trials=20)
    assert run_study(pruner, 12, good=10, bad=5) == []  # 10 finished < 20 startup trials


def test_hyperband_prunes_nothing_before_its_startup_trials_complete() -> None:
    # Optuna's Hyperband alone would prune the 2nd trial, worse than the 1st at the rung
    pruner = build_pruner("hyperband", epochs=20, warmup_frac=0.3, startup_trials=3)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(6):  # each trial worse than all before it
        trial = study.ask()
        for epoch in range(1, 21):
            trial.report(0.5 - 0.01 * i, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, 0.5 - 0.01 * i)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    assert [max(t.intermediate_values) for t in study.trials[3:]] == [7] * 3  # its one rung


@pytest.mark.parametrize(("epochs", "warmup_frac"), SCHEDULES)
def test_hyperband_judges_at_its_described_rungs(epochs: int, warmup_frac: float) -> None:
    rungs = hyperband_rungs(epochs, warmup_frac)
    judged = {e for bracket in rungs for e in bracket}
    pruner = build_pruner("hyperband", epochs=epochs, warmup_frac=warmup_frac)
    assert set(run_study(pruner, epochs, good=10, bad=60)) <= judged
    assert len(judged) == 1  # these budgets give Hyperband one judged epoch, said in --help


def test_describe_kinds_says_what_hyperband_and_patient_do() -> None:
    text = describe_kinds({"light": (20, 0.3), "wrn28_10": (30, 0.3)})
    assert "at epoch 7 (light), 10 | never (wrn28_10)" in text  # one rung; two brackets
    assert f"last {PATIENCE + 1} epochs" in text and "rarely prunes" in text


def test_patient_window_is_patience_plus_one_epochs() -> None:
    # best at epoch 5, a little lower after: judged once PATIENCE + 1 epochs are no better
    pruner = build_pruner("patient", epochs=20, warmup_frac=0.3, startup_trials=1, wait_epochs=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    good = study.ask()
    for epoch in range(1, 21):
        good.report(0.5 + 0.01 * epoch, epoch)
    study.tell(good, 0.7)
    trial = study.ask()
    for epoch in range(1, 21):
        trial.report(0.02 * epoch if epoch <= 5 else 0.09, epoch)
        if trial.should_prune():
            break
    assert epoch == 5 + PATIENCE + 1


def test_none_never_prunes() -> None:
    assert run_study(build_pruner("none", epochs=12, warmup_frac=0.3), 12) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "asha"}, "unknown pruner 'asha'"),
        ({"wait_epochs": -1}, "wait epochs must be >= 0"),
        ({"startup_trials": -1}, "startup trials must be >= 0"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"warmup_frac": 1.0}, "warmup_frac must be in (0, 1)"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"kind": "median", "epochs": 20, "warmup_frac": 0.3, **kwargs}
    kind = args.pop("kind")
    with pytest.raises(ValueError) as info:
        build_pruner(kind, **args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_describe_default_names_the_first_epoch() -> None:
    text = describe_default(30, 0.3)
    assert "\n" not in text
    assert f"from epoch {default_wait_epochs(30, 0.3) + 1} of 30" in text
    assert "peak" in describe_default()
