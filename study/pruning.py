"""The one place the study's pruners are built: schedule-aware, and never at the last epoch.

Trials train under OneCycleLR, whose learning rate rises for the first ``warmup_frac`` of the
run (the LR warm-up) and peaks at epoch ``ceil(warmup_frac * epochs)``. Until then, high-LR and
strongly regularised trials trail at the same epoch and often finish best, so by default no
trial is pruned before the peak: the pruner's *wait* (epochs every trial runs before it may be
pruned) ends there, and the first judged epoch is the one after (``EXTRA_WAIT_FRAC`` would wait
longer; the replay benchmark, ``python -m benchmarks.search_quality``, chose none). Steps are
epochs counted from 1.

Every pruner built here returns False at the final epoch: by then the compute is spent and the
finished result is worth more than a pruned one. The guard is a subclass of each Optuna pruner
(not a wrapper object), so Optuna still recognises a HyperbandPruner as one: its samplers keep
each bracket's trials apart only for an ``isinstance(study.pruner, HyperbandPruner)`` pruner.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PatientPruner,
    PercentilePruner,
)
from optuna.study import Study
from optuna.trial import FrozenTrial

PRUNERS = ("median", "hyperband", "percentile", "patient", "none")
DEFAULT_PRUNER = "median"

# How long after the LR peak the default waits before it may prune, as a fraction of the run's
# epochs (rounded up): none, so the first judged epoch is the one after the peak (7 of 20 for
# light, 10 of 30 for wrn28_10). Chosen on the replay benchmark (benchmarks/results/
# 2026-11-23-amd-epyc-search-quality.md: light space, WRN-10-1 on Fashion-MNIST, 21 configs x
# 12 epochs, 200 trial orders): judging from epoch 5, 6, 7 or 8 of 12 (the peak is 4) saved
# 31.8, 26.2, 22.2 and 14.2 % of the epochs, each with regret 0.00 points and the best config
# surviving every order; waiting longer only lost savings. (The old median, from epoch 3,
# saved 44.7 % with the same zero regret on this small table; 21 curves can't show the
# warm-up's cost, so the peak stays the floor.)
EXTRA_WAIT_FRAC = 0.0
DEFAULT_EVIDENCE = (
    "replay benchmark (21 configs x 12 epochs): the default saved 31.8 % of epochs, regret "
    "0.00 points, best config kept in 100 % of 200 trial orders"
)
HYPERBAND_REDUCTION = 3  # keep a third of the trials at each rung
PERCENTILE = 75.0  # "percentile": keeps the top 75 %, pruning the bottom quarter at an epoch
# "patient": the median may prune only a trial whose best accuracy of its last PATIENCE epochs
# is below its best before them (Optuna's PatientPruner, min_delta 0)
PATIENCE = 2


def peak_epoch(epochs: int, warmup_frac: float) -> int:
    """The epoch at whose end OneCycleLR reaches its maximum LR (epochs counted from 1)."""
    return max(1, math.ceil(warmup_frac * epochs - 1e-9))  # 1e-9: 0.3 * 30 is 9.000000000000002


def default_wait_epochs(epochs: int, warmup_frac: float) -> int:
    """Epochs every trial runs before it may be pruned: the LR warm-up plus the extra wait."""
    _check_schedule(epochs, warmup_frac)
    return peak_epoch(epochs, warmup_frac) + math.ceil(EXTRA_WAIT_FRAC * epochs - 1e-9)


def describe_default(epochs: int | None = None, warmup_frac: float | None = None) -> str:
    """One line for ``--help``: when the default pruner may first prune."""
    extra = f" plus {EXTRA_WAIT_FRAC:.0%} of the epochs" if EXTRA_WAIT_FRAC else ""
    text = (
        f"no trial is pruned before its learning rate peaks (epoch ceil(warmup_frac x epochs)"
        f"{extra}), nor at the last epoch"
    )
    if epochs is not None and warmup_frac is not None:
        first = default_wait_epochs(epochs, warmup_frac) + 1
        text += f"; here from epoch {first} of {epochs}"
    return text


class _NeverAtLastEpoch:
    """Mixin for an Optuna pruner: never prune at (or after) ``final_epoch``."""

    final_epoch: int

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step >= self.final_epoch:
            return False
        return super().prune(study, trial)  # type: ignore[misc]


class GuardedMedianPruner(_NeverAtLastEpoch, MedianPruner):
    def __init__(self, *, final_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.final_epoch = final_epoch


class GuardedPercentilePruner(_NeverAtLastEpoch, PercentilePruner):
    def __init__(self, percentile: float, *, final_epoch: int, **kwargs: Any) -> None:
        super().__init__(percentile, **kwargs)
        self.final_epoch = final_epoch


class GuardedPatientPruner(_NeverAtLastEpoch, PatientPruner):
    def __init__(self, wrapped: BasePruner | None, *, final_epoch: int, **kwargs: Any) -> None:
        super().__init__(wrapped, **kwargs)
        self.final_epoch = final_epoch


class GuardedHyperbandPruner(_NeverAtLastEpoch, HyperbandPruner):
    def __init__(self, *, final_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.final_epoch = final_epoch


def build_pruner(
    kind: str,
    *,
    epochs: int,
    warmup_frac: float,
    startup_trials: int = 5,
    wait_epochs: int | None = None,
) -> BasePruner:
    """The study's pruner; raises ValueError (one line) on a bad argument.

    ``wait_epochs`` (default ``default_wait_epochs``) are the epochs every trial runs
    before it may be pruned: median, percentile and patient first judge at epoch
    ``wait_epochs + 1``, which is also Hyperband's first rung (``min_resource``).
    ``startup_trials`` trials finish before median/percentile/patient prune any.
    """
    first = _first_judged(kind, epochs, warmup_frac, startup_trials, wait_epochs)
    if kind == "none":
        return NopPruner()
    if kind == "hyperband":
        return GuardedHyperbandPruner(
            final_epoch=epochs,
            min_resource=min(first, epochs),
            max_resource=epochs,
            reduction_factor=HYPERBAND_REDUCTION,
        )
    if kind == "percentile":
        return GuardedPercentilePruner(
            PERCENTILE, final_epoch=epochs, n_startup_trials=startup_trials, n_warmup_steps=first
        )
    median = MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=first)
    if kind == "patient":
        return GuardedPatientPruner(median, final_epoch=epochs, patience=PATIENCE)
    return GuardedMedianPruner(
        final_epoch=epochs, n_startup_trials=startup_trials, n_warmup_steps=first
    )


def _first_judged(
    kind: str, epochs: int, warmup_frac: float, startup_trials: int, wait_epochs: int | None
) -> int:
    """The first epoch the pruner may judge, after checking ``build_pruner``'s arguments."""
    if kind not in PRUNERS:
        raise ValueError(f"unknown pruner {kind!r} (choose from {', '.join(PRUNERS)})")
    _check_schedule(epochs, warmup_frac)
    if startup_trials < 0:
        raise ValueError(f"pruner startup trials must be >= 0, got {startup_trials}")
    if wait_epochs is None:
        wait_epochs = default_wait_epochs(epochs, warmup_frac)
    elif wait_epochs < 0:
        raise ValueError(f"pruner wait epochs must be >= 0, got {wait_epochs}")
    # Optuna's n_warmup_steps: a step below it is never pruned, so the first judged epoch is it.
    return wait_epochs + 1


def _check_schedule(epochs: int, warmup_frac: float) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 < warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must be in (0, 1), got {warmup_frac}")


__all__ = [
    "DEFAULT_EVIDENCE",
    "DEFAULT_PRUNER",
    "EXTRA_WAIT_FRAC",
    "PRUNERS",
    "build_pruner",
    "default_wait_epochs",
    "describe_default",
    "peak_epoch",
]
