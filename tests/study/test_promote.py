"""--pruner promote in the lifecycle (issue 18): trials pause at rungs with their checkpoints
kept, free workers promote paused ones atomically, a promoted trial continues exactly where its
configuration paused, and --trials counts configurations."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest

from study import run, status
from study.cli import run_command
from study.lifecycle import ClaimLock, Lifecycle, recover_dead_trials
from study.lifecycle.checkpoints import checkpoint_file
from study.lifecycle.promote import Promoter
from study.lifecycle.search import claim
from study.lifecycle.workers import trial_id
from study.promotion import rungs
from study.records import TrialAttrs as A
from study.records import configuration_of, promotion_counts
from tests.study.conftest import TINY_STUDY, tiny_args
from tests.study.test_claims import Rendezvous, handle, new_study, spellings
from tests.study.test_resilience import storage_url

PRUNED = optuna.trial.TrialState.PRUNED
COMPLETE = optuna.trial.TrialState.COMPLETE
RUNNING = optuna.trial.TrialState.RUNNING
WAITING = optuna.trial.TrialState.WAITING
FAIL = optuna.trial.TrialState.FAIL
X = {"x": optuna.distributions.FloatDistribution(0, 1)}
RUNGS = (2, 6)


def paused(study: optuna.Study, x: float, value: float, rung: int = 2) -> None:
    """A trial of ``x`` that paused at ``rung`` with ``value`` there."""
    study.add_trial(
        optuna.trial.create_trial(
            state=PRUNED,
            params={"x": x},
            distributions=X,
            intermediate_values={e: value for e in range(1, rung + 1)},
            user_attrs={A.PAUSED_AT: rung, A.TARGET_RUNG: rung, A.CHECKPOINT_KEY: f"key{x}"},
        )
    )


def test_rungs_of_the_tiny_studies() -> None:
    assert rungs(3, 0.1) == (2, 3)  # the end-to-end study below
    assert rungs(6, 0.1) == RUNGS


def test_two_claims_at_once_promote_a_paused_trial_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = spellings(tmp_path, monkeypatch)
    study, _ = new_study(urls[0])
    for x, value in ((0.1, 0.5), (0.2, 0.9), (0.3, 0.7)):  # three at rung 2: one slot
        paused(study, x, value)
    promoter = Promoter(RUNGS, total=3, checkpoint_dir=None)

    def take(url: str) -> int | None:
        other, storage = handle(url)
        trial = claim(other, storage, 3, Lifecycle(claims=ClaimLock(url)), None, promoter)
        if trial is None:
            return None
        trial.suggest_float("x", 0, 1)  # as the objective does: the paused trial's value
        return trial.number

    # both are held at their first trial insert: without the lock, both would promote
    taken = Rendezvous("INSERT INTO trials", 2, monkeypatch).run(
        lambda: take(urls[0]), lambda: take(urls[2])
    )
    assert sorted(taken, key=str) == [3, None]  # one promotion; the study is full
    promoted = study.get_trials()[3]
    assert promoted.state == RUNNING and promoted.params == {"x": 0.2}
    assert promoted.user_attrs[A.PROMOTED_FROM] == 1 and promoted.user_attrs[A.TARGET_RUNG] == 6
    assert configuration_of(promoted) == 1 and promoted.user_attrs[A.CHECKPOINT_KEY] == "key0.2"
    counts = promotion_counts(study.get_trials())
    assert counts is not None and counts.describe() == ("3 configurations, 2 paused, 1 promoted")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_killed_promotion_is_retried_as_a_promotion_and_not_promoted_again(
    tmp_path: Path, dead_pid: int, backend: str
) -> None:
    url, name = storage_url(backend, tmp_path), f"promote-{uuid.uuid4().hex[:8]}"
    study, storage = new_study(url, name=name)
    try:
        _killed_promotion(study, storage, url, dead_pid)
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def _killed_promotion(study: optuna.Study, storage: Any, url: str, dead_pid: int) -> None:
    for x, value in ((0.1, 0.5), (0.2, 0.9), (0.3, 0.7)):
        paused(study, x, value)
    promoter = Promoter(RUNGS, total=4, checkpoint_dir=None)
    life = Lifecycle(claims=ClaimLock(url))
    trial = claim(study, storage, 4, life, None, promoter)
    assert trial is not None and trial.user_attrs[A.PROMOTED_FROM] == 1
    assert trial.suggest_float("x", 0, 1) == 0.2
    for key, value in {"host": socket.gethostname(), "pid": dead_pid, "pid_start": None}.items():
        trial.set_user_attr(key, value)  # its worker is killed while it trains
    assert recover_dead_trials(study, storage, life.claims) == [trial.number]
    retry = claim(study, storage, 4, life, None, promoter)  # the retry, not a new promotion
    assert retry is not None and retry.user_attrs[A.RETRY_OF] == trial.number
    assert retry.user_attrs[A.PROMOTED_FROM] == 1 and retry.user_attrs[A.TARGET_RUNG] == 6
    assert retry.suggest_float("x", 0, 1) == 0.2
    new = claim(study, storage, 4, life, None, promoter)  # one slot, taken: a new configuration
    assert new is not None and A.PROMOTED_FROM not in new.user_attrs
    assert new.user_attrs[A.TARGET_RUNG] == RUNGS[0]
    assert claim(study, storage, 4, life, None, promoter) is None  # four configurations
    counts = promotion_counts(study.get_trials())
    assert counts is not None and (counts.configurations, counts.promoted) == (4, 1)


def test_checkpoints_no_promotion_can_reach_are_deleted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wrn.db"
    study, storage = new_study(url)
    values = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
    for i, value in enumerate(values):
        paused(study, i / 10, value)
    files = [
        checkpoint_file(tmp_path / "ck", "s", t.number, t.user_attrs[A.CHECKPOINT_KEY])
        for t in study.get_trials()
    ]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"state")
    life = Lifecycle(claims=ClaimLock(url))
    kept = Promoter(RUNGS, total=6, checkpoint_dir=tmp_path / "ck", keep_checkpoints=True)
    assert kept.delete_hopeless("s", study.get_trials()) == []
    promoter = Promoter(RUNGS, total=6, checkpoint_dir=tmp_path / "ck")
    trial = claim(study, storage, 6, life, None, promoter)  # the study is full: two slots
    assert trial is not None and trial.user_attrs[A.PROMOTED_FROM] == 0
    assert [f.exists() for f in files] == [True, True, False, False, False, False]


def fixed(params: dict[str, Any]) -> list[str]:
    return [a for k, v in sorted(params.items()) for a in ("--set", f"{k}={v!r}")]


def test_a_promoted_trial_continues_exactly_and_trials_count_configurations(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "wrn.db"
    small = ("--set", "synthetic_train_size=320", "--val-size", "64")
    # rungs (2, 3); checkpoints every 5 epochs: the pause writes its own
    promote = ("--pruner", "promote", "--epochs", "3", "--set", "warmup_frac=0.1")
    every = ("--checkpoint-every", "5", "--sampler-seed", "0", "--trials", "3")
    assert run.main(tiny_args(storage, *small, *promote, *every)) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("study "))
    # the display counts configurations: each once, when it pauses; its promotion not again
    ends = re.findall(r"trial (\d) (paused|complete).*\((\d) of 3 trials\)", out)
    assert ends == [
        ("0", "paused", "1"),
        ("1", "paused", "2"),
        ("2", "paused", "3"),
        ("3", "complete", "3"),
    ]
    assert (
        line
        == f"study {TINY_STUDY!r}: 1 complete, 3 pruned; 3 configurations, 2 paused, 1 promoted"
    )
    study = optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{storage}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [PRUNED, PRUNED, PRUNED, COMPLETE]  # 3 configurations
    assert all(t.user_attrs[A.PAUSED_AT] == 2 for t in trials if t.state == PRUNED)
    promoted = trials[3]
    source = trials[promoted.user_attrs[A.PROMOTED_FROM]]
    assert source.user_attrs[A.PAUSED_AT] == 2 and promoted.params == source.params
    assert source.intermediate_values[2] == max(t.intermediate_values[2] for t in trials[:3])
    assert promoted.user_attrs[A.RESUMED_FROM_EPOCH] == 2  # from the pause's checkpoint
    assert sorted(promoted.intermediate_values) == [1, 2, 3]  # the whole curve on one record
    # no promotion can reach the paused ones: their checkpoints are gone
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))
    assert status.main(["--storage", f"sqlite:///{storage}"]) == 0
    assert f"{TINY_STUDY}: 3 configurations, 2 paused, 1 promoted" in capsys.readouterr().out

    # the same configuration trained without a pause, in a storage of its own
    reference = tmp_path / "ref" / "wrn.db"
    reference.parent.mkdir()
    plain = ("--epochs", "3", "--set", "warmup_frac=0.1", "--trials", "1")
    assert run.main(tiny_args(reference, *small, *plain, *fixed(promoted.params))) == 0
    (alone,) = optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{reference}").trials
    assert alone.intermediate_values == promoted.intermediate_values  # exactly, on CPU
    assert alone.value == promoted.value


def test_a_trial_killed_after_its_pause_was_saved_pauses_again_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    """Killed between the rung's checkpoint and the tell: the retry trains nothing more."""
    storage = tmp_path / "wrn.db"
    small = ("--set", "synthetic_train_size=320", "--val-size", "64", "--trials", "1")
    argv = tiny_args(storage, *small, "--pruner", "promote", "--epochs", "4")
    argv += ["--set", "warmup_frac=0.1"]  # rungs (2, 4)
    real_tell = optuna.Study.tell

    def killed(self: optuna.Study, trial: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("state") == PRUNED:
            raise KeyboardInterrupt  # the process dies here: its trial stays RUNNING
        return real_tell(self, trial, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(optuna.Study, "tell", killed)
        with pytest.raises(KeyboardInterrupt):
            run.main(argv)
    url = f"sqlite:///{storage}"
    (first,) = optuna.load_study(study_name=TINY_STUDY, storage=url).get_trials()
    assert first.state == RUNNING and sorted(first.intermediate_values) == [1, 2]
    study, backend = handle(url, name=TINY_STUDY)
    backend.set_trial_user_attr(
        trial_id(backend, study, 0), "pid", dead_pid
    )  # as a killed worker leaves it
    assert run.main(argv) == 0
    first, retry = optuna.load_study(study_name=TINY_STUDY, storage=url).get_trials()
    assert (first.state, retry.state) == (FAIL, PRUNED)
    assert retry.user_attrs[A.PAUSED_AT] == 2 and retry.user_attrs[A.RESUMED_FROM_EPOCH] == 2
    assert retry.user_attrs[A.EPOCH_SECONDS] == []  # paused at once, no epoch trained again


def test_the_wait_flag_moves_the_first_rung_and_startup_trials_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert rungs(16, 0.3, wait_epochs=2) == (3, 9, 16)  # judged after the wait, as median is
    storage = tmp_path / "wrn.db"
    small = ("--set", "synthetic_train_size=320", "--val-size", "64", "--trials", "2")
    promote = tiny_args(storage, *small, "--pruner", "promote", "--epochs", "3")
    with pytest.raises(SystemExit) as refused:
        run_command("python -m study.run", run.main, [*promote, "--pruner-startup-trials", "2"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--pruner-startup-trials: promote has no startup" in err
    assert err.count("\n") == 1 and not storage.exists()
    assert run.main([*promote, "--pruner-warmup-epochs", "0"]) == 0  # rungs (1, 3)
    assert "promote: trials pause at epoch 1 of 3" in capsys.readouterr().out
    trials = optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{storage}").trials
    assert [t.user_attrs.get(A.PAUSED_AT) for t in trials if t.state == PRUNED] == [1, 1]


def test_reduction_sets_the_rungs_and_the_share_promoted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "wrn.db"
    small = ("--set", "synthetic_train_size=320", "--val-size", "64", "--trials", "2")
    argv = tiny_args(storage, *small, "--epochs", "6", "--set", "warmup_frac=0.1")
    with pytest.raises(SystemExit) as refused:  # a median has no rungs to space
        run_command("python -m study.run", run.main, [*argv, "--reduction", "2"])
    assert refused.value.code == 2 and not storage.exists()
    assert "--reduction: only --pruner promote has one" in capsys.readouterr().err
    assert run.main([*argv, "--pruner", "promote", "--reduction", "2"]) == 0  # rungs (2, 4, 6)
    assert "pause at epoch 2, 4 of 6, the top 1/2 promoted" in capsys.readouterr().out
    trials = optuna.load_study(study_name=TINY_STUDY, storage=f"sqlite:///{storage}").trials
    assert 4 in {t.user_attrs.get(A.PAUSED_AT) for t in trials}  # a rung only 2 makes
