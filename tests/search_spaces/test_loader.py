"""Search-space files: the built-in spaces match their seed recipes; bad files fail clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search_spaces import (
    BUILTIN,
    SPACES_DIR,
    ParamSpec,
    SearchSpace,
    SpaceError,
    list_spaces,
    load_space,
    over_cap,
)
from wrn.config import TrainConfig
from wrn.network import count_params

REPO = Path(__file__).resolve().parents[2]
SEARCHED = [
    "dropout",
    "label_smoothing",
    "mixup_prob",
    "cutmix_prob",
    "weight_decay",
    "lr",
    "depth",
    "width",
]

# The seed documents' values (wrn-28-10-cifar100.md, wrn-light.md), spelled out on purpose.
WRN28_10_RECIPE = {
    "depth": 28,
    "width": 10,
    "dropout": 0.3,
    "dropout_position": "between",
    "first_dropout": 0.0,
    "label_smoothing": 0.1,
    "augmentation": "albumentations",
    "extra_rotate": True,
    "aug_fill": "zero",
    "batch_size": 256,
    "epochs": 200,
    "lr": 0.3,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "warmup_frac": 0.3,
    "final_lr": 1e-5,
    "cycle_momentum": False,
    "mix_alpha": 1.0,
    "cutmix_prob": 0.2,
    "mixup_prob": 1.0,
    "grad_accum": 1,
    "grad_clip": 0.0,
}
LIGHT_RECIPE = {
    "depth": 16,
    "width": 8,
    "dropout": 0.25,
    "dropout_position": "between",
    "first_dropout": 0.1,
    "label_smoothing": 0.15,
    "augmentation": "randaugment",
    "batch_size": 512,
    "grad_accum": 2,
    "grad_clip": 0.5,
    "weight_decay": 1e-4,
    "epochs": 85,
    "mixup_prob": 0.0,
    "cutmix_prob": 0.0,
    "momentum": 0.9,
    "nesterov": True,
    "lr": 0.1,
    "warmup_frac": 0.3,
    "final_lr": 1e-5,
    "cycle_momentum": False,
}


# -- built-in spaces ---------------------------------------------------------------------


def test_builtin_names_match_the_files() -> None:
    assert list_spaces() == list(BUILTIN) == ["wrn28_10", "light"]
    assert sorted(p.stem for p in SPACES_DIR.glob("*.toml")) == sorted(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_loads_by_name_and_by_path(name: str) -> None:
    by_name = load_space(name)
    assert isinstance(by_name, SearchSpace)
    assert by_name.name == name == by_name.path.stem
    assert by_name.description and by_name.source.endswith(".md")
    path = SPACES_DIR / f"{name}.toml"
    assert load_space(path) == load_space(str(path)) == by_name


def test_wrn28_10_recipe_is_the_seed() -> None:
    space = load_space("wrn28_10")
    assert space.recipe == WRN28_10_RECIPE
    assert space.source == "wrn-28-10-cifar100.md"
    assert space.search_epochs == 30
    assert space.ablation == {
        "dropout": 0.0,
        "label_smoothing": 0.0,
        "mixup_prob": 0.0,
        "cutmix_prob": 0.0,
        "augmentation": "basic",
        "weight_decay": 1e-4,
    }


def test_light_recipe_is_the_seed() -> None:
    space = load_space("light")
    assert space.recipe == LIGHT_RECIPE
    assert space.source == "wrn-light.md"
    assert space.search_epochs == 20
    assert space.ablation == {
        "dropout": 0.0,
        "first_dropout": 0.0,
        "label_smoothing": 0.0,
        "augmentation": "basic",
        "weight_decay": 3e-5,
    }


@pytest.mark.parametrize("name", BUILTIN)
def test_recipe_config_is_valid(name: str) -> None:
    space = load_space(name)
    config = space.recipe_config()
    assert isinstance(config, TrainConfig)
    flat = config.to_flat()
    assert {k: flat[k] for k in space.recipe} == space.recipe
    assert space.recipe_config(epochs=space.search_epochs).run.epochs == space.search_epochs
    # A trial is a small fraction of the full recipe.
    assert space.search_epochs <= config.run.epochs // 4


@pytest.mark.parametrize("name", BUILTIN)
def test_searched_params_span_the_recipe(name: str) -> None:
    space = load_space(name)
    assert list(space.params) == SEARCHED
    flat = space.recipe_config().to_flat()
    for param in space.params.values():
        assert param.low is not None and param.high is not None
        assert param.low <= flat[param.name] <= param.high, param.name
        assert param.contains(flat[param.name]), param.name
    assert space.params["weight_decay"].log and space.params["lr"].log


@pytest.mark.parametrize("name", BUILTIN)
def test_extremes_build_valid_configs(name: str) -> None:
    space = load_space(name)
    space.recipe_config(**{n: p.low for n, p in space.params.items()})
    space.recipe_config(**{n: p.high for n, p in space.params.items()})
    space.recipe_config(**space.ablation)


@pytest.mark.parametrize("name", BUILTIN)
def test_ablation_factors(name: str) -> None:
    space = load_space(name)
    flat = space.recipe_config().to_flat()
    assert space.ablation["weight_decay"] == space.params["weight_decay"].low
    for key, off in space.ablation.items():
        assert flat[key] != off, key  # switching a factor off changes the recipe


@pytest.mark.parametrize("name", BUILTIN)
def test_to_dict_is_json(name: str) -> None:
    space = load_space(name)
    data = json.loads(json.dumps(space.to_dict()))
    assert data["name"] == name
    assert data["recipe"] == space.recipe
    assert data["search"]["epochs"] == space.search_epochs
    assert list(data["search"]["params"]) == SEARCHED
    assert data["search"]["params"]["depth"]["step"] == 6
    assert data["ablation"] == space.ablation


def test_param_contains() -> None:
    depth = ParamSpec("depth", "int", low=16, high=28, step=6)
    assert [d for d in range(10, 35) if depth.contains(d)] == [16, 22, 28]
    assert not depth.contains(True) and not depth.contains(22.5) and not depth.contains("22")
    width = ParamSpec("width", "int", low=4, high=10)
    assert width.contains(7) and width.contains(7.0) and not width.contains(11)
    lr = ParamSpec("lr", "float", low=0.05, high=0.5, log=True)
    assert lr.contains(0.3) and not lr.contains(0.6) and not lr.contains(float("nan"))
    smooth = ParamSpec("label_smoothing", "float", low=0.0, high=0.3, step=0.1)
    assert smooth.contains(0.2) and not smooth.contains(0.25)
    aug = ParamSpec("augmentation", "categorical", choices=("basic", "randaugment"))
    assert aug.contains("basic") and not aug.contains("albumentations")
    nesterov = ParamSpec("nesterov", "categorical", choices=(True,))
    assert nesterov.contains(True) and not nesterov.contains(1)


def test_package_does_not_import_optuna() -> None:
    code = "import sys, search_spaces; sys.exit('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# -- validation errors -------------------------------------------------------------------

HEAD = 'name = "tiny"\ndescription = "a test space"\nsource = "test.md"\n'
RECIPE = "[recipe]\ndepth = 16\nwidth = 4\ndropout = 0.3\n"
SEARCH = "[search]\nepochs = 2\n"
PARAMS = '[search.params.dropout]\ntype = "float"\nlow = 0.0\nhigh = 0.5\n'
ABLATION = "[ablation]\ndropout = 0.0\n"


def space_text(
    head: str = HEAD,
    recipe: str = RECIPE,
    search: str = SEARCH,
    params: str = PARAMS,
    ablation: str = ABLATION,
) -> str:
    return "\n".join([head, recipe, search, params, ablation])


def param(name: str, body: str) -> str:
    return f"[search.params.{name}]\n{body}\n"


ERROR_CASES = {
    # file level
    "toml_syntax": ('name = "tiny"\ndescription = = "x"\n', ["invalid TOML", "line 2"]),
    "unknown_top_key": (space_text(head=HEAD + 'colour = "red"\n'), ["colour", "top-level"]),
    "unknown_top_table": (space_text() + "[extras]\na = 1\n", ["extras", "table"]),
    "missing_search": (space_text(search="", params=""), ["search", "missing"]),
    "name_not_string": (space_text(head=HEAD.replace('"tiny"', "3")), ["name", "string"]),
    "unknown_search_key": (space_text(search=SEARCH + "trials = 5\n"), ["search.trials"]),
    # search.epochs
    "epochs_zero": (space_text(search="[search]\nepochs = 0\n"), ["search.epochs", ">= 1"]),
    "epochs_past_the_bound": (
        space_text(search="[search]\nepochs = 100001\n"),
        ["search.epochs", "<= 100,000"],
    ),
    "epochs_not_int": (space_text(search='[search]\nepochs = "30"\n'), ["search.epochs"]),
    "no_params": (space_text(params=""), ["search.params", "missing"]),
    # param tables
    "unknown_param_key": (
        space_text(params=param("dropout", 'type = "float"\nlow = 0.0\nhigh = 0.5\nlo = 0.1')),
        ["search.params.dropout", "'lo'"],
    ),
    "choices_on_range": (
        space_text(params=param("dropout", 'type = "float"\nlow = 0.0\nhigh = 0.5\nchoices = []')),
        ["search.params.dropout", "'choices'"],
    ),
    "param_not_config_key": (
        space_text(params=param("dropuot", 'type = "float"\nlow = 0.0\nhigh = 0.5')),
        ["search.params.dropuot", "not a config key"],
    ),
    "epochs_searched": (
        space_text(params=param("epochs", 'type = "int"\nlow = 10\nhigh = 20')),
        ["search.params.epochs", "search.epochs"],
    ),
    "wrong_type": (
        space_text(params=param("dropout", 'type = "uniform"\nlow = 0.0\nhigh = 0.5')),
        ["search.params.dropout", "'uniform'"],
    ),
    "missing_type": (
        space_text(params=param("dropout", "low = 0.0\nhigh = 0.5")),
        ["search.params.dropout", "missing type"],
    ),
    "low_not_number": (
        space_text(params=param("dropout", 'type = "float"\nlow = "a"\nhigh = 0.5')),
        ["search.params.dropout", "low", "'a'"],
    ),
    "log_not_bool": (
        space_text(params=param("lr", 'type = "float"\nlow = 0.05\nhigh = 0.5\nlog = "yes"')),
        ["search.params.lr", "log", "'yes'"],
    ),
    "int_param_float_bound": (
        space_text(params=param("width", 'type = "int"\nlow = 4.0\nhigh = 8')),
        ["search.params.width", "low", "integer"],
    ),
    "missing_low": (
        space_text(params=param("dropout", 'type = "float"\nhigh = 0.5')),
        ["search.params.dropout", "missing low"],
    ),
    "missing_high": (
        space_text(params=param("dropout", 'type = "float"\nlow = 0.0')),
        ["search.params.dropout", "missing high"],
    ),
    "missing_choices": (
        space_text(params=param("augmentation", 'type = "categorical"')),
        ["search.params.augmentation", "missing choices"],
    ),
    "low_above_high": (
        space_text(params=param("dropout", 'type = "float"\nlow = 0.4\nhigh = 0.2')),
        ["search.params.dropout", "low 0.4 is greater than high 0.2"],
    ),
    "log_low_zero": (
        space_text(
            params=param("weight_decay", 'type = "float"\nlow = 0.0\nhigh = 1e-3\nlog = true')
        ),
        ["search.params.weight_decay", "log needs low > 0"],
    ),
    "log_and_step": (
        space_text(
            params=param("lr", 'type = "float"\nlow = 0.1\nhigh = 0.5\nlog = true\nstep = 0.1')
        ),
        ["search.params.lr", "log and step"],
    ),
    "step_not_dividing": (
        space_text(params=param("width", 'type = "int"\nlow = 4\nhigh = 9\nstep = 2')),
        ["search.params.width", "multiple of step"],
    ),
    "step_not_positive": (
        space_text(params=param("dropout", 'type = "float"\nlow = 0.0\nhigh = 0.0\nstep = 0.0')),
        ["search.params.dropout", "step must be > 0"],
    ),
    "empty_choices": (
        space_text(params=param("augmentation", 'type = "categorical"\nchoices = []')),
        ["search.params.augmentation", "empty"],
    ),
    "duplicate_choices": (
        space_text(params=param("dropout", 'type = "categorical"\nchoices = [0, 0.0]')),
        ["search.params.dropout", "twice"],
    ),
    # depth must stay 6n+4
    "depth_low_not_6n4": (
        space_text(params=param("depth", 'type = "int"\nlow = 11\nhigh = 23\nstep = 6')),
        ["search.params.depth", "low 11 is not 6n+4"],
    ),
    "depth_without_step": (
        space_text(params=param("depth", 'type = "int"\nlow = 10\nhigh = 22')),
        ["search.params.depth", "missing step"],
    ),
    "depth_step_not_6k": (
        space_text(params=param("depth", 'type = "int"\nlow = 10\nhigh = 22\nstep = 4')),
        ["search.params.depth", "step 4 is not a multiple of 6"],
    ),
    "depth_choice_not_6n4": (
        space_text(params=param("depth", 'type = "categorical"\nchoices = [16, 20]')),
        ["search.params.depth", "choice 20 is not 6n+4"],
    ),
    # values the config rejects
    "dropout_high_out_of_range": (
        space_text(params=param("dropout", 'type = "float"\nlow = 0.0\nhigh = 1.5')),
        ["search.params.dropout", "high 1.5 is rejected"],
    ),
    "lr_low_breaks_final_lr": (
        space_text(params=param("lr", 'type = "float"\nlow = 1e-5\nhigh = 0.5\nlog = true')),
        ["search.params.lr", "low 1e-05 is rejected", "final_lr"],
    ),
    "bad_categorical_choice": (
        space_text(
            params=param("augmentation", 'type = "categorical"\nchoices = ["basic", "fancy"]')
        ),
        ["search.params.augmentation.choices[1]", "fancy"],
    ),
    "choice_wrong_type": (
        space_text(params=param("nesterov", 'type = "categorical"\nchoices = [true, "no"]')),
        ["search.params.nesterov.choices[1]", "boolean"],
    ),
    # type vs the config key's type
    "float_for_int_key": (
        space_text(params=param("depth", 'type = "float"\nlow = 10\nhigh = 22')),
        ["search.params.depth", "type 'float' does not fit depth"],
    ),
    "int_for_float_key": (
        space_text(params=param("dropout", 'type = "int"\nlow = 0\nhigh = 1')),
        ["search.params.dropout", "type 'int' does not fit dropout"],
    ),
    "int_for_string_key": (
        space_text(params=param("augmentation", 'type = "int"\nlow = 0\nhigh = 2')),
        ["search.params.augmentation", "type 'int' does not fit augmentation"],
    ),
    "float_for_string_key": (
        space_text(params=param("augmentation", 'type = "float"\nlow = 0\nhigh = 2')),
        ["search.params.augmentation", "type 'float' does not fit augmentation"],
    ),
    # recipe
    "recipe_unknown_key": (
        space_text(recipe=RECIPE + "dropot = 0.2\n"),
        ["recipe.dropot", "not a config key"],
    ),
    "recipe_invalid_value": (
        space_text(recipe=RECIPE.replace("dropout = 0.3", "dropout = 1.2")),
        ["recipe.dropout", "[0, 1)"],
    ),
    "recipe_wrong_value_type": (
        space_text(recipe=RECIPE.replace("depth = 16", 'depth = "16"')),
        ["recipe.depth", "integer"],
    ),
    "recipe_bad_depth": (
        space_text(recipe=RECIPE.replace("depth = 16", "depth = 18")),
        ["recipe.depth", "6n+4"],
    ),
    # cost cap
    "max_params_not_int": (
        space_text(search=SEARCH + 'max_params = "3M"\n'),
        ["search.max_params", "positive integer", "'3M'"],
    ),
    "max_params_zero": (
        space_text(search=SEARCH + "max_params = 0\n"),
        ["search.max_params", "positive integer"],
    ),
    "recipe_over_cap": (
        space_text(search=SEARCH + "max_params = 1_000_000\n"),
        [
            "search.max_params",
            "the recipe's own WRN-16-4 has 2,772,020 parameters (2.8 M)",
            "over the cap of 1,000,000 (1.0 M)",
        ],
    ),
    "recipe_cross_key": (
        space_text(recipe=RECIPE + "lr = 1e-4\n"),
        ["recipe.final_lr", "lr / initial_lr_div"],
    ),
    # ablation
    "ablation_unknown_key": (
        space_text(ablation=ABLATION + "dropout_off = 0.0\n"),
        ["ablation.dropout_off", "not a config key"],
    ),
    "ablation_invalid_value": (
        space_text(ablation=ABLATION + 'augmentation = "none"\n'),
        ["ablation.augmentation", "none"],
    ),
    "ablation_out_of_range": (
        space_text(ablation=ABLATION + "weight_decay = -1e-4\n"),
        ["ablation.weight_decay", "rejected"],
    ),
    "ablation_changes_nothing": (
        space_text(ablation=ABLATION + "first_dropout = 0.0\n"),
        ["ablation.first_dropout", "equals the recipe"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_invalid_space(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, message


def test_valid_template_loads(tmp_path: Path) -> None:
    # The error cases above are each one change away from this valid file.
    path = tmp_path / "tiny.toml"
    path.write_text(space_text())
    space = load_space(path)
    assert space.name == "tiny" and space.search_epochs == 2
    assert space.params["dropout"] == ParamSpec("dropout", "float", low=0.0, high=0.5)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SpaceError, match="file not found") as info:
        load_space(path)
    assert str(path) in str(info.value)


def test_unknown_space_name_lists_builtins() -> None:
    with pytest.raises(SpaceError) as info:
        load_space("wrn40_4")
    message = str(info.value)
    assert "wrn40_4" in message and all(name in message for name in BUILTIN)


# -- cost caps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "width", "classes"), [(10, 1, 10), (16, 1, 100), (16, 8, 100), (22, 12, 100)]
)
def test_count_params_matches_the_built_model(depth: int, width: int, classes: int) -> None:
    import torch

    from wrn.model import WideResNet, count_parameters

    recipe = load_space("wrn28_10").recipe_config()
    assert count_params(recipe.model) == 36_536_884  # the README's WRN-28-10 figure
    model = recipe.replace(depth=depth, width=width, num_classes=classes).model
    with torch.device("meta"):
        built = WideResNet.from_config(model)
    assert count_params(model) == count_parameters(built)


def test_loading_a_space_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, search_spaces as s; s.load_space('light'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("name", "cap"), [("wrn28_10", 36_536_884), ("light", 11_007_540)])
def test_builtin_cap_is_the_recipe_network(name: str, cap: int) -> None:
    space = load_space(name)
    assert space.cost_cap == cap == count_params(space.recipe_config().model)
    assert over_cap(space, space.recipe_config()) is None
    assert space.to_dict()["search"]["max_params"] == cap


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_ranges_agree_with_the_cap(name: str) -> None:
    # each space's comments say which depth x width pairs its cap cuts
    space = load_space(name)
    depth, width = space.params["depth"], space.params["width"]
    assert depth.low is not None and depth.high is not None and depth.step is not None
    assert width.low is not None and width.high is not None and width.step is not None
    over = {
        (d, w)
        for d in range(depth.low, depth.high + 1, depth.step)
        for w in range(width.low, width.high + 1, width.step)
        if over_cap(space, space.recipe_config(depth=d, width=w)) is not None
    }
    expected = {"wrn28_10": set(), "light": {(16, 10), (22, 8), (22, 10)}}
    assert over == expected[name]


def test_over_cap_gives_the_reason() -> None:
    space = load_space("wrn28_10")
    assert over_cap(space, space.recipe_config(depth=28, width=12)) == (
        "WRN-28-12 has 52.6 M parameters, over the space's cap of 36.5 M "
        "(the recipe's WRN-28-10)"
    )
    assert over_cap(space, space.recipe_config(depth=22, width=10)) is None
    light = load_space("light")
    reason = over_cap(light, light.recipe_config(depth=22, width=10))
    assert reason == (
        "WRN-22-10 has 26.9 M parameters, over the space's cap of 11.0 M (the recipe's WRN-16-8)"
    )


def test_declared_cap(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(space_text(search=SEARCH + "max_params = 5_000_000\n"))
    space = load_space(path)
    assert space.cost_cap == 5_000_000
    assert over_cap(space, space.recipe_config(depth=16, width=6)) == (
        "WRN-16-6 has 6.2 M parameters, over the space's cap of 5.0 M (search.max_params)"
    )
    assert over_cap(space, space.recipe_config(depth=22, width=4)) is None  # 4.3 M
    path.write_text(space_text())  # no max_params: the recipe's WRN-16-4
    assert load_space(path).cost_cap == count_params(load_space(path).recipe_config().model)


def off_mass(spec: ParamSpec) -> float:
    """The share of uniform random draws of ``spec`` that give its low end (exact)."""
    assert spec.type == "float" and spec.low is not None and spec.high is not None
    if spec.step is None:
        return 0.0  # a continuous range: 0 has no mass
    return 1 / (round((spec.high - spec.low) / spec.step) + 1)


def test_light_space_draws_no_mixing_often() -> None:
    # the recipe mixes not at all; the search must reach that point, not only ones near it
    space = load_space("light")
    mixup, cutmix = space.params["mixup_prob"], space.params["cutmix_prob"]
    assert mixup.low == cutmix.low == 0.0
    assert mixup.contains(space.recipe["mixup_prob"])
    assert cutmix.contains(space.recipe["cutmix_prob"])
    assert off_mass(mixup) * off_mass(cutmix) >= 0.1
