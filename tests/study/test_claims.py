"""Claims are atomic: a lost trial is requeued once, a queued trial is handed to one worker, and
workers stop at the study's total, however the storage is spelled (issue 16, breaks 2 and 3).

The races are made deterministic, not left to timing: ``Rendezvous`` holds each racing thread
at its first write of a trial's state until every other one has written too, or is blocked on
the claim lock. Without the lock, every thread reads the trial before any of them writes.
"""

from __future__ import annotations

import fcntl
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from sqlalchemy.engine import Engine

from study import run, status
from study.lifecycle import ClaimLock, Lifecycle, PlannedRun, recover_dead_trials, run_planned
from study.lifecycle.claims import ADVISORY_LOCK_ID, STALE_REASON
from study.lifecycle.search import claim
from study.lifecycle.workers import queue_interrupted, trial_id
from study.records import dropped_text
from study.storage import MAX_RETRY, open_storage
from tests.study.test_resilience import postgres_url
from wrn.config import TrainConfig

RUNNING = optuna.trial.TrialState.RUNNING
WAITING = optuna.trial.TrialState.WAITING
FAIL = optuna.trial.TrialState.FAIL
COMPLETE = optuna.trial.TrialState.COMPLETE
X = {"x": optuna.distributions.FloatDistribution(0, 1)}


class Rendezvous:
    """Holds each party (a thread named ``party-N``) at its first SQL statement starting with
    ``prefix`` until every other party has reached it too, has finished, or is blocked on a
    claim lock file (a real ``flock`` that would wait)."""

    def __init__(self, prefix: str, parties: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prefix = prefix
        self.parties = {f"party-{i}" for i in range(parties)}
        self.reached: set[str] = set()
        self.blocked: set[str] = set()
        self.done: set[str] = set()
        self.cond = threading.Condition()
        real_flock = fcntl.flock

        def flock(fd: Any, operation: int) -> None:
            name = threading.current_thread().name
            if name not in self.parties or operation != fcntl.LOCK_EX:
                return real_flock(fd, operation)
            try:
                return real_flock(fd, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                self._mark(self.blocked, name)
            real_flock(fd, operation)
            with self.cond:
                self.blocked.discard(name)

        monkeypatch.setattr(fcntl, "flock", flock)

    def _mark(self, states: set[str], name: str) -> None:
        with self.cond:
            states.add(name)
            self.cond.notify_all()

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        name = threading.current_thread().name
        if (
            name not in self.parties
            or name in self.reached
            or not statement.startswith(self.prefix)
        ):
            return
        self._mark(self.reached, name)
        others = self.parties - {name}
        with self.cond:
            ready = self.cond.wait_for(
                lambda: others <= self.reached | self.blocked | self.done, timeout=60
            )
        assert ready, f"{name}: the other parties never wrote nor waited for the lock"

    def run(self, *targets: Callable[[], Any]) -> list[Any]:
        """Run each target in a party thread at once; their results (an exception re-raised)."""
        results: list[Any] = [None] * len(targets)

        def party(i: int) -> None:
            try:
                results[i] = targets[i]()
            except BaseException as e:
                results[i] = e
            finally:
                self._mark(self.done, f"party-{i}")

        threads = [
            threading.Thread(target=party, args=(i,), name=f"party-{i}")
            for i in range(len(targets))
        ]
        sqlalchemy.event.listen(Engine, "before_cursor_execute", self._statement)
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sqlalchemy.event.remove(Engine, "before_cursor_execute", self._statement)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results


def spellings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three URLs of one SQLite file: relative, ./relative and absolute."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir(exist_ok=True)
    return [
        "sqlite:///studies/x.db",
        "sqlite:///./studies/x.db",
        f"sqlite:///{tmp_path / 'studies' / 'x.db'}",
    ]


def handle(url: str, heartbeat: int | None = None, name: str = "s") -> tuple[optuna.Study, Any]:
    """The study through a storage handle of its own, as another process has."""
    storage = open_storage(url, heartbeat_interval=heartbeat)
    return optuna.load_study(study_name=name, storage=storage), storage


def new_study(url: str, heartbeat: int | None = None, name: str = "s") -> tuple[optuna.Study, Any]:
    storage = open_storage(url, heartbeat_interval=heartbeat)
    optuna.create_study(storage=storage, study_name=name, direction="maximize")
    return handle(url, heartbeat, name)


def dead_trial(study: optuna.Study, pid: int, **attrs: Any) -> None:
    trial = study.ask(X)
    owner = {"host": socket.gethostname(), "pid": pid, "pid_start": None, **attrs}
    for key, value in owner.items():
        trial.set_user_attr(key, value)


def test_the_lock_is_the_storages_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative, dotted, absolute = spellings(tmp_path, monkeypatch)
    keys = {ClaimLock(url).key for url in (relative, dotted, absolute, "studies/x.db")}
    assert len(keys) == 1 and len({ClaimLock(u).path for u in (relative, absolute)}) == 1
    assert ClaimLock("sqlite:///studies/other.db").key not in keys
    secret = ClaimLock("postgresql://wrn:s3cret@db.example:5432/wrn")
    assert "s3cret" not in secret.key and secret.postgres


def test_two_recoverers_requeue_a_dead_trial_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    urls = spellings(tmp_path, monkeypatch)
    study, _ = new_study(urls[0])
    dead_trial(study, dead_pid)

    def recover(url: str) -> list[int]:
        other, storage = handle(url)
        return recover_dead_trials(other, storage, ClaimLock(url))

    found = Rendezvous("UPDATE trials SET state", 2, monkeypatch).run(
        lambda: recover(urls[0]), lambda: recover(urls[2])
    )
    assert sorted(found, key=len) == [[], [0]]  # one of them recovered it
    first, retry = study.get_trials()  # one retry, not two
    assert (first.state, retry.state) == (FAIL, WAITING)
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["retries"] == 1
    assert first.user_attrs["fail_reason"] == "worker process died"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask and tell, not optimize
def test_two_recoverers_requeue_a_stale_trial_once_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial of another machine whose heartbeat stopped: the heartbeat's path."""
    urls = spellings(tmp_path, monkeypatch)
    study, storage = new_study(urls[0], heartbeat=1)
    trial = study.ask(X)
    trial.set_user_attr("host", "another-machine")
    storage.record_heartbeat(trial_id(storage, study, trial.number))
    with sqlite3.connect(tmp_path / "studies" / "x.db") as db:  # its last beat, long ago
        db.execute("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00.000000'")

    def recover(url: str) -> list[int]:
        other, other_storage = handle(url, heartbeat=1)
        return recover_dead_trials(other, other_storage, ClaimLock(url))

    Rendezvous("UPDATE trials SET state", 2, monkeypatch).run(
        lambda: recover(urls[1]), lambda: recover(urls[2])
    )
    first, retry = study.get_trials()
    assert (first.state, retry.state) == (FAIL, WAITING)
    assert retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["fail_reason"] == STALE_REASON  # previous_failure once it runs


def test_three_claims_never_hand_a_queued_trial_twice_nor_pass_the_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = spellings(tmp_path, monkeypatch)
    study, _ = new_study(urls[0])
    for x in (0.1, 0.2, 0.3, 0.4, 0.5):  # five queued trials, a total of three
        study.enqueue_trial({"x": x})

    def take(url: str) -> int:
        other, storage = handle(url)
        trial = claim(other, storage, 3, Lifecycle(claims=ClaimLock(url)))
        assert trial is not None
        return trial.number

    taken = Rendezvous("UPDATE trials SET state", 3, monkeypatch).run(
        *(lambda url=url: take(url) for url in urls)
    )
    assert sorted(taken) == [0, 1, 2]  # three trials, each handed once
    # the study is full: the queued ones beyond the total are not run, by anyone
    other, storage = handle(urls[1])
    assert claim(other, storage, 3, Lifecycle(claims=ClaimLock(urls[1]))) is None
    assert [t.state for t in study.get_trials()] == [RUNNING] * 3 + [WAITING] * 2


def test_workers_started_together_stop_at_the_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = spellings(tmp_path, monkeypatch)
    study, _ = new_study(urls[0])

    def take(url: str) -> int | None:
        other, storage = handle(url)
        trial = claim(other, storage, 2, Lifecycle(claims=ClaimLock(url)))
        return None if trial is None else trial.number

    taken = Rendezvous("INSERT INTO trials", 3, monkeypatch).run(
        *(lambda url=url: take(url) for url in urls)
    )
    assert sorted(taken, key=str) == [0, 1, None] and len(study.get_trials()) == 2


class Instant(Lifecycle):
    """Trains nothing: every run is worth 0.5 at once; ``ran`` counts the runs trained."""

    ran: list[str] = []  # noqa: RUF012 - a class-wide count, reset by the test

    def run(self, trial: optuna.Trial, cfg: Any, splits: Any, label: Any = None) -> float:
        Instant.ran.append(trial.user_attrs["run_key"])
        return 0.5


def test_two_planned_commands_never_train_one_queued_run_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """study.rerun and study.ablate claim through the same lock: a queued retry of run "a" is
    taken by one of two commands started at once, and recorded once."""
    urls = spellings(tmp_path, monkeypatch)
    study, _ = new_study(urls[0])
    cfg = TrainConfig()
    study.add_trial(
        optuna.create_trial(state=WAITING, user_attrs={"run_key": "a", "config": cfg.to_flat()})
    )
    Instant.ran = []
    runs = [PlannedRun(key="a", cfg=cfg, params={}, attrs={})]

    def planned(url: str) -> dict[str, float]:
        other, storage = handle(url)
        life = Instant(claims=ClaimLock(url))
        return run_planned(other, storage, runs, {}, lambda cfg: None, life, poll_s=0.01)

    values = Rendezvous("UPDATE trials SET state", 2, monkeypatch).run(
        lambda: planned(urls[0]), lambda: planned(urls[2])
    )
    assert values == [{"a": 0.5}, {"a": 0.5}]
    assert Instant.ran == ["a"]  # trained once, by one of them
    assert [t.state for t in study.get_trials()] == [COMPLETE]


def test_a_config_dropped_by_the_retry_limit_says_so(
    tmp_path: Path, dead_pid: int, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/wrn.db"
    study, storage = new_study(url)
    dead_trial(study, dead_pid, retries=MAX_RETRY)  # its worker lost a fourth time
    assert recover_dead_trials(study, storage, ClaimLock(url)) == [0]
    assert [t.state for t in study.get_trials()] == [FAIL]  # not queued again
    said = f"1 configuration dropped after {MAX_RETRY + 1} failed attempts (trial 0)"
    assert dropped_text(study.user_attrs) == said
    assert status.main(["--storage", url]) == 0
    assert f"s: {said}" in capsys.readouterr().out.splitlines()
    run.print_summary(study)  # the study line at the end of study.run
    assert capsys.readouterr().out.splitlines()[0] == f"study 's': 1 fail; {said}"


def test_an_interrupted_trial_already_requeued_is_not_queued_again(
    tmp_path: Path, dead_pid: int
) -> None:
    """Ctrl-C in a worker whose trial another process failed and requeued meanwhile."""
    url = f"sqlite:///{tmp_path}/wrn.db"
    study, storage = new_study(url)
    dead_trial(study, dead_pid)
    assert recover_dead_trials(study, storage, ClaimLock(url)) == [0]
    queue_interrupted(study, storage, 0, ClaimLock(url))
    assert [t.state for t in study.get_trials()] == [FAIL, WAITING]


@pytest.fixture
def postgres_study() -> Iterator[tuple[str, str]]:
    url, name = postgres_url(), f"claims-{uuid.uuid4().hex[:8]}"
    yield url, name
    optuna.delete_study(study_name=name, storage=open_storage(url))


@pytest.mark.postgres
def test_on_postgresql_the_lock_is_the_databases(postgres_study: tuple[str, str]) -> None:
    """Held by one ClaimLock, the advisory lock is taken for every connection to the
    database, so for workers on other machines too."""
    url, name = postgres_study
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try_lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:id)")
    unlock = sqlalchemy.text("SELECT pg_advisory_unlock(:id)")
    lock = ClaimLock(url)
    with engine.connect() as other:
        with lock, lock:  # re-entrant
            assert other.execute(try_lock, {"id": ADVISORY_LOCK_ID}).scalar() is False
        assert other.execute(try_lock, {"id": ADVISORY_LOCK_ID}).scalar() is True
        other.execute(unlock, {"id": ADVISORY_LOCK_ID})
    study, storage = new_study(url, name=name)
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    life = Lifecycle(claims=lock)
    taken = [claim(study, storage, 2, life) for _ in range(3)]
    assert [None if t is None else t.number for t in taken] == [0, 1, None]


def test_a_claimed_planned_retry_is_this_workers_at_once(tmp_path: Path, dead_pid: int) -> None:
    """A queued retry inherits its dead worker's pid: once claimed it names this worker (under
    the lock), so another process's recovery does not requeue it while it trains."""
    url = f"sqlite:///{tmp_path}/wrn.db"
    study, storage = new_study(url)
    cfg = TrainConfig()
    dead = {"host": socket.gethostname(), "pid": dead_pid, "pid_start": None}
    attrs = {"run_key": "a", "config": cfg.to_flat(), **dead}
    study.add_trial(optuna.create_trial(state=WAITING, user_attrs=attrs))
    seen: list[list[int]] = []

    class Looks(Lifecycle):
        """Another process looks for dead trials while this one trains."""

        def run(self, trial: optuna.Trial, cfg: Any, splits: Any, label: Any = None) -> float:
            other, other_storage = handle(url)
            seen.append(recover_dead_trials(other, other_storage, ClaimLock(url)))
            return 0.5

    runs = [PlannedRun(key="a", cfg=cfg, params={}, attrs={})]
    life = Looks(claims=ClaimLock(url))
    assert run_planned(study, storage, runs, {}, lambda cfg: None, life, poll_s=0.01) == {"a": 0.5}
    assert seen == [[]] and [t.state for t in study.get_trials()] == [COMPLETE]
