"""A search's trials rerun at full length, read from ``NAME-rerun``: each seed's final-epoch test
accuracy, the result every display shows (status, report, the rerun's own lines).

Never a maximum: a rerun's per-epoch test curve is kept for plots, but the epoch (or seed, or
trial) with the highest test accuracy is chosen on the test set, so it is not a result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from study.records.keys import TrialAttrs, recorded_epochs


def seed_result(accs: Sequence[float]) -> str:
    """ "0.8123 ± 0.0040 over 3 seeds" (mean ± sample std), or "0.8123 on 1 seed": one seed has
    no spread to show, so none is written as ± 0."""
    if len(accs) == 1:
        return f"{accs[0]:.4f} on 1 seed"
    return f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f} over {len(accs)} seeds"


@dataclass(frozen=True)
class RerunPoint:
    """One search trial rerun at full length: its search value (proxy validation accuracy)
    and each seed's final-epoch test accuracy at ``epochs``."""

    trial: int
    val_acc: float
    test_accs: tuple[float, ...]  # one per seed, in seed order
    epochs: int
    seeds: tuple[int, ...] = ()

    @property
    def test_acc(self) -> float:
        """The mean over seeds."""
        return statistics.fmean(self.test_accs)

    @property
    def std(self) -> float | None:
        """The seeds' sample std (None with one seed)."""
        return statistics.stdev(self.test_accs) if len(self.test_accs) > 1 else None

    def result(self) -> str:
        return seed_result(self.test_accs)


def rerun_points(search: Sequence[FrozenTrial], reruns: Sequence[FrozenTrial]) -> list[RerunPoint]:
    """Each rerun search trial's value and its seeds' final-epoch test accuracies, by trial.

    Only the longest rerun length is used (the full-length question); a seed rerun again at
    that length counts once (the latest), and a shorter rerun of a seed never replaces its
    full-length run.
    """
    values = {t.number: t.value for t in search if t.state == TrialState.COMPLETE}
    found: list[tuple[int, int, int, float]] = []  # (source, seed, epochs, test acc)
    for t in sorted(reruns, key=lambda t: t.number):  # oldest first: a later run wins a tie
        a = t.user_attrs
        source = a.get(TrialAttrs.SOURCE_TRIAL)
        if t.state != TrialState.COMPLETE or TrialAttrs.TEST_ACC not in a:
            continue
        if values.get(source) is None:
            continue
        seed = a.get(TrialAttrs.SEED, t.number)
        found.append((source, seed, recorded_epochs(t) or 0, float(a[TrialAttrs.TEST_ACC])))
    if not found:
        return []
    full = max(epochs for _, _, epochs, _ in found)
    runs: dict[int, dict[int, float]] = {}  # source -> seed -> test acc, at the full length
    for source, seed, epochs, acc in found:
        if epochs == full:
            runs.setdefault(source, {})[seed] = acc
    return [
        RerunPoint(
            source,
            float(values[source]),
            tuple(seeds[k] for k in sorted(seeds)),
            full,
            tuple(sorted(seeds)),
        )
        for source, seeds in sorted(runs.items())
    ]


def chosen_rerun(points: Sequence[RerunPoint], best: int | None) -> RerunPoint | None:
    """The rerun that stands for the search, chosen on validation, never on test: the search's
    best trial ``best`` if it was rerun, else the rerun trial with the best search value."""
    for p in points:
        if p.trial == best:
            return p
    return max(points, key=lambda p: (p.val_acc, -p.trial), default=None)


def pooled_seed_std(points: Sequence[RerunPoint]) -> float | None:
    """The seeds' std pooled over the trials with two seeds or more (one recipe's seed noise,
    taken as the same for every configuration); None if no trial has two."""
    squares = sum(
        (len(p.test_accs) - 1) * statistics.variance(p.test_accs)
        for p in points
        if len(p.test_accs) > 1
    )
    freedom = sum(len(p.test_accs) - 1 for p in points if len(p.test_accs) > 1)
    return math.sqrt(squares / freedom) if freedom else None
