"""What a validated search-space file is: a recipe, the searched parameters, a cost cap and
the ablation factors (``search_spaces.loader`` reads and checks the files)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrn.config import TrainConfig


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def on_grid(value: float, low: float, step: float) -> bool:
    # Tolerance so float steps such as 0.1 don't fail on rounding.
    k = (value - low) / step
    return math.isclose(k, round(k), rel_tol=0.0, abs_tol=1e-9)


@dataclass(frozen=True)
class ParamSpec:
    """One searched config key: a float/int range or a list of choices."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one the study could sample for this parameter."""
        if self.type == "categorical":
            assert self.choices is not None
            # bool is an int subclass: True must not match a choice of 1.
            return any(
                isinstance(value, bool) == isinstance(c, bool) and value == c for c in self.choices
            )
        assert self.low is not None and self.high is not None
        if not is_number(value) or not math.isfinite(value):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        if not self.low <= value <= self.high:
            return False
        step = self.step if self.step is not None else (1 if self.type == "int" else None)
        return step is None or on_grid(value, self.low, step)

    def to_dict(self) -> dict[str, Any]:
        """The TOML table for this parameter, JSON-serialisable."""
        if self.type == "categorical":
            assert self.choices is not None
            return {"type": self.type, "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class SearchSpace:
    """A validated search-space file."""

    name: str
    path: Path
    description: str
    source: str
    recipe: dict[str, Any]  # flat config keys, coerced; unlisted keys keep TrainConfig defaults
    search_epochs: int  # per-trial epoch budget
    params: dict[str, ParamSpec]  # in file order
    ablation: dict[str, Any]  # factor -> its "off" value
    # most parameters a trial's network may have ([search] max_params; default: the recipe's)
    cost_cap: int

    def searched(self, fixed: dict[str, Any]) -> list[ParamSpec]:
        """The parameters that ``--set`` did not fix: what a trial samples."""
        return [spec for name, spec in self.params.items() if name not in fixed]

    def recipe_config(self, **overrides: Any) -> TrainConfig:
        """The recipe as a TrainConfig, with some flat keys overridden (e.g. trial params)."""
        return TrainConfig.from_flat({**self.recipe, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for recording in study metadata."""
        return {
            "name": self.name,
            "path": str(self.path),
            "description": self.description,
            "source": self.source,
            "recipe": dict(self.recipe),
            "search": {
                "epochs": self.search_epochs,
                "max_params": self.cost_cap,
                "params": {name: spec.to_dict() for name, spec in self.params.items()},
            },
            "ablation": dict(self.ablation),
        }
