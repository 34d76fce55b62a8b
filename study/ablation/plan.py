"""The ablation's plan: its seeds (none the search's), the variants (each factor switched off,
unless already near off), the path's steps, and the trial parameters the dashboard shows.
Pure: no training, no storage."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search_spaces import ParamSpec
from study.errors import UsageError
from study.records import BASE_VARIANT, PATH_START, AblationSettings, off_variant
from wrn.config import EXECUTION_KEYS, SEED_LIMIT, ConfigError, TrainConfig, coerce, key_kind

# execution keys change how a run executes, not what it computes: never a difference
# what the path compares: the configuration itself, not the run's seed or length
NOT_PATH_KEYS = (*EXECUTION_KEYS, "seed", "epochs")
# a base value this close to its factor's off value, as a fraction of the space's range for
# it (of log(value) on a log-scale range), is already off: switching it off measures noise
NEAR_OFF_FRACTION = 0.01


def ablation_seeds(search_seeds: Collection[int], split_seed: int, k: int) -> list[int]:
    """The ablation's ``k`` training seeds: the first after ``split_seed`` that the search
    never trained with, so that the base is a fresh measurement of the best trial's
    configuration and not a replay of the run that won the search."""
    used = set(search_seeds) | {split_seed}
    seeds: list[int] = []
    seed = split_seed
    while len(seeds) < k:
        seed = (seed + 1) % SEED_LIMIT
        if seed not in used:
            seeds.append(seed)
    return seeds


def near_off(value: Any, off: Any, spec: ParamSpec | None) -> bool:
    """Whether ``value`` is within ``NEAR_OFF_FRACTION`` of the space's range of ``off``."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, off))
    if spec is None or spec.low is None or spec.high is None or not numbers:
        return False
    low, high, a, b = float(spec.low), float(spec.high), float(value), float(off)
    if spec.log:
        if min(low, a, b) <= 0:
            return False
        low, high, a, b = (math.log(x) for x in (low, high, a, b))
    return abs(a - b) <= NEAR_OFF_FRACTION * (high - low)


@dataclass(frozen=True)
class Variant:
    name: str
    config: TrainConfig  # the seed is set per run
    changed: dict[str, list[Any]] = field(default_factory=dict)  # key -> [from, to]


def config_diff(a: dict[str, Any], b: dict[str, Any], order: Sequence[str]) -> list[str]:
    """Keys whose values differ between two flat configs, in ``order`` first, then the rest."""
    keys = [k for k in a if k not in NOT_PATH_KEYS and a[k] != b.get(k)]
    ranked = {k: i for i, k in enumerate(order)}
    return sorted(keys, key=lambda k: (ranked.get(k, len(ranked)), k))


def make_config(flat: dict[str, Any], what: str) -> TrainConfig:
    try:
        return TrainConfig.from_flat(flat)
    except ConfigError as e:
        raise UsageError(f"{what} is not a valid config: {e}") from None


def distribution_for(key: str, values: Sequence[Any]) -> BaseDistribution | None:
    """How the dashboard shows ``key`` as a trial parameter (None: only as a user attr)."""
    kind, choices = key_kind(key)
    if kind is bool:
        return CategoricalDistribution((False, True))
    if choices is not None:  # the full Literal, so every trial of the study shares the choices
        return CategoricalDistribution(choices)
    if kind is int:
        return IntDistribution(min(values), max(values))
    if kind is float:
        return FloatDistribution(min(values), max(values))
    return None


def plan_variants(
    base: TrainConfig, factors: dict[str, Any], ranges: Mapping[str, ParamSpec]
) -> tuple[list[Variant], dict[str, str]]:
    """The base and one variant per factor it uses; why each other factor is not ablated
    (already off, or near off on the space's range ``ranges``)."""
    base_flat = base.to_flat()
    variants = [Variant(BASE_VARIANT, base)]
    skipped: dict[str, str] = {}
    for key, off in factors.items():
        off = coerce(key, off)
        if base_flat[key] == off:
            skipped[key] = f"already {_fmt(off)} in the base"
            continue
        spec = ranges.get(key)
        if near_off(base_flat[key], off, spec):
            assert spec is not None
            scale = "log " if spec.log else ""
            skipped[key] = (
                f"{_fmt(base_flat[key])} in the base is within {NEAR_OFF_FRACTION:.0%} of the "
                f"searched {scale}range [{_fmt(spec.low)}, {_fmt(spec.high)}] of off "
                f"({_fmt(off)})"
            )
            continue
        cfg = make_config({**base_flat, key: off}, f"the base with {key}={off!r}")
        variants.append(Variant(off_variant(key), cfg, {key: [base_flat[key], off]}))
    return variants, skipped


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def param_distributions(
    base: TrainConfig,
    variants: Sequence[Variant],
    path_ends: Sequence[TrainConfig],
    path_keys: Sequence[str],
) -> dict[str, BaseDistribution]:
    """Trial parameters for the dashboard: every key an ablation or path run changes."""
    planned: dict[str, list[Any]] = {}
    for v in variants:
        for key, pair in v.changed.items():
            planned.setdefault(key, []).extend(pair)
    for key in path_keys:
        planned.setdefault(key, []).extend(cfg.to_flat()[key] for cfg in path_ends)
    base_flat = base.to_flat()
    for key, values in planned.items():
        values.append(base_flat[key])
    return {
        k: d for k, values in planned.items() if (d := distribution_for(k, values)) is not None
    }


@dataclass(frozen=True)
class Plan:
    """What the ablation trains: the base and its variants, and the path's ends and keys."""

    settings: AblationSettings  # what the ablation study records
    split_seed: int  # the search's: every run scores on the search's validation split
    seeds: list[int]  # this command's
    recipe: TrainConfig
    base: TrainConfig
    target: TrainConfig | None  # the path's end (the best trial's config)
    variants: list[Variant]
    path_keys: list[str]
    distributions: dict[str, Any]

    @property
    def start_variant(self) -> str:
        """The path's first configuration: the base itself when the base is the recipe."""
        return BASE_VARIANT if self.settings.base == "recipe" else PATH_START

    @property
    def path_configs(self) -> int:
        """The path's configurations, at most: its start (unless it is the base) and every
        step's candidates."""
        n = len(self.path_keys)
        return n * (n + 1) // 2 + (self.start_variant != BASE_VARIANT) if self.path_keys else 0
