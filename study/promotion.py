"""The decision rule of ``--pruner promote``: asynchronous successive halving that pauses
trials at rungs and promotes them later (with repechage), written pure: no Optuna, no storage.

Rungs are epochs: the first epoch the schedule-aware pruners may judge (the one after the
OneCycle LR peak, ``study.pruning.first_judged_epoch``), then x ``reduction`` while below the
trial's epochs, and the full budget last. A trial that reaches a rung below the last pauses
(its checkpoint kept, its worker free). A free worker asks :func:`promotion` first: the best
paused trial, highest rung first, that ranks in the top ``1/reduction`` of *all* trials that
have reached its rung (those already promoted included) continues to :func:`next_rung`; only
when there is none does the worker start a new configuration. A trial outside the top now may
enter it later, as more trials reach its rung and the slots grow. :func:`deletable` names the
paused trials that no promotion can reach any more, whose checkpoints may go.

Accuracies are maximised; ties rank by trial number (the earlier first); NaN ranks last.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from study.pruning import first_judged_epoch

REDUCTION = 3  # a rung promotes its top third


class Phase(enum.StrEnum):
    RUNNING = "running"  # training towards its next rung (new, or promoted)
    PAUSED = "paused"  # stopped at its highest rung, checkpoint kept, waiting for a promotion
    ENDED = "ended"  # reaches no further rung: finished the last one, failed, or given up


@dataclass(frozen=True)
class Standing:
    """Where one trial stands: its validation accuracy at each rung it reached, and its phase."""

    number: int
    phase: Phase
    values: Mapping[int, float] = field(default_factory=dict)  # rung epoch -> accuracy there

    @property
    def rung(self) -> int | None:
        """The highest rung it reached (None before the first)."""
        return max(self.values) if self.values else None


def rungs(
    epochs: int, warmup_frac: float, reduction: int = REDUCTION, wait_epochs: int | None = None
) -> tuple[int, ...]:
    """The rungs of a trial of ``epochs`` epochs under OneCycle with ``warmup_frac``: e.g.
    (6, 16) for 16 epochs at 0.3 (peak at 5), (10, 30) for 30, the first after
    ``wait_epochs`` if given (``--pruner-warmup-epochs``); ValueError on bad arguments."""
    if reduction < 2:
        raise ValueError(f"reduction must be >= 2, got {reduction}")
    rung = first_judged_epoch(epochs, warmup_frac, wait_epochs)
    below: list[int] = []
    while rung < epochs:
        below.append(rung)
        rung *= reduction
    return (*below, epochs)


def next_rung(rung_epochs: Sequence[int], epoch: int) -> int:
    """The rung a trial at ``epoch`` trains to next (0: a new trial); ValueError past the last."""
    for rung in rung_epochs:
        if rung > epoch:
            return rung
    raise ValueError(f"epoch {epoch} is at or past the last rung {rung_epochs[-1]}")


def promotion(standings: Iterable[Standing], reduction: int = REDUCTION) -> Standing | None:
    """The paused trial a free worker should resume, or None (then it starts a new one)."""
    standings = list(standings)
    paused_rungs = {s.rung for s in standings if s.phase == Phase.PAUSED and s.rung is not None}
    for rung in sorted(paused_rungs, reverse=True):  # the nearest to finishing first
        reached = _ranked(standings, rung)
        for s in reached[: len(reached) // reduction]:
            if s.phase == Phase.PAUSED and s.rung == rung:
                return s
    return None


def deletable(
    standings: Iterable[Standing],
    rung_epochs: Sequence[int],
    planned: int,
    reduction: int = REDUCTION,
) -> list[int]:
    """The paused trials no promotion can reach, whose checkpoints may be deleted.

    ``planned`` configurations make the study (``--trials``). A trial's rank at its rung can
    only fall as others arrive, and the rung's slots can grow at most to a ``1/reduction`` of
    the trials that have reached it plus those that still may (running or paused below it,
    and configurations not started yet): one ranking below all of those never resumes.
    Decided from the lowest rung up, so a trial found hopeless below no longer counts above.
    """
    standings = list(standings)
    unborn = max(0, planned - len(standings))
    dead: set[int] = set()
    for rung in rung_epochs[:-1]:
        coming = unborn + sum(
            1
            for s in standings
            if s.phase != Phase.ENDED
            and (s.rung is None or s.rung < rung)
            and s.number not in dead
        )
        reached = _ranked(standings, rung)
        slots = (len(reached) + coming) // reduction
        for rank, s in enumerate(reached):
            if rank >= slots and s.phase == Phase.PAUSED and s.rung == rung:
                dead.add(s.number)
    return sorted(dead)


def _ranked(standings: Iterable[Standing], rung: int) -> list[Standing]:
    """The trials that reached ``rung``, best there first."""
    reached = [s for s in standings if rung in s.values]
    return sorted(reached, key=lambda s: (_badness(s.values[rung]), s.number))


def _badness(value: float) -> float:
    return math.inf if math.isnan(value) else -value


__all__ = ["REDUCTION", "Phase", "Standing", "deletable", "next_rung", "promotion", "rungs"]
