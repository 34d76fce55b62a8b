"""Search spaces: a recipe (base TrainConfig), the parameters a study samples, a cost cap and
the ablation factors, read from TOML files. Never imports Optuna."""

from search_spaces.cost import over_cap
from search_spaces.loader import (
    BUILTIN,
    DEFAULT_SPACE,
    SPACES_DIR,
    SpaceError,
    list_spaces,
    load_space,
)
from search_spaces.space import ParamSpec, SearchSpace

__all__ = [
    "BUILTIN",
    "DEFAULT_SPACE",
    "SPACES_DIR",
    "ParamSpec",
    "SearchSpace",
    "SpaceError",
    "list_spaces",
    "load_space",
    "over_cap",
]
