"""The acceptance run's targets and its JSON and markdown writers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.throughput_core import slug
from wrn.network import network_name

REPORT_KEYS = (
    "throughput",
    "trial_start_s",
    "process_warmup_s",
    "trial_start_errors",
    "memory_over_trials",
    "checkpoint_overhead_frac",
    "checkpoint_overhead",
    "kill_resume",
    "real_data",
)


# -------------------------------------------------------------------------------- targets


def row_value(report: dict[str, Any], model: str, path: str, key: str = "images_per_s") -> Any:
    for row in report.get("throughput") or []:
        if row["model"] == model and row["path"] == path:
            return row.get(key)
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _get(report: dict[str, Any], *keys: str) -> Any:
    value: Any = report
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


# (name, what, comparison, threshold, value from the report)
TARGETS: list[tuple[str, str, str, float, Callable[[dict[str, Any]], Any]]] = [
    (
        "wrn28_10_images_per_s",
        "WRN-28-10 gpu path, images/s",
        ">=",
        10_000,
        lambda r: row_value(r, "wrn28_10", "gpu"),
    ),
    (
        "wrn28_10_vs_seed",
        "WRN-28-10 gpu path / seed-style loop",
        ">=",
        3.0,
        lambda r: _ratio(
            row_value(r, "wrn28_10", "gpu"), row_value(r, "wrn28_10", "seed-baseline")
        ),
    ),
    (
        "light_images_per_s",
        "WRN-16-8 gpu path, images/s",
        ">=",
        30_000,
        lambda r: row_value(r, "light", "gpu"),
    ),
    (
        "wrn28_10_gpu_vs_model_only",
        "WRN-28-10 gpu path / model-only (within 5 %)",
        ">=",
        0.95,
        lambda r: _ratio(row_value(r, "wrn28_10", "gpu"), row_value(r, "wrn28_10", "model-only")),
    ),
    (
        "light_gpu_vs_model_only",
        "WRN-16-8 gpu path / model-only (within 5 %)",
        ">=",
        0.95,
        lambda r: _ratio(row_value(r, "light", "gpu"), row_value(r, "light", "model-only")),
    ),
    (
        "checkpoint_overhead_frac",
        "extra epoch time, checkpoint every epoch (WRN-28-10)",
        "<=",
        0.02,
        lambda r: r.get("checkpoint_overhead_frac"),
    ),
    (
        "trial_start_s",
        "trial start to first optimiser step, s (slowest recipe)",
        "<",
        3.0,
        lambda r: max(r["trial_start_s"].values()) if r.get("trial_start_s") else None,
    ),
    (
        "memory_flat",
        "memory flat over 20 consecutive trials",
        "==",
        True,
        lambda r: _get(r, "memory_over_trials", "flat"),
    ),
    (
        "trials_lost",
        "trials lost to SIGKILL and restart",
        "==",
        0,
        lambda r: _get(r, "kill_resume", "trials_lost"),
    ),
    (
        "resumed_values_equal",
        "resumed trial's values = uninterrupted run's (within tolerance)",
        "==",
        True,
        lambda r: _get(r, "kill_resume", "values_equal"),
    ),
    (
        "fashion_test_acc",
        "Fashion-MNIST test accuracy, WRN-16-8",
        ">=",
        0.95,
        lambda r: _get(r, "real_data", "test_acc"),
    ),
]
COMPARE = {
    ">=": lambda v, t: v >= t,
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    "==": lambda v, t: v == t,
}


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its value and whether it passed (None: not measured)."""
    checks = []
    for name, what, op, threshold, value_of in TARGETS:
        try:
            value = value_of(report)
        except (KeyError, TypeError, ValueError):
            value = None
        passed = None if value is None else bool(COMPARE[op](value, threshold))
        checks.append(
            {
                "name": name,
                "what": what,
                "target": f"{op} {threshold}",
                "value": value,
                "passed": passed,
            }
        )
    return checks


# ------------------------------------------------------------------------------- output


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def all_errors(report: dict[str, Any]) -> dict[str, str]:
    """The parts' errors, then each failed throughput row's and trial start's."""
    failed_rows = {
        f"throughput {row['model']} {row['path']}": row["error"]
        for row in report.get("throughput") or []
        if row.get("error")
    }
    failed_starts = {
        f"trial start {model}": error
        for model, error in (report.get("trial_start_errors") or {}).items()
    }
    return {**report["errors"], **failed_rows, **failed_starts}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Acceptance: {report['device']}",
        "",
        f"`{report['command']}` on {report['date']} (torch {report['torch']}), "
        f"{report['elapsed_s']:.0f} s of the {report['budget_s']} s budget.",
    ]
    if report["quick"]:
        lines += ["", "**Quick run**: tiny stand-ins; the numbers only show the code works."]
    passed = sum(t["passed"] is True for t in report["targets"])
    lines += [
        "",
        f"## Targets: {passed} of {len(report['targets'])} passed",
        "",
        "| target | value | goal | pass |",
        "| --- | ---: | ---: | --- |",
    ]
    for t in report["targets"]:
        mark = {True: "yes", False: "**no**", None: "not measured"}[t["passed"]]
        lines.append(f"| {t['what']} | {_num(t['value'])} | {t['target']} | {mark} |")
    lines += [
        "",
        "## Throughput",
        "",
        "| model | net | path | images/s | MFU | peak mem GB | GPU idle |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in report.get("throughput") or []:
        net = network_name(row["depth"], row["width"]) if row.get("depth") else "–"
        gb = row.get("peak_mem_gb")
        speed = "error" if row.get("error") else _num(row.get("images_per_s"))
        lines.append(
            f"| {row['model']} | {net} | {row['path']} | {speed} "
            f"| {_pct(row.get('mfu'))} | {'–' if gb is None else f'{gb:.2f}'} "
            f"| {_pct(row.get('gpu_idle_frac'))} |"
        )
    lines += ["", "## Details", ""]
    for key in REPORT_KEYS[1:]:
        value = report.get(key)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not isinstance(v, list) or len(v) <= 8}
        lines.append(f"- `{key}`: `{json.dumps(value, default=str)}`")
    errors = all_errors(report)
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- `{part}`: {message}" for part, message in errors.items()]
    lines += ["", "## Parts", "", "| part | seconds | budget s | status |"]
    lines += ["| --- | ---: | ---: | --- |"]
    for part, info in report["parts"].items():
        lines.append(
            f"| {part} | {info['seconds']:.1f} | {info['budget_s']:.0f} | {info['status']} |"
        )
    return "\n".join(lines) + "\n"


def report_paths(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    stem = f"{report['date']}-{slug(report['device'])}-acceptance"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Targets refreshed, then the JSON and markdown written (each via a temporary file)."""
    report["targets"] = check_targets(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = report_paths(report, out_dir)
    texts = {json_path: json.dumps(report, indent=2) + "\n", md_path: markdown(report)}
    for path, text in texts.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path, md_path


def merge(report: dict[str, Any], result: dict[str, Any]) -> None:
    """A part's result into the report; throughput rows add to those already there."""
    for key, value in result.items():
        if key == "throughput":
            report["throughput"] = (report.get("throughput") or []) + list(value)
        else:
            report[key] = value
