"""What a study and a trial record, written down once: kinds, attribute keys and shared queries.

Every ``study.*`` command reads and writes these names only through this module, so a study
made by one command reads the same in all the others (status, report, dashboard).
Imports nothing heavy (no torch): the commands' ``--help`` and input checks use it.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


class StudyKind(enum.StrEnum):
    """What made a study."""

    SEARCH = "search"  # python -m study.run
    RERUN = "rerun"  # python -m study.rerun: NAME-rerun
    ABLATION = "ablation"  # python -m study.ablate: NAME-ablation
    OTHER = "-"  # made by something else


class StudyAttrs:
    """User-attribute keys of a study."""

    KIND = "kind"
    SETTINGS = "settings"  # a search's SearchSettings.to_dict()
    CREATED = "created"  # ISO time, UTC
    CODE_VERSION = "code_version"
    PACKAGES = "packages"
    SOURCE_STUDY = "source_study"  # rerun and ablation: the search they come from
    # ablation
    BASE = "base"  # "best" or "recipe"
    BASE_TRIAL = "base_trial"
    BASE_CONFIG = "base_config"
    EPOCHS = "epochs"
    DATASET = "dataset"
    VAL_SIZE = "val_size"
    FACTORS = "factors"
    SKIPPED = "skipped"
    SEEDS = "seeds"
    PATH = "path"
    PATH_TARGET = "path_target"
    PATH_TARGET_TRIAL = "path_target_trial"
    # a search study's summary of a rerun of one of its trials
    RERUN_PREFIX = "rerun_trial"
    # the last few commands run on the study (Invocation dicts, oldest first, password masked),
    # so that suggested commands can repeat the flags a run was started with
    COMMANDS = "commands"

    @staticmethod
    def rerun_summary(trial_number: int, epochs: int) -> str:
        return f"rerun_trial{trial_number}_e{epochs}"


class TrialAttrs:
    """User-attribute keys of a trial (search, rerun and ablation alike)."""

    CONFIG = "config"  # the full flat TrainConfig
    NUM_PARAMS = "num_params"
    DEVICE = "device"
    DEVICE_NAME = "device_name"
    EPOCH_SECONDS = "epoch_seconds"  # one per epoch trained, resumed epochs once
    IMAGES_PER_S = "images_per_s"
    HISTORY = "history"  # per-epoch EpochStats dicts, at the end
    BEST_ACC = "best_acc"
    BEST_EPOCH = "best_epoch"
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    CHECKPOINT = "checkpoint"
    FIRST_ATTEMPT = "first_attempt"  # the trial number whose checkpoint every retry shares
    # where the trial runs, for dead-worker recovery on the same host
    HOST = "host"
    PID = "pid"
    PID_START = "pid_start"
    SAMPLER_SEED = "sampler_seed"
    # how it ended, if not complete
    PRUNED_REASON = "pruned_reason"
    FAIL_REASON = "fail_reason"
    FAIL_TRACEBACK = "fail_traceback"
    PREVIOUS_FAILURE = "previous_failure"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C/SIGTERM; queued, not a failure
    CHECKPOINT_DISCARDED = "checkpoint_discarded"  # why a bad checkpoint was set aside
    # rerun
    SOURCE_TRIAL = "source_trial"
    SEED = "seed"
    TEST_ACC = "test_acc"
    # ablation
    VARIANT = "variant"
    CHANGED = "changed"  # key -> [from, to]
    # the lifecycle's key for a planned run (rerun / ablation): one trial per key
    RUN_KEY = "run_key"


@dataclass(frozen=True)
class SearchSettings:
    """What a search pins: a resumed study must keep the ``PINNED`` ones."""

    space: dict[str, Any]
    fixed: dict[str, Any]
    epochs: int
    recipe_epochs: int
    dataset: str
    val_size: int
    seed: int
    pruner: str = "median"
    sampler: str = "tpe"
    extra: dict[str, Any] = field(default_factory=dict)

    PINNED = ("space", "fixed", "epochs", "dataset", "val_size", "seed")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d.pop("extra"), **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSettings:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            **{k: v for k, v in d.items() if k in known},
            extra={k: v for k, v in d.items() if k not in known},
        )

    def changed_from(self, recorded: Mapping[str, Any]) -> list[str]:
        """One phrase per pinned setting this differs from ``recorded`` in, naming both."""
        mine = self.to_dict()
        return [
            f"{k}={_short(recorded[k])}; this command asks for {k}={_short(mine[k])}"
            for k in self.PINNED
            if k in recorded and recorded[k] != mine[k]
        ]


def _short(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:  # a space definition: its name says enough
        return f"the space {value['name']!r} as then defined"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def study_kind(user_attrs: Mapping[str, Any]) -> str:
    """What made a study: "search", "ablation", "rerun", or "-" (something else)."""
    kind = user_attrs.get(StudyAttrs.KIND)
    return kind if isinstance(kind, str) else StudyKind.OTHER.value


def device_kind(devices: Iterable[str]) -> str:
    """What summed epoch times were spent on: "GPU", "CPU" or, mixed or unknown, "device"."""
    kinds = {str(d).split(":")[0] for d in devices}
    return {frozenset({"cuda"}): "GPU", frozenset({"cpu"}): "CPU"}.get(frozenset(kinds), "device")


def trial_devices(trials: Iterable[FrozenTrial]) -> set[str]:
    """The devices the trials recorded (a trial that never started records none)."""
    key = TrialAttrs.DEVICE
    return {str(t.user_attrs[key]) for t in trials if key in t.user_attrs}


def trial_seconds(trial: FrozenTrial) -> float:
    """Device seconds a trial has spent: its per-epoch times, however it ended, each epoch once.

    ``epoch_seconds`` holds the epochs this attempt trained (a resumed attempt's restored
    epochs were counted by the attempt that trained them); ``history`` (recorded at the end,
    restored epochs included) is the fallback for trials that have no ``epoch_seconds``.
    """
    seconds = trial.user_attrs.get(TrialAttrs.EPOCH_SECONDS)
    if seconds is not None:
        return float(sum(seconds))
    history = trial.user_attrs.get(TrialAttrs.HISTORY) or []
    return float(sum(epoch.get("seconds", 0.0) for epoch in history))


def best_trial(
    trials: Iterable[FrozenTrial],
    direction: optuna.study.StudyDirection = optuna.study.StudyDirection.MAXIMIZE,
) -> FrozenTrial | None:
    """The best complete trial with a value, or None."""
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


STATE_NAMES = tuple(s.name.lower() for s in TrialState)


def counts_by_state(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials per state name in lower case ("complete", "pruned", "fail", ...), zeros kept."""
    counts = dict.fromkeys(STATE_NAMES, 0)
    for t in trials:
        counts[t.state.name.lower()] += 1
    return counts


class NoSuchStudyError(LookupError):
    """A study name the storage does not hold; the message lists the ones it does."""

    def __init__(self, name: str, names: Sequence[str]) -> None:
        super().__init__(
            f"no study {name!r} in the storage (studies: {', '.join(names) or 'none'})"
        )


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def require_study(storage: optuna.storages.BaseStorage, name: str) -> list[str]:
    """The storage's study names; raises NoSuchStudyError if ``name`` is not among them."""
    names = study_names(storage)
    if name not in names:
        raise NoSuchStudyError(name, names)
    return names


def is_failure(trial: FrozenTrial) -> bool:
    """A failed attempt that really failed, not one interrupted by Ctrl-C/SIGTERM (queued to
    resume)."""
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(TrialAttrs.INTERRUPTED)


def failures(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_failure(t)]


COMMANDS_KEPT = 5  # invocations kept on a study, the latest last


@dataclass(frozen=True)
class Invocation:
    """One command run on a study: ``python -m {command} {argv}`` (password masked)."""

    command: str  # "study.run", "study.rerun", "study.ablate"
    argv: list[str]
    at: str  # ISO time, UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Invocation:
        return cls(str(d.get("command", "")), [str(a) for a in d.get("argv", [])], str(d["at"]))

    def shell(self) -> str:
        """The command line, quoted for a POSIX shell."""
        import shlex

        return shlex.join(["python", "-m", self.command, *self.argv])


def masked_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with every URL's password (and any other copy of it) replaced by ***."""
    from study.storage import redact

    passwords: set[str] = set()
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if "://" in value:
            masked = redact(value)
            if masked != value and "***" in masked:
                head, tail = masked.split("***", 1)
                passwords.add(value[len(head) : len(value) - len(tail)])
            value = masked
        out.append(f"{flag}{eq}{value}")
    for password in passwords - {""}:
        out = [a.replace(password, "***") for a in out]
    return out


def invocations(user_attrs: Mapping[str, Any]) -> list[Invocation]:
    """The commands recorded on a study, oldest first (none for studies made before)."""
    recorded = user_attrs.get(StudyAttrs.COMMANDS)
    if not isinstance(recorded, list):
        return []
    return [Invocation.from_dict(d) for d in recorded if isinstance(d, dict) and "at" in d]


def record_command(study: optuna.Study, command: str, argv: Sequence[str]) -> Invocation:
    """Append this command (password masked) to the study's last ``COMMANDS_KEPT``."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    this = Invocation(command, masked_argv(argv), now)
    kept = [i.to_dict() for i in invocations(study.user_attrs)][-(COMMANDS_KEPT - 1) :]
    study.set_user_attr(StudyAttrs.COMMANDS, [*kept, this.to_dict()])
    return this
