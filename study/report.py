"""``python -m study.report``: one self-contained HTML page that answers what the studies found.

python -m study.report --out report.html                        # every search study in the storage
python -m study.report --studies wrn28_10 light --out report.html

Cost against accuracy (the Pareto front across studies), optimisation histories, per-epoch
curves, parameter importances (PED-ANOVA and fANOVA), parallel coordinates, rerun test
accuracies and ablation effects, under a written summary. Plotly's script is embedded once, so
the page opens offline. A study still running, or with too few trials for an analysis, is
reported as it stands, with what is missing said in words.
"""

from __future__ import annotations

import datetime
import html
import math
import re
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.importance import (
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
    get_param_importances,
)
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from study.ablate import (
    Effect,
    compute_effects,
    effects_figure,
    format_points,
    path_figure,
)
from study.cli import Parser, UsageError, run_command
from study.status import study_kind, trial_seconds
from study.storage import DEFAULT_STORAGE, open_storage, redact

# Fewer complete trials than this and an importance is noise: fANOVA's forest has almost
# nothing to split, and PED-ANOVA wants at least 5 trials in its top quantile (its docs), which
# with the widest quantile used here, the top half, takes 10.
MIN_IMPORTANCE_TRIALS = 10
MIN_PARALLEL_TRIALS = 2  # one line shows no relation between parameters and accuracy
# below this many complete trials the summary calls a search preliminary
FEW_TRIALS = 10
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_RERUN_KEY = re.compile(r"^rerun_trial(\d+)_e(\d+)$")


def build_parser() -> Parser:
    p = Parser(prog="python -m study.report", description=__doc__.splitlines()[0])
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna RDB storage URL")
    p.add_argument(
        "--studies",
        nargs="+",
        metavar="NAME",
        help="search studies to compare (default: every search study in the storage)",
    )
    p.add_argument("--out", default="report.html", help="the HTML file to write")
    return p


# -- what the storage holds -------------------------------------------------------------------


@dataclass
class AblationData:
    name: str
    attrs: dict[str, Any]
    trials: list[FrozenTrial]
    effects: list[Effect]

    @property
    def base_effect(self) -> Effect | None:
        return next((e for e in self.effects if e.variant == "base"), None)

    @property
    def path(self) -> list[dict[str, Any]]:
        return list(self.attrs.get("path") or [])

    @property
    def running(self) -> int:
        return sum(t.state == TrialState.RUNNING for t in self.trials)


@dataclass
class StudyData:
    name: str
    study: optuna.Study
    trials: list[FrozenTrial]
    settings: dict[str, Any]
    colour: str
    reruns: list[dict[str, Any]] = field(default_factory=list)
    ablation: AblationData | None = None

    def with_state(self, state: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == state]

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.with_state(TrialState.COMPLETE) if t.value is not None]

    @property
    def best(self) -> FrozenTrial | None:
        complete = self.complete
        return max(complete, key=lambda t: t.value) if complete else None

    @property
    def seconds(self) -> float:
        return sum(trial_seconds(t) for t in self.trials)

    @property
    def devices(self) -> set[str]:
        return {t.user_attrs["device"] for t in self.trials if "device" in t.user_attrs}

    def seconds_per_epoch(self) -> float | None:
        per_epoch = [s for t in self.trials for s in t.user_attrs.get("epoch_seconds", [])]
        return statistics.median(per_epoch) if per_epoch else None

    def cost_curve(self) -> tuple[list[float], list[float], list[int]]:
        """Best value so far against cumulative seconds, over trials in order of finishing."""
        finished = sorted(
            (t for t in self.trials if t.state.is_finished()),
            key=lambda t: (t.datetime_complete or datetime.datetime.max, t.number),
        )
        spent, best = 0.0, -math.inf
        xs: list[float] = []
        ys: list[float] = []
        numbers: list[int] = []
        for t in finished:
            spent += trial_seconds(t)
            if t.state == TrialState.COMPLETE and t.value is not None and t.value > best:
                best = t.value
            if best > -math.inf:
                xs.append(spent)
                ys.append(best)
                numbers.append(t.number)
        return xs, ys, numbers

    def seconds_to_best(self) -> float | None:
        xs, ys, _ = self.cost_curve()
        best = self.best
        if best is None:
            return None
        return next(x for x, y in zip(xs, ys, strict=True) if y >= best.value)

    def label(self) -> str:
        space = self.settings.get("space", {}).get("name")
        return self.name if not space or space == self.name else f"{self.name} ({space})"


def collect(storage: optuna.storages.BaseStorage, names: Sequence[str] | None) -> list[StudyData]:
    summaries = {s.study_name: s for s in storage.get_all_studies()}
    search = [n for n, s in summaries.items() if study_kind(s.user_attrs) == "search"]
    if names:
        for n in names:
            if n not in summaries:
                raise UsageError(
                    f"--studies: no study {n!r} in the storage "
                    f"(search studies: {', '.join(search) or 'none'})"
                )
            if n not in search:
                raise UsageError(f"--studies: {n!r} is not a search study made by study.run")
        chosen = list(dict.fromkeys(names))
    else:
        chosen = sorted(search)
    if not chosen:
        raise UsageError(
            "the storage holds no search study (run python -m study.run first; studies: "
            f"{', '.join(summaries) or 'none'})"
        )
    result = []
    for i, name in enumerate(chosen):
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        data = StudyData(
            name=name,
            study=study,
            trials=study.get_trials(deepcopy=False),
            settings=attrs.get("settings", {}),
            colour=COLOURS[i % len(COLOURS)],
            reruns=_reruns(attrs),
        )
        ablation_name = f"{name}-ablation"
        if ablation_name in summaries:
            ablation = optuna.load_study(study_name=ablation_name, storage=storage)
            trials = ablation.get_trials(deepcopy=False)
            data.ablation = AblationData(
                ablation_name, ablation.user_attrs, trials, compute_effects(trials)
            )
        result.append(data)
    return result


def _reruns(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    runs = []
    for key, value in attrs.items():
        match = _RERUN_KEY.match(key)
        if match and isinstance(value, dict) and value.get("runs"):
            runs.append({**value, "trial": int(match[1]), "epochs": int(match[2])})
    return sorted(runs, key=lambda r: (r["trial"], r["epochs"]))


# -- figures ------------------------------------------------------------------------------------


@dataclass
class Part:
    """One section of the page: figures and tables, or what is missing for them."""

    id: str
    title: str
    intro: str = ""
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (cost, accuracy) that no cheaper point matches or beats in accuracy."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def cost_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "cost",
        "Accuracy against cost",
        "Best validation accuracy so far against the device time the study has spent "
        "(every finished trial counts, pruned ones too); then each complete trial's accuracy "
        "against its own time and its parameter count, with the Pareto front across all "
        "studies shown.",
    )
    history = go.Figure()
    for s in studies:
        xs, ys, numbers = s.cost_curve()
        if xs:
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
        else:
            part.missing.append(f"{s.name}: no finished trial yet")
    history.update_layout(
        title="Best validation accuracy against GPU-seconds spent",
        xaxis_title="GPU-seconds spent by the study (sum of epoch times)",
        yaxis_title="best val acc so far",
        height=420,
    )
    part.figures.append(("fig-cost", history))

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("per trial: GPU-seconds", "per trial: parameters"),
        shared_yaxes=True,
    )
    by_cost: list[tuple[float, float]] = []
    by_size: list[tuple[float, float]] = []
    for s in studies:
        complete = s.complete
        if not complete:
            continue
        costs = [trial_seconds(t) for t in complete]
        sizes = [t.user_attrs.get("num_params") for t in complete]
        numbers = [t.number for t in complete]
        values = [t.value for t in complete]
        common = {
            "mode": "markers",
            "name": s.name,
            "legendgroup": s.name,
            "marker": {"color": s.colour, "size": 8},
            "customdata": numbers,
        }
        fig.add_trace(
            go.Scatter(
                x=costs,
                y=values,
                hovertemplate="trial %{customdata}: %{y:.4f} in %{x:,.0f} s<extra></extra>",
                **common,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=sizes,
                y=values,
                showlegend=False,
                hovertemplate="trial %{customdata}: %{y:.4f}, %{x:,} params<extra></extra>",
                **common,
            ),
            row=1,
            col=2,
        )
        by_cost += list(zip(costs, values, strict=True))
        by_size += [(n, v) for n, v in zip(sizes, values, strict=True) if n]
    for col, points in ((1, by_cost), (2, by_size)):
        front = pareto_front(points)
        if front:
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in front],
                    y=[p[1] for p in front],
                    mode="lines+markers",
                    line={"color": "black", "dash": "dash", "shape": "hv"},
                    marker={"color": "black", "size": 4},
                    name="Pareto front (all studies)",
                    legendgroup="front",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="GPU-seconds of the trial", type="log", row=1, col=1)
    fig.update_xaxes(title_text="parameters", type="log", row=1, col=2)
    fig.update_yaxes(title_text="val acc", row=1, col=1)
    fig.update_layout(title="Pareto front: accuracy against cost and size", height=440)
    part.figures.append(("fig-pareto", fig))
    return part


def history_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "history",
        "Optimisation histories",
        "Each complete trial's validation accuracy by trial number, with the best so far; "
        "pruned trials at the last accuracy they reported.",
    )
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
                name=f"{s.name}: complete",
                legendgroup=s.name,
                marker={"color": s.colour, "size": 8},
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
                    marker={"color": s.colour, "symbol": "x", "size": 7, "opacity": 0.6},
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


def curves_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "curves",
        "Per-epoch validation accuracy",
        "Every trial's accuracy after each epoch: complete trials solid, pruned ones dotted "
        "and ending in ×, running ones dashed.",
    )
    styles = {
        TrialState.COMPLETE: ("solid", "circle", 1.0),
        TrialState.PRUNED: ("dot", "x", 0.6),
        TrialState.RUNNING: ("dash", "circle-open", 0.9),
        TrialState.FAIL: ("dot", "square-open", 0.4),
    }
    for s in studies:
        trials = [t for t in s.trials if t.intermediate_values and t.state in styles]
        if not trials:
            part.missing.append(f"{s.name}: no trial has reported an epoch yet")
            continue
        fig = go.Figure()
        shown: set[TrialState] = set()
        for t in trials:
            dash, symbol, opacity = styles[t.state]
            steps = sorted(t.intermediate_values)
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[t.intermediate_values[e] for e in steps],
                    mode="lines+markers",
                    name=t.state.name.lower(),
                    legendgroup=t.state.name,
                    showlegend=t.state not in shown,
                    opacity=opacity,
                    line={"dash": dash, "color": s.colour},
                    marker={
                        "symbol": [symbol if e == steps[-1] else "circle" for e in steps],
                        "size": [9 if e == steps[-1] else 4 for e in steps],
                    },
                    hovertemplate=f"trial {t.number} ({t.state.name.lower()}): "
                    "epoch %{x}, %{y:.4f}<extra></extra>",
                )
            )
            shown.add(t.state)
        epochs = max(max(t.intermediate_values) for t in trials)
        fig.update_layout(
            title=f"{s.name}: per-epoch validation accuracy",
            xaxis={"title": "epoch", "tick0": 1, "dtick": max(1, epochs // 10)},
            yaxis_title="val acc",
            height=400,
        )
        part.figures.append((f"fig-curves-{slug(s.name)}", fig))
    return part


def compute_importances(
    s: StudyData,
) -> tuple[dict[str, dict[str, float]], str | None]:
    """PED-ANOVA and fANOVA importances, or why they cannot be computed yet."""
    n = len(s.complete)
    if n < MIN_IMPORTANCE_TRIALS:
        return {}, (
            f"not enough trials for parameter importances (needs ≥{MIN_IMPORTANCE_TRIALS} "
            f"complete, has {n})"
        )
    # PED-ANOVA's default top 10 % needs 50 trials for 5 in it; smaller studies use the top
    # 5 trials' share, at most half
    quantile = min(0.5, max(0.1, 5 / n))
    evaluators = {
        f"PED-ANOVA (top {quantile:.0%})": PedAnovaImportanceEvaluator(target_quantile=quantile),
        "fANOVA": FanovaImportanceEvaluator(seed=0),
    }
    result: dict[str, dict[str, float]] = {}
    reasons = []
    for label, evaluator in evaluators.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-feature and few-trials notices
                result[label] = {
                    k: float(v)
                    for k, v in get_param_importances(s.study, evaluator=evaluator).items()
                }
        except Exception as e:  # a failed analysis is reported, not fatal
            reasons.append(f"{label} failed: {e}")
    return result, "; ".join(reasons) or None


def importance_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "importance",
        "Parameter importances",
        "How much each searched parameter accounts for: PED-ANOVA (how differently the best "
        "trials set it from the rest) and fANOVA (variance explained in a random-forest fit of "
        "accuracy). Normalised to sum to 1 per method.",
    )
    for s in studies:
        values, problem = compute_importances(s)
        if problem:
            part.missing.append(f"{s.name}: {problem}")
        if not values:
            continue
        params = sorted({p for v in values.values() for p in v})
        fig = go.Figure()
        for label, imp in values.items():
            fig.add_trace(
                go.Bar(y=params, x=[imp.get(p, 0.0) for p in params], name=label, orientation="h")
            )
        fig.update_layout(
            title=f"{s.name}: parameter importances ({len(s.complete)} complete trials)",
            barmode="group",
            xaxis_title="importance",
            height=max(320, 45 * len(params) + 140),
            margin={"l": 140},
        )
        part.figures.append((f"fig-importance-{slug(s.name)}", fig))
    return part


def parallel_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "parallel",
        "Parallel coordinates",
        "Each complete trial as a line through its parameter values, coloured by accuracy.",
    )
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = optuna.visualization.plot_parallel_coordinate(s.study, target_name="val acc")
        fig.update_layout(title=f"{s.name}: parallel coordinates ({n} complete trials)")
        part.figures.append((f"fig-parallel-{slug(s.name)}", fig))
    return part


def reruns_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "reruns",
        "Reruns on the test set",
        "Trials retrained on the full training set for the recipe's length "
        "(python -m study.rerun), test accuracy per seed and mean ± std.",
    )
    labels, means, stds, points_x, points_y = [], [], [], [], []
    rows = []
    for s in studies:
        if not s.reruns:
            part.missing.append(
                f"{s.name}: no rerun yet (python -m study.rerun --study-name {s.name})"
            )
        for r in s.reruns:
            label = f"{s.name} trial {r['trial']}, {r['epochs']} epochs"
            accs = [run["test_acc"] for run in r["runs"]]
            labels.append(label)
            means.append(r["test_acc_mean"])
            stds.append(r["test_acc_std"])
            points_x += [label] * len(accs)
            points_y += accs
            rows.append(
                [
                    s.name,
                    str(r["trial"]),
                    str(r["epochs"]),
                    str(len(accs)),
                    f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}",
                    ", ".join(f"{a:.4f}" for a in accs),
                ]
            )
    if not rows:
        return part
    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=means,
                error_y={"type": "data", "array": stds},
                name="mean ± std",
                marker_color="#9ecae1",
            ),
            go.Scatter(x=points_x, y=points_y, mode="markers", name="each seed"),
        ]
    )
    fig.update_layout(title="Test accuracy of reruns", yaxis_title="test acc", height=400)
    part.figures.append(("fig-reruns", fig))
    part.html.append(
        table(["study", "trial", "epochs", "seeds", "test acc", "per seed"], rows, "reruns")
    )
    return part


def ablation_part(studies: Sequence[StudyData]) -> Part:
    part = Part(
        "ablation",
        "Ablations",
        "Each factor switched off in turn from the base configuration (python -m study.ablate), "
        "validation accuracy over seeds, and its difference from the base with a 95 % Welch "
        "t interval, sorted by effect: the most harmful removal first.",
    )
    for s in studies:
        a = s.ablation
        if a is None:
            part.missing.append(
                f"{s.name}: no ablation yet (python -m study.ablate --study-name {s.name})"
            )
            continue
        if not a.effects:
            part.missing.append(f"{a.name}: no complete run yet")
            continue
        base = a.attrs.get("base")
        base_text = (
            f"base: trial {a.attrs.get('base_trial')} (the best)"
            if base == "best"
            else "base: the recipe"
        )
        rows = []
        for e in a.effects:
            rows.append(
                [
                    e.label,
                    str(e.n),
                    f"{e.mean:.4f} ± {e.std:.4f}",
                    "" if e.diff is None else format_points(e.diff, e.interval),
                ]
            )
        part.html.append(
            f"<h3>{html.escape(a.name)}</h3><p>{html.escape(base_text)}, "
            f"{html.escape(_plural(a.attrs.get('epochs'), 'epoch'))} per run, seeds "
            f"{html.escape(', '.join(str(x) for x in a.attrs.get('seeds', [])))}"
            + (
                f"; already off in the base: {html.escape(', '.join(a.attrs['skipped']))}"
                if a.attrs.get("skipped")
                else ""
            )
            + (f"; {a.running} run(s) in progress" if a.running else "")
            + ".</p>"
        )
        part.html.append(
            table(["variant", "n", "val acc", "difference from base"], rows, f"ablation-{s.name}")
        )
        if any(e.diff is not None for e in a.effects):
            part.figures.append(
                (
                    f"fig-ablation-{slug(s.name)}",
                    effects_figure(a.effects, f"{s.name}: effect of switching each factor off"),
                )
            )
        else:
            part.missing.append(f"{a.name}: no variant besides the base has finished yet")
        if a.path:
            part.figures.append(
                (
                    f"fig-path-{slug(s.name)}",
                    path_figure(a.path, f"{s.name}: ablation path from the recipe to the best"),
                )
            )
    return part


def table(header: Sequence[str], rows: Sequence[Sequence[str]], name: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table data-table="{html.escape(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


# -- the written summary ------------------------------------------------------------------------


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _counts(s: StudyData) -> str:
    parts = []
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL):
        n = len(s.with_state(state))
        if n:
            parts.append(f"{n} {state.name.lower()}")
    return ", ".join(parts) or "no trials"


def _network(trial: FrozenTrial) -> str:
    config = trial.user_attrs.get("config", {})
    size = trial.user_attrs.get("num_params")
    net = f"WRN-{config['depth']}-{config['width']}" if "depth" in config else "network"
    return f"{net}, {size:,} parameters" if size else net


def _effect_words(e: Effect) -> str:
    assert e.diff is not None
    points = 100 * e.diff
    if e.interval is None:
        return f"{e.label}: {points:+.2f} points (95% CI n/a: one seed)"
    half = 100 * (e.interval[1] - e.interval[0]) / 2
    if e.significant:
        verb = "costs" if e.diff < 0 else "gains"
        return f"{e.label} {verb} {abs(points):.2f} ± {half:.2f} points (95% CI)"
    return f"{e.label}: no clear effect ({points:+.2f} ± {half:.2f} points, 95% CI spans 0)"


def summary(studies: Sequence[StudyData]) -> list[str]:
    """The answers in words, one paragraph each."""
    out = []
    names = (
        " and ".join(s.name for s in studies)
        if len(studies) <= 2
        else ", ".join(s.name for s in studies)
    )
    out.append(
        f"{len(studies)} search {'study' if len(studies) == 1 else 'studies'}: {names}. "
        + " ".join(f"{s.name}: {_counts(s)}." for s in studies)
    )
    ranked = sorted((s for s in studies if s.best), key=lambda s: -s.best.value)
    for s in studies:
        best = s.best
        epochs = s.settings.get("epochs")
        if best is None:
            out.append(f"{s.name} has no complete trial yet, so no best result.")
            continue
        to_best = s.seconds_to_best()
        budget = f", {_plural(epochs, 'epoch')} per trial" if epochs else ""
        out.append(
            f"{s.name} reaches {best.value:.4f} val acc (trial {best.number}, {_network(best)}"
            f"{budget}) at {_seconds(to_best or 0.0)} GPU-seconds, of {_seconds(s.seconds)} "
            "spent so far."
        )
    if len(ranked) >= 2:
        first, second = ranked[0], ranked[1]
        gap = 100 * (first.best.value - second.best.value)
        verdict = (
            "a tie"
            if first.best.value == second.best.value
            else f"{first.name} is ahead by {gap:.2f} points"
        )
        text = (
            f"{first.name} reaches {first.best.value:.4f} val acc at "
            f"{_seconds(first.seconds_to_best() or 0.0)} GPU-seconds vs {second.name} "
            f"{second.best.value:.4f} at {_seconds(second.seconds_to_best() or 0.0)}: "
            f"{verdict}."
        )
        spe_first, spe_second = first.seconds_per_epoch(), second.seconds_per_epoch()
        if spe_first and spe_second:
            ratio = spe_first / spe_second
            text += (
                f" An epoch of {first.name} costs {ratio:.2f}× one of {second.name} "
                f"({_seconds(spe_first)} vs {_seconds(spe_second)} s, median)."
            )
        few = [s.name for s in ranked if len(s.complete) < FEW_TRIALS]
        if few:
            text += (
                f" With fewer than {FEW_TRIALS} complete trials in {', '.join(few)}, "
                "treat this ranking as preliminary."
            )
        out.append(text)
    devices = {d for s in studies for d in s.devices}
    if devices and "cuda" not in devices:
        out.append(
            f"These trials ran on {', '.join(sorted(devices))}, not a GPU: the seconds are "
            "device seconds on that hardware."
        )
    for s in studies:
        a = s.ablation
        if a is None or not any(e.diff is not None for e in a.effects):
            continue
        base = a.base_effect
        seeds = base.n if base else 0
        base_text = (
            f"the best trial ({a.attrs.get('base_trial')})"
            if a.attrs.get("base") == "best"
            else "the recipe"
        )
        effects = [e for e in a.effects if e.diff is not None]
        words = "; ".join(_effect_words(e) for e in effects)
        text = (
            f"Ablation of {s.name} from {base_text}, {_plural(seeds, 'seed')} of "
            f"{_plural(a.attrs.get('epochs'), 'epoch')}, base {base.mean:.4f} val acc: {words}."
            if base
            else f"Ablation of {s.name}: {words}."
        )
        significant = [e for e in effects if e.significant and e.diff < 0]
        if significant:
            text += f" The factor that matters most: {', '.join(significant[0].changed)}."
        elif all(e.interval is not None for e in effects):
            text += " No factor's removal is distinguishable from noise at this budget."
        if a.path:
            gains = []
            for prev, step in zip(a.path, a.path[1:], strict=False):
                gains.append(f"{step['param']} ({100 * (step['mean'] - prev['mean']):+.2f})")
            text += (
                f" The ablation path from the recipe ({a.path[0]['mean']:.4f}) to the best "
                f"configuration ({a.path[-1]['mean']:.4f}) changes, greedily by gain: "
                f"{', '.join(gains)} points."
            )
        out.append(text)
    for s in studies:
        for r in s.reruns:
            out.append(
                f"{s.name} trial {r['trial']} retrained for {_plural(r['epochs'], 'epoch')}: "
                f"test acc {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} over "
                f"{_plural(len(r['runs']), 'seed')}."
            )
    running = [s for s in studies if s.with_state(TrialState.RUNNING)]
    for s in running:
        out.append(
            f"{s.name} is still running ({len(s.with_state(TrialState.RUNNING))} trial(s) in "
            "progress): this report shows what has finished so far."
        )
    return out


# -- the page -----------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222;
       padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; }
.meta { color: #666; margin-top: 0; }
#summary p { line-height: 1.5; }
.missing { color: #8a5a00; background: #fff6e0; padding: 0.3rem 0.6rem; margin: 0.3rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
section { margin-bottom: 2.5rem; }
"""


def overview_table(studies: Sequence[StudyData]) -> str:
    rows = []
    for s in studies:
        best = s.best
        spe = s.seconds_per_epoch()
        rows.append(
            [
                s.label(),
                str(s.settings.get("epochs", "-")),
                _counts(s),
                "-" if best is None else f"{best.value:.4f}",
                "-" if best is None else str(best.number),
                "-" if best is None else _network(best),
                _seconds(s.seconds),
                "-" if spe is None else f"{spe:.2f}",
            ]
        )
    return table(
        [
            "study",
            "epochs/trial",
            "trials",
            "best val acc",
            "trial",
            "best network",
            "GPU-s",
            "s/epoch",
        ],
        rows,
        "overview",
    )


def render(studies: Sequence[StudyData], storage_url: str) -> tuple[str, int]:
    """The whole page, and how many figures it holds."""
    parts = [
        cost_part(studies),
        history_part(studies),
        curves_part(studies),
        importance_part(studies),
        parallel_part(studies),
        reruns_part(studies),
        ablation_part(studies),
    ]
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = "wrn-study report: " + " vs ".join(s.name for s in studies)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(redact(storage_url))}, generated {html.escape(now)}</p>',
        '<section id="summary"><h2>Summary</h2>',
        *(f"<p>{html.escape(p)}</p>" for p in summary(studies)),
        overview_table(studies),
    ]
    missing = [m for p in parts for m in p.missing]
    if missing:
        body.append("<h3>Not available yet</h3><ul>")
        body += [f'<li class="missing">{html.escape(m)}</li>' for m in missing]
        body.append("</ul>")
    body.append("</section>")
    figures = 0
    for p in parts:
        body.append(f'<section id="{p.id}"><h2>{html.escape(p.title)}</h2>')
        if p.intro:
            body.append(f"<p>{html.escape(p.intro)}</p>")
        body += [f'<p class="missing">{html.escape(m)}</p>' for m in p.missing]
        body += p.html
        for div_id, fig in p.figures:
            # plotly.js is inlined with the first figure only: self-contained, loaded once
            body.append(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=figures == 0,
                    div_id=div_id,
                    config={"displaylogo": False, "responsive": True},
                )
            )
            figures += 1
        body.append("</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    return page, figures


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, create=False)
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory")
    studies = collect(storage, args.studies)
    page, figures = render(studies, args.storage)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out}: {figures} figures, studies {', '.join(s.name for s in studies)}")
    for paragraph in summary(studies):
        print(f"- {paragraph}")
    return 0


if __name__ == "__main__":
    run_command("python -m study.report", main)
