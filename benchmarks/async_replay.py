"""Asynchronous replay: N simulated workers train a drawn sequence of a table's configurations
in simulated time, each epoch costing its recorded seconds, while a scheduler decides with what
has been observed by then (no training happens).

A free worker asks the scheduler for a job (:meth:`Scheduler.start`): a trial to train on from
where it stands up to a target epoch; None leaves the worker idle until the next event. Every
finished epoch is reported (:meth:`Scheduler.report`), which may stop the trial there (pruned).
Trials are numbered 0, 1, ... in the order the scheduler starts them; trial n replays the n-th
drawn configuration. Schedulers: Optuna pruners driven by ask/tell on an in-memory study
(stopping only), ``promote`` (study.promotion's rule: pause at rungs, resume the top later),
and synchronous successive halving (all to the first rung, then the top 1/eta on).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import optuna
from optuna.pruners import BasePruner

from study.promotion import Phase, Standing, deletable, next_rung, promotion


@dataclass(frozen=True)
class Job:
    trial: int
    target: int  # the epoch it trains to (it may be stopped before)


class Scheduler(Protocol):
    def start(self) -> Job | None: ...

    def report(self, trial: int, epoch: int, value: float) -> bool: ...  # True: stop it now


@dataclass(frozen=True)
class Finish:
    """A trial that trained its last epoch: when, and what had been spent by then."""

    trial: int
    value: float
    epochs: int  # epochs trained by all workers up to this moment
    seconds: float  # their recorded seconds
    time: float  # simulated wall-clock seconds


@dataclass
class Trace:
    finishes: list[Finish] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0
    time: float = 0.0
    peak_checkpoints: int = 0  # promote: paused checkpoints kept at once, at most


def simulate(
    curves: Sequence[Sequence[float]],
    seconds: Sequence[Sequence[float]],
    scheduler: Scheduler,
    workers: int,
) -> Trace:
    """Run the search to its end in simulated time: trial n trains ``curves[n]``."""
    trace = Trace()
    done: dict[int, int] = {}  # trial -> epochs trained
    events: list[tuple[float, int, int, Job]] = []  # (time, tie-break, worker, job)
    idle = list(range(workers - 1, -1, -1))
    now, ticket = 0.0, 0

    def begin(worker: int, job: Job) -> None:
        nonlocal ticket
        epoch = done.get(job.trial, 0) + 1
        heapq.heappush(events, (now + seconds[job.trial][epoch - 1], ticket, worker, job))
        ticket += 1

    def dispatch() -> None:
        while idle and (job := scheduler.start()) is not None:
            begin(idle.pop(), job)

    dispatch()
    while events:
        now, _, worker, job = heapq.heappop(events)
        epoch = done[job.trial] = done.get(job.trial, 0) + 1
        trace.epochs += 1
        trace.seconds += seconds[job.trial][epoch - 1]
        value = curves[job.trial][epoch - 1]
        stop = scheduler.report(job.trial, epoch, value)
        if epoch == len(curves[job.trial]) and not stop:
            trace.finishes.append(Finish(job.trial, value, trace.epochs, trace.seconds, now))
        if stop or epoch >= job.target:
            idle.append(worker)
        else:
            begin(worker, job)
        dispatch()  # any event may open work for an idle worker
    trace.time = now
    trace.peak_checkpoints = getattr(scheduler, "peak_checkpoints", 0)
    return trace


class FullTraining:
    """No pruning: every trial trains to its last epoch."""

    def __init__(self, trials: int, epochs: int) -> None:
        self.trials, self.epochs, self.created = trials, epochs, 0

    def start(self) -> Job | None:
        if self.created == self.trials:
            return None
        self.created += 1
        return Job(self.created - 1, self.epochs)

    def report(self, trial: int, epoch: int, value: float) -> bool:
        return False


class OptunaPruning:
    """An Optuna pruner deciding on an in-memory study, as ``study.objective`` asks it: a trial
    reports each epoch (step = epoch) and stops when ``should_prune`` says so."""

    def __init__(self, pruner: BasePruner, trials: int, epochs: int, name: str) -> None:
        self.study = optuna.create_study(
            study_name=name,  # Hyperband assigns brackets by a hash of study name and trial
            direction="maximize",
            pruner=pruner,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        self.trials, self.epochs = trials, epochs
        self.running: dict[int, optuna.Trial] = {}
        self.created = 0

    def start(self) -> Job | None:
        if self.created == self.trials:
            return None
        trial = self.study.ask()
        self.running[self.created] = trial
        self.created += 1
        return Job(self.created - 1, self.epochs)

    def report(self, trial: int, epoch: int, value: float) -> bool:
        t = self.running[trial]
        t.report(value, epoch)
        if epoch == self.epochs:
            self.study.tell(t, value)
            return False
        if t.should_prune():
            self.study.tell(t, state=optuna.trial.TrialState.PRUNED)
            return True
        return False


class Promotion:
    """``--pruner promote``: pause at each rung, resume study.promotion's choice first."""

    def __init__(self, trials: int, rungs: Sequence[int], reduction: int) -> None:
        self.trials, self.rungs, self.reduction = trials, tuple(rungs), reduction
        self.standings: dict[int, Standing] = {}
        self.peak_checkpoints = 0

    def start(self) -> Job | None:
        chosen = promotion(self.standings.values(), self.reduction)
        if chosen is not None:
            self.standings[chosen.number] = Standing(chosen.number, Phase.RUNNING, chosen.values)
            assert chosen.rung is not None
            return Job(chosen.number, next_rung(self.rungs, chosen.rung))
        if len(self.standings) == self.trials:
            return None
        number = len(self.standings)
        self.standings[number] = Standing(number, Phase.RUNNING)
        return Job(number, self.rungs[0])

    def report(self, trial: int, epoch: int, value: float) -> bool:
        if epoch in self.rungs:
            values = {**self.standings[trial].values, epoch: value}
            phase = Phase.ENDED if epoch == self.rungs[-1] else Phase.PAUSED
            self.standings[trial] = Standing(trial, phase, values)
            if phase == Phase.PAUSED:
                self._count_checkpoints()
        return False

    def _count_checkpoints(self) -> None:
        standings = self.standings.values()
        paused = sum(s.phase == Phase.PAUSED for s in standings)
        gone = len(deletable(standings, self.rungs, self.trials, self.reduction))
        self.peak_checkpoints = max(self.peak_checkpoints, paused - gone)


class Synchronous:
    """Train every trial to the first rung; once all are there, the top 1/eta go on to the
    next rung, and so on (at least one goes on, so the search always finishes one)."""

    def __init__(self, trials: int, rungs: Sequence[int], reduction: int) -> None:
        self.trials, self.rungs, self.reduction = trials, tuple(rungs), reduction
        self.values: dict[int, float] = {}  # trial -> value at the current rung
        self.level = 0  # index of the rung the current round trains to
        self.queue: list[int] = []
        self.running = 0

    def start(self) -> Job | None:
        if len(self.values) + self.running < self.trials and self.level == 0:
            self.running += 1
            return Job(len(self.values) + self.running - 1, self.rungs[0])
        if not self.queue and self.running == 0 and self.level + 1 < len(self.rungs):
            ranked = sorted(self.values, key=lambda t: (-self.values[t], t))
            self.queue = ranked[: max(1, len(ranked) // self.reduction)]
            self.values = {}
            self.level += 1
        if not self.queue:
            return None
        self.running += 1
        return Job(self.queue.pop(0), self.rungs[self.level])

    def report(self, trial: int, epoch: int, value: float) -> bool:
        if epoch == self.rungs[self.level]:
            self.values[trial] = value
            self.running -= 1
        return False
