"""The one place the study's pruners are built: schedule-aware, and never at the last epoch.

Trials train under OneCycleLR, whose learning rate rises for the first ``warmup_frac`` of the
run (the LR warm-up) and peaks at epoch ``ceil(warmup_frac * epochs)``. Until then, high-LR and
strongly regularised trials trail at the same epoch and often finish best, so by default no
trial is pruned before the peak: the pruner's *wait* (epochs every trial runs before it may be
pruned) ends there, and the first judged epoch is the one after (``EXTRA_WAIT_FRAC`` would wait
longer). Steps are epochs counted from 1.

Every pruner built here returns False at the final epoch: by then the compute is spent and the
finished result is worth more than a pruned one, and none prunes before ``startup_trials``
trials have completed (Optuna's Hyperband has no such setting: the guard adds it). The guard is
a subclass of each Optuna pruner (not a wrapper object), so Optuna's
``isinstance(study.pruner, HyperbandPruner)`` checks still see a Hyperband pruner. That does not
give TPE a model per bracket: on Optuna 5.1 the sampler is handed a bracket view whose
``get_trials`` filters, but TPE reads the study through ``_get_trials``, which does not, so one
TPE model sees every bracket's trials.
"""

from __future__ import annotations

import argparse
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
from optuna.trial import FrozenTrial, TrialState

from study.cli import int_at_least
from study.errors import UsageError
from study.jobs import PrunerChoice

PRUNERS = ("median", "hyperband", "percentile", "patient", "none", "promote")
DEFAULT_PRUNER = "median"

# How long after the LR peak the default waits before it may prune, as a fraction of the run's
# epochs (rounded up): none, so the first judged epoch is the one after the peak (7 of 20 for
# light, 10 of 30 for wrn28_10). High-LR and strongly regularised trials trail until the peak:
# on the hard replay table (benchmarks/results/2026-12-03-amd-epyc-search-quality.md: 64
# WRN-10-1 Fashion-MNIST configs x 16 epochs, 4 simulated workers, 200 orders) the median from
# epoch 1 ends 0.26 points below the best and keeps it in 64 % of orders, from the epoch after
# the peak 0.13 points and 82 %; waiting longer was not measured.
EXTRA_WAIT_FRAC = 0.0
DEFAULT_EVIDENCE = (
    "evidence: on the hard replay table (benchmarks/results/2026-12-03-amd-epyc-search-quality"
    ".md: 64 WRN-10-1 configs x 16 epochs on Fashion-MNIST, 4 simulated workers, 200 orders) "
    "the default reached within 0.5 points of the best after 184 epochs (no pruning: 211), "
    "ended 0.13 points below it and kept it in 82 % of orders; the median from epoch 1 ended "
    "0.26 below (64 %), promote 0.20 (80 %, 178 epochs), while one configuration's accuracy "
    "moves by 0.98 points (SD) with its training seed"
)
HYPERBAND_REDUCTION = 3  # a rung keeps its top third
# trials that complete before any is pruned (--pruner-startup-trials); promote has none: its
# rungs compare the trials that reached them from the first
DEFAULT_STARTUP_TRIALS = 5
PERCENTILE = 75.0  # "percentile": keeps the top 75 %, pruning the bottom quarter at an epoch
# "patient": the median may prune a trial only once its last PATIENCE + 1 epochs are no better
# than its best before them (Optuna's PatientPruner, min_delta 0, compares a window of
# patience + 1 steps). Under OneCycle the accuracy keeps rising as the LR anneals, so it rarely
# prunes (1.2 % of the epochs saved on the replay table).
PATIENCE = 2


def peak_epoch(epochs: int, warmup_frac: float) -> int:
    """The epoch at whose end OneCycleLR reaches its maximum LR (epochs counted from 1)."""
    return max(1, math.ceil(warmup_frac * epochs - 1e-9))  # 1e-9: 0.3 * 30 is 9.000000000000002


def default_wait_epochs(epochs: int, warmup_frac: float) -> int:
    """Epochs every trial runs before it may be pruned: the LR warm-up plus the extra wait."""
    _check_schedule(epochs, warmup_frac)
    return peak_epoch(epochs, warmup_frac) + math.ceil(EXTRA_WAIT_FRAC * epochs - 1e-9)


def first_judged_epoch(epochs: int, warmup_frac: float, wait_epochs: int | None = None) -> int:
    """The first epoch the schedule-aware pruners may judge: the one after ``wait_epochs``
    (default ``default_wait_epochs``, so after the LR peak); ValueError on a bad schedule."""
    return _first_judged("none", epochs, warmup_frac, 0, wait_epochs)


def hyperband_rungs(
    epochs: int, warmup_frac: float, wait_epochs: int | None = None
) -> list[list[int]]:
    """The epochs at which ``build_pruner("hyperband", ...)`` judges, one list per bracket (a
    trial is in one bracket): Optuna's floor(log_3(max / min)) + 1 brackets, bracket b's rungs
    at min x 3^(b + r), none at or past the last epoch."""
    low = _first_judged("hyperband", epochs, warmup_frac, 0, wait_epochs)
    low = min(low, epochs)
    n = math.floor(math.log(epochs / low, HYPERBAND_REDUCTION)) + 1  # as Optuna computes it
    return [
        [e for e in (low * HYPERBAND_REDUCTION ** (b + r) for r in range(n)) if e < epochs]
        for b in range(n)
    ]


def describe_kinds(schedules: dict[str, tuple[int, float]]) -> str:
    """``--pruner`` help for the non-default pruners: what each does on each named
    (epochs, warmup_frac) schedule."""
    bands = []
    for name, (epochs, frac) in schedules.items():
        rungs = [", ".join(map(str, r)) or "never" for r in hyperband_rungs(epochs, frac)]
        bands.append(f"{' | '.join(rungs)} ({name})")
    percentile = (
        f"percentile: keeps the top {PERCENTILE:.0f} % at each epoch, pruning the bottom "
        f"{100 - PERCENTILE:.0f} %"
    )
    hyperband = (
        "hyperband: a trial outside the top third of its rung (or, with under 3 there, below "
        f"the best) is pruned, judged per bracket (a trial is in one) at epoch {', '.join(bands)}"
    )
    patient = (
        f"patient: the median rule, applied only once a trial's last {PATIENCE + 1} epochs are "
        "no better than its best before them, so under OneCycle, whose accuracy keeps rising, "
        "it rarely prunes"
    )
    return f"{percentile}; {hyperband}; {patient}; {describe_promote(schedules)}"


# the replay (benchmarks/async_replay.py) of a 50-trial search held at most this many paused
# checkpoints at once; a WRN-28-10 checkpoint with its optimiser state is about 0.3 GB
# promote's paused checkpoints kept at once, at most, in a 50-trial search per --reduction (the
# hard table's replay, benchmarks/results/2026-12-03-amd-epyc-*search-quality.md, 4 workers)
PROMOTE_PAUSED_AT_ONCE = {3: 11, 2: 19}
PROMOTE_CHECKPOINT_GB = 0.3
PROMOTE_NOTE = (
    "the sampler sees a paused configuration as a PRUNED trial with its epochs' values (TPE "
    "ranks it as pruned at that epoch) and a promotion as a new trial with the same "
    "parameters; both count among TPE's finished trials, its startup draws included"
)


def pruner_note(kind: str) -> str:
    """What the study's note adds after its pruner's name: for promote, how the sampler sees
    paused and promoted configurations."""
    return (
        f" (paused trials continue from their checkpoints; {PROMOTE_NOTE})"
        if kind == "promote"
        else ""
    )


def describe_promote(schedules: dict[str, tuple[int, float]]) -> str:
    """``--pruner promote`` help: its rungs on each named schedule and its disk budget."""
    from study.promotion import REDUCTION, rungs

    at = "; ".join(
        f"{', '.join(map(str, rungs(e, f)))} ({name})" for name, (e, f) in schedules.items()
    )
    kept = ", ".join(
        f"{n} at --reduction {r}, about {n * PROMOTE_CHECKPOINT_GB:.1f} GB"
        for r, n in PROMOTE_PAUSED_AT_ONCE.items()
    )
    return (
        f"promote: a trial pauses at each rung below its last (epoch {at}; rungs x --reduction "
        f"apart, default {REDUCTION}), its checkpoint kept, and a free worker first continues "
        f"the best paused one in the top 1/{REDUCTION} (1/--reduction) of all trials that "
        "reached its rung, later arrivals included, from its checkpoint; it starts a new "
        "configuration only when none can be, and --trials counts configurations; disk: a "
        f"paused trial's checkpoint (about {PROMOTE_CHECKPOINT_GB} GB for WRN-28-10) stays "
        f"until no promotion can reach it: a 50-trial search keeps up to about {kept} at once"
    )


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
    """Hyperband that prunes nothing until ``startup_trials`` trials have completed (as
    MedianPruner's ``n_startup_trials``); until then it still records each trial's rungs."""

    def __init__(self, *, final_epoch: int, startup_trials: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.final_epoch = final_epoch
        self.startup_trials = startup_trials

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        pruned = super().prune(study, trial)  # called anyway: it records the rung's value
        if not pruned or self.startup_trials == 0:
            return pruned
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return len(done) >= self.startup_trials


def build_pruner(
    kind: str,
    *,
    epochs: int,
    warmup_frac: float,
    startup_trials: int = DEFAULT_STARTUP_TRIALS,
    wait_epochs: int | None = None,
) -> BasePruner:
    """The study's pruner; raises ValueError (one line) on a bad argument.

    ``wait_epochs`` (default ``default_wait_epochs``) are the epochs every trial runs
    before it may be pruned: median, percentile and patient first judge at epoch
    ``wait_epochs + 1``, which is also Hyperband's first rung (``min_resource``).
    ``startup_trials`` trials complete before any of them prunes (Hyperband included).
    """
    first = _first_judged(kind, epochs, warmup_frac, startup_trials, wait_epochs)
    if kind in ("none", "promote"):  # promote: the lifecycle pauses trials at their rungs
        return NopPruner()
    if kind == "hyperband":
        return GuardedHyperbandPruner(
            final_epoch=epochs,
            startup_trials=startup_trials,
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


def pruner_help_texts() -> tuple[str, str]:
    """``--pruner`` and ``--pruner-warmup-epochs`` help: the default's rule, where it first
    prunes in each built-in space, and the replay benchmark's figures that chose it."""
    from search_spaces import list_spaces, load_space

    firsts, schedules = [], {}
    for name in list_spaces():
        space = load_space(name)
        epochs, frac = space.search_epochs, space.recipe_config().optim.warmup_frac
        schedules[name] = (epochs, frac)
        firsts.append(f"{default_wait_epochs(epochs, frac) + 1} of {epochs} ({name})")
    where = "epoch " + ", ".join(firsts)
    rule = describe_default()
    kinds = describe_kinds(schedules)
    pruner = f"default: {DEFAULT_PRUNER}; {rule}: it may first prune at {where}; {kinds}; "
    pruner = (pruner + DEFAULT_EVIDENCE).replace("%", "%%")  # argparse %-formats help text
    wait = (
        "epochs every trial runs before it may be pruned, or with promote before its first "
        f"rung (default: until its learning rate peaks, so the first prunable epoch is {where})"
    )
    return pruner, wait


def add_pruner_flags(p: argparse.ArgumentParser) -> None:
    """``study.run``'s flags that choose the pruner (``pruner_choice`` reads them)."""
    pruner_help, wait_help = pruner_help_texts()
    p.add_argument("--pruner", choices=PRUNERS, default=DEFAULT_PRUNER, help=pruner_help)
    p.add_argument(
        "--pruner-startup-trials",
        type=int_at_least(0),
        help="trials that complete before any is pruned (every pruner, hyperband included; "
        f"not promote, whose rungs compare trials from the first) (default: "
        f"{DEFAULT_STARTUP_TRIALS})",
    )
    p.add_argument("--pruner-warmup-epochs", type=int_at_least(0), help=wait_help)
    from study.promotion import REDUCTION  # it imports this module

    p.add_argument(
        "--reduction",
        type=int_at_least(2),
        help="promote's rungs are this factor apart and each promotes its top 1/reduction "
        f"(default: {REDUCTION}); 2 keeps more, see the README's Pruning",
    )


def pruner_choice(
    kind: str, startup_trials: int | None, wait_epochs: int | None, reduction: int | None = None
) -> PrunerChoice:
    """The flags' pruner; None: a flag's default. UsageError for ``startup_trials`` given with
    promote (its rungs compare the trials that reached them from the first) and ``reduction``
    with another pruner (hyperband keeps its top third)."""
    from study.promotion import REDUCTION  # it imports this module

    if kind == "promote" and startup_trials is not None:
        raise UsageError(
            "--pruner-startup-trials: promote has no startup trials (its rungs compare the "
            "trials that reached them from the first); drop the flag"
        )
    if kind != "promote" and reduction is not None:
        raise UsageError(f"--reduction: only --pruner promote has one, not {kind}")
    startup = DEFAULT_STARTUP_TRIALS if startup_trials is None else startup_trials
    return PrunerChoice(kind, startup, wait_epochs, REDUCTION if reduction is None else reduction)


def make_pruner(choice: PrunerChoice, epochs: int, warmup_frac: float) -> Any:
    """The pruner ``choice`` builds for trials of ``epochs`` epochs; a bad choice is one line."""
    try:
        return build_pruner(
            choice.kind,
            epochs=epochs,
            warmup_frac=warmup_frac,
            startup_trials=choice.startup_trials,
            wait_epochs=choice.wait_epochs,
        )
    except ValueError as e:
        raise UsageError(f"--pruner: {e}") from None


__all__ = [
    "DEFAULT_EVIDENCE",
    "DEFAULT_PRUNER",
    "DEFAULT_STARTUP_TRIALS",
    "EXTRA_WAIT_FRAC",
    "PROMOTE_NOTE",
    "PRUNERS",
    "add_pruner_flags",
    "build_pruner",
    "default_wait_epochs",
    "describe_default",
    "describe_kinds",
    "describe_promote",
    "first_judged_epoch",
    "hyperband_rungs",
    "make_pruner",
    "peak_epoch",
    "pruner_choice",
    "pruner_help_texts",
    "pruner_note",
]
