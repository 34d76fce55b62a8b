"""What a trial records of its checkpoint matches the files: a deleted checkpoint is no longer
named, and a kept one (a rerun's) is stored once, in the checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from study import rerun
from study.records import TrialAttrs as A
from tests.study.conftest import TINY_STUDY, copy_db

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_deleted_checkpoint_is_no_longer_named(tiny_study: Path) -> None:
    url = f"sqlite:///{tiny_study}"
    trials = optuna.load_study(study_name=TINY_STUDY, storage=url).get_trials()
    assert trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert not [p for p in (tiny_study.parent / "checkpoints").rglob("*") if p.is_file()]
    assert [t.user_attrs.get(A.CHECKPOINT, "absent") for t in trials] == [None] * len(trials)


def test_a_rerun_checkpoint_is_stored_once(tiny_study: Path, tmp_path: Path) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    url = f"sqlite:///{storage}"
    argv = ["--study-name", TINY_STUDY, "--storage", url, "--device", "cpu", "--quiet"]
    assert rerun.main([*argv, "--trial", "0", "--epochs", "1", "--seeds", "1"]) == 0
    study = optuna.load_study(study_name=f"{TINY_STUDY}-rerun", storage=url)
    (run,) = study.get_trials()
    kept = Path(run.user_attrs[A.CHECKPOINT])
    assert kept.is_file() and kept.is_relative_to(tmp_path / "checkpoints")
    metas = optuna.artifacts.get_all_artifact_meta(run, storage=study._storage)
    assert sorted(m.filename for m in metas) == [
        f"learning_curve_trial{run.number}.csv",
        f"learning_curve_trial{run.number}.svg",
    ]
    sizes = {p.stat().st_size for p in (tmp_path / "artifacts").iterdir()}
    assert kept.stat().st_size not in sizes  # no copy of it among the artifacts
