"""The asynchronous replay's results: JSON, markdown, and the anytime curves as plotly HTML,
with the issue's goal check (promote against no pruning and the default, at 4 workers) and
whether the control that should lose (median from epoch 1) shows regret on the table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchmarks.search_quality_replay import ANYTIME_POINTS, WITHIN

GOAL_WORKERS = 4
GOAL_SAVINGS = 0.5  # promote's epochs to within 0.5 points: at most half of no pruning's
GOAL_SURVIVES = 0.9
CONTROL = "median from epoch 1"


def finite(data: Any) -> Any:
    """``data`` with every infinite or NaN float as None (JSON has no infinity)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def _row(rows: list[dict[str, Any]], name: str, workers: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["pruner"] == name and r["workers"] == workers), None)


def goal_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """At 4 workers: does promote reach within 0.5 points with >= 50 % fewer epochs than no
    pruning and fewer than the default, keeping the best in >= 90 % of orders?"""
    promote = _row(rows, "promote", GOAL_WORKERS)
    none = _row(rows, "none", GOAL_WORKERS)
    default = next((r for r in rows if r["default"] and r["workers"] == GOAL_WORKERS), None)
    if promote is None or none is None or default is None:
        return {"checked": False, "why": f"needs promote, none and the default at {GOAL_WORKERS}"}
    reach = "epochs_to_within_half_point"
    checks = {
        "half_the_epochs_of_none": promote["savings_vs_none"] >= GOAL_SAVINGS,
        "fewer_epochs_than_default": promote[reach] < default[reach],
        "keeps_best_in_90_percent": promote["best_survives_frac"] >= GOAL_SURVIVES,
    }
    return {
        "checked": True,
        "met": all(checks.values()),
        "workers": GOAL_WORKERS,
        **checks,
        "promote_epochs": promote[reach],
        "none_epochs": none[reach],
        "default_epochs": default[reach],
        "promote_savings": promote["savings_vs_none"],
        "promote_savings_ci": promote.get("savings_ci"),
        "default_savings": default["savings_vs_none"],
        "promote_best_survives": promote["best_survives_frac"],
        "default_best_survives": default["best_survives_frac"],
        "promote_regret_at_100": promote["regret_at_100"],
        "default_regret_at_100": default["regret_at_100"],
        # the other reading of "fewer epochs": the whole search's epochs
        "promote_total_epochs_saved": 1 - promote["epochs_mean"] / none["epochs_mean"],
        "default_total_epochs_saved": 1 - default["epochs_mean"] / none["epochs_mean"],
    }


def control_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the median from epoch 1 loses on this table: its final regret per worker count
    (the table decides only if it does)."""
    out = {}
    for r in rows:
        if r["pruner"] == CONTROL:
            ci = r.get("regret_at_100_ci")
            out[str(r["workers"])] = {
                "regret_at_100": r["regret_at_100"],
                "regret_at_100_ci": ci,
                "best_survives_frac": r["best_survives_frac"],
                "shows_regret": r["regret_at_100"] > 0,
                "interval_above_zero": bool(ci) and ci[0] > 0,
            }
    return out


def write_results(result: dict[str, Any], json_path: Path, md_path: Path) -> Path:
    """The JSON, the markdown and, beside the table, the anytime figure (returned)."""
    from benchmarks.search_quality import _write_json

    html_path = md_path.with_suffix(".html")
    _write_json(json_path, finite(result))
    md_path.write_text(markdown(result, html_path.name))
    anytime_figure(result).write_html(html_path, include_plotlyjs="cdn", full_html=True)
    return html_path


def anytime_figure(result: dict[str, Any]) -> go.Figure:
    """Mean regret of the best finished trial against the epochs spent, one panel per N."""
    workers = sorted({r["workers"] for r in result["rows"]})
    fig = make_subplots(
        rows=1, cols=len(workers), subplot_titles=[f"{w} workers" for w in workers]
    )
    grid = [100 * i / (ANYTIME_POINTS - 1) for i in range(ANYTIME_POINTS)]
    for k, (name, curves) in enumerate(result["anytime"].items()):
        for col, w in enumerate(workers, start=1):
            fig.add_trace(
                go.Scatter(
                    x=grid,
                    y=curves[w],
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": COLORS[k % len(COLORS)]},
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="% of the unpruned search's epochs spent")
    fig.update_yaxes(title_text="regret of the best finished (points)", range=[0, 5], col=1)
    fig.update_yaxes(range=[0, 5])
    fig.update_layout(
        title=f"Anytime regret, {result['trials']} trials drawn from {result['configs']} "
        f"configurations, mean of {result['orders']} orders (nothing finished: the whole best)",
        height=500,
        width=1400,
    )
    return fig


COLORS = ["#444444", "#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#2ca02c", "#8c564b"]


def _num(value: float | None, fmt: str, never: str = "never") -> str:
    return never if value is None or not math.isfinite(value) else format(value, fmt)


def _ci(ci: list[float] | None, fmt: str, scale: float = 1.0) -> str:
    if not ci:
        return ""
    lo, hi = (_num(v * scale if math.isfinite(v) else v, fmt, "-inf") for v in ci)
    return f" [{lo}, {hi}]"


def results_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| N | pruner | default | epochs to within 0.5 | sim. hours | savings vs none "
        "| regret @25 % | @50 % | @100 % | best finishes | search epochs | peak paused |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['pruner']} | {'yes' if r['default'] else ''} "
            f"| {_num(r['epochs_to_within_half_point'], '.0f')} "
            f"| {_num(r['hours_to_within_half_point'], '.2f')} "
            f"| {_num(100 * r['savings_vs_none'], '.0f')} %{_ci(r.get('savings_ci'), '.0f', 100)} "
            f"| {r['regret_at_25']:.2f}{_ci(r.get('regret_at_25_ci'), '.2f')} "
            f"| {r['regret_at_50']:.2f}{_ci(r.get('regret_at_50_ci'), '.2f')} "
            f"| {r['regret_at_100']:.2f}{_ci(r.get('regret_at_100_ci'), '.2f')} "
            f"| {100 * r['best_survives_frac']:.0f} % | {r['epochs_mean']:.0f} "
            f"| {r['peak_checkpoints'] or ''} |"
        )
    return lines


def goal_text(goal: dict[str, Any]) -> list[str]:
    if not goal.get("checked"):
        return [f"Goal not checked: {goal.get('why')}."]
    verdict = "met" if goal["met"] else "NOT met"
    return [
        f"**Goal ({goal['workers']} workers): {verdict}.** promote reaches within 0.5 points "
        f"after {_num(goal['promote_epochs'], '.0f')} epochs (median), no pruning after "
        f"{_num(goal['none_epochs'], '.0f')}, the default median after "
        f"{_num(goal['default_epochs'], '.0f')}: promote saves "
        f"{_num(100 * goal['promote_savings'], '.0f')} %"
        f"{_ci(goal['promote_savings_ci'], '.0f', 100)} (needs >= 50 %: "
        f"{'yes' if goal['half_the_epochs_of_none'] else 'no'}), the default "
        f"{_num(100 * goal['default_savings'], '.0f')} % (fewer than the default: "
        f"{'yes' if goal['fewer_epochs_than_default'] else 'no'}); the best finishes in "
        f"{100 * goal['promote_best_survives']:.0f} % of orders (default "
        f"{100 * goal['default_best_survives']:.0f} %; needs >= 90 %: "
        f"{'yes' if goal['keeps_best_in_90_percent'] else 'no'}). Final regret "
        f"{goal['promote_regret_at_100']:.2f} points (default "
        f"{goal['default_regret_at_100']:.2f}). Counting the whole search's epochs instead, "
        f"promote saves {100 * goal['promote_total_epochs_saved']:.0f} %, the default "
        f"{100 * goal['default_total_epochs_saved']:.0f} %.",
    ]


def control_text(control: dict[str, Any]) -> list[str]:
    parts = [
        f"{n} workers: {c['regret_at_100']:.2f}{_ci(c['regret_at_100_ci'], '.2f')} points, best "
        f"finishes in {100 * c['best_survives_frac']:.0f} %"
        for n, c in control.items()
    ]
    shows = all(c["shows_regret"] for c in control.values())
    sure = all(c["interval_above_zero"] for c in control.values())
    verdict = (
        "shows regret at every N"
        + (", its interval above 0" if sure else " (its interval reaches 0 somewhere)")
        if shows
        else "does NOT show regret at every N: the table cannot decide"
    )
    return [f"**Control** ({CONTROL}, which should lose) {verdict}: " + "; ".join(parts) + "."]


def spread_text(result: dict[str, Any]) -> list[str]:
    """Regret in units of the seed spread (``benchmarks.seed_spread``), when it was measured."""
    spread = result["table_meta"].get("seed_spread")
    if spread is None:
        return ["Seed spread: not measured (`python -m benchmarks.seed_spread`).", ""]
    sd = spread["sd_points"]
    n = result["goal"].get("workers") or result["rows"][0]["workers"]
    parts = [
        f"{r['pruner']} {r['regret_at_100']:.2f} ({r['regret_at_100'] / sd:.2f} SD)"
        for r in result["rows"]
        if r["workers"] == n
    ]
    return [
        f"**Seed spread**: a configuration's final accuracy moves by {sd:.2f} points with its "
        f"training seed (pooled SD over {spread['runs']} runs of the {spread['configs']} best "
        f"configurations, each on the table's validation split; the largest gap between two "
        f"seeds of one configuration: {spread['largest_gap_points']:.2f} points). Chosen as the "
        f"table's best on one seed, they score {spread['drop_on_other_seeds_points']:.2f} points "
        f"lower on the others (the winner's curse), Kendall tau "
        f"{spread['kendall_tau_table_vs_other_seeds']} between their table order and their "
        f"mean on the others. Final regret at {n} workers, points (seed SDs): "
        + "; ".join(parts)
        + ".",
        "",
    ]


def markdown(result: dict[str, Any], figure: str) -> str:
    d, d1 = result["difficulty"], result["difficulty_epoch_1"]
    meta = result["table_meta"]
    studies = meta.get("studies")
    source = f"`{result['table']}`" + (f" (studies {', '.join(studies)})" if studies else "")
    lines = [
        f"# Search quality: schedulers replayed asynchronously on {result['configs']} curves",
        "",
        f"Table {source}: {result['configs']} configurations x {result['epochs']} epochs "
        f"(OneCycle warm-up {result['warmup_frac']}, LR peak at epoch {result['peak_epoch']}), "
        f"trained without pruning on {meta.get('device', 'unknown')}; best final validation "
        f"accuracy {100 * result['best_final_acc']:.2f} %.",
        "",
        f"How hard it is: Kendall tau between the ranking at the first rung (epoch {d['rung']}) "
        f"and the final one {d['kendall_tau']:.3f} (at epoch 1: {d1['kendall_tau']:.3f}); "
        f"{d['overtake_rung_leader']} configuration(s) finish above the one leading at epoch "
        f"{d['rung']} (at epoch 1: {d1['overtake_rung_leader']}); the best ranks "
        f"{d['best_rank_at_rung']} of {d['configs']} at epoch {d['rung']}.",
        "",
        f"Replay: {result['orders']} orders, each a search of {result['trials']} configurations "
        f"drawn from the table with replacement, run by N simulated workers (each epoch costs "
        f"its recorded seconds); rungs {result['rungs']} (reduction {result['reduction']}); "
        f"{result['startup_trials']} pruner startup trials. Reference per order: the best final "
        f"accuracy among its draws; *within 0.5* means a finished trial within "
        f"{100 * WITHIN:.1f} points of it (epochs and simulated wall-clock hours: medians over "
        "orders, 'never' when half never get there). Regret (points, mean over orders) once "
        "25 / 50 / 100 % of the unpruned search's epochs are spent (nothing finished yet: the "
        "whole reference). Savings: 1 - epochs to within 0.5 / no pruning's (-inf: in some "
        "resampled tables it never gets there). [brackets]: 95 % "
        f"bootstrap intervals over configurations ({result['bootstrap']} resampled tables, "
        f"{result['bootstrap_orders']} orders each, so order noise is in them too). Peak "
        "paused: promote's checkpoints kept at once (study.promotion.deletable frees the rest).",
        "",
        *results_table(result["rows"]),
        "",
        *goal_text(result["goal"]),
        "",
        *control_text(result["control"]),
        "",
        *spread_text(result),
        f"Anytime curves: [{figure}]({figure}). Candidates: "
        + "; ".join(
            f"{r['pruner']}: {r['rule']}"
            for r in result["rows"]
            if r["workers"] == result["rows"][0]["workers"]
        )
        + ".",
        "",
        f"Command: `{result['command']}` ({result['elapsed_s']:.0f} s on one core).",
    ]
    return "\n".join(lines) + "\n"


def replay_table(
    path: Path,
    *,
    out_dir: Path,
    label: str | None,
    command: str,
    **plan_args: Any,
) -> tuple[Path, Path]:
    """Replay every candidate on the table at ``path``; write JSON, markdown and the figure.
    ``plan_args``: workers, trials, orders, bootstrap, per_replicate, seed, startup_trials,
    reduction."""
    import time

    from benchmarks.curve_table import difficulty, read_curve_table
    from benchmarks.search_quality import UsageError, result_paths
    from benchmarks.search_quality_replay import candidates, make_plan, replay_rows
    from study.promotion import rungs
    from study.pruning import peak_epoch

    t0 = time.perf_counter()
    table = read_curve_table(path)
    startup, reduction = plan_args.pop("startup_trials"), plan_args.pop("reduction")
    plan = make_plan(table, **plan_args)
    try:
        cands = candidates(table.epochs, table.warmup_frac, startup, reduction)
    except ValueError as err:  # --reduction, --startup-trials or the table's schedule
        raise UsageError(f"{path}: {err}") from None
    rows, anytime = replay_rows(table, plan, cands)
    rung_epochs = rungs(table.epochs, table.warmup_frac, reduction)
    result = {
        "kind": "search-quality-async-replay",
        "table": str(path),
        "table_meta": table.meta,
        "configs": len(table.curves),
        "epochs": table.epochs,
        "warmup_frac": table.warmup_frac,
        "peak_epoch": peak_epoch(table.epochs, table.warmup_frac),
        "rungs": list(rung_epochs),
        "reduction": reduction,
        "best_final_acc": max(table.finals),
        "difficulty": difficulty(table, rung_epochs[0]),
        "difficulty_epoch_1": difficulty(table, 1),
        "trials": plan_args["trials"],
        "orders": plan_args["orders"],
        "bootstrap": plan_args["bootstrap"],
        "bootstrap_orders": plan_args["per_replicate"],
        "seed": plan_args["seed"],
        "startup_trials": startup,
        "rows": rows,
        "goal": goal_check(rows),
        "control": control_check(rows),
        "anytime": anytime,
        "command": command,
    }
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    json_path, md_path = result_paths(out_dir, label or table.meta.get("device", "unknown"))
    write_results(result, json_path, md_path)
    return json_path, md_path
