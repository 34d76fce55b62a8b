"""--pruner promote with worker processes on one study: SQLite on one machine, PostgreSQL across
machines. Each configuration counts once, a paused trial is promoted at most once, and a
promotion continues its configuration exactly where it paused."""

from __future__ import annotations

import uuid
from pathlib import Path

import optuna
import pytest

from study.records import TrialAttrs as A
from study.records import promotion_counts
from study.storage import open_storage
from tests.study.test_promote import fixed
from tests.study.test_resilience import storage_url
from tests.study.workers import FAST_TRIAL, run, trials

# rungs (2, 3): a configuration pauses after epoch 2, a promotion trains epoch 3
PROMOTE = [*FAST_TRIAL, "--pruner", "promote", "--epochs", "3", "--set", "warmup_frac=0.1"]
TWO = ["--workers", "2", "--heartbeat", "5", "--sampler-seed", "0"]


@pytest.mark.slow  # worker processes training a real study
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_workers_promote_each_paused_trial_once_and_exactly(backend: str, tmp_path: Path) -> None:
    url, name = storage_url(backend, tmp_path), f"promote-{uuid.uuid4().hex[:8]}"
    where = ["--checkpoint-dir", str(tmp_path / "ckpt"), "--artifact-dir", str(tmp_path / "art")]
    try:
        done = run(
            [*PROMOTE, *where, "--storage", url, "--study-name", name, "--trials", "6", *TWO],
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result = trials(url, name)
    finally:
        if backend == "postgres":
            optuna.delete_study(study_name=name, storage=open_storage(url))
    states = {t.state for t in result}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    counts = promotion_counts(result)
    assert counts is not None and counts.configurations == 6 and counts.promoted >= 1
    assert len({t.user_attrs["pid"] for t in result}) > 1  # both workers trained
    promotions = [t for t in result if A.PROMOTED_FROM in t.user_attrs]
    sources = [t.user_attrs[A.PROMOTED_FROM] for t in promotions]
    assert len(sources) == len(set(sources))  # none promoted twice
    for promoted in promotions:
        source = result[promoted.user_attrs[A.PROMOTED_FROM]]
        assert promoted.params == source.params and promoted.user_attrs[A.RESUMED_FROM_EPOCH] == 2
        # the whole curve on the promotion's record, its first epochs the paused trial's
        assert sorted(promoted.intermediate_values) == [1, 2, 3]
        assert {e: promoted.intermediate_values[e] for e in (1, 2)} == source.intermediate_values
    assert "6 configurations" in done.stdout  # the study line

    # a promotion's curve equals its configuration trained without a pause, in one process
    (promoted, *_) = promotions
    reference = tmp_path / "reference.db"
    ref_where = ["--checkpoint-dir", str(tmp_path / "rc"), "--artifact-dir", str(tmp_path / "ra")]
    ref_where += ["--study-name", "ref"]
    plain_run = [*FAST_TRIAL, "--epochs", "3", "--set", "warmup_frac=0.1", "--trials", "1"]
    alone = run(
        [*plain_run, *fixed(promoted.params), *ref_where, "--storage", f"sqlite:///{reference}"]
    )
    assert alone.returncode == 0, alone.stdout + alone.stderr
    (plain,) = trials(f"sqlite:///{reference}", "ref")
    assert plain.intermediate_values == promoted.intermediate_values  # exactly, on CPU
