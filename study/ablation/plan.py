"""The ablation's plan: the variants (each factor switched off), the path's steps, and the
trial parameters the dashboard shows. Pure: no training, no storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from study.errors import UsageError
from study.records import BASE_VARIANT, off_variant
from wrn.config import EXECUTION_KEYS, ConfigError, TrainConfig, coerce, key_kind

# execution keys change how a run executes, not what it computes: never a difference
# what the path compares: the configuration itself, not the run's seed or length
NOT_PATH_KEYS = (*EXECUTION_KEYS, "seed", "epochs")


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


def plan_variants(base: TrainConfig, factors: dict[str, Any]) -> tuple[list[Variant], list[str]]:
    """The base and one variant per factor it uses; the factors already off in it."""
    base_flat = base.to_flat()
    variants = [Variant(BASE_VARIANT, base)]
    skipped = []
    for key, off in factors.items():
        off = coerce(key, off)
        if base_flat[key] == off:
            skipped.append(key)
            continue
        cfg = make_config({**base_flat, key: off}, f"the base with {key}={off!r}")
        variants.append(Variant(off_variant(key), cfg, {key: [base_flat[key], off]}))
    return variants, skipped


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
