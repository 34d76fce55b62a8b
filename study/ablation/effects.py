"""Ablation effects: each variant's accuracies, its difference from the base and a 95 % Welch
interval, as a table, Markdown and plotly figures. Read-only maths over finished trials."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from study.records import BASE_VARIANT, TrialAttrs, is_path_variant

if TYPE_CHECKING:
    import plotly.graph_objects as go


def welch_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, float] | None:
    """Welch's t confidence interval for mean(a) - mean(b); None with fewer than 2 of either."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    va = statistics.variance(a) / len(a)
    vb = statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:  # identical runs: no spread to build an interval from
        return diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    from scipy import stats as scipy_stats  # imported here: slow, and only maths needs it

    q = float(scipy_stats.t.ppf(0.5 + level / 2, dof))
    return diff - q * se, diff + q * se


@dataclass(frozen=True)
class Effect:
    """One variant's accuracies and its difference from the base."""

    variant: str
    values: tuple[float, ...]
    changed: dict[str, list[Any]]
    diff: float | None = None  # mean(variant) - mean(base)
    interval: tuple[float, float] | None = None  # 95 % Welch interval of diff

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def label(self) -> str:
        if not self.changed:
            return self.variant
        return ", ".join(f"{k} {_fmt(old)}→{_fmt(new)}" for k, (old, new) in self.changed.items())

    @property
    def significant(self) -> bool:
        return self.interval is not None and (self.interval[0] > 0 or self.interval[1] < 0)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def values_by_variant(trials: Sequence[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    """Complete trials grouped by their ``variant`` tag, one per seed (the latest wins)."""
    groups: dict[str, dict[int, FrozenTrial]] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or t.value is None:
            continue
        if TrialAttrs.VARIANT not in t.user_attrs:
            continue
        seed = t.user_attrs.get(TrialAttrs.SEED, t.number)
        groups.setdefault(t.user_attrs[TrialAttrs.VARIANT], {})[seed] = t
    return {v: [seeds[s] for s in sorted(seeds)] for v, seeds in groups.items()}


def compute_effects(trials: Sequence[FrozenTrial]) -> list[Effect]:
    """Base first, then each factor variant sorted by effect (the most harmful removal first)."""
    groups = values_by_variant(trials)
    base = [t.value for t in groups.get(BASE_VARIANT, [])]
    effects = []
    for variant, group in groups.items():
        if is_path_variant(variant):
            continue
        values = tuple(float(t.value) for t in group)
        changed = group[-1].user_attrs.get(TrialAttrs.CHANGED, {})
        if variant == BASE_VARIANT or not base:
            effects.append(Effect(variant, values, changed))
        else:
            effects.append(
                Effect(
                    variant,
                    values,
                    changed,
                    diff=statistics.fmean(values) - statistics.fmean(base),
                    interval=welch_interval(values, base),
                )
            )
    return sorted(
        effects,
        key=lambda e: (
            e.variant != BASE_VARIANT,
            e.diff if e.diff is not None else math.inf,
            e.variant,
        ),
    )


def format_points(diff: float, interval: tuple[float, float] | None) -> str:
    """A difference of accuracies in percentage points, with its 95 % interval."""
    ci = (
        "95% CI n/a"
        if interval is None
        else (f"95% CI {100 * interval[0]:+.2f} to {100 * interval[1]:+.2f}")
    )
    return f"{100 * diff:+.2f} points ({ci})"


def effects_table(effects: Sequence[Effect]) -> str:
    rows = [("variant", "n", "val acc", "difference from base")]
    for e in effects:
        rows.append(
            (
                e.label,
                str(e.n),
                f"{e.mean:.4f} ± {e.std:.4f}",
                "" if e.diff is None else format_points(e.diff, e.interval),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def effects_markdown(effects: Sequence[Effect]) -> str:
    lines = [
        "| variant | n | val acc (mean ± std) | difference from base |",
        "| --- | --- | --- | --- |",
    ]
    for e in effects:
        diff = "" if e.diff is None else format_points(e.diff, e.interval)
        lines.append(f"| {e.label} | {e.n} | {e.mean:.4f} ± {e.std:.4f} | {diff} |")
    return "\n".join(lines)


def effects_figure(effects: Sequence[Effect], title: str) -> go.Figure:
    """Each variant's difference from the base in points, with its 95 % interval."""
    import plotly.graph_objects as go

    shown = [e for e in effects if e.diff is not None]
    low = [100 * (e.diff - e.interval[0]) if e.interval else 0.0 for e in shown]
    high = [100 * (e.interval[1] - e.diff) if e.interval else 0.0 for e in shown]
    fig = go.Figure(
        go.Scatter(
            x=[100 * e.diff for e in shown],
            y=[e.label for e in shown],
            mode="markers",
            marker={
                "size": 10,
                "color": ["#d62728" if e.significant else "#7f7f7f" for e in shown],
            },
            error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
            customdata=[[e.n, e.mean, e.std] for e in shown],
            hovertemplate="%{y}<br>%{x:+.2f} points<br>n=%{customdata[0]}, "
            "acc %{customdata[1]:.4f} ± %{customdata[2]:.4f}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_dash="dash", line_color="black")
    fig.update_layout(
        title=title,
        xaxis_title="difference from base (accuracy points, 95% Welch CI)",
        yaxis={"autorange": "reversed"},
        height=max(300, 60 * len(shown) + 140),
        margin={"l": 220},
    )
    return fig


def path_figure(path: Sequence[dict[str, Any]], title: str) -> go.Figure:
    """The ablation path's mean accuracy (± std) at each step."""
    import plotly.graph_objects as go

    labels = [f"{s['step']}: {s['param'] or 'recipe'}" for s in path]
    fig = go.Figure(
        go.Scatter(
            x=labels,
            y=[s["mean"] for s in path],
            error_y={"type": "data", "array": [s["std"] for s in path]},
            mode="lines+markers",
        )
    )
    fig.update_layout(
        title=title, xaxis_title="step: parameter changed", yaxis_title="val acc (mean ± std)"
    )
    return fig
