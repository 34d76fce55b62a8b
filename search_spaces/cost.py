"""A space's cost cap: whether a config's network is over it (counted by ``wrn.network``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wrn.config import TrainConfig
from wrn.network import count_params, network_name

if TYPE_CHECKING:
    from search_spaces.space import SearchSpace


def millions(n: int) -> str:
    return f"{n / 1e6:.1f} M"


def over_cap(space: SearchSpace, cfg: TrainConfig) -> str | None:
    """None if ``cfg``'s network is within the space's cost cap, else the reason, one line."""
    n = count_params(cfg.model)
    if n <= space.cost_cap:
        return None
    recipe = space.recipe_config().model
    whose = (
        f"the recipe's {network_name(recipe.depth, recipe.width)}"
        if count_params(recipe) == space.cost_cap
        else "search.max_params"
    )
    name = network_name(cfg.model.depth, cfg.model.width)
    return (
        f"{name} has {millions(n)} parameters, over the space's cap of "
        f"{millions(space.cost_cap)} ({whose})"
    )
