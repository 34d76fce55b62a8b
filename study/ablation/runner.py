"""Runs an ablation's (variant, seed) pairs as trials of ``NAME-ablation`` through the shared
trial lifecycle, and walks the ablation path (Fawcett & Hoos 2016)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from study.ablation.plan import Variant
from study.errors import UsageError
from study.lifecycle import Lifecycle, PlannedRun, completed_runs, run_planned
from study.records import PathStep, ablation_run_key, path_variant
from study.records import TrialAttrs as A
from wrn.config import ConfigError, TrainConfig
from wrn.data import Splits


class Runner:
    """Trains (variant, seed) runs as trials of the ablation study, skipping those done."""

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        splits_for: Callable[[TrainConfig], Splits],
        seeds: Sequence[int],
        distributions: dict[str, BaseDistribution],
        life: Lifecycle,
        after_trial: Callable[[], None],
    ) -> None:
        self.study = study
        self.storage = storage
        self.splits_for = splits_for
        self.seeds = list(seeds)
        self.distributions = distributions
        self.life = life
        self.after_trial = after_trial
        self.ran = 0

    def missing(self, variants: Sequence[Variant]) -> int:
        done = completed_runs(self.study.get_trials(deepcopy=False))
        return sum(ablation_run_key(v.name, s) not in done for v in variants for s in self.seeds)

    def evaluate_many(self, variants: Sequence[Variant]) -> dict[str, list[float]]:
        """Each variant's final val accuracy for every seed, training the missing runs."""
        runs = []
        for variant in variants:
            for seed in self.seeds:
                cfg = variant.config.replace(seed=seed)
                flat = cfg.to_flat()
                attrs = {A.VARIANT: variant.name, A.SEED: seed, A.CHANGED: variant.changed}
                runs.append(
                    PlannedRun(
                        key=ablation_run_key(variant.name, seed),
                        cfg=cfg,
                        params={k: flat[k] for k in self.distributions},
                        attrs=attrs,
                    )
                )
        values = run_planned(
            self.study,
            self.storage,
            runs,
            self.distributions,
            self.splits_for,
            self.life,
            after_trial=self._after,
        )
        return {
            v.name: [values[ablation_run_key(v.name, s)] for s in self.seeds] for v in variants
        }

    def evaluate(self, variant: Variant) -> list[float]:
        return self.evaluate_many([variant])[variant.name]

    def _after(self, trial: FrozenTrial) -> None:
        self.ran += 1  # its line is the lifecycle's (Lifecycle.show_end)
        self.after_trial()


def run_path(
    runner: Runner,
    start: TrainConfig,
    target: TrainConfig,
    keys: Sequence[str],
    start_variant: str,
) -> list[PathStep]:
    """Fawcett & Hoos's greedy ablation path from ``start`` to ``target``.

    At each step every remaining single-parameter change is evaluated (K seeds) and the one
    with the largest mean accuracy is kept; the last step therefore lands on ``target``.
    """
    current = start.to_flat()
    goal = target.to_flat()
    first = runner.evaluate(Variant(start_variant, start))
    path = [_step(0, None, None, None, first, start_variant, {})]
    remaining = list(keys)
    while remaining:
        step = len(path)
        variants = _candidates(current, goal, remaining, step)
        # a step's candidates together: cooperating processes can share them
        results = runner.evaluate_many(list(variants.values()))
        candidates = {k: results[v.name] for k, v in variants.items()}
        means = {k: statistics.fmean(v) for k, v in candidates.items()}
        # the largest mean gain; ties keep the earlier key (the space's order)
        key = max(candidates, key=lambda k: means[k])
        name = variants[key].name
        path.append(_step(step, key, current[key], goal[key], candidates[key], name, means))
        current[key] = goal[key]
        remaining.remove(key)
    return path


def _candidates(
    current: dict[str, Any], goal: dict[str, Any], remaining: Sequence[str], step: int
) -> dict[str, Variant]:
    """Each remaining key's single change from ``current`` towards ``goal`` that is valid."""
    variants: dict[str, Variant] = {}
    for key in remaining:
        try:
            cfg = TrainConfig.from_flat({**current, key: goal[key]})
        except ConfigError:  # an invalid intermediate combination is not a candidate
            continue
        variants[key] = Variant(path_variant(step, key), cfg, {key: [current[key], goal[key]]})
    if not variants:
        raise UsageError(
            f"no single change of {', '.join(remaining)} from step {step - 1} of the path "
            "gives a valid config"
        )
    return variants


def _step(
    step: int,
    key: str | None,
    old: Any,
    new: Any,
    values: Sequence[float],
    variant: str,
    candidates: dict[str, float],
) -> PathStep:
    return PathStep(
        step=step,
        param=key,
        from_=old,
        to=new,
        variant=variant,
        mean=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        n=len(values),
        candidates=candidates,
    )
