"""Search spaces: a recipe (base TrainConfig), the parameters a study samples, a cost cap and
the ablation factors, read from TOML files. Never imports Optuna."""

from search_spaces.cost import count_params, over_cap
from search_spaces.loader import (
    BUILTIN,
    SPACES_DIR,
    ParamSpec,
    SearchSpace,
    SpaceError,
    list_spaces,
    load_space,
)

__all__ = [
    "BUILTIN",
    "SPACES_DIR",
    "ParamSpec",
    "SearchSpace",
    "SpaceError",
    "count_params",
    "list_spaces",
    "load_space",
    "over_cap",
]
