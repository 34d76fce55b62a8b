"""benchmarks.async_replay: simulated workers in simulated time, and each scheduler's rule."""

from __future__ import annotations

import pytest
from optuna.pruners import MedianPruner

from benchmarks.async_replay import (
    FullTraining,
    OptunaPruning,
    Promotion,
    Synchronous,
    simulate,
)

pytestmark = pytest.mark.usefixtures("quiet_optuna")


def flat(seconds: float, epochs: int, n: int) -> list[list[float]]:
    return [[seconds] * epochs for _ in range(n)]


def test_workers_share_the_trials_in_simulated_time() -> None:
    curves = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    seconds = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    one = simulate(curves, seconds, FullTraining(3, 2), workers=1)
    assert (one.epochs, one.seconds, one.time) == (6, 12.0, 12.0)
    assert [(f.trial, f.time, f.epochs) for f in one.finishes] == [
        (0, 2, 2),
        (1, 6, 4),
        (2, 12, 6),
    ]
    two = simulate(curves, seconds, FullTraining(3, 2), workers=2)
    # trial 0 (2 s) and 1 (4 s) start together; trial 2 takes trial 0's worker at 2 s
    assert [(f.trial, f.time) for f in two.finishes] == [(0, 2.0), (1, 4.0), (2, 8.0)]
    assert (two.epochs, two.seconds, two.time) == (6, 12.0, 8.0)
    # epochs finished by then: at 2 s trial 1's first as well (an earlier tie goes first);
    # at 4 s not trial 2's first, which ends at 5 s
    assert [f.epochs for f in two.finishes] == [3, 4, 6]


def test_promote_pauses_at_the_rung_and_resumes_the_top_third() -> None:
    curves = [[0.2, 0.3, 0.4, 0.5], [0.1, 0.6, 0.7, 0.9], [0.1, 0.2, 0.3, 0.4]]
    trace = simulate(curves, flat(1.0, 4, 3), Promotion(3, (2, 4), 3), workers=1)
    # all three to epoch 2 (one slot opens only with the third), then the best there on
    assert [(f.trial, f.epochs) for f in trace.finishes] == [(1, 8)]
    assert trace.epochs == 3 * 2 + 2
    # once trial 1 leads at the rung, trial 0 can never have the one slot of three: one
    # checkpoint is kept at a time
    assert trace.peak_checkpoints == 1


def test_promote_resumes_a_paused_trial_later_as_its_rung_fills() -> None:
    # six trials; at the third, the leader (0.9) goes on; trial 1 (0.8) waits, and once six
    # have reached the rung (two slots) it is promoted: the repechage a stopping rule lacks
    values = [0.9, 0.8, 0.1, 0.2, 0.3, 0.4]
    curves = [[v, v, v] for v in values]
    trace = simulate(curves, flat(1.0, 3, 6), Promotion(6, (2, 3), 3), workers=1)
    assert [f.trial for f in trace.finishes] == [0, 1]
    assert trace.finishes[1].epochs == 6 * 2 + 2  # after all six reached the rung


def test_synchronous_waits_for_every_trial_at_the_rung() -> None:
    values = [0.5, 0.9, 0.1, 0.2, 0.3, 0.8]
    curves = [[v, v, v] for v in values]
    trace = simulate(curves, flat(1.0, 3, 6), Synchronous(6, (2, 3), 3), workers=2)
    assert [f.trial for f in trace.finishes] == [1, 5]  # the top third of six
    assert min(f.epochs for f in trace.finishes) > 6 * 2  # nothing finishes before all reach 2
    assert trace.epochs == 6 * 2 + 2


def test_an_optuna_pruner_judges_with_what_has_finished_by_then() -> None:
    good = [[0.5, 0.6, 0.7]] * 2
    bad = [[0.1, 0.1, 0.1]]
    pruner = MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    # one worker: the two good trials complete first, so the bad one is pruned at epoch 1
    seq = simulate(good + bad, flat(1.0, 3, 3), OptunaPruning(pruner, 3, 3, "a"), workers=1)
    assert [f.trial for f in seq.finishes] == [0, 1] and seq.epochs == 7
    # three workers: nothing has finished when the bad one is judged, so it trains on
    par = simulate(good + bad, flat(1.0, 3, 3), OptunaPruning(pruner, 3, 3, "b"), workers=3)
    assert sorted(f.trial for f in par.finishes) == [0, 1, 2] and par.epochs == 9
