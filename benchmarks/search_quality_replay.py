"""Replaying schedulers asynchronously on a table of complete learning curves (see
benchmarks/search_quality.py; the simulation is benchmarks/async_replay.py).

An *order* is one search at the study's real size: ``trials`` configurations drawn from the
table with replacement, in a random order, trained by N simulated workers. Its reference is
the best final accuracy among its draws (what an unpruned search of them finds). Per order and
candidate: the epochs (and simulated hours) spent when a trial within 0.5 points of that
reference first finishes, the regret (reference minus the best finished so far, in points)
once 25 / 50 / 100 % of the unpruned search's epochs are spent (a search with nothing finished
yet scores the whole reference), and whether the reference configuration finished. Every
candidate replays the same orders. Intervals: a bootstrap over configurations, each replicate
a resampled table with ``bootstrap_orders`` orders of its own (so they include that much order
noise as well).
"""

from __future__ import annotations

import math
import random
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.pruners import BasePruner, SuccessiveHalvingPruner

from benchmarks.async_replay import (
    FullTraining,
    OptunaPruning,
    Promotion,
    Scheduler,
    Synchronous,
    Trace,
    simulate,
)
from benchmarks.curve_table import CurveTable
from benchmarks.search_quality import UsageError
from study.promotion import rungs as promotion_rungs
from study.pruning import (
    DEFAULT_PRUNER,
    build_pruner,
    first_judged_epoch,
)

WITHIN = 0.005  # "within half a point" of the reference, as a fraction
BUDGET_FRACS = (0.25, 0.5, 1.0)  # of the unpruned search's epochs
ANYTIME_POINTS = 41  # grid of the anytime curves, 0 to 100 % of the unpruned epochs


@dataclass(frozen=True)
class Candidate:
    """A scheduler under test: ``make(trials, study_name)`` builds a fresh one per order."""

    name: str
    default: bool
    first_epoch: int | None  # the first epoch it may stop or pause a trial at
    rule: str
    make: Callable[[int, str], Scheduler]


def candidates(
    epochs: int, warmup_frac: float, startup_trials: int, reduction: int
) -> list[Candidate]:
    """None, the default median, the control that should lose (median from epoch 1),
    Hyperband, stopping ASHA, promote, and synchronous successive halving."""
    rungs = promotion_rungs(epochs, warmup_frac, reduction)
    first = first_judged_epoch(epochs, warmup_frac)
    top = f"top 1/{reduction}"
    at = ", ".join(map(str, rungs[:-1])) or "none"

    def pruned(pruner: Callable[[], BasePruner]) -> Callable[[int, str], Scheduler]:
        return lambda trials, name: OptunaPruning(pruner(), trials, epochs, name)

    def built(kind: str, wait: int | None = None) -> Callable[[], BasePruner]:
        return lambda: build_pruner(
            kind,
            epochs=epochs,
            warmup_frac=warmup_frac,
            startup_trials=startup_trials,
            wait_epochs=wait,
        )

    def asha() -> BasePruner:
        return SuccessiveHalvingPruner(
            min_resource=rungs[0], reduction_factor=reduction, min_early_stopping_rate=0
        )

    return [
        Candidate(
            "none", False, None, "every trial to the end", lambda n, _: FullTraining(n, epochs)
        ),
        Candidate(
            DEFAULT_PRUNER,
            True,
            first,
            f"study default: median from epoch {first}",
            pruned(built(DEFAULT_PRUNER)),
        ),
        Candidate(
            "median from epoch 1", False, 1, "control that should lose", pruned(built("median", 0))
        ),
        Candidate(
            "hyperband", False, first, "study.pruning's Hyperband", pruned(built("hyperband"))
        ),
        Candidate(
            "asha", False, rungs[0], f"Optuna's SuccessiveHalvingPruner, rungs {at}", pruned(asha)
        ),
        Candidate(
            "promote",
            False,
            rungs[0],
            f"pause at rungs {at}, resume the {top} of all at a rung (study.promotion)",
            lambda n, _: Promotion(n, rungs, reduction),
        ),
        Candidate(
            "synchronous",
            False,
            rungs[0],
            f"all to epoch {rungs[0]}, then the {top} on",
            lambda n, _: Synchronous(n, rungs, reduction),
        ),
    ]


@dataclass(frozen=True)
class OrderResult:
    """What one candidate did on one order."""

    reach_epochs: float  # epochs spent when within WITHIN of the reference first finished
    reach_hours: float  # simulated wall-clock hours then (inf: never)
    reach_compute_hours: float  # recorded epoch seconds spent by then, in hours
    regrets: tuple[float, ...]  # points, at each BUDGET_FRACS of the unpruned epochs
    survives: bool  # the reference configuration finished
    epochs: int
    hours: float  # the whole search, simulated wall clock
    peak_checkpoints: int
    anytime: tuple[float, ...]  # regret (points) on the ANYTIME_POINTS grid


def measure(trace: Trace, finals: Sequence[float], unpruned: int) -> OrderResult:
    """One order's figures from its trace; ``finals`` are its draws' final accuracies."""
    ref = max(finals)
    best = {n for n, f in enumerate(finals) if f == ref}
    reach = next((f for f in trace.finishes if f.value >= ref - WITHIN - 1e-9), None)

    def regret_at(epochs: float) -> float:
        done = [f.value for f in trace.finishes if f.epochs <= epochs + 1e-9]
        return round(100.0 * (ref - max(done, default=0.0)), 6)

    grid = [unpruned * i / (ANYTIME_POINTS - 1) for i in range(ANYTIME_POINTS)]
    return OrderResult(
        reach_epochs=reach.epochs if reach else math.inf,
        reach_hours=reach.time / 3600 if reach else math.inf,
        reach_compute_hours=reach.seconds / 3600 if reach else math.inf,
        regrets=tuple(regret_at(frac * unpruned) for frac in BUDGET_FRACS),
        survives=any(f.trial in best for f in trace.finishes),
        epochs=trace.epochs,
        hours=trace.time / 3600,
        peak_checkpoints=trace.peak_checkpoints,
        anytime=tuple(regret_at(e) for e in grid),
    )


def replay_orders(
    table: CurveTable, candidate: Candidate, orders: Sequence[Sequence[int]], workers: int
) -> list[OrderResult]:
    """``candidate`` with ``workers`` workers on each order (indices into the table)."""
    results = []
    for k, order in enumerate(orders):
        curves = [table.curves[i] for i in order]
        seconds = [table.seconds[i] for i in order]
        scheduler = candidate.make(len(order), f"replay-{k}")
        trace = simulate(curves, seconds, scheduler, workers)
        results.append(measure(trace, [c[-1] for c in curves], len(order) * table.epochs))
    return results


def draw_orders(configs: int, trials: int, orders: int, rng: random.Random) -> list[list[int]]:
    """``orders`` searches of ``trials`` configurations drawn with replacement."""
    return [[rng.randrange(configs) for _ in range(trials)] for _ in range(orders)]


def bootstrap_orders(
    configs: int, trials: int, replicates: int, per: int, rng: random.Random
) -> list[list[list[int]]]:
    """Per replicate, a table resampled over configurations and ``per`` orders drawn from it."""
    out = []
    for _ in range(replicates):
        table = [rng.randrange(configs) for _ in range(configs)]
        out.append([[rng.choice(table) for _ in range(trials)] for _ in range(per)])
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.inf


def summary(results: Sequence[OrderResult]) -> dict[str, Any]:
    """A candidate's figures over its orders (medians of the time to within 0.5 points, which
    may be inf when half the orders never get there; means of the rest)."""
    n = len(results)
    return {
        "epochs_to_within_half_point": median([r.reach_epochs for r in results]),
        "hours_to_within_half_point": median([r.reach_hours for r in results]),
        "compute_hours_to_within_half_point": median([r.reach_compute_hours for r in results]),
        "within_half_point_frac": sum(math.isfinite(r.reach_epochs) for r in results) / n,
        **{
            f"regret_at_{round(100 * frac)}": sum(r.regrets[i] for r in results) / n
            for i, frac in enumerate(BUDGET_FRACS)
        },
        "best_survives_frac": sum(r.survives for r in results) / n,
        "epochs_mean": sum(r.epochs for r in results) / n,
        "search_hours": sum(r.hours for r in results) / n,
        "peak_checkpoints": max(r.peak_checkpoints for r in results),
    }


def interval(values: Sequence[float], level: float = 0.95) -> list[float]:
    """A percentile interval, without interpolating (values may be infinite)."""
    ordered = sorted(values)
    lo = ordered[math.floor((1 - level) / 2 * (len(ordered) - 1))]
    hi = ordered[math.ceil((1 + level) / 2 * (len(ordered) - 1))]
    return [lo, hi]


def savings(reach: float, none_reach: float) -> float:
    """The fraction of no pruning's epochs to within 0.5 points saved (-inf: never there)."""
    return 1.0 - reach / none_reach


@dataclass(frozen=True)
class ReplayPlan:
    """The worker counts, the orders, and the bootstrap replicates' orders, shared by all."""

    workers: tuple[int, ...]
    orders: list[list[int]]
    replicates: list[list[list[int]]]


def make_plan(
    table: CurveTable,
    *,
    workers: Sequence[int],
    trials: int,
    orders: int,
    bootstrap: int,
    per_replicate: int,
    seed: int,
) -> ReplayPlan:
    """The same orders for every candidate (paired comparisons); UsageError on bad counts."""
    if min(orders, trials, per_replicate) < 1 or bootstrap < 0:
        raise UsageError("--orders, --trials, --bootstrap-orders must be >= 1, --bootstrap >= 0")
    if not workers or min(workers) < 1:
        raise UsageError(f"--workers must be positive integers, got {list(workers)}")
    rng = random.Random(seed)
    n = len(table.curves)
    return ReplayPlan(
        tuple(workers),
        draw_orders(n, trials, orders, rng),
        bootstrap_orders(n, trials, bootstrap, per_replicate, rng),
    )


@dataclass
class Replayed:
    """One candidate at one worker count: its row, its replicates' summaries, its curve."""

    row: dict[str, Any]
    boot: list[dict[str, Any]]
    anytime: list[float]


def replay_candidate(
    table: CurveTable, cand: Candidate, plan: ReplayPlan, workers: int
) -> Replayed:
    results = replay_orders(table, cand, plan.orders, workers)
    row = {"pruner": cand.name, "workers": workers, "default": cand.default}
    row |= {"first_epoch": cand.first_epoch, "rule": cand.rule, **summary(results)}
    boot = [summary(replay_orders(table, cand, o, workers)) for o in plan.replicates]
    n = len(results)
    curve = [sum(r.anytime[i] for r in results) / n for i in range(ANYTIME_POINTS)]
    return Replayed(row, boot, curve)


def add_intervals(done: Replayed, none: Replayed) -> None:
    """Savings against no pruning (paired, replicate by replicate) and regret intervals."""
    reach = "epochs_to_within_half_point"
    done.row["savings_vs_none"] = savings(done.row[reach], none.row[reach])
    if not done.boot:
        return
    pairs = zip(done.boot, none.boot, strict=True)
    done.row["savings_ci"] = interval([savings(b[reach], nb[reach]) for b, nb in pairs])
    for frac in BUDGET_FRACS:
        key = f"regret_at_{round(100 * frac)}"
        done.row[f"{key}_ci"] = interval([b[key] for b in done.boot])


def replay_rows(
    table: CurveTable, plan: ReplayPlan, cands: Sequence[Candidate]
) -> tuple[list[dict[str, Any]], dict[str, dict[int, list[float]]]]:
    """Every candidate at every worker count: its row, and its mean anytime regret curve
    (``anytime[name][workers]``); ``cands`` must include "none", the baseline of savings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows, anytime = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for w in plan.workers:
            done = {c.name: replay_candidate(table, c, plan, w) for c in cands}
            for name, d in done.items():
                add_intervals(d, done["none"])
                rows.append(d.row)
                anytime.setdefault(name, {})[w] = d.anytime
    return rows, anytime
