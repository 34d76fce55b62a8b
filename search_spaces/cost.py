"""A space's cost cap: parameter counts of WideResNets, and whether a config is over the cap."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from wrn.config import ModelConfig, TrainConfig

if TYPE_CHECKING:
    from search_spaces.loader import SearchSpace


def count_params(model: ModelConfig) -> int:
    """Parameters of the WideResNet ``model`` describes, counted without allocating it."""
    return _count_params(model.depth, model.width, model.num_classes)


@functools.cache
def _count_params(depth: int, width: int, num_classes: int) -> int:
    import torch  # here, not at import: reading a space file needs no torch

    from wrn.model import WideResNet, count_parameters

    # dropout adds no parameters; the meta device makes even WRN-28-12 free to count
    with torch.device("meta"):
        model = WideResNet.from_config(
            ModelConfig(depth=depth, width=width, num_classes=num_classes)
        )
    return count_parameters(model)


def network_name(model: ModelConfig) -> str:
    return f"WRN-{model.depth}-{model.width}"


def millions(n: int) -> str:
    return f"{n / 1e6:.1f} M"


def over_cap(space: SearchSpace, cfg: TrainConfig) -> str | None:
    """None if ``cfg``'s network is within the space's cost cap, else the reason, one line."""
    n = count_params(cfg.model)
    if n <= space.cost_cap:
        return None
    recipe = space.recipe_config().model
    whose = (
        f"the recipe's {network_name(recipe)}"
        if count_params(recipe) == space.cost_cap
        else "search.max_params"
    )
    return (
        f"{network_name(cfg.model)} has {millions(n)} parameters, over the space's cap of "
        f"{millions(space.cost_cap)} ({whose})"
    )
