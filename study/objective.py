"""A trial's config from the space: what a search trial samples, and the one ``suggest``.

Pure: no training, no storage. The trial itself runs in ``study.lifecycle``.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search_spaces import ParamSpec, SearchSpace
from wrn.config import TrainConfig


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution a space's parameter is sampled from."""
    if spec.type == "categorical":
        assert spec.choices is not None
        return CategoricalDistribution(list(spec.choices))
    if spec.type == "int":
        step = int(spec.step or 1)
        return IntDistribution(int(spec.low), int(spec.high), step=step, log=spec.log)
    return FloatDistribution(float(spec.low), float(spec.high), step=spec.step, log=spec.log)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial``'s value of ``name`` from ``dist`` (sampled, or fixed by the study's sampler)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def trial_config(
    trial: optuna.Trial, space: SearchSpace, base: dict[str, Any], fixed: dict[str, Any]
) -> TrainConfig:
    """The trial's full config: the base values, then the sampled ones, then ``--set`` values."""
    sampled = {s.name: suggest(trial, s.name, distribution(s)) for s in space.searched(fixed)}
    return TrainConfig.from_flat({**base, **sampled, **fixed})
