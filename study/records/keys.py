"""The names a study and a trial record under: study kinds and attribute keys."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial


class StudyKind(enum.StrEnum):
    """What made a study."""

    SEARCH = "search"  # python -m study.run
    RERUN = "rerun"  # python -m study.rerun: NAME-rerun
    ABLATION = "ablation"  # python -m study.ablate: NAME-ablation
    OTHER = "-"  # made by something else


def derived_name(source: str, kind: StudyKind) -> str:
    """The study a rerun or an ablation of ``source`` records into: ``NAME-rerun``,
    ``NAME-ablation``."""
    return f"{source}-{kind.value}"


class StudyAttrs:
    """User-attribute keys of a study (an ablation's own are ``AblationSettings``' fields)."""

    KIND = "kind"
    SETTINGS = "settings"  # a search's SearchSettings.to_dict()
    CREATED = "created"  # ISO time, UTC
    CODE_VERSION = "code_version"
    PACKAGES = "packages"
    SOURCE_STUDY = "source_study"  # rerun and ablation: the search they come from
    PATH = "path"  # an ablation's path (PathStep dicts), once walked
    # the last few commands run on the study (Invocation dicts, oldest first, password masked),
    # so that suggested commands can repeat the flags a run was started with
    COMMANDS = "commands"
    # the last attempts of configurations dropped by the retry limit (storage.MAX_RETRY)
    DROPPED_TRIALS = "dropped_trials"


class TrialAttrs:
    """User-attribute keys of a trial (search, rerun and ablation alike)."""

    CONFIG = "config"  # the full flat TrainConfig
    NUM_PARAMS = "num_params"
    DEVICE = "device"
    DEVICE_NAME = "device_name"
    EPOCH_SECONDS = "epoch_seconds"  # wall clock, one per epoch trained, resumed epochs once
    # what each of those epochs consumed (wrn.compute): GPU seconds of its work on CUDA, the
    # process's CPU seconds on CPU; absent in trials recorded before it was measured
    EPOCH_COMPUTE_SECONDS = "epoch_compute_seconds"
    IMAGES_PER_S = "images_per_s"
    HISTORY = "history"  # per-epoch EpochStats dicts, at the end
    BEST_ACC = "best_acc"
    BEST_EPOCH = "best_epoch"
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    CHECKPOINT = "checkpoint"
    FIRST_ATTEMPT = "first_attempt"  # the trial number whose checkpoint every retry shares
    CHECKPOINT_KEY = "checkpoint_key"  # random, per first attempt: whose checkpoint a file is
    # where the trial runs, for dead-worker recovery on the same host
    HOST = "host"
    PID = "pid"
    PID_START = "pid_start"
    SAMPLER_SEED = "sampler_seed"
    RANDOM_DRAW = "random_draw"  # bool: drawn at random (random sampler, or TPE's startup)
    # why a draw was never trained (over the cost cap); a FAIL trial that is no failure: the
    # search drew again, and only trained configurations count towards --trials
    REJECTED_DRAW = "rejected_draw"
    # how it ended, if not complete
    PRUNED_REASON = "pruned_reason"
    FAIL_REASON = "fail_reason"
    FAIL_TRACEBACK = "fail_traceback"
    PREVIOUS_FAILURE = "previous_failure"
    RETRY_OF = "retry_of"  # the failed attempt a queued retry retries: one retry each
    RETRIES = "retries"  # times the config was requeued after its worker was lost
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C/SIGTERM; queued, not a failure
    CHECKPOINT_DISCARDED = "checkpoint_discarded"  # why a bad checkpoint was set aside
    # --pruner promote: the epoch this attempt trains to (a rung; the last is the budget), the
    # rung at which a PRUNED trial paused (its checkpoint kept for a promotion), and the paused
    # trial a promoted one continues (a retry of a promoted trial inherits both)
    TARGET_RUNG = "target_rung"
    PAUSED_AT = "paused_at"
    PROMOTED_FROM = "promoted_from"
    # rerun
    SOURCE_TRIAL = "source_trial"
    SOURCE_STUDY = "source_study"  # a seed-spread run (benchmarks.seed_spread): whose trial
    SEED = "seed"
    TEST_ACC = "test_acc"
    # ablation
    VARIANT = "variant"
    CHANGED = "changed"  # key -> [from, to]
    # the lifecycle's key for a planned run (rerun / ablation): one trial per key
    RUN_KEY = "run_key"


def study_kind(user_attrs: Mapping[str, Any]) -> str:
    """What made a study: "search", "ablation", "rerun", or "-" (something else)."""
    kind = user_attrs.get(StudyAttrs.KIND)
    return kind if isinstance(kind, str) else StudyKind.OTHER.value


def source_study(user_attrs: Mapping[str, Any]) -> str | None:
    """The search a rerun or ablation study comes from (None for others)."""
    source = user_attrs.get(StudyAttrs.SOURCE_STUDY)
    return source if isinstance(source, str) else None


def dropped_trials(user_attrs: Mapping[str, Any]) -> list[int]:
    """The trials whose configuration the retry limit dropped (each its last attempt)."""
    return [int(n) for n in user_attrs.get(StudyAttrs.DROPPED_TRIALS) or []]


def dropped_text(user_attrs: Mapping[str, Any]) -> str:
    """ "1 configuration dropped after 4 failed attempts (trial 7)", or "" if none was."""
    from study.storage import MAX_RETRY

    dropped = dropped_trials(user_attrs)
    if not dropped:
        return ""
    configs = "configuration" if len(dropped) == 1 else "configurations"
    trials = ("trial " if len(dropped) == 1 else "trials ") + ", ".join(map(str, dropped))
    return f"{len(dropped)} {configs} dropped after {MAX_RETRY + 1} failed attempts ({trials})"


def recorded_config(trial: FrozenTrial) -> dict[str, Any]:
    """The flat config a trial recorded ({} if it never started)."""
    return dict(trial.user_attrs.get(TrialAttrs.CONFIG) or {})


def recorded_epochs(trial: FrozenTrial) -> int | None:
    """The epochs the trial's config trains, if it recorded one."""
    epochs = recorded_config(trial).get("epochs")
    return None if epochs is None else int(epochs)


def metric_name(kind: str) -> str:
    """What a study's value measures, its name in optuna-dashboard and on the display:
    "test_acc" for a rerun (scored on the test set), "val_acc" for any other kind."""
    return "test_acc" if kind == StudyKind.RERUN else "val_acc"
