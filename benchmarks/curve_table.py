"""A table of complete learning curves for the replay: read from a JSON table that
``benchmarks.search_quality`` trained, or from a study storage of this harness (an Optuna
SQLite file of searches run with ``--pruner none``), with how hard it is to rank early.

A study storage gives each complete trial's per-epoch validation accuracy (its intermediate
values) and per-epoch seconds (read through ``study.records``); a JSON table gives the curve
and the trial's total seconds, spread evenly over its epochs, unless it has ``epoch_seconds``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import kendalltau

from benchmarks.search_quality import TABLE_KIND, UsageError
from study.records import (
    SearchSettings,
    StudyAttrs,
    StudyKind,
    TrialAttrs,
    recorded_config,
    study_names,
)

SQLITE_MAGIC = b"SQLite format 3\x00"
SEARCH = StudyKind.SEARCH.value


@dataclass(frozen=True)
class CurveTable:
    """Configurations' full curves: ``curves[i][e - 1]`` is config i's accuracy after epoch e,
    ``seconds[i][e - 1]`` what that epoch cost."""

    curves: tuple[tuple[float, ...], ...]
    seconds: tuple[tuple[float, ...], ...]
    epochs: int
    warmup_frac: float
    meta: dict[str, Any] = field(default_factory=dict)  # where it came from, for the results

    @property
    def finals(self) -> list[float]:
        return [c[-1] for c in self.curves]

    def to_json(self) -> dict[str, Any]:
        """The JSON table form (``read_curve_table`` reads it back, per-epoch seconds kept)."""
        trials = [
            {"curve": list(c), "seconds": round(sum(s), 3), "epoch_seconds": list(s)}
            for c, s in zip(self.curves, self.seconds, strict=True)
        ]
        head = {"kind": TABLE_KIND, "epochs": self.epochs, "warmup_frac": self.warmup_frac}
        return {**self.meta, **head, "configs": len(trials), "trials": trials}


def read_curve_table(path: Path) -> CurveTable:
    """The table at ``path``: a study storage (SQLite) or a JSON table; UsageError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    with path.open("rb") as f:
        is_sqlite = f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    return _from_storage(path) if is_sqlite else _from_json(path)


def _from_json(path: Path) -> CurveTable:
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a JSON table ({type(err).__name__})") from None
    if not isinstance(table, dict) or table.get("kind") != TABLE_KIND:
        raise UsageError(f"{path}: not a search-quality table (kind {TABLE_KIND!r})")
    epochs = table.get("epochs")
    trials = table.get("trials", [])
    curves = [t.get("curve") if isinstance(t, dict) else None for t in trials]
    if len(curves) < 2 or any(not isinstance(c, list) or len(c) != epochs for c in curves):
        raise UsageError(f"{path}: needs at least 2 trials, each with a curve of {epochs} epochs")
    # an older table has each trial's total seconds only: spread evenly over its epochs
    seconds = [
        t.get("epoch_seconds") or [t.get("seconds", epochs) / epochs] * epochs for t in trials
    ]
    meta = {k: v for k, v in table.items() if k not in ("trials", "kind", "epochs")}
    meta["table"] = str(path)
    return CurveTable(
        curves=tuple(tuple(map(float, c)) for c in curves),
        seconds=tuple(tuple(map(float, s)) for s in seconds),
        epochs=int(epochs),
        warmup_frac=float(table["warmup_frac"]),
        meta=meta,
    )


def _optuna_tables(path: Path) -> set[str]:
    """The tables of the SQLite file, read-only (Optuna would add its own to any other)."""
    try:
        with closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        return set()


def _from_storage(path: Path) -> CurveTable:
    """Every complete trial of every study in the storage, which must share one schedule."""
    if not {"studies", "trials", "version_info"} <= _optuna_tables(path):
        raise UsageError(f"{path}: an SQLite file, but not a study storage")
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    curves, seconds, schedules, studies, devices = [], [], set(), {}, set()
    for study in search_studies(storage):
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for trial in done:
            epochs, frac, curve, secs = trial_curve(trial)
            if curve is None:
                continue
            schedules.add((epochs, frac))
            curves.append(curve)
            seconds.append(secs)
            devices.add(str(trial.user_attrs.get(TrialAttrs.DEVICE_NAME, "unknown")))
        settings = SearchSettings.of(study.user_attrs)
        studies[study.study_name] = {
            "configs": len(done),
            "sampler": settings.sampler if settings else None,
            "space": settings.space.name if settings else None,
        }
    if len(curves) < 2 or len(schedules) != 1:
        raise UsageError(
            f"{path}: needs at least 2 complete trials with full curves, all of one schedule "
            f"(found {len(curves)}, schedules {sorted(schedules)})"
        )
    ((epochs, frac),) = schedules
    meta = {"table": str(path), "studies": studies, "device": " + ".join(sorted(devices))}
    from benchmarks.seed_spread import seed_spread_of  # it reads the table's searches from here

    spread = seed_spread_of(storage)
    if spread is not None:
        meta["seed_spread"] = spread
    return CurveTable(tuple(curves), tuple(seconds), epochs, frac, meta)


def search_studies(storage: optuna.storages.BaseStorage) -> list[optuna.Study]:
    """The storage's searches, whose trials are the table's configurations: not the
    seed-spread study (``benchmarks.seed_spread``) nor a rerun or ablation made beside them
    (a study with no kind recorded counts as a search)."""
    studies = [optuna.load_study(study_name=n, storage=storage) for n in study_names(storage)]
    return [s for s in studies if s.user_attrs.get(StudyAttrs.KIND, SEARCH) == SEARCH]


def trial_curve(
    trial: FrozenTrial,
) -> tuple[int, float, tuple[float, ...] | None, tuple[float, ...]]:
    """A trial's schedule, curve and per-epoch seconds (curve None if it lacks any epoch)."""
    config = recorded_config(trial)
    epochs, frac = int(config.get("epochs", 0)), float(config.get("warmup_frac", 0.0))
    values = trial.intermediate_values
    secs = trial.user_attrs.get(TrialAttrs.EPOCH_SECONDS) or []
    if epochs < 1 or sorted(values) != list(range(1, epochs + 1)) or len(secs) != epochs:
        return epochs, frac, None, ()
    return epochs, frac, tuple(values[e] for e in range(1, epochs + 1)), tuple(map(float, secs))


def subset(table: CurveTable, indices: Sequence[int]) -> CurveTable:
    """The table of the configurations at ``indices`` (repeats allowed: a bootstrap draw)."""
    return CurveTable(
        tuple(table.curves[i] for i in indices),
        tuple(table.seconds[i] for i in indices),
        table.epochs,
        table.warmup_frac,
        table.meta,
    )


def difficulty(table: CurveTable, rung: int) -> dict[str, Any]:
    """How hard the table is to rank at epoch ``rung``: Kendall tau between the configurations'
    ranking there and their final ranking, and how many finish above the one leading there."""
    at_rung = [c[rung - 1] for c in table.curves]
    finals = table.finals
    leader = max(range(len(at_rung)), key=lambda i: (at_rung[i], -i))
    best = max(finals)
    return {
        "rung": rung,
        "kendall_tau": round(float(kendalltau(at_rung, finals).statistic), 4),
        "overtake_rung_leader": sum(f > finals[leader] for f in finals),
        "rung_leader_final": finals[leader],
        "best_final": best,
        "best_rank_at_rung": sorted(at_rung, reverse=True).index(at_rung[finals.index(best)]) + 1,
        "configs": len(finals),
    }
