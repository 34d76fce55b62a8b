"""The search's samplers, which trials they drew at random, and draws kept within the cost cap.

TPE draws its first ``startup_trials`` trials at random, exactly as ``RandomSampler`` with the
same seed would (Optuna's TPESampler uses one inside): until that many trials have finished
(complete or pruned), ``tpe`` is random search. Each search trial records whether it was such a
draw (``TrialAttrs.RANDOM_DRAW``).

A draw whose network is over the space's cost cap is never trained: it is recorded as a failed
trial marked ``TrialAttrs.REJECTED_DRAW`` (the reason) and drawn again, so only configurations
that train count towards ``--trials`` (a failed trial is neither finished nor claimed) and TPE's
startup count (it counts complete and pruned trials only).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import SearchSpace, over_cap
from study.errors import StudyStoppedError
from study.objective import trial_config
from study.records import SAMPLER_STARTUP_TRIALS, SAMPLERS
from study.records import TrialAttrs as A
from wrn.config import SEED_LIMIT

# over-cap draws in a row after which a study stops: its --set values leave (almost) nothing
# within the cap (with light's quarter of the draws over it, 100 in a row never happens)
MAX_REDRAWS = 100

WORKER_ENV = "WRN_STUDY_WORKER"  # set in the processes that --workers starts
SAMPLER_SEED_ENV = "WRN_STUDY_SAMPLER_SEED"  # the parent's sampler seed, for its workers



def make_sampler(
    name: str, seed: int, startup_trials: int = SAMPLER_STARTUP_TRIALS
) -> optuna.samplers.BaseSampler:
    """The study's sampler: ``random``, or multivariate TPE after ``startup_trials`` random
    draws (constant liar: parallel workers do not sample the same point)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup_trials
    )


def describe_startup(startup_trials: int | str) -> str:
    """What ``--sampler-startup-trials`` does, for ``--help`` and the study's note."""
    n = startup_trials
    return (
        f"tpe draws the first {n} trials at random (the points --sampler random draws with the "
        f"same seed), so a study of {n} trials or fewer is random search, and models the "
        "finished trials from then on; each trial records whether it was a random draw"
    )


def drawn_at_random(study: optuna.Study, sampler: str, startup_trials: int) -> bool:
    """Whether ``study``'s next draw is random: always for ``random``; for TPE while fewer than
    ``startup_trials`` trials are complete or pruned (what TPESampler counts)."""
    if sampler == "random":
        return True
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return len(finished) < startup_trials


@dataclass(frozen=True)
class Draw:
    """Asks the study for a trial whose config is within the space's cost cap (called where a
    search claims its next trial), recording how each draw was made."""

    space: SearchSpace
    base: dict[str, Any]
    fixed: dict[str, Any]
    sampler: str
    startup_trials: int

    def __call__(self, study: optuna.Study) -> optuna.Trial:
        for _ in range(MAX_REDRAWS):
            trial = study.ask()  # a queued retry first: its parameters are fixed already
            if A.RANDOM_DRAW not in trial.user_attrs:  # a retry keeps its first draw's
                random = drawn_at_random(study, self.sampler, self.startup_trials)
                trial.set_user_attr(A.RANDOM_DRAW, random)
            reason = over_cap(self.space, trial_config(trial, self.space, self.base, self.fixed))
            if reason is None:
                return trial
            trial.set_user_attr(A.REJECTED_DRAW, reason)
            study.tell(trial, state=TrialState.FAIL)
        raise StudyStoppedError(
            f"{MAX_REDRAWS} draws in a row were over the space's cost cap (last: {reason}); "
            "--set a smaller depth or width, or raise search.max_params"
        )


def sampler_seed(seed: int, pinned: int | None) -> int:
    """This process's sampler seed: ``--sampler-seed`` if given, else ``--seed`` mixed with a
    fresh random salt, so that processes started together (workers, machines) draw different
    points; it is recorded on every trial, so a stream can be replayed."""
    if pinned is not None:
        return pinned
    inherited = os.environ.get(SAMPLER_SEED_ENV)
    worker = int(os.environ.get(WORKER_ENV, "0"))
    if inherited is not None:  # a --workers child: the parent's seed, offset per worker
        return (int(inherited) + 10_007 * worker) % SEED_LIMIT
    return (seed * 1_000_003 + secrets.randbelow(SEED_LIMIT)) % SEED_LIMIT
