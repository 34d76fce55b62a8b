"""The report's sections on what the searches found: parameter importances, reruns on the test
set, whether the ranking holds at full length, and ablations."""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence

import plotly.graph_objects as go

from study.ablation.effects import (
    effects_figure,
    format_points,
    path_figure,
    seeds_words,
    skipped_words,
)
from study.records import seed_result
from study.reporting import ranking
from study.reporting.commands import ablation_flags, command, data_flags, storage_flags
from study.reporting.data import AblationData, StudyData
from study.reporting.part import Part, plural, slug, table

# Fewer complete trials than this and an importance is noise: fANOVA's forest has almost
# nothing to split, and PED-ANOVA wants at least 5 trials in its top quantile (its docs), which
# with the widest quantile used here, the top half, takes 10.
MIN_IMPORTANCE_TRIALS = 10


def compute_importances(
    s: StudyData, min_trials: int = MIN_IMPORTANCE_TRIALS
) -> tuple[dict[str, dict[str, float]], str | None]:
    """PED-ANOVA and fANOVA importances, or why they cannot be computed yet."""
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    n = len(s.complete)
    if n < min_trials:
        return {}, (
            f"not enough trials for parameter importances (needs ≥{min_trials} complete, has {n})"
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


def importance_part(studies: Sequence[StudyData], min_trials: int = MIN_IMPORTANCE_TRIALS) -> Part:
    part = Part.start("importance")
    for s in studies:
        values, problem = compute_importances(s, min_trials)
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


def reruns_part(studies: Sequence[StudyData]) -> Part:
    part = Part.start("reruns")
    labels, means, stds, points_x, points_y = [], [], [], [], []
    rows = []
    for s in studies:
        if not s.reruns:
            part.missing.append(
                f"{s.name}: no rerun yet (the command is under 'Does the ranking hold?')"
            )
        for r in s.reruns:
            label = f"{s.name} trial {r.trial}, {r.epochs} epochs"
            accs = [run.test_acc for run in r.runs]
            labels.append(label)
            means.append(r.mean)
            stds.append(r.std)
            points_x += [label] * len(accs)
            points_y += accs
            rows.append(
                [
                    s.name,
                    str(r.trial),
                    str(r.epochs),
                    str(len(accs)),
                    seed_result(accs),
                    ", ".join(f"{a:.4f}" for a in accs),
                ]
            )
    if not rows:
        return part
    fig = go.Figure(
        [
            # points, not bars from zero: reruns differ by tenths of a point, not by 80
            go.Scatter(
                x=labels,
                y=means,
                error_y={"type": "data", "array": stds, "thickness": 1.5, "width": 8},
                mode="markers",
                name="mean ± std",
                marker={"color": "#1f77b4", "size": 12, "symbol": "diamond"},
            ),
            go.Scatter(
                x=points_x,
                y=points_y,
                mode="markers",
                name="each seed",
                marker={"color": "#ff7f0e", "size": 7, "opacity": 0.7},
            ),
        ]
    )
    fig.update_layout(
        title="Final-epoch test accuracy of reruns", yaxis_title="test acc", height=400
    )
    part.figures.append(("fig-reruns", fig))
    part.html.append(
        table(
            ["study", "trial", "epochs", "seeds", "final-epoch test acc", "per seed"],
            rows,
            "reruns",
        )
    )
    return part


def ranking_part(studies: Sequence[StudyData]) -> Part:
    part = Part.start(
        "ranking",
        exact=ranking.EXACT_ORDERS_UP_TO,
        orders=ranking.RANDOM_ORDERS,
        interval=ranking.MIN_INTERVAL_TRIALS,
    )
    for s in studies:
        if len(s.ranks) < 2:
            part.missing.append(ranking.winner_sentence(s))
            continue
        part.html.append(
            f"<h3>{html.escape(s.name)}</h3><p>{html.escape(ranking.winner_sentence(s))} "
            f"{html.escape(ranking.correlation_words(s.ranks))}.</p>"
        )
        part.html.append(
            table(
                ["trial", "proxy rank", "search val acc", "full rank", "rerun test acc", "seeds"],
                ranking.rank_rows(s),
                f"ranking-{s.name}",
            )
        )
        part.figures.append((f"fig-ranking-{slug(s.name)}", ranking.rank_figure(s)))
    return part


def ablation_command(s: StudyData) -> str:
    """The command that resumes (or completes) the study's ablation, with the flags it ran with."""
    a = s.ablation
    if a is None:
        flags = ["--study-name", s.name, *storage_flags(s.storage_url), *data_flags(s.settings)]
    else:
        flags = ablation_flags(
            a.settings, s.storage_url, walked_path=bool(a.path), search_epochs=s.epochs
        )
    return command("python", "-m", "study.ablate", *flags)


def ablation_part(studies: Sequence[StudyData]) -> Part:
    part = Part.start("ablation")
    for s in studies:
        a = s.ablation
        if a is None:
            part.missing.append(f"{s.name}: no ablation yet ({ablation_command(s)})")
            continue
        if not a.effects:
            part.missing.append(f"{a.name}: no complete run yet (resume: {ablation_command(s)})")
            continue
        part.html.append(
            f"<h3>{html.escape(a.name)}</h3><p>{html.escape(_ablation_setup(a))}.</p>"
        )
        unfinished = a.unfinished()
        if unfinished:
            part.html.append(
                f'<p class="missing">Partial: {len(unfinished)} of {len(a.planned())} planned '
                f"variants not finished for every seed ({html.escape(', '.join(unfinished))}); "
                f"resume with <code>{html.escape(ablation_command(s))}</code></p>"
            )
        rows = [
            [
                e.label,
                str(e.n),
                e.accuracy,
                "" if e.diff is None else format_points(e),
            ]
            for e in a.effects
        ]
        part.html.append(
            table(["variant", "n", "val acc", "difference from base"], rows, f"ablation-{s.name}")
        )
        part.html.append(f"<p>{html.escape(seeds_words(a.settings))}</p>")
        if any(e.diff is not None for e in a.effects):
            title = f"{s.name}: effect of switching each factor off"
            part.figures.append((f"fig-ablation-{slug(s.name)}", effects_figure(a.effects, title)))
        else:
            part.missing.append(f"{a.name}: no variant besides the base has finished yet")
        if a.path:
            title = f"{s.name}: ablation path from the recipe to the best"
            steps = [step.to_dict() for step in a.path]
            part.figures.append((f"fig-path-{slug(s.name)}", path_figure(steps, title)))
    return part


def _ablation_setup(a: AblationData) -> str:
    """The ablation's base, epochs, seeds, what the base already lacks and what still runs."""
    settings = a.settings
    base = (
        f"base: trial {settings.base_trial} (the best)"
        if settings.base == "best"
        else "base: the recipe"
    )
    text = f"{base}, {plural(settings.epochs, 'epoch')} per run, seeds "
    text += ", ".join(str(x) for x in a.seeds)
    if settings.skipped:
        text += f"; not ablated: {skipped_words(settings)}"
    return text + (f"; {a.running} run(s) in progress" if a.running else "")
