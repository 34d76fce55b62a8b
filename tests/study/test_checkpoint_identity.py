"""A checkpoint belongs to one trial of one study of one storage (issue 16, breaks 1 and 4)."""

from pathlib import Path

import optuna
import pytest

from study import run as run_module
from tests.study.workers import FAST_TRIAL, trials


def search(storage: Path, checkpoints: Path, seed: int, *extra: str) -> list:
    url = f"sqlite:///{storage}"
    args = [*FAST_TRIAL, "--storage", url, "--study-name", "same", "--trials", "1"]
    args += ["--epochs", "2", "--seed", str(seed), "--checkpoint-dir", str(checkpoints)]
    assert run_module.main([*args, *extra]) == 0
    return trials(url, "same")


def assert_own_values(trial: optuna.trial.FrozenTrial, other: optuna.trial.FrozenTrial) -> None:
    """``trial`` records its own training, not ``other``'s, and claims no resume."""
    own = {h["epoch"]: h["eval_acc"] for h in trial.user_attrs["history"]}
    assert trial.intermediate_values == own
    # not the other's epochs: their training losses (another seed) differ; accuracies alone
    # can tie, both at chance
    losses = [h["train_loss"] for h in trial.user_attrs["history"]]
    assert losses != [h["train_loss"] for h in other.user_attrs["history"]]
    assert trial.user_attrs["resumed_from_epoch"] == 0


@pytest.mark.parametrize("second", ["another_storage", "recreated_study"])
def test_a_checkpoint_of_another_study_is_never_resumed_nor_removed(
    tmp_path: Path, second: str
) -> None:
    checkpoints = tmp_path / "checkpoints"  # one folder, as the default gives two storages in it
    (a,) = search(tmp_path / "a.db", checkpoints, 1, "--keep-checkpoints")
    kept = sorted(checkpoints.rglob("*.pt"))
    assert len(kept) == 1
    storage = tmp_path / ("b.db" if second == "another_storage" else "a.db")
    if second == "recreated_study":
        optuna.delete_study(study_name="same", storage=f"sqlite:///{storage}")
    (b,) = search(storage, checkpoints, 2)
    assert_own_values(b, a)
    assert sorted(checkpoints.rglob("*.pt")) == kept  # A's file, untouched
    assert not list(checkpoints.rglob("*corrupt*"))
