"""Ablation effects: each variant's accuracies and its difference from the base, paired by seed,
with a 95 % t interval and a Holm-Bonferroni p-value across the factors, as a table, Markdown
and plotly figures. Read-only maths over finished trials."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from study.records import BASE_VARIANT, AblationSettings, TrialAttrs, is_path_variant

if TYPE_CHECKING:
    import plotly.graph_objects as go

ALPHA = 0.05  # the family-wise error rate over an ablation's factors (Holm), and 1 - CI level


@dataclass(frozen=True)
class PairedT:
    """A paired t-test of mean(differences) = 0: the mean, its 1 - ALPHA interval and the
    two-sided p-value; or why it cannot be estimated."""

    diff: float
    interval: tuple[float, float] | None = None
    p: float | None = None
    reason: str | None = None  # set when the interval and p are not estimable


def paired_t(diffs: Sequence[float]) -> PairedT:
    """The paired t-test on per-seed differences (variant - base, the same seed each)."""
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return PairedT(mean, reason=f"{'one seed' if n else 'no seed'} in common with the base")
    se = statistics.stdev(diffs) / math.sqrt(n)
    if se == 0.0:  # identical differences: a spread of 0 is not a measured spread
        return PairedT(mean, reason=f"the same difference for all {n} seeds, no spread")
    from scipy import stats as scipy_stats  # imported here: slow, and only maths needs it

    q = float(scipy_stats.t.ppf(1 - ALPHA / 2, n - 1))
    p = float(2 * scipy_stats.t.sf(abs(mean / se), n - 1))
    return PairedT(mean, (mean - q * se, mean + q * se), p)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values; a None (not estimable) counts as a test that never
    rejects, so it still counts towards the number of tests."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (pvalues[i] is None, pvalues[i] or 0.0))
    adjusted: list[float | None] = [None] * m
    running = 0.0
    for rank, i in enumerate(order):
        p = pvalues[i]
        if p is None:
            break
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Effect:
    """One variant's accuracies and its difference from the base."""

    variant: str
    values: tuple[float, ...]
    changed: dict[str, list[Any]]
    diff: float | None = None  # mean over common seeds of (variant - base)
    interval: tuple[float, float] | None = None  # 95 % paired t interval of diff, uncorrected
    p: float | None = None  # the paired t-test's two-sided p-value, uncorrected
    p_holm: float | None = None  # Holm-adjusted over the ablation's factors
    reason: str | None = None  # why diff has no interval (not estimable)
    tests: int = 0  # the factors Holm corrects over

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
    def accuracy(self) -> str:
        """Mean ± std over the seeds; a single seed has no spread to show."""
        if self.n < 2:
            return f"{self.mean:.4f} (one seed)"
        return f"{self.mean:.4f} ± {self.std:.4f}"

    @property
    def label(self) -> str:
        if not self.changed:
            return self.variant
        return ", ".join(f"{k} {_fmt(old)}→{_fmt(new)}" for k, (old, new) in self.changed.items())

    @property
    def significant(self) -> bool:
        """Whether the difference survives Holm's correction across the factors."""
        return self.p_holm is not None and self.p_holm < ALPHA


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def values_by_variant(
    trials: Sequence[FrozenTrial], exclude_seeds: Collection[int] = ()
) -> dict[str, dict[int, FrozenTrial]]:
    """Complete trials grouped by their ``variant`` tag, by seed (the latest wins); runs on
    ``exclude_seeds`` (the search's) are left out."""
    groups: dict[str, dict[int, FrozenTrial]] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or t.value is None:
            continue
        if TrialAttrs.VARIANT not in t.user_attrs:
            continue
        seed = t.user_attrs.get(TrialAttrs.SEED, t.number)
        if seed in exclude_seeds:
            continue
        groups.setdefault(t.user_attrs[TrialAttrs.VARIANT], {})[seed] = t
    return {v: {s: seeds[s] for s in sorted(seeds)} for v, seeds in groups.items()}


def compute_effects(
    trials: Sequence[FrozenTrial], exclude_seeds: Collection[int] = ()
) -> list[Effect]:
    """Base first, then each factor variant sorted by effect (the most harmful removal first);
    each factor compared with the base on the seeds both ran, Holm-corrected over the factors."""
    groups = values_by_variant(trials, exclude_seeds)
    base = {s: float(t.value) for s, t in groups.pop(BASE_VARIANT, {}).items()}
    factors = {v: g for v, g in groups.items() if not is_path_variant(v)}
    effects = []
    if base:
        effects.append(Effect(BASE_VARIANT, tuple(base.values()), {}))
    tests = {
        v: paired_t([float(t.value) - base[s] for s, t in g.items() if s in base])
        for v, g in factors.items()
    }
    adjusted = dict(zip(tests, holm([t.p for t in tests.values()]), strict=True))
    for variant, group in factors.items():
        values = tuple(float(t.value) for t in group.values())
        changed = list(group.values())[-1].user_attrs.get(TrialAttrs.CHANGED, {})
        test = tests[variant]
        if not base or math.isnan(test.diff):
            effects.append(Effect(variant, values, changed))
            continue
        effects.append(
            Effect(
                variant, values, changed, test.diff, test.interval, test.p, adjusted[variant],
                test.reason, len(tests),
            )
        )  # fmt: skip
    return sorted(
        effects,
        key=lambda e: (
            e.variant != BASE_VARIANT,
            e.diff if e.diff is not None else math.inf,
            e.variant,
        ),
    )


def format_points(e: Effect) -> str:
    """A difference of accuracies in percentage points: its uncorrected 95 % interval and
    Holm p-value, or why there is none."""
    assert e.diff is not None
    points = f"{100 * e.diff:+.2f} points"
    if e.interval is None or e.p_holm is None:
        return f"{points} (not estimable: {e.reason})"
    low, high = (100 * x for x in e.interval)
    verdict = "significant" if e.significant else "not significant"
    return (
        f"{points} (95% CI {low:+.2f} to {high:+.2f}, uncorrected; "
        f"Holm p={e.p_holm:.3g} over {e.tests} factors: {verdict})"
    )


def effect_words(e: Effect) -> str:
    """One factor's effect in words: a cost or gain only where it survives Holm."""
    assert e.diff is not None
    points = 100 * e.diff
    if e.interval is None or e.p_holm is None:
        return f"{e.label}: {points:+.2f} points, not estimable ({e.reason})"
    half = 100 * (e.interval[1] - e.interval[0]) / 2
    if e.significant:
        verb = "costs" if e.diff < 0 else "gains"
        return (
            f"{e.label} {verb} {abs(points):.2f} ± {half:.2f} points (95% CI, uncorrected; "
            f"Holm p={e.p_holm:.3g} over {e.tests} factors)"
        )
    return (
        f"{e.label}: no clear effect ({points:+.2f} ± {half:.2f} points, 95% CI uncorrected; "
        f"Holm p={e.p_holm:.3g} over {e.tests} factors)"
    )


def seeds_words(settings: AblationSettings) -> str:
    """Which seeds the ablation ran, and that none is the search's."""
    seeds = ", ".join(str(s) for s in settings.seeds)
    text = f"Seeds {seeds}"
    if settings.search_seeds:
        theirs = ", ".join(str(s) for s in settings.search_seeds)
        text += (
            f", none of them the search's ({theirs}): the base is a fresh run of its "
            "configuration, not a replay of the trial that won the search"
        )
    return (
        f"{text}. Each factor is compared with the base seed by seed (paired t); the 95 % "
        f"intervals are uncorrected, and a factor is significant only if its Holm-adjusted p "
        f"over all the factors is under {ALPHA:g}."
    )


def skipped_words(settings: AblationSettings) -> str:
    """The factors not ablated, each with why (already off, or near off)."""
    return ", ".join(
        f"{k} ({settings.skip_reasons[k]})" if k in settings.skip_reasons else k
        for k in settings.skipped
    )


def effects_table(effects: Sequence[Effect]) -> str:
    rows = [("variant", "n", "val acc", "difference from base")]
    for e in effects:
        rows.append(
            (
                e.label,
                str(e.n),
                e.accuracy,
                "" if e.diff is None else format_points(e),
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
        diff = "" if e.diff is None else format_points(e)
        lines.append(f"| {e.label} | {e.n} | {e.accuracy} | {diff} |")
    return "\n".join(lines)


def effects_figure(effects: Sequence[Effect], title: str) -> go.Figure:
    """Each variant's difference from the base in points, with its uncorrected 95 % interval;
    red where it survives Holm."""
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
                # hollow: no interval (not estimable), not an interval of width 0
                "symbol": ["circle" if e.interval else "circle-open" for e in shown],
            },
            error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
            customdata=[[e.n, e.accuracy] for e in shown],
            text=[format_points(e) for e in shown],
            hovertemplate="%{y}<br>%{text}<br>n=%{customdata[0]}, "
            "acc %{customdata[1]}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_dash="dash", line_color="black")
    fig.update_layout(
        title=title,
        xaxis_title="difference from base (accuracy points, 95% paired t CI, uncorrected)",
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
