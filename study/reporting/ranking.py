"""Does the search's ranking hold at full length: proxy validation accuracy against the test
accuracy of the same configurations rerun at full length (``python -m study.rerun --top K``).

How sure that is, for the handful of trials a rerun has: a rank correlation's one-sided
permutation p-value (how often a random order of the reruns correlates at least as well; with
3 trials a perfect order comes up one time in 6), exact over every order up to
EXACT_ORDERS_UP_TO trials; an interval only from MIN_INTERVAL_TRIALS trials. The winner is
"still the winner" only by more than the seeds' noise.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from study.records import RerunPoint, chosen_rerun, pooled_seed_std
from study.reporting.data import StudyData

MIN_RANK_TRIALS = 3  # two points always correlate at ±1: no information about the ranking
EXACT_ORDERS_UP_TO = 8  # 8! = 40,320 orders, every one scored; beyond, random orders
RANDOM_ORDERS = 20_000
ORDERS_SEED = 0  # a fixed stream: the same storage gives the same p beyond the exact range
# Fisher-z intervals with Fieller, Hartley & Pearson's (1957) variances of atanh(r),
# c / (n - k): an approximation their work and later checks support from about 10 pairs
MIN_INTERVAL_TRIALS = 10
FISHER_VARIANCE = {"Spearman": (1.06, 3), "Kendall": (0.437, 4)}
Z_95 = statistics.NormalDist().inv_cdf(0.975)
NOISE_ERRORS = 2  # a gap is beyond seed noise when it exceeds this many standard errors


@dataclass(frozen=True)
class Correlation:
    """A rank correlation over the rerun trials, its permutation p-value and, from
    MIN_INTERVAL_TRIALS trials, its 95 % interval."""

    name: str  # "Spearman" or "Kendall"
    value: float
    p: float  # one-sided: a random order correlating at least as well
    orders: int  # the orders p is taken over
    exact: bool  # every order (else ``orders`` random ones)
    n: int  # rerun trials it is computed over
    low: float | None = None
    high: float | None = None

    def words(self) -> str:
        over = (
            f"exact over all {self.orders:,} orders"
            if self.exact
            else f"{self.orders:,} random orders"
        )
        text = f"{self.name} {self.value:+.2f} (permutation p = {self.p:.3g}, {over}"
        if self.low is not None:
            text += f"; 95% CI {self.low:+.2f} to {self.high:+.2f}, Fisher z"
        return text + ")"


def _orders(n: int) -> tuple[np.ndarray, bool]:
    if n <= EXACT_ORDERS_UP_TO:
        return np.array(list(itertools.permutations(range(n)))), True
    rng = np.random.default_rng(ORDERS_SEED)
    return rng.permuted(np.tile(np.arange(n), (RANDOM_ORDERS, 1)), axis=1), False


def _statistics(x: np.ndarray, y: np.ndarray, orders: np.ndarray) -> dict[str, np.ndarray]:
    """Spearman's rho and Kendall's tau-b (ties averaged, as scipy) of x against each
    reordering ``y[order]``; their denominators do not depend on the order."""
    from scipy.stats import rankdata  # slow to import, and only this section needs it

    a = rankdata(x) - (len(x) + 1) / 2
    b = rankdata(y) - (len(y) + 1) / 2
    i, j = np.triu_indices(len(x), 1)
    sx = np.sign(x[i] - x[j])
    sy = np.sign(y[i] - y[j])
    spearman_norm = math.sqrt(float(a @ a) * float(b @ b))
    kendall_norm = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    out: dict[str, list[np.ndarray]] = {"Spearman": [], "Kendall": []}
    for chunk in np.array_split(orders, max(1, len(orders) // 4096)):  # bounded memory
        yo = y[chunk]
        out["Spearman"].append(b[chunk] @ a / spearman_norm)
        out["Kendall"].append(np.sign(yo[:, i] - yo[:, j]) @ sx / kendall_norm)
    return {k: np.concatenate(v) for k, v in out.items()}


def _interval(name: str, value: float, n: int) -> tuple[float | None, float | None]:
    if n < MIN_INTERVAL_TRIALS or abs(value) >= 1:  # a perfect order has no Fisher z
        return None, None
    c, k = FISHER_VARIANCE[name]
    z, half = math.atanh(value), Z_95 * math.sqrt(c / (n - k))
    return math.tanh(z - half), math.tanh(z + half)


def rank_correlations(points: Sequence[RerunPoint]) -> list[Correlation]:
    """Spearman and Kendall between proxy and full-length accuracy with their permutation
    p-values; [] with fewer than MIN_RANK_TRIALS points, or one axis all equal."""
    n = len(points)
    x = np.array([p.val_acc for p in points])
    y = np.array([p.test_acc for p in points])
    if n < MIN_RANK_TRIALS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return []
    observed = _statistics(x, y, np.arange(n)[None, :])
    orders, exact = _orders(n)
    by_order = _statistics(x, y, orders)
    result = []
    for name, values in by_order.items():
        value = float(observed[name][0])
        hits = int(np.count_nonzero(values >= value - 1e-12))  # float noise in equal orders
        p = hits / len(orders) if exact else (hits + 1) / (len(orders) + 1)
        low, high = _interval(name, value, n)
        result.append(Correlation(name, value, p, len(orders), exact, n, low, high))
    return result


def correlation_words(points: Sequence[RerunPoint]) -> str:
    """The correlations in words, with when no interval is given and unequal seed counts."""
    correlations = rank_correlations(points)
    if not correlations:
        return f"rank correlation needs ≥{MIN_RANK_TRIALS} rerun trials of differing accuracy"
    text = "; ".join(c.words() for c in correlations)
    if len(points) < MIN_INTERVAL_TRIALS:
        text += f"; no interval below {MIN_INTERVAL_TRIALS} trials"
    counts = {len(p.test_accs) for p in points}
    if len(counts) > 1:
        text += f"; means over unequal seed counts ({min(counts)} to {max(counts)})"
    return text


def noise(a: RerunPoint, b: RerunPoint, std: float) -> float:
    """The gap between two trials' means that seed noise alone could make: NOISE_ERRORS
    standard errors of the difference, from the seeds' pooled std."""
    return NOISE_ERRORS * std * math.sqrt(1 / len(a.test_accs) + 1 / len(b.test_accs))


def _subject(s: StudyData) -> tuple[RerunPoint, str]:
    """The rerun that stands for the search (chosen on validation) and how to name it."""
    winner = s.best
    subject = chosen_rerun(s.ranks, None if winner is None else winner.number)
    assert subject is not None
    if winner is not None and subject.trial == winner.number:
        return subject, f"{s.name}'s search winner, trial {winner.number},"
    return subject, (
        f"{s.name}'s search winner (trial {winner.number if winner else '-'}) has not been "
        f"rerun; among the {len(s.ranks)} rerun trials the best by proxy, trial "
        f"{subject.trial},"
    )


def winner_sentence(s: StudyData) -> str:
    """Whether the search's best trial is still the best of the reruns at full length, by more
    than the seeds' noise; each mean with its seed count."""
    points = s.ranks
    if len(points) < 2:
        have = "no trial" if not points else f"only trial {points[0].trial}"
        return (
            f"Whether {s.name}'s ranking holds at full length is not known yet: {have} has "
            f"been rerun. To retrain the 5 best trials at full length: {s.rerun_command()}"
        )
    subject, head = _subject(s)
    epochs = subject.epochs
    others = sorted((p for p in points if p is not subject), key=lambda p: -p.test_acc)
    rival = others[0]
    std = pooled_seed_std(points)
    of = f"of {len(points)} trials rerun"
    if not std:  # one seed per trial, or seeds that agree exactly: no noise to compare with
        return (
            f"{head} has test acc {subject.result()} at {epochs} epochs vs {rival.result()} for "
            f"the best other rerun (trial {rival.trial}), {of}: the seeds' spread is not "
            f"measured, so whether it is still the winner is not known "
            f"(rerun with 2 seeds: {s.rerun_command(top=len(points), seeds=2)})."
        )
    gap, margin = subject.test_acc - rival.test_acc, noise(subject, rival, std)
    spread = f"±{100 * margin:.2f} points from the seeds' pooled std {std:.4f}"
    if gap > margin:
        return (
            f"{head} is still the winner at {epochs} epochs: test acc {subject.result()} vs "
            f"{rival.result()} for the next best (trial {rival.trial}), ahead by "
            f"{100 * gap:.2f} points, more than seed noise ({spread}), {of}."
        )
    if -gap > margin:
        return (
            f"{head} is not the winner at {epochs} epochs: trial {rival.trial} reaches test acc "
            f"{rival.result()} vs its {subject.result()}, behind by {100 * -gap:.2f} points, "
            f"more than seed noise ({spread}), {of}."
        )
    tied = [p for p in others if abs(subject.test_acc - p.test_acc) <= noise(subject, p, std)]
    return (
        f"{head} is tied within seed noise with trial(s) "
        f"{', '.join(str(p.trial) for p in tied)} at {epochs} epochs: test acc "
        f"{subject.result()} vs {rival.result()} for the best other (trial {rival.trial}), a "
        f"gap of {100 * gap:+.2f} points, within seed noise ({spread}), {of}."
    )


def rank_figure(s: StudyData) -> go.Figure:
    """Proxy validation accuracy against full-length test accuracy, one marker per trial."""
    points = s.ranks
    fig = go.Figure()
    for p in points:
        fig.add_trace(
            go.Scatter(
                x=[p.val_acc] * len(p.test_accs),
                y=list(p.test_accs),
                mode="markers",
                marker={"color": s.colour, "size": 6, "opacity": 0.4},
                name="each seed",
                legendgroup="seeds",
                showlegend=p is points[0],
                hovertemplate=f"trial {p.trial}: seed %{{y:.4f}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[p.val_acc for p in points],
            y=[p.test_acc for p in points],
            mode="markers+text",
            text=[f"trial {p.trial}" for p in points],
            textposition="top center",
            marker={"color": s.colour, "size": 11, "line": {"color": "black", "width": 1}},
            name="mean over seeds",
            hovertemplate="proxy %{x:.4f}, full length %{y:.4f}<extra>%{text}</extra>",
        )
    )
    epochs = points[0].epochs if points else "?"
    budget = "?" if s.epochs is None else s.epochs
    fig.update_layout(
        title=f"{s.name}: does the ranking hold? ({budget}-epoch proxy vs {epochs}-epoch rerun)",
        xaxis_title=f"search val acc ({budget} epochs)",
        yaxis_title=f"rerun test acc ({epochs} epochs, mean over seeds)",
        height=440,
    )
    return fig


def rank_rows(s: StudyData) -> list[list[str]]:
    """Rows of the ranking table: proxy rank and value, full-length rank and value."""
    by_val = sorted(s.ranks, key=lambda p: -p.val_acc)
    test_rank = {p.trial: i + 1 for i, p in enumerate(sorted(s.ranks, key=lambda p: -p.test_acc))}
    return [
        [
            str(p.trial),
            f"{i + 1}",
            f"{p.val_acc:.4f}",
            f"{test_rank[p.trial]}",
            f"{p.test_acc:.4f}"
            + ("" if len(p.test_accs) < 2 else f" ± {float(np.std(p.test_accs, ddof=1)):.4f}"),
            str(len(p.test_accs)),
        ]
        for i, p in enumerate(by_val)
    ]
