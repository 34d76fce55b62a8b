"""Read and validate search-space TOML files.

A space is plain data: the recipe (base config), the parameters a study samples, its cost cap
(the most parameters a trial's network may have) and the ablation factors. Nothing here imports
Optuna; ``study/`` turns each ParamSpec into a ``trial.suggest_*`` call. Every check runs at load
time so a bad file fails before any training starts, with a message naming the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, NoReturn

from search_spaces.cost import millions
from search_spaces.space import ParamSpec, SearchSpace, is_int, is_number, on_grid
from wrn.config import (
    FLAT_KEYS,
    MAX_EPOCHS,
    ConfigError,
    TrainConfig,
    coerce,
    key_kind,
    valid_depth,
)
from wrn.network import count_params, network_name

SPACES_DIR = Path(__file__).resolve().parent
BUILTIN = ("wrn28_10", "light")  # the built-in spaces' names, each a NAME.toml here
DEFAULT_SPACE = BUILTIN[0]  # what a search runs without --space
PARAM_TYPES = ("float", "int", "categorical")

_TOP_KEYS = ("name", "description", "source", "recipe", "search", "ablation")
_REQUIRED_TOP_KEYS = ("name", "description", "source", "recipe", "search")
_SEARCH_KEYS = ("epochs", "max_params", "params")
_PARAM_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
_KIND_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


class SpaceError(ValueError):
    """A search-space file is invalid; the message names the file and the key."""


def list_spaces() -> list[str]:
    """Names of the built-in spaces, loadable with ``load_space(name)``."""
    return list(BUILTIN)


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a built-in space by name, or any space file by path; raises SpaceError."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN:
        path = SPACES_DIR / f"{name_or_path}.toml"
        return _Parser(path, f"search_spaces/{path.name}", builtin=True).parse()
    text = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text
    )
    if not looks_like_path:
        raise SpaceError(
            f"{text}: unknown search space (built-in: {', '.join(BUILTIN)}; "
            "or give a path to a .toml file)"
        )
    return _Parser(Path(name_or_path), text, builtin=False).parse()


class _Parser:
    def __init__(self, path: Path, display: str, *, builtin: bool) -> None:
        self.path = path
        self.display = display
        self.builtin = builtin
        self.recipe: dict[str, Any] = {}

    def fail(self, key: str, message: str) -> NoReturn:
        raise SpaceError(f"{self.display}: {key}: {message}")

    def parse(self) -> SearchSpace:
        data = self._read()
        for key in data:
            if key not in _TOP_KEYS:
                kind = "table" if isinstance(data[key], dict) else "key"
                self.fail(key, f"unknown top-level {kind} (expected: {', '.join(_TOP_KEYS)})")
        for key in _REQUIRED_TOP_KEYS:
            if key not in data:
                self.fail(key, "missing")
        name = self._string(data, "name")
        if self.builtin and name != self.path.stem:
            self.fail("name", f"{name!r} must equal the file name {self.path.stem!r}")
        description = self._string(data, "description")
        source = self._string(data, "source")
        self.recipe = self._recipe(self._table(data, "recipe"))
        search = self._table(data, "search")
        for key in search:
            if key not in _SEARCH_KEYS:
                self.fail(f"search.{key}", f"unknown key (expected: {', '.join(_SEARCH_KEYS)})")
        epochs = self._search_epochs(search)
        cost_cap = self._cost_cap(search)
        params = self._params(search)
        ablation = self._ablation(self._table(data, "ablation") if "ablation" in data else {})
        return SearchSpace(
            name=name,
            path=self.path,
            description=description,
            source=source,
            recipe=self.recipe,
            search_epochs=epochs,
            params=params,
            ablation=ablation,
            cost_cap=cost_cap,
        )

    def _read(self) -> dict[str, Any]:
        try:
            with self.path.open("rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            hint = f" (built-in spaces: {', '.join(BUILTIN)})" if not self.builtin else ""
            raise SpaceError(f"{self.display}: file not found{hint}") from None
        except tomllib.TOMLDecodeError as err:  # its message carries the line and column
            raise SpaceError(f"{self.display}: invalid TOML: {err}") from None
        except UnicodeDecodeError:
            raise SpaceError(f"{self.display}: not UTF-8 text") from None
        except OSError as err:
            raise SpaceError(f"{self.display}: cannot read: {err.strerror}") from None

    # -- small typed getters -------------------------------------------------------------

    def _string(self, table: dict[str, Any], key: str) -> str:
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def _table(self, table: dict[str, Any], key: str, where: str | None = None) -> dict[str, Any]:
        value = table[key]
        if not isinstance(value, dict):
            self.fail(where or key, f"expected a table, got {value!r}")
        return value

    def _config_value(self, where: str, key: str, value: Any) -> Any:
        """A TOML value for config ``key``: its TOML type must fit, then it is coerced.

        Stricter than ``coerce`` (which also takes command-line strings): in a file,
        ``dropout = "0.3"`` or ``nesterov = "yes"`` is a mistake worth reporting.
        """
        kind, _ = key_kind(key)
        fits = {bool: isinstance(value, bool), int: is_int(value), float: is_number(value)}
        if not fits.get(kind, isinstance(value, str)):
            self.fail(where, f"expected {_KIND_NAMES[kind]} for {key}, got {value!r}")
        try:
            return coerce(key, value)
        except ConfigError as err:
            self.fail(where, _reason(err, key))

    def _accepted(self, key: str, value: Any) -> str | None:
        """Why the config rejects ``key = value`` on top of the recipe, or None."""
        try:
            TrainConfig.from_flat({**self.recipe, key: value})
        except ConfigError as err:
            return _reason(err, key)
        return None

    # -- sections ------------------------------------------------------------------------

    def _recipe(self, table: dict[str, Any]) -> dict[str, Any]:
        recipe: dict[str, Any] = {}
        for key, value in table.items():
            if key not in FLAT_KEYS:
                self.fail(f"recipe.{key}", _unknown_key_message())
            recipe[key] = self._config_value(f"recipe.{key}", key, value)
        try:  # range and cross-key checks, e.g. final_lr < lr / initial_lr_div
            TrainConfig.from_flat(recipe)
        except ConfigError as err:
            key, _, reason = str(err).partition(": ")
            if key in FLAT_KEYS:
                self.fail(f"recipe.{key}", reason)
            self.fail("recipe", str(err))
        return recipe

    def _search_epochs(self, search: dict[str, Any]) -> int:
        if "epochs" not in search:
            self.fail("search.epochs", "missing (the per-trial epoch budget)")
        epochs = search["epochs"]
        if not is_int(epochs):
            self.fail("search.epochs", f"expected an integer, got {epochs!r}")
        if epochs < 1:
            self.fail("search.epochs", f"must be >= 1, got {epochs}")
        if epochs > MAX_EPOCHS:
            self.fail("search.epochs", f"must be <= {MAX_EPOCHS:,}, got {epochs}")
        return epochs

    def _cost_cap(self, search: dict[str, Any]) -> int:
        recipe = TrainConfig.from_flat(self.recipe).model
        recipe_params = count_params(recipe)
        if "max_params" not in search:
            return recipe_params  # never bigger than the network the recipe was planned for
        cap = search["max_params"]
        if not is_int(cap) or cap < 1:
            self.fail("search.max_params", f"expected a positive integer, got {cap!r}")
        if recipe_params > cap:
            name = network_name(recipe.depth, recipe.width)
            self.fail(
                "search.max_params",
                f"the recipe's own {name} has {recipe_params:,} parameters "
                f"({millions(recipe_params)}), over the cap of {cap:,} ({millions(cap)})",
            )
        return cap

    def _params(self, search: dict[str, Any]) -> dict[str, ParamSpec]:
        if "params" not in search:
            self.fail("search.params", "missing (add [search.params.NAME] tables)")
        tables = self._table(search, "params", "search.params")
        if not tables:
            self.fail("search.params", "no parameters to search")
        return {
            name: self._param(name, self._table(tables, name, f"search.params.{name}"))
            for name in tables
        }

    def _param(self, name: str, table: dict[str, Any]) -> ParamSpec:
        where = f"search.params.{name}"
        if name not in FLAT_KEYS:
            self.fail(where, _unknown_key_message())
        if name == "epochs":  # trials train for search.epochs; the recipe's epochs is for reruns
            self.fail(where, "epochs cannot be searched; the per-trial budget is search.epochs")
        if "type" not in table:
            self.fail(where, f"missing type ({', '.join(PARAM_TYPES)})")
        ptype = table["type"]
        if ptype not in PARAM_TYPES:
            self.fail(where, f"type must be one of {', '.join(PARAM_TYPES)}, got {ptype!r}")
        for key in table:
            if key not in _PARAM_KEYS[ptype]:
                allowed = ", ".join(_PARAM_KEYS[ptype])
                self.fail(where, f"unknown key {key!r} for a {ptype} parameter ({allowed})")
        kind, _ = key_kind(name)
        if ptype != "categorical" and kind.__name__ != ptype:
            use = (
                f"'{kind.__name__}' or 'categorical'" if kind in (int, float) else "'categorical'"
            )
            takes = _KIND_NAMES[kind]
            self.fail(
                where, f"type {ptype!r} does not fit {name}, which takes {takes} (use {use})"
            )
        if ptype == "categorical":
            return self._categorical(name, where, table)
        return self._range(name, where, ptype, table)

    def _range(self, name: str, where: str, ptype: str, table: dict[str, Any]) -> ParamSpec:
        is_valid = is_int if ptype == "int" else is_number
        kind_name = "an integer" if ptype == "int" else "a number"
        values: dict[str, Any] = {}
        for key in ("low", "high", "step"):
            if key not in table:
                if key != "step":
                    self.fail(where, f"missing {key}")
                continue
            value = table[key]
            if not is_valid(value) or not math.isfinite(value):
                self.fail(where, f"{key} must be {kind_name}, got {value!r}")
            values[key] = value if ptype == "int" else float(value)
        low, high, step = values["low"], values["high"], values.get("step")
        log = table.get("log", False)
        if not isinstance(log, bool):
            self.fail(where, f"log must be true or false, got {log!r}")
        if low > high:
            self.fail(where, f"low {low} is greater than high {high}")
        if log and low <= 0:
            self.fail(where, f"log needs low > 0, got {low}")
        if step is not None:
            if log:  # Optuna rejects the combination
                self.fail(where, "log and step cannot be combined")
            if step <= 0:
                self.fail(where, f"step must be > 0, got {step}")
            if not on_grid(high, low, step):  # else Optuna silently lowers high
                self.fail(where, f"high - low ({high} - {low}) is not a multiple of step {step}")
        if name == "depth":
            # low = 6n+4 and a step of 6k keep every sampled depth at 6n+4.
            if not valid_depth(low):
                self.fail(where, f"low {low} is not 6n+4 (10, 16, 22, 28, ...)")
            if step is None:
                self.fail(where, "missing step (a multiple of 6, so every depth is 6n+4)")
            if step % 6 != 0:
                self.fail(where, f"step {step} is not a multiple of 6 (every depth must be 6n+4)")
        # Config checks are monotonic in each key, so both ends being accepted covers the range.
        for key, value in (("low", low), ("high", high)):
            reason = self._accepted(name, value)
            if reason is not None:
                self.fail(where, f"{key} {value} is rejected by the config: {reason}")
        return ParamSpec(name=name, type=ptype, low=low, high=high, log=log, step=step)

    def _categorical(self, name: str, where: str, table: dict[str, Any]) -> ParamSpec:
        if "choices" not in table:
            self.fail(where, "missing choices")
        raw = table["choices"]
        if not isinstance(raw, list):
            self.fail(where, f"choices must be a list, got {raw!r}")
        if not raw:
            self.fail(where, "choices is empty")
        choices: list[Any] = []
        for i, value in enumerate(raw):
            choice = self._config_value(f"{where}.choices[{i}]", name, value)
            if name == "depth" and not valid_depth(choice):
                self.fail(where, f"choice {choice} is not 6n+4 (10, 16, 22, 28, ...)")
            reason = self._accepted(name, choice)
            if reason is not None:
                self.fail(where, f"choice {choice!r} is rejected by the config: {reason}")
            if choice in choices:
                self.fail(where, f"choice {choice!r} is listed twice")
            choices.append(choice)
        return ParamSpec(name=name, type="categorical", choices=tuple(choices))

    def _ablation(self, table: dict[str, Any]) -> dict[str, Any]:
        base = TrainConfig.from_flat(self.recipe).to_flat()
        ablation: dict[str, Any] = {}
        for key, value in table.items():
            where = f"ablation.{key}"
            if key not in FLAT_KEYS:
                self.fail(where, _unknown_key_message())
            off = self._config_value(where, key, value)
            reason = self._accepted(key, off)
            if reason is not None:
                self.fail(where, f"{off!r} is rejected by the config: {reason}")
            if off == base[key]:  # switching it off would change nothing: not a factor here
                self.fail(where, f"off value {off!r} equals the recipe's, so it is not a factor")
            ablation[key] = off
        try:  # the ablation baseline turns every factor off at once
            TrainConfig.from_flat({**self.recipe, **ablation})
        except ConfigError as err:
            self.fail("ablation", f"all factors off together are rejected by the config: {err}")
        return ablation


def _reason(err: ConfigError, key: str) -> str:
    """A ConfigError's message without its leading ``key: ``, which the caller names."""
    text = str(err)
    prefix = f"{key}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _unknown_key_message() -> str:
    return f"not a config key (known: {', '.join(FLAT_KEYS)})"
