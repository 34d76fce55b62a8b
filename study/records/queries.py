"""The shared queries over a study's trials: by state, best, failures, cost."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.errors import NoSuchStudyError
from study.records.keys import TrialAttrs


def device_kind(devices: Iterable[str]) -> str:
    """What the compute was spent on: "GPU", "CPU" or, mixed or unknown, "device"."""
    kinds = {str(d).split(":")[0] for d in devices}
    return {frozenset({"cuda"}): "GPU", frozenset({"cpu"}): "CPU"}.get(frozenset(kinds), "device")


def trial_devices(trials: Iterable[FrozenTrial]) -> set[str]:
    """The devices the trials recorded (a trial that never started records none)."""
    key = TrialAttrs.DEVICE
    return {str(t.user_attrs[key]) for t in trials if key in t.user_attrs}


def wall_seconds(trial: FrozenTrial) -> float:
    """Wall-clock seconds of a trial's epochs, however it ended, each epoch once.

    ``epoch_seconds`` holds the epochs this attempt trained (a resumed attempt's restored
    epochs were counted by the attempt that trained them); ``history`` (recorded at the end,
    restored epochs included) is the fallback for trials that have no ``epoch_seconds``.
    """
    seconds = trial.user_attrs.get(TrialAttrs.EPOCH_SECONDS)
    if seconds is not None:
        return float(sum(seconds))
    history = trial.user_attrs.get(TrialAttrs.HISTORY) or []
    return float(sum(epoch.get("seconds", 0.0) for epoch in history))


def is_measured(trial: FrozenTrial) -> bool:
    """Whether the trial recorded what its epochs consumed (or trained none): else its cost
    can only be its wall-clock time, which load and shared GPUs inflate."""
    attrs = trial.user_attrs
    return TrialAttrs.EPOCH_COMPUTE_SECONDS in attrs or not attrs.get(TrialAttrs.EPOCH_SECONDS)


def epoch_compute(trial: FrozenTrial) -> list[float]:
    """Per epoch this attempt trained: the compute it consumed (GPU seconds on CUDA, CPU
    seconds on CPU), or for an unmeasured trial its wall-clock seconds."""
    attrs = trial.user_attrs
    values = attrs.get(TrialAttrs.EPOCH_COMPUTE_SECONDS)
    if values is None:
        values = attrs.get(TrialAttrs.EPOCH_SECONDS) or []
    return [float(v) for v in values]


def trial_seconds(trial: FrozenTrial) -> float:
    """The compute a trial consumed, each epoch once: the GPU seconds of its work on CUDA, its
    process's CPU seconds on CPU (``wrn.compute``); wall clock where it was not measured."""
    if TrialAttrs.EPOCH_COMPUTE_SECONDS in trial.user_attrs:
        return float(sum(epoch_compute(trial)))
    return wall_seconds(trial)


def compute_unit(trials: Iterable[FrozenTrial]) -> str:
    """What summed ``trial_seconds`` are: "GPU-seconds" or "CPU-seconds" when measured, with
    "(wall clock)" when some trial could only count wall time; "device" when mixed."""
    trials = list(trials)
    unit = f"{device_kind(trial_devices(trials))}-seconds"
    return unit if all(is_measured(t) for t in trials) else f"{unit} (wall clock)"


def best_trial(
    trials: Iterable[FrozenTrial],
    direction: optuna.study.StudyDirection = optuna.study.StudyDirection.MAXIMIZE,
) -> FrozenTrial | None:
    """The best complete trial with a value (the earliest of equals), or None."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    if direction == optuna.study.StudyDirection.MINIMIZE:
        return min(complete, key=lambda t: t.value)
    return max(complete, key=lambda t: t.value)


def top_trials(trials: Iterable[FrozenTrial], k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials with a recorded config (maximised value), best first."""
    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.value is not None
        and TrialAttrs.CONFIG in t.user_attrs
    ]
    return sorted(complete, key=lambda t: (-t.value, t.number))[:k]


def is_failure(trial: FrozenTrial) -> bool:
    """A failed attempt that really failed, not one interrupted by Ctrl-C/SIGTERM (queued to
    resume) nor a draw over the cost cap (redrawn, never trained)."""
    if trial.state != TrialState.FAIL or TrialAttrs.REJECTED_DRAW in trial.user_attrs:
        return False
    return not trial.user_attrs.get(TrialAttrs.INTERRUPTED)


def is_random_draw(trial: FrozenTrial) -> bool:
    """A search trial whose parameters were drawn at random (TPE's startup, or the random
    sampler); False for a trial recorded before this was (not known)."""
    return bool(trial.user_attrs.get(TrialAttrs.RANDOM_DRAW))


def is_rejected_draw(trial: FrozenTrial) -> bool:
    """A draw over the space's cost cap, recorded and drawn again, never trained."""
    return TrialAttrs.REJECTED_DRAW in trial.user_attrs


def failures(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_failure(t)]


STATE_NAMES = tuple(s.name.lower() for s in TrialState)  # running, complete, pruned, ...


@dataclass(frozen=True)
class Tally:
    """A study's trials by state and its best: what status, notes, reports and summaries show.

    ``by_state["fail"]`` counts real failures only: an attempt stopped by Ctrl-C/SIGTERM is
    queued to resume and counted in ``interrupted`` instead, a draw over the cost cap in
    ``rejected``. ``queued``: the interrupted attempts whose retry still waits (WAITING).
    """

    by_state: dict[str, int]
    interrupted: int
    best: FrozenTrial | None
    rejected: int = 0
    queued: int = 0

    def describe(self, states: Sequence[str] = STATE_NAMES, empty: str = "no trials") -> str:
        """ "3 complete, 1 pruned": the ``states`` that have trials, in that order; without
        "waiting" among them, "1 interrupted (queued to resume)" for ``queued``."""
        parts = [f"{self.by_state[s]} {s}" for s in states if self.by_state[s]]
        if self.queued and "waiting" not in states:
            parts.append(f"{self.queued} interrupted (queued to resume)")
        return ", ".join(parts) or empty


def tally(
    trials: Iterable[FrozenTrial],
    direction: optuna.study.StudyDirection = optuna.study.StudyDirection.MAXIMIZE,
) -> Tally:
    """The one query for "trials by state" and "best"."""
    trials = list(trials)
    by_state = dict.fromkeys(STATE_NAMES, 0)
    interrupted: set[int] = set()
    rejected = 0
    for t in trials:
        if is_rejected_draw(t):
            rejected += 1
        elif t.state == TrialState.FAIL and not is_failure(t):
            interrupted.add(t.number)
        else:
            by_state[t.state.name.lower()] += 1
    queued = sum(
        t.state == TrialState.WAITING and t.user_attrs.get(TrialAttrs.RETRY_OF) in interrupted
        for t in trials
    )
    best = best_trial(trials, direction)
    return Tally(by_state, len(interrupted), best, rejected, queued)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def require_study(storage: optuna.storages.BaseStorage, name: str) -> list[str]:
    """The storage's study names; raises NoSuchStudyError if ``name`` is not among them."""
    names = study_names(storage)
    if name not in names:
        raise NoSuchStudyError(name, names)
    return names
