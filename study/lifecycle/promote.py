"""``--pruner promote`` in the lifecycle: trials pause at rungs and paused ones are promoted,
from their checkpoints, by the free workers' claims (``search.claim``, under the ClaimLock).

A trial trains to its ``target_rung``: the first rung for a new configuration, the next one for
a promotion. At a rung below its last it *pauses*: its checkpoint of that epoch is written and
kept, and it is told PRUNED with ``paused_at`` (``TrialPaused``). A claim first asks
``study.promotion.promotion`` over every configuration's standing; a promotion is a new trial
with the paused one's parameters, enqueued and taken in one claim, that shares its first
attempt (so its checkpoint: it resumes there and re-reports the restored epochs, so the latest
trial of a configuration holds its whole curve). A killed promotion is requeued as any trial is
and keeps ``promoted_from`` and its target. A paused trial's checkpoint is deleted once
``study.promotion.deletable`` says no promotion can reach it (``--keep-checkpoints`` keeps it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.lifecycle.checkpoints import checkpoint_file
from study.promotion import REDUCTION, Phase, Standing, deletable, next_rung, promotion
from study.records import TrialAttrs as A
from study.records import configuration_of, configurations, latest_trials, paused_at
from study.records.queries import is_rejected_draw

if TYPE_CHECKING:
    from wrn.train import EpochStats

# what a promotion carries over from the paused trial: its checkpoint's identity and its draw
CARRIED = (A.CHECKPOINT_KEY, A.SAMPLER_SEED, A.RANDOM_DRAW)


class TrialPaused(optuna.TrialPruned):
    """The trial reached its target rung below its last: told PRUNED, its checkpoint kept."""

    def __init__(self, rung: int, epochs: int, value: float) -> None:
        super().__init__(
            f"paused at rung epoch {rung} of {epochs} (val_acc {value:.4f}), its checkpoint "
            "kept for a promotion"
        )
        self.rung = rung


def pause_epoch(target: object, epochs: int) -> int | None:
    """Where an attempt whose ``target_rung`` is ``target`` pauses (None: it trains on)."""
    return int(target) if target is not None and int(target) < epochs else None


def pause_if_there(
    trial: optuna.Trial, pause_at: int | None, history: Sequence[EpochStats], epochs: int
) -> None:
    """Pause (raise TrialPaused) a trial whose ``history`` reached its ``pause_at`` rung."""
    if pause_at is not None and len(history) >= pause_at:
        trial.set_user_attr(A.PAUSED_AT, pause_at)
        raise TrialPaused(pause_at, epochs, history[-1].eval_acc)


@dataclass(frozen=True)
class Promoter:
    """The promotion rule of one search: its rungs, ``--trials`` and the checkpoint folder."""

    rungs: tuple[int, ...]
    total: int
    checkpoint_dir: Path | None
    keep_checkpoints: bool = False
    reduction: int = REDUCTION

    def standings(self, trials: Sequence[FrozenTrial]) -> list[Standing]:
        """Each configuration's values at the rungs it reached and the phase of its latest
        trial: running (or queued), paused, or ended (complete, pruned, failed)."""
        groups: dict[int, list[FrozenTrial]] = defaultdict(list)
        for t in sorted(trials, key=lambda t: -t.number):  # the latest first
            if not is_rejected_draw(t):
                groups[configuration_of(t)].append(t)
        standings = []
        for root, group in groups.items():
            values: dict[int, float] = {}
            for rung in self.rungs:
                value = next(
                    (t.intermediate_values[rung] for t in group if rung in t.intermediate_values),
                    None,
                )
                if value is not None:
                    values[rung] = value
            standings.append(Standing(root, _phase(group[0]), values))
        return standings

    def next_promotion(self, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
        """The paused trial a free worker continues now, if any."""
        chosen = promotion(self.standings(trials), self.reduction)
        return None if chosen is None else latest_trials(trials)[chosen.number]

    def promote(self, study: optuna.Study, paused: FrozenTrial) -> int:
        """Queue the trial that continues ``paused`` to the next rung; that rung. Call it
        under the ClaimLock and take the trial in the same hold."""
        rung = paused_at(paused)
        if rung is None:
            raise ValueError(f"trial {paused.number} is not paused")
        target = next_rung(self.rungs, rung)
        attrs = {k: paused.user_attrs[k] for k in CARRIED if k in paused.user_attrs}
        attrs |= {
            A.FIRST_ATTEMPT: configuration_of(paused),
            A.PROMOTED_FROM: paused.number,
            A.TARGET_RUNG: target,
        }
        study.enqueue_trial(paused.params, user_attrs=attrs)
        return target

    def mark(self, trial: optuna.Trial) -> None:
        """A new configuration trains to the first rung (promotions and retries know theirs)."""
        if A.TARGET_RUNG not in trial.user_attrs:
            trial.set_user_attr(A.TARGET_RUNG, self.rungs[0])

    def delete_hopeless(self, study_name: str, trials: Sequence[FrozenTrial]) -> list[int]:
        """Delete the checkpoints of paused trials no promotion can reach; their numbers."""
        if self.checkpoint_dir is None or self.keep_checkpoints:
            return []
        standings = self.standings(trials)
        # deletable counts configurations not started yet as planned minus those standing:
        # failed ones stand but do not count towards --trials (another is drawn instead)
        planned = self.total + len(standings) - len(configurations(trials))
        latest = latest_trials(trials)
        deleted = []
        for root in deletable(standings, self.rungs, planned, self.reduction):
            paused = latest[root]
            key = paused.user_attrs.get(A.CHECKPOINT_KEY)
            path = (
                None
                if key is None
                else checkpoint_file(self.checkpoint_dir, study_name, root, key)
            )
            if path is not None and path.exists():
                path.unlink(missing_ok=True)
                deleted.append(paused.number)
        return deleted


def _phase(latest: FrozenTrial) -> Phase:
    if latest.state in (TrialState.RUNNING, TrialState.WAITING):
        return Phase.RUNNING
    return Phase.PAUSED if paused_at(latest) is not None else Phase.ENDED
