"""How far a study is and how fast it goes (``Pace``): what ``study.progress`` shows as its
lines and bars, the ETA, and which trial ends count towards the total."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Protocol

FINISHED_STATES = ("COMPLETE", "PRUNED")  # count towards --trials, as study.run counts them


def study_eta(
    remaining: int, epochs: int, done_in_running: float, mean_epoch_s: float | None
) -> float | None:
    """Seconds until the study's total is reached, or None before any time was measured.

    ``remaining``: trials (runs) not finished yet, the running one included; ``epochs``: per
    trial; ``done_in_running``: epochs (fractions too) the running trial has done. Every trial is
    assumed to run all its epochs, so with pruning this is an upper bound.
    """
    if mean_epoch_s is None or remaining <= 0:
        return None if mean_epoch_s is None else 0.0
    return max(remaining * epochs - done_in_running, 0.0) * mean_epoch_s


def format_eta(seconds: float | None) -> str:
    """``H:MM:SS`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    return str(datetime.timedelta(seconds=round(seconds)))


class BatchLike(Protocol):
    """What ``Progress.batch`` reads (``wrn.train.BatchProgress`` has it)."""

    epoch: int  # 1-based
    batch: int  # micro-batches done this epoch, 1-based
    batches: int
    images: int  # training images seen this epoch
    seconds: float  # since the epoch started
    loss: float  # running mean training loss


@dataclass
class Pace:
    """How far the study is and how fast it goes: finished, best, and the ETA's epoch times."""

    total: int | None = None
    finished: int = 0
    best: float | None = None
    epochs: int | None = None  # per trial, for the ETA
    epoch_seconds: list[float] = field(default_factory=list)  # every epoch in this process
    running: dict[int, float] = field(default_factory=dict)  # trial -> epochs done (fractions)
    trial_epochs: dict[int, int] = field(default_factory=dict)
    current: int | None = None  # the trial whose batches are arriving
    estimate: float | None = None  # seconds per epoch, from the first batches

    def add_best(self, value: float | None) -> None:
        if value is not None:
            self.best = value if self.best is None else max(self.best, value)

    def best_text(self) -> str:
        return "-" if self.best is None else f"{self.best:.4f}"

    def eta(self) -> float | None:
        """Seconds until the study's total is finished (None: unknown yet)."""
        if self.total is None:
            return None
        return study_eta(
            self.total - self.finished,
            self.epochs or max(self.trial_epochs.values(), default=1),
            sum(self.running.values()),
            self._mean_epoch_seconds(),
        )

    def _mean_epoch_seconds(self) -> float | None:
        if self.epoch_seconds:
            return sum(self.epoch_seconds) / len(self.epoch_seconds)
        return self.estimate  # no finished epoch yet: the running epoch's pace stands in

    def start_trial(self, number: int, epochs: int | None, start_epoch: int) -> None:
        self.running[number] = float(start_epoch)
        self.current = number
        if epochs is not None:
            self.trial_epochs[number] = epochs

    def batch(self, progress: BatchLike) -> int | None:
        """Count a batch; the trial it belongs to (None: no trial is running)."""
        number = self.current if self.current is not None else max(self.running, default=None)
        if number is None or progress.batches <= 0:
            return None
        fraction = progress.batch / progress.batches
        self.running[number] = float(progress.epoch - 1) + fraction
        if not self.epoch_seconds and progress.seconds > 0 and fraction > 0:
            self.estimate = progress.seconds / fraction
        return number

    def end_epoch(self, number: int, epoch: int, epochs: int, seconds: float) -> None:
        self.current = number
        self.epoch_seconds.append(seconds)
        self.running[number] = float(epoch)
        self.trial_epochs.setdefault(number, epochs)

    def end_trial(self, number: int, state: str, value: float | None, promotion: bool) -> bool:
        """Count a trial's end; whether it counts towards the total (a promotion's does not:
        its configuration counted when its first trial paused)."""
        self.running.pop(number, None)
        if self.current == number:
            self.current = None
        if state == "COMPLETE":
            self.add_best(value)
        counts = state in FINISHED_STATES and not promotion
        self.finished += counts
        return counts
