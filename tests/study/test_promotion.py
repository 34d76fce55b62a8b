"""study.promotion: the pure rule of --pruner promote (rungs, which paused trial resumes next,
which checkpoints may go)."""

from __future__ import annotations

import pytest

from study.promotion import Phase, Standing, deletable, next_rung, promotion, rungs
from study.pruning import first_judged_epoch, peak_epoch

P, R, E = Phase.PAUSED, Phase.RUNNING, Phase.ENDED


def at(rung: int, *values: float, phase: Phase = P, start: int = 0) -> list[Standing]:
    """Trials numbered from ``start`` that reached ``rung`` with these values."""
    return [Standing(start + i, phase, {rung: v}) for i, v in enumerate(values)]


def test_rungs_start_after_the_lr_peak_and_end_at_the_budget() -> None:
    assert rungs(16, 0.3) == (6, 16)  # the hard table: peak at 5
    assert rungs(30, 0.3) == (10, 30)
    assert rungs(20, 0.3, reduction=2) == (7, 14, 20)
    assert rungs(100, 0.05) == (6, 18, 54, 100)
    assert rungs(2, 0.3) == (2,)  # nothing to judge before the end: no pause
    for epochs, frac in [(16, 0.3), (30, 0.3), (12, 0.25)]:
        first = rungs(epochs, frac)[0]
        assert first == first_judged_epoch(epochs, frac) > peak_epoch(epochs, frac)
    with pytest.raises(ValueError, match="reduction"):
        rungs(16, 0.3, reduction=1)
    with pytest.raises(ValueError, match="warmup_frac"):
        rungs(16, 1.0)


def test_next_rung() -> None:
    assert next_rung((6, 18, 30), 0) == 6
    assert next_rung((6, 18, 30), 6) == 18
    assert next_rung((6, 18, 30), 7) == 18
    with pytest.raises(ValueError, match="past the last rung"):
        next_rung((6, 30), 30)


def test_no_promotion_before_a_rung_has_a_full_slot() -> None:
    assert promotion([]) is None
    assert promotion(at(6, 0.9, 0.8)) is None  # a third of 2 is no slot
    best = promotion(at(6, 0.5, 0.9, 0.8))
    assert best is not None and best.number == 1


def test_promoted_trials_keep_their_slots_and_the_rest_wait() -> None:
    # six at the rung: two slots; the best is already promoted (running on), the second waits
    trials = [Standing(0, R, {6: 0.95}), *at(6, 0.9, 0.1, 0.2, 0.3, 0.4, start=1)]
    chosen = promotion(trials)
    assert chosen is not None and chosen.number == 1
    done = [trials[0], Standing(1, R, {6: 0.9}), *trials[2:]]
    assert promotion(done) is None  # both slots taken


def test_a_paused_trial_is_promoted_later_as_its_rung_fills() -> None:
    trials = [Standing(0, R, {6: 0.9}), *at(6, 0.8, 0.1, start=1)]
    assert promotion(trials) is None  # one slot, taken by trial 0
    trials += at(6, 0.2, 0.3, 0.4, start=3)
    chosen = promotion(trials)
    assert chosen is not None and chosen.number == 1  # repechage: the second slot is its


def test_the_highest_rung_is_promoted_first_and_ties_go_to_the_earlier() -> None:
    low = at(6, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1)
    high = [Standing(n, P, {6: 0.8, 18: 0.7}) for n in (6, 7, 8)]
    chosen = promotion(low + high)
    assert chosen is not None and chosen.number == 6  # at rung 18, nearer to the end
    chosen = promotion(low)
    assert chosen is not None and chosen.number == 0
    with_nan = at(6, float("nan"), 0.1, 0.2)
    chosen = promotion(with_nan)
    assert chosen is not None and chosen.number == 2


def test_checkpoints_are_kept_while_a_promotion_can_still_reach_them() -> None:
    trials = at(6, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
    # more configurations to come: any of them may yet rise into a slot
    assert deletable(trials, (6, 16), planned=50) == []
    # the study is full: two slots of six, so ranks 3 to 6 can never resume
    assert deletable(trials, (6, 16), planned=6) == [2, 3, 4, 5]
    # three still running towards the rung: up to 9 reach it, three slots
    running = [Standing(n, R) for n in (6, 7, 8)]
    assert deletable(trials + running, (6, 16), planned=9) == [3, 4, 5]
    # a trial that failed before the rung will never reach it
    failed = [Standing(n, E) for n in (6, 7, 8)]
    assert deletable(trials + failed, (6, 16), planned=9) == [2, 3, 4, 5]


def test_a_hopeless_trial_below_does_not_hold_a_slot_open_above() -> None:
    # rung 6: nine reached, three slots; trials 0-2 went on and paused at 18 in that order
    top = [Standing(n, P, {6: 0.9 - 0.01 * n, 18: 0.9 - 0.01 * n}) for n in range(3)]
    rest = at(6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, start=3)
    # rung 6 is full and decided, so trials 3-8 are hopeless and none of them can reach 18:
    # one slot there, taken by trial 0, so trials 1 and 2 are hopeless too
    assert deletable(top + rest, (6, 18, 30), planned=9) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert promotion(top + rest) is not None  # trial 0 still resumes
