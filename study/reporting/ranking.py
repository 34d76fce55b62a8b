"""Does the search's ranking hold at full length: proxy validation accuracy against the test
accuracy of the same configurations rerun at full length (``python -m study.rerun --top K``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from study.reporting.data import RankPoint, StudyData

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed stream: the same storage gives the same interval
MIN_RANK_TRIALS = 3  # two points always correlate at ±1: no information about the ranking
FEW_RANK_TRIALS = 5  # below this the bootstrap has few distinct resamples: a rough interval


@dataclass(frozen=True)
class Correlation:
    """A rank correlation over the rerun trials and its 95 % percentile bootstrap interval."""

    name: str  # "Spearman" or "Kendall"
    value: float
    low: float | None  # None when no resample had two distinct ranks on both axes
    high: float | None

    n: int = 0  # rerun trials it is computed over

    def words(self) -> str:
        interval = (
            "" if self.low is None else f" (95% bootstrap CI {self.low:+.2f} to {self.high:+.2f})"
        )
        rough = ", rough with so few trials" if self.n < FEW_RANK_TRIALS else ""
        return f"{self.name} {self.value:+.2f}{interval[:-1] + rough + ')' if interval else ''}"


def _coefficients(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy import stats  # imported here: slow to import, and only this section needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: the coefficient is nan, dropped below
        return float(stats.spearmanr(x, y).statistic), float(stats.kendalltau(x, y).statistic)


def rank_correlations(
    points: Sequence[RankPoint], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[Correlation]:
    """Spearman and Kendall between proxy and full-length accuracy, trials resampled with
    replacement for the interval; [] with fewer than MIN_RANK_TRIALS points."""
    if len(points) < MIN_RANK_TRIALS:
        return []
    x = np.array([p.val_acc for p in points])
    y = np.array([p.test_acc for p in points])
    observed = _coefficients(x, y)
    rng = np.random.default_rng(seed)
    samples: list[tuple[float, float]] = []
    for _ in range(resamples):
        index = rng.integers(0, len(points), len(points))
        samples.append(_coefficients(x[index], y[index]))
    result = []
    for k, name in enumerate(("Spearman", "Kendall")):
        values = np.array([s[k] for s in samples])
        values = values[~np.isnan(values)]
        low, high = (
            (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
            if len(values)
            else (None, None)
        )
        result.append(Correlation(name, observed[k], low, high, len(points)))
    return result


def winner_sentence(s: StudyData) -> str:
    """Whether the search's best trial is still the best of the reruns at full length."""
    points = s.ranks
    if len(points) < 2:
        have = "no trial" if not points else f"only trial {points[0].trial}"
        return (
            f"Whether {s.name}'s ranking holds at full length is not known yet: {have} has "
            f"been rerun. To retrain the 5 best trials at full length: {s.rerun_command()}"
        )
    epochs = points[0].epochs
    by_test = sorted(points, key=lambda p: -p.test_acc)
    top = by_test[0]
    winner = s.best
    rerun = {p.trial: p for p in points}
    if winner is not None and winner.number in rerun:
        subject = rerun[winner.number]
        head = f"{s.name}'s search winner, trial {winner.number},"
    else:
        subject = max(points, key=lambda p: p.val_acc)
        head = (
            f"{s.name}'s search winner (trial {winner.number if winner else '-'}) has not been "
            f"rerun; among the {len(points)} rerun trials the best by proxy, trial "
            f"{subject.trial},"
        )
    leaders = [p for p in by_test if p.test_acc == top.test_acc]
    if len(leaders) > 1 and subject in leaders:
        others = ", ".join(str(p.trial) for p in leaders if p is not subject)
        return (
            f"{head} ties for the lead at {epochs} epochs: test acc {top.test_acc:.4f}, as "
            f"trial(s) {others}, of {len(points)} trials rerun."
        )
    if subject.trial == top.trial:
        second = by_test[1]
        return (
            f"{head} is still the winner at {epochs} epochs: test acc {top.test_acc:.4f} vs "
            f"{second.test_acc:.4f} for the next best (trial {second.trial}), "
            f"of {len(points)} trials rerun."
        )
    best = ", ".join(str(p.trial) for p in leaders)
    who = f"trial {best} reaches" if len(leaders) == 1 else f"trials {best} reach"
    return (
        f"{head} is not the winner at {epochs} epochs: {who} test acc {top.test_acc:.4f} vs "
        f"its {subject.test_acc:.4f}, of {len(points)} trials rerun."
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
