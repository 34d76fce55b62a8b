"""Configurations, paused and promoted trials (``--pruner promote``), read from the trials.

A configuration is a first attempt and every trial that continues it: its retries and its
promotions share the first attempt's number (``first_attempt``) and checkpoint. A trial that
paused at a rung is PRUNED with ``paused_at``; the trial that continues it from its checkpoint
is a new one with the same parameters and ``promoted_from``, so the latest trial of a
configuration holds its whole curve and says where it stands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from study.records.keys import TrialAttrs
from study.records.queries import is_rejected_draw

# trials that hold a configuration's place in --trials: finished or running
HOLDING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def configuration_of(trial: FrozenTrial) -> int:
    """The number of the first attempt of the trial's configuration."""
    return int(trial.user_attrs.get(TrialAttrs.FIRST_ATTEMPT, trial.number))


def paused_at(trial: FrozenTrial) -> int | None:
    """The rung epoch a trial paused at (PRUNED, its checkpoint kept), else None."""
    rung = trial.user_attrs.get(TrialAttrs.PAUSED_AT)
    return int(rung) if rung is not None and trial.state == TrialState.PRUNED else None


def promoted_from(trial: FrozenTrial) -> int | None:
    """The paused trial this one continues (its retries say the same), else None."""
    number = trial.user_attrs.get(TrialAttrs.PROMOTED_FROM)
    return None if number is None else int(number)


def latest_trials(trials: Iterable[FrozenTrial]) -> dict[int, FrozenTrial]:
    """Each configuration's latest trial (draws over the cost cap are none), by first attempt."""
    latest: dict[int, FrozenTrial] = {}
    for t in trials:
        root = configuration_of(t)
        if not is_rejected_draw(t) and (root not in latest or t.number > latest[root].number):
            latest[root] = t
    return latest


def configurations(trials: Iterable[FrozenTrial]) -> set[int]:
    """The configurations that count towards ``--trials``: those with a trial finished or
    running (a failed one is drawn again; promotions and retries are the same one)."""
    return {configuration_of(t) for t in trials if t.state in HOLDING and not is_rejected_draw(t)}


@dataclass(frozen=True)
class PromotionCounts:
    """What ``status``, the study line and the note say of a ``--pruner promote`` study."""

    configurations: int
    paused: int  # configurations whose latest trial is paused, waiting for a promotion
    promoted: int  # promotions made (a retried promotion is one)

    def describe(self) -> str:
        return (
            f"{self.configurations} configurations, {self.paused} paused, {self.promoted} promoted"
        )


def promotion_counts(trials: Iterable[FrozenTrial]) -> PromotionCounts | None:
    """The counts of a study whose trials train to rungs (``target_rung``), else None."""
    trials = list(trials)
    if not any(TrialAttrs.TARGET_RUNG in t.user_attrs for t in trials):
        return None
    paused = sum(paused_at(t) is not None for t in latest_trials(trials).values())
    promoted = {promoted_from(t) for t in trials} - {None}
    return PromotionCounts(len(configurations(trials)), paused, len(promoted))
