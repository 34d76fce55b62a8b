"""Objective tests in Optuna's own style: FixedTrial and ask/tell, with training scripted."""

from typing import Any

import optuna
import pytest

import wrn.train as training
from search_spaces import load_space
from study.lifecycle.search import Objective
from study.objective import trial_config
from wrn.config import TrainConfig
from wrn.train import EpochStats, TrainResult

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("space_name", ["wrn28_10", "light"])
def test_fixed_trial_gives_a_valid_config(space_name: str) -> None:
    space = load_space(space_name)
    params = {
        "dropout": 0.2,
        "label_smoothing": 0.05,
        "mixup_prob": 1.0,  # on both spaces' grids
        "cutmix_prob": 0.25,
        "weight_decay": 3e-4,
        "lr": 0.1,
        "depth": 16,
        "width": 6,
    }
    cfg = trial_config(optuna.trial.FixedTrial(params), space, space.recipe, {})
    assert isinstance(cfg, TrainConfig)
    flat = cfg.to_flat()
    assert {k: flat[k] for k in params} == params
    # what is not searched keeps the recipe's value
    assert cfg.optim.grad_accum == space.recipe["grad_accum"]
    assert cfg.data.augmentation == space.recipe["augmentation"]


def test_set_values_are_not_searched_and_win() -> None:
    space = load_space("light")
    fixed = {"depth": 10, "width": 1, "batch_size": 64}
    assert {s.name for s in space.searched(fixed)} == set(space.params) - {
        "depth",
        "width",
    }
    params = {
        "dropout": 0.1,
        "label_smoothing": 0.1,
        "mixup_prob": 0.0,
        "cutmix_prob": 0.0,
        "weight_decay": 1e-4,
        "lr": 0.1,
    }
    cfg = trial_config(optuna.trial.FixedTrial(params), space, space.recipe, fixed)
    assert (cfg.model.depth, cfg.model.width, cfg.run.batch_size) == (10, 1, 64)


def fake_train(curves: dict[float, list[float]]) -> Any:
    """A ``train`` stand-in whose accuracy curve is chosen by the trial's dropout."""

    def run(cfg: TrainConfig, on_epoch_end: Any = None, **kwargs: Any) -> TrainResult:
        result = TrainResult("val", "cpu", 1)
        for epoch, acc in enumerate(curves[cfg.model.dropout], start=1):
            stats = EpochStats(epoch, 1.0, acc, 1.0, acc, 0.1, 0.5, 100.0)
            result.history.append(stats)
            if on_epoch_end:
                on_epoch_end(stats)
        return result

    return run


def make_objective(monkeypatch: pytest.MonkeyPatch, curves: dict[float, list[float]]) -> Objective:
    monkeypatch.setattr(training, "train", fake_train(curves))
    space = load_space("wrn28_10")
    fixed = {
        "depth": 10,
        "width": 1,
        "label_smoothing": 0.1,
        "mixup_prob": 0.0,
        "cutmix_prob": 0.0,
        "weight_decay": 5e-4,
        "lr": 0.1,
        "device": "cpu",
    }
    return Objective(space, {**space.recipe, "epochs": 4}, fixed)


def test_reports_every_epoch_and_returns_final_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    objective = make_objective(monkeypatch, {0.2: [0.1, 0.2, 0.4, 0.3]})
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"dropout": 0.2})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.4, 4: 0.3}
    assert trial.value == 0.3  # the final epoch, where the one-cycle schedule ends
    assert trial.user_attrs["config"]["dropout"] == 0.2
    assert trial.user_attrs["num_params"] == 83_700  # WRN-10-1, 100 classes
    assert trial.user_attrs["epoch_seconds"] == [0.5] * 4
    assert trial.user_attrs["best_acc"] == 0.4 and trial.user_attrs["best_epoch"] == 3
    assert trial.user_attrs["device"] == "cpu" and trial.user_attrs["images_per_s"] == 100.0


def test_median_pruner_prunes_a_trial_below_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = [0.3, 0.5, 0.6, 0.7], [0.05, 0.06, 0.07, 0.08]
    objective = make_objective(monkeypatch, {0.1: good, 0.2: good, 0.4: bad})
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    for dropout in (0.1, 0.2, 0.4):
        study.enqueue_trial({"dropout": dropout})
    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2
    assert states[2] == optuna.trial.TrialState.PRUNED
    # steps are epochs (from 1): with n_warmup_steps=2 the first prunable epoch is 2
    assert max(study.trials[2].intermediate_values) == 2
    assert study.trials[2].user_attrs["epoch_seconds"] == [0.5, 0.5]


def test_objective_refuses_to_score_on_the_test_set(monkeypatch: pytest.MonkeyPatch) -> None:
    objective = make_objective(monkeypatch, {0.2: [0.5]})
    objective.fixed = {**objective.fixed, "eval_split": "test"}
    with pytest.raises(ValueError, match="validation split"):
        objective(optuna.trial.FixedTrial({"dropout": 0.2}))


def test_a_config_over_the_cost_cap_is_pruned_untrained(monkeypatch: pytest.MonkeyPatch) -> None:
    objective = make_objective(monkeypatch, {0.2: [0.5] * 4})
    calls = []
    monkeypatch.setattr(training, "train", lambda *a, **k: calls.append(1))
    big = {**objective.fixed, "depth": 40, "width": 16}  # far above wrn28_10's cap
    objective.fixed = big
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"dropout": 0.2})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and calls == []
    assert "over the space's cap" in trial.user_attrs["pruned_reason"]
