"""The report's figure sections on the searches themselves: cost, histories, per-epoch curves
and parallel coordinates. Each returns a Part: figures and tables, or what is missing."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from study.records import (
    TrialAttrs,
    is_failure,
    is_random_draw,
    latest_trials,
    paused_at,
    promotion_counts,
    trial_seconds,
)
from study.reporting.data import StudyData, time_unit
from study.reporting.part import Part, slug, table

MIN_PARALLEL_TRIALS = 2  # one line shows no relation between parameters and accuracy
# a colour scale with no near-white end: every trial's line stays visible on a white page
ACCURACY_SCALE = "Viridis"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (cost, accuracy) that no cheaper point matches or beats in accuracy."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def cost_part(studies: Sequence[StudyData]) -> Part:
    unit = time_unit(studies)
    part = Part.start("cost", unit=unit)
    history = go.Figure()
    for s in studies:
        xs, ys, numbers = s.cost_curve()
        if not xs:
            part.missing.append(f"{s.name}: no finished trial yet")
            continue
        history.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=s.name,
                mode="lines+markers",
                line={"shape": "hv", "color": s.colour},
                customdata=numbers,
                hovertemplate="%{x:,.0f} s: best %{y:.4f} (after trial %{customdata})"
                "<extra>" + html.escape(s.name) + "</extra>",
            )
        )
    history.update_layout(
        title=f"Best validation accuracy against {unit} spent",
        xaxis_title=f"{unit} spent by the study (what its trials consumed)",
        yaxis_title="best val acc so far",
        height=420,
    )
    part.figures.append(("fig-cost", history))
    part.figures.append(("fig-pareto", pareto_figure(studies, unit)))
    part.html += [rungs_table(s) for s in studies if promotion_counts(s.trials) is not None]
    return part


def rungs_table(s: StudyData) -> str:
    """A ``--pruner promote`` study's configurations: the epochs each reached (its rung), where
    it stands, and its accuracy there."""
    rows = []
    for root, latest in sorted(latest_trials(s.trials).items()):
        paused = paused_at(latest)
        stands = f"paused at epoch {paused}" if paused is not None else latest.state.name.lower()
        curve = latest.intermediate_values
        reached = max(curve, default=0)
        value = f"{curve[reached]:.4f}" if curve else "-"
        rows.append((str(root), str(latest.number), str(reached), stands, value))
    header = ("configuration", "latest trial", "epochs reached", "stands", "val acc there")
    return f"<h3>{html.escape(s.name)}: the rung each configuration reached</h3>" + table(
        header, rows, f"rungs-{slug(s.name)}"
    )


def pareto_figure(studies: Sequence[StudyData], unit: str) -> go.Figure:
    """Each complete trial's accuracy against its time and against its parameter count, with
    the Pareto front across all studies in each."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"per trial: {unit}", "per trial: parameters"),
        shared_yaxes=True,
    )
    by_cost: list[tuple[float, float]] = []
    by_size: list[tuple[float, float]] = []
    for s in studies:
        complete = s.complete
        if not complete:
            continue
        costs = [trial_seconds(t) for t in complete]
        sizes = [t.user_attrs.get(TrialAttrs.NUM_PARAMS) for t in complete]
        values = [t.value for t in complete]
        for col, xs, hover in (
            (1, costs, "trial %{customdata}: %{y:.4f} in %{x:,.0f} s<extra></extra>"),
            (2, sizes, "trial %{customdata}: %{y:.4f}, %{x:,} params<extra></extra>"),
        ):
            trace = go.Scatter(
                x=xs,
                y=values,
                mode="markers",
                name=s.name,
                legendgroup=s.name,
                marker={"color": s.colour, "size": 8},
                customdata=[t.number for t in complete],
                hovertemplate=hover,
            )
            if col == 2:
                trace.showlegend = False  # one legend entry per study
            fig.add_trace(trace, row=1, col=col)
        by_cost += list(zip(costs, values, strict=True))
        by_size += [(n, v) for n, v in zip(sizes, values, strict=True) if n]
    for col, points in ((1, by_cost), (2, by_size)):
        front = pareto_front(points)
        if front:
            fig.add_trace(_front_trace(front, legend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text=f"{unit} of the trial", type="log", row=1, col=1)
    fig.update_xaxes(title_text="parameters", type="log", row=1, col=2)
    fig.update_yaxes(title_text="val acc", row=1, col=1)
    fig.update_layout(title="Pareto front: accuracy against cost and size", height=440)
    return fig


def _front_trace(front: Sequence[tuple[float, float]], legend: bool) -> go.Scatter:
    return go.Scatter(
        x=[p[0] for p in front],
        y=[p[1] for p in front],
        mode="lines+markers",
        line={"color": "black", "dash": "dash", "shape": "hv"},
        marker={"color": "black", "size": 4},
        name="Pareto front (all studies)",
        legendgroup="front",
        showlegend=legend,
    )


def history_part(studies: Sequence[StudyData]) -> Part:
    part = Part.start("history")
    fig = go.Figure()
    for s in studies:
        complete = sorted(s.complete, key=lambda t: t.number)
        pruned = [t for t in s.with_state(TrialState.PRUNED) if t.intermediate_values]
        if not complete and not pruned:
            part.missing.append(f"{s.name}: no trial has finished yet")
            continue
        fig.add_trace(
            go.Scatter(
                x=[t.number for t in complete],
                y=[t.value for t in complete],
                mode="markers",
                name=f"{s.name}: complete (open: drawn at random)",
                legendgroup=s.name,
                marker={
                    "color": s.colour,
                    "size": 8,
                    "symbol": ["circle-open" if is_random_draw(t) else "circle" for t in complete],
                },
            )
        )
        if pruned:
            fig.add_trace(
                go.Scatter(
                    x=[t.number for t in pruned],
                    y=[t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                    mode="markers",
                    name=f"{s.name}: pruned",
                    legendgroup=s.name,
                    marker={"color": s.colour, "symbol": "x", "size": 8, "opacity": 0.7},
                )
            )
        best, xs, ys = -math.inf, [], []
        for t in complete:
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(best)
        last = max(t.number for t in s.trials)
        if xs and xs[-1] < last:  # the best holds to the latest trial
            xs.append(last)
            ys.append(ys[-1])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{s.name}: best so far",
                legendgroup=s.name,
                line={"color": s.colour, "shape": "hv"},
            )
        )
    fig.update_layout(
        title="Optimisation history", xaxis_title="trial", yaxis_title="val acc", height=420
    )
    part.figures.append(("fig-history", fig))
    return part


def _colour_at(value: float, low: float, high: float) -> str:
    from plotly.colors import sample_colorscale

    where = 0.5 if high <= low else (value - low) / (high - low)
    return sample_colorscale(ACCURACY_SCALE, [min(1.0, max(0.0, where))])[0]


# each state's line and last-epoch marker on the per-epoch curves
CURVE_STYLES = {
    TrialState.COMPLETE: ("solid", "circle"),
    TrialState.PRUNED: ("dot", "x"),
    TrialState.RUNNING: ("dash", "circle-open"),
    TrialState.FAIL: ("dot", "square-open"),
}


def curves_part(studies: Sequence[StudyData]) -> Part:
    part = Part.start("curves")
    for s in studies:
        trials = [t for t in s.trials if t.intermediate_values and t.state in CURVE_STYLES]
        if not trials:
            part.missing.append(f"{s.name}: no trial has reported an epoch yet")
            continue
        last = {t.number: t.intermediate_values[max(t.intermediate_values)] for t in trials}
        low, high = min(last.values()), max(last.values())
        fig = go.Figure()
        for t in sorted(trials, key=lambda t: last[t.number]):  # the best drawn on top
            colour = _colour_at(last[t.number], low, high)
            fig.add_trace(_curve_trace(t, colour, legend=len(trials) <= 12))
        fig.add_trace(_colour_bar(low, high))
        epochs = max(max(t.intermediate_values) for t in trials)
        fig.update_layout(
            title=f"{s.name}: per-epoch validation accuracy ({len(trials)} trials)",
            xaxis={"title": "epoch", "tick0": 1, "dtick": max(1, epochs // 10)},
            yaxis_title="val acc",
            legend={"x": 1.18},
            height=420,
        )
        part.figures.append((f"fig-curves-{slug(s.name)}", fig))
    return part


def _curve_trace(t: FrozenTrial, colour: str, legend: bool) -> go.Scatter:
    """One trial's accuracy per epoch; ``legend``: listed (beyond 12 the colour bar says
    enough)."""
    dash, symbol = CURVE_STYLES[t.state]
    steps = sorted(t.intermediate_values)
    # an attempt stopped by Ctrl-C/SIGTERM is queued to resume, not failed
    interrupted = t.state == TrialState.FAIL and not is_failure(t)
    state = "interrupted" if interrupted else t.state.name.lower()
    return go.Scatter(
        x=steps,
        y=[t.intermediate_values[e] for e in steps],
        mode="lines+markers",
        name=f"trial {t.number} ({state})",
        showlegend=legend,
        line={"dash": dash, "color": colour, "width": 2},
        marker={
            "color": colour,
            "symbol": [symbol if e == steps[-1] else "circle" for e in steps],
            "size": [11 if e == steps[-1] else 5 for e in steps],
        },
        hovertemplate=f"trial {t.number} ({state}): epoch %{{x}}, %{{y:.4f}}<extra></extra>",
    )


def _colour_bar(low: float, high: float) -> go.Scatter:
    """An invisible trace that carries the colour bar (accuracy at each trial's last epoch)."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        showlegend=False,
        hoverinfo="skip",
        marker={
            "color": [low, high],
            "colorscale": ACCURACY_SCALE,
            "cmin": low,
            "cmax": high if high > low else low + 1e-9,
            "showscale": True,
            "colorbar": {"title": "last val acc", "x": 1.02, "len": 0.8},
        },
    )


def _axis(name: str, values: list[Any], distribution: Any) -> dict[str, Any]:
    """One parallel-coordinates axis: categories as ticks, log-scaled floats as log10."""
    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        return {
            "label": name,
            "values": [choices.index(v) for v in values],
            "tickvals": list(range(len(choices))),
            "ticktext": [str(c) for c in choices],
        }
    if getattr(distribution, "log", False):
        # log-scaled values spread evenly; the ticks show the values themselves
        low, high = math.log10(min(values)), math.log10(max(values))
        ticks = [10**e for e in range(math.floor(low), math.ceil(high) + 1)]
        ticks += [3 * t for t in ticks]
        ticks = sorted(t for t in ticks if low <= math.log10(t) <= high) or [min(values)]
        return {
            "label": f"{name} (log)",
            "values": [math.log10(v) for v in values],
            "tickvals": [math.log10(t) for t in ticks],
            "ticktext": [f"{t:.3g}" for t in ticks],
        }
    return {"label": name, "values": values, "tickformat": ".3~g"}


def parallel_figure(s: StudyData) -> go.Figure:
    """Each complete trial as a line through its parameters, coloured on a Viridis scale.

    Optuna's own plot colours by "Blues", which fades the worst trials to white on white.
    """
    complete = [t for t in s.complete if t.params]
    names = sorted(set.intersection(*(set(t.params) for t in complete)))
    dims = [
        _axis(n, [t.params[n] for t in complete], complete[-1].distributions[n]) for n in names
    ]
    values = [t.value for t in complete]
    dims.append({"label": "val acc", "values": values, "tickformat": ".3f"})
    return go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": values,
                "colorscale": ACCURACY_SCALE,
                "showscale": True,
                "colorbar": {"title": "val acc"},
            },
            labelangle=-20,
        ),
        layout={"height": 460, "margin": {"l": 80, "r": 80, "t": 110}},
    )


def parallel_part(studies: Sequence[StudyData]) -> Part:
    part = Part.start("parallel")
    for s in studies:
        n = len(s.complete)
        if n < MIN_PARALLEL_TRIALS:
            part.missing.append(
                f"{s.name}: parallel coordinates need ≥{MIN_PARALLEL_TRIALS} complete trials, "
                f"has {n}"
            )
            continue
        if not any(t.params for t in s.complete):
            part.missing.append(f"{s.name}: no searched parameters (all fixed with --set)")
            continue
        fig = parallel_figure(s)
        fig.update_layout(title=f"{s.name}: parallel coordinates ({n} complete trials)")
        part.figures.append((f"fig-parallel-{slug(s.name)}", fig))
    return part
