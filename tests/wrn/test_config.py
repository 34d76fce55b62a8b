import pytest

from wrn.config import ConfigError, TrainConfig, coerce, parse_assignment


def test_defaults_are_the_wrn28_10_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.model.depth, cfg.model.width, cfg.model.dropout) == (28, 10, 0.3)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.label_smoothing) == (0.3, 5e-4, 0.1)
    assert (cfg.run.epochs, cfg.run.batch_size) == (200, 256)
    assert (cfg.optim.warmup_frac, cfg.optim.final_lr) == (0.3, 1e-5)


def test_flat_round_trip() -> None:
    cfg = TrainConfig.from_flat({"depth": 16, "width": 8, "nesterov": True, "grad_accum": 2})
    assert TrainConfig.from_flat(cfg.to_flat()) == cfg
    assert cfg.model.depth == 16 and cfg.optim.nesterov and cfg.optim.grad_accum == 2


def test_config_is_frozen() -> None:
    cfg = TrainConfig()
    with pytest.raises(AttributeError):
        cfg.model.depth = 16  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("depth=16", "depth", 16),
        ("lr=0.05", "lr", 0.05),
        ("nesterov=true", "nesterov", True),
        ("nesterov=0", "nesterov", False),
        ("augmentation=basic", "augmentation", "basic"),
        (" width = 4 ", "width", 4),
    ],
)
def test_parse_assignment(text: str, key: str, value: object) -> None:
    assert parse_assignment(text) == (key, value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"depth": 12}, "depth"),
        ({"depth": "ten"}, "depth: expected int"),
        ({"depth": 10.5}, "depth: expected int"),
        ({"width": 0}, "width"),
        ({"dropout": 1.0}, "dropout"),
        ({"lr": -0.1}, "lr"),
        ({"lr": "nan"}, "lr"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"mixup_prob": 1.5}, "mixup_prob"),
        ({"augmentation": "autoaugment"}, "augmentation"),
        ({"nesterov": "maybe"}, "nesterov"),
        ({"epochs": 0}, "epochs"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"final_lr": 1.0}, "final_lr"),
        ({"no_such_key": 1}, "unknown config key"),
    ],
)
def test_invalid_values_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_flat(values)


def test_assignment_needs_equals() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("depth")
    with pytest.raises(ConfigError, match="unknown"):
        coerce("depthh", 1)


def test_execution_keys_are_marked_on_the_fields() -> None:
    from wrn.config import EXECUTION_KEYS, comparable

    assert set(EXECUTION_KEYS) == {
        "device",
        "workers",
        "compile",
        "data_dir",
        "download",
        "pipeline",
        "checkpoint_every",
    }
    a = TrainConfig().to_flat()
    b = TrainConfig().replace(device="cpu", checkpoint_every=5, compile=True).to_flat()
    assert comparable(a) == comparable(b)
    assert comparable(a) != comparable(TrainConfig().replace(dropout=0.1).to_flat())


def test_an_unknown_key_suggests_the_nearest() -> None:
    message = r"^unknown config key 'depht' \(did you mean 'depth'\?\)$"
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_flat({"depht": 10})
    with pytest.raises(ConfigError, match="did you mean 'mixup_prob'"):
        parse_assignment("mixup_prb=0.5")
    with pytest.raises(ConfigError, match="known: depth"):
        coerce("zzzzzz", 1)


@pytest.mark.parametrize("seed", [-1, 2**31, 2**32, 2**63])
def test_out_of_range_seed_is_a_config_error(seed: int) -> None:
    with pytest.raises(ConfigError, match=r"^seed: must be in \[0, 2147483647\]"):
        TrainConfig.from_flat({"seed": seed})
    assert TrainConfig.from_flat({"seed": 2**31 - 1}).run.seed == 2**31 - 1
