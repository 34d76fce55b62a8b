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
    # Closed form of wrn.model.WideResNet's parameters (a test checks it against the module), so
    # that reading a space, or refusing bad input, imports no torch.
    n = (depth - 4) // 6  # blocks per stage
    widths = (16, 16 * width, 32 * width, 64 * width)
    total = 3 * widths[0] * 9  # the 3x3 stem conv, no bias
    for stage in range(3):
        c_in, c_out = widths[stage], widths[stage + 1]
        for block in range(n):
            first = c_in if block == 0 else c_out
            total += 2 * first + first * c_out * 9  # BN (weight, bias) and conv1
            total += 2 * c_out + c_out * c_out * 9  # BN and conv2
            if block == 0 and (stage > 0 or first != c_out):  # stride 2 or wider: 1x1 conv
                total += first * c_out
    return total + 2 * widths[3] + widths[3] * num_classes + num_classes  # final BN and fc


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
