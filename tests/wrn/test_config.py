import pytest

from wrn import augment_spec, config
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


def test_each_allowed_value_set_is_the_literal_its_field_is_typed_with() -> None:
    for key, values in {
        "dataset": config.DATASETS,
        "device": config.DEVICES,
        "eval_split": config.EVAL_SPLITS,
        "pipeline": config.PIPELINES,
        "dropout_position": config.DROPOUT_POSITIONS,
        "augmentation": augment_spec.AUGMENTATION_NAMES,
        "aug_fill": augment_spec.AUG_FILLS,
    }.items():
        assert config.key_kind(key) == (str, values)
        # a direct construction is checked as a --set value is: one message
        section = getattr(TrainConfig(), config.FLAT_KEYS[key])
        message = f"^{key}: must be one of {', '.join(values)}, got 'nope'$"
        with pytest.raises(ConfigError, match=message):
            type(section)(**{key: "nope"})
        with pytest.raises(ConfigError, match=message):
            coerce(key, "nope")


def test_the_command_line_defaults_are_the_configs() -> None:
    cfg = TrainConfig()
    shown = (config.DEFAULT_DATASET, config.DEFAULT_DATA_DIR, config.DEFAULT_VAL_SIZE)
    assert (cfg.data.dataset, cfg.data.data_dir, cfg.data.val_size) == shown
    assert shown == ("cifar100", "./data", 5000)
    assert (cfg.run.device, cfg.run.checkpoint_every) == (config.DEFAULT_DEVICE, 1)
    assert config.DEFAULT_CHECKPOINT_EVERY == 1 and config.SEED_LIMIT == 2**31


def test_epochs_are_bounded() -> None:
    from wrn.config import MAX_EPOCHS

    assert TrainConfig.from_flat({"epochs": MAX_EPOCHS}).run.epochs == 100_000
    with pytest.raises(ConfigError, match=r"^epochs: must be <= 100,000, got 1000000000$"):
        TrainConfig.from_flat({"epochs": 1_000_000_000})


@pytest.mark.parametrize(
    ("images", "batch_size", "batches"),
    [(500, 32, 15), (512, 32, 16), (32, 32, 1), (20, 32, 1), (33, 32, 1), (64, 32, 2)],
)
def test_train_batches_are_full_batches_or_one(images: int, batch_size: int, batches: int) -> None:
    from wrn.epoch_plan import train_batches

    assert train_batches(images, batch_size) == batches


def test_check_runnable_wants_one_optimiser_step_per_epoch() -> None:
    from wrn.epoch_plan import check_runnable

    cfg = TrainConfig.from_flat({"batch_size": 32, "grad_accum": 15})
    check_runnable(cfg, 500)  # 15 batches: one step
    message = (
        r"^grad_accum: 1000 micro-batches per optimiser step, but 500 training images make 15 "
        r"batches of batch_size=32 per epoch: lower grad_accum or batch_size$"
    )
    with pytest.raises(ConfigError, match=message):
        check_runnable(cfg.replace(grad_accum=1000), 500)
    with pytest.raises(ConfigError, match="grad_accum: 16 micro-batches"):
        check_runnable(cfg.replace(grad_accum=16), 500)


@pytest.mark.parametrize(
    ("images", "batch", "accum", "warned"),
    [(2500, 512, 2, True), (2500, 64, 1, False), (45_000, 512, 2, False), (320, 64, 1, False)],
)
def test_few_optimiser_steps_per_epoch_are_warned(
    images: int, batch: int, accum: int, warned: bool
) -> None:
    from wrn.epoch_plan import few_steps_warning

    cfg = TrainConfig().replace(batch_size=batch, grad_accum=accum, epochs=10)
    line = few_steps_warning(cfg, images)
    assert (line is not None) == warned
    if warned:  # the light recipe on 2,500 images: 4 batches, 2 steps an epoch
        assert line == (
            "warning: 2500 training images in batches of 512 x 2 (grad_accum) make 2 optimiser "
            "steps per epoch, 20 in all: too few to learn much; a smaller batch_size gives more "
            "(--set batch_size=64)"
        )
