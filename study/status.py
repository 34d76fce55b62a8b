"""``python -m study.status``: the studies in a storage, their trials by state, best and cost.

python -m study.status                                  # sqlite:///studies/wrn.db
python -m study.status --storage sqlite:///studies/smoke.db
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from study.chance import AT_CHANCE, trial_chance_note
from study.cli import Parser, add_storage_flag, command_parser, run_command
from study.records import (
    PromotionCounts,
    RerunPoint,
    StudyKind,
    Tally,
    best_trial,
    chosen_rerun,
    device_kind,
    dropped_text,
    is_measured,
    promotion_counts,
    recorded_epochs,
    rerun_points,
    source_study,
    study_kind,
    tally,
    trial_devices,
    trial_seconds,
)
from study.storage import open_storage, redact

STATE_COLUMNS = ("complete", "pruned", "fail", "running", "waiting")


def build_parser() -> Parser:
    p = command_parser("study.status", __doc__)
    add_storage_flag(p)
    return p


@dataclass
class RunningTrial:
    number: int
    epochs_done: int
    epochs: int | None
    last_value: float | None
    started: datetime.datetime | None


@dataclass
class StudyRow:
    name: str
    kind: str
    counts: dict[str, int]
    best_value: float | None
    best_number: int | None
    seconds: float
    running: list[RunningTrial] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)  # what the hours ran on
    measured: bool = True  # every trial recorded what it consumed (else wall clock counts)
    at_chance: bool = False  # the best is no better than guessing (study.chance)
    # a NAME-rerun study's result, shown instead of its best (a maximum over test scores)
    rerun: RerunPoint | None = None
    dropped: str = ""  # configurations the retry limit dropped ("" if none)
    promotions: PromotionCounts | None = None  # a --pruner promote search's


def _running(trials: Sequence[FrozenTrial]) -> list[RunningTrial]:
    return [
        RunningTrial(
            number=t.number,
            epochs_done=len(t.intermediate_values),
            epochs=recorded_epochs(t),
            last_value=(
                t.intermediate_values[max(t.intermediate_values)]
                if t.intermediate_values
                else None
            ),
            started=t.datetime_start,
        )
        for t in trials
        if t.state == TrialState.RUNNING
    ]


def _tally(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> Tally:
    """Trials by state (an attempt stopped by Ctrl-C/SIGTERM is queued, not failed) and the best.

    A multi-objective study (this harness makes none) has no single best: its complete trials
    are counted without one.
    """
    if len(directions) == 1:
        return tally(trials, directions[0])
    rest = tally(t for t in trials if t.state != TrialState.COMPLETE)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    return Tally({**rest.by_state, "complete": complete}, rest.interrupted, None)


def _rerun_result(
    storage: optuna.storages.BaseStorage,
    summary: optuna.study.StudySummary,
    trials: Sequence[FrozenTrial],
) -> RerunPoint | None:
    """The rerun chosen on validation (the search's best trial, if rerun): its final-epoch test
    accuracy per seed at the longest length."""
    try:
        search = storage.get_all_trials(
            storage.get_study_id_from_name(source_study(summary.user_attrs) or ""),
            deepcopy=False,
        )
    except KeyError:  # the search study is gone: no validation value to choose by
        return None
    best = best_trial(search)
    return chosen_rerun(rerun_points(search, trials), None if best is None else best.number)


def collect(storage: optuna.storages.BaseStorage) -> list[StudyRow]:
    rows = []
    for summary in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        study_id = storage.get_study_id_from_name(summary.study_name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        counted = _tally(trials, summary.directions)
        best = counted.best
        kind = study_kind(summary.user_attrs)
        rows.append(
            StudyRow(
                name=summary.study_name,
                kind=kind,
                counts={state: counted.by_state[state] for state in STATE_COLUMNS},
                best_value=None if best is None else best.value,
                best_number=None if best is None else best.number,
                seconds=sum(trial_seconds(t) for t in trials),
                devices=trial_devices(trials),
                measured=all(is_measured(t) for t in trials),
                at_chance=best is not None and bool(trial_chance_note(best)),
                running=_running(trials),
                rerun=_rerun_result(storage, summary, trials) if kind == StudyKind.RERUN else None,
                dropped=dropped_text(summary.user_attrs),
                promotions=promotion_counts(trials),
            )
        )
    return rows


def hours_unit(rows: Sequence[StudyRow]) -> str:
    """GPU, CPU or (mixed) device: what the summed hours were consumed on."""
    return device_kind(d for row in rows for d in row.devices)


def hours_meaning(rows: Sequence[StudyRow]) -> str:
    """What the hours column measured, in words."""
    unit = hours_unit(rows)
    what = {
        "GPU": "the GPU time of each trial's steps and evaluation (CUDA events)",
        "CPU": "each trial's process CPU time",
    }.get(unit, "GPU time on CUDA, process CPU time on CPU")
    if not all(row.measured for row in rows):
        what += "; wall-clock epoch times for trials recorded before that was measured"
    return f"({unit}-h: {what})"


def format_table(rows: Sequence[StudyRow]) -> str:
    """Plain aligned columns: text left, numbers right."""
    header = ("study", "kind", *STATE_COLUMNS, "best", "trial", f"{hours_unit(rows)}-h")
    body = [
        (
            row.name,
            row.kind,
            *(str(row.counts[s]) for s in STATE_COLUMNS),
            *_best_cells(row),
            f"{row.seconds / 3600:.3f}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    left = {0, 1}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)])


def _best_cells(row: StudyRow) -> tuple[str, str]:
    """The best value and its trial; for a rerun study its result (RERUN_NOTE) instead."""
    if row.kind == StudyKind.RERUN:
        return ("-", "-") if row.rerun is None else (row.rerun.result(), str(row.rerun.trial))
    if row.best_value is None or row.best_number is None:
        return "-", "-"
    return f"{row.best_value:.4f}{'*' * row.at_chance}", str(row.best_number)


RERUN_NOTE = (
    "(a rerun's best: the final-epoch test accuracy, mean ± std over seeds, at the longest "
    "length, of the search trial in its trial column: the search's best if rerun, else the "
    "rerun one best on validation; never a maximum over seeds or epochs)"
)


def format_running(rows: Sequence[StudyRow], now: datetime.datetime | None = None) -> list[str]:
    # Optuna stores naive local times, so compare with a naive local now
    now = now or datetime.datetime.now()
    lines = []
    for row in rows:
        for r in row.running:
            epochs = f"epoch {r.epochs_done}/{r.epochs}" if r.epochs else f"{r.epochs_done} epochs"
            value = "" if r.last_value is None else f", last value {r.last_value:.4f}"
            since = ""
            if r.started is not None:
                minutes = max(0.0, (now - r.started).total_seconds() / 60)
                since = f", started {minutes:.0f} min ago"
            lines.append(f"  {row.name} trial {r.number}: {epochs}{value}{since}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # status only reads: a read-only file is opened without a write (and without refusal)
    storage = open_storage(args.storage, create=False, read_only=True)
    rows = collect(storage)
    if not rows:
        print(f"{redact(args.storage)}: no studies yet")
        return 0
    total = sum(r.seconds for r in rows) / 3600
    unit = hours_unit(rows)
    print(f"{redact(args.storage)}: {len(rows)} studies, {total:.3f} {unit}-hours")
    print(format_table(rows))
    for row in rows:
        if row.dropped:
            print(f"{row.name}: {row.dropped}")
        if row.promotions is not None:
            print(f"{row.name}: {row.promotions.describe()}")
    running = format_running(rows)
    print(f"running now: {len(running) or 'none'}")
    for text in running:
        print(text)
    if any(row.at_chance for row in rows):
        print(f"(*: {AT_CHANCE})")
    print(hours_meaning(rows))
    if any(r.kind == StudyKind.RERUN for r in rows):
        print(RERUN_NOTE)
    return 0


if __name__ == "__main__":
    run_command("python -m study.status", main)
