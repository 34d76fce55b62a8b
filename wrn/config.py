"""One frozen, typed training configuration, built from small sections.

Every field name is unique across sections, so the whole config also reads as one flat
``{key: value}`` namespace: the keys that search spaces, ``--set KEY=VALUE`` and trial
parameters use (``depth``, ``lr``, ``mixup_prob`` ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from wrn.augment_spec import AugFill, Augmentation

# each allowed-value set once, as the Literal a field is typed with; the tuples derive from it
Dataset = Literal["cifar100", "cifar10", "fashion-mnist", "synthetic"]
Device = Literal["auto", "cuda", "cpu"]
EvalSplit = Literal["val", "test"]  # "val": held out of the training set; "test": reruns
Pipeline = Literal["auto", "gpu", "cpu"]
DropoutPosition = Literal["between", "after"]
DATASETS: tuple[str, ...] = typing.get_args(Dataset)
DEVICES: tuple[str, ...] = typing.get_args(Device)
EVAL_SPLITS: tuple[str, ...] = typing.get_args(EvalSplit)
PIPELINES: tuple[str, ...] = typing.get_args(Pipeline)
DROPOUT_POSITIONS: tuple[str, ...] = typing.get_args(DropoutPosition)

# each data set's classes, which a model's num_classes follows ("synthetic": any number)
DATASET_CLASSES: dict[str, int] = {"cifar100": 100, "cifar10": 10, "fashion-mnist": 10}

# the defaults a command line shows (the fields below take them too)
DEFAULT_DATASET: Dataset = "cifar100"
DEFAULT_DATA_DIR = "./data"
DEFAULT_VAL_SIZE = 5000  # images held out of CIFAR-100's 50,000 training images
DEFAULT_DEVICE: Device = "auto"
DEFAULT_CHECKPOINT_EVERY = 1  # epochs

# the most epochs a run may have (run.epochs and a space's search.epochs): 500x the recipe's 200,
# so a bound no study plans to reach, while a slip such as 1e9 is refused before any work
MAX_EPOCHS = 100_000

# seeds must be valid for every seeding call they reach: np.random.seed needs < 2**32, and
# torch/NumPy/Python take the per-epoch and per-image seeds derived from them; 2**31 leaves room
SEED_LIMIT = 2**31

# marks a field that changes how a run executes, not what it computes: two configs that differ
# only in such keys train the same model (a checkpoint of one resumes the other)
_EXEC = {"execution": True}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _choices_message(choices: tuple[Any, ...], value: Any) -> str:
    return f"must be one of {', '.join(choices)}, got {value!r}"


def _check_choices(section: object) -> None:
    """Every Literal-typed field of a section holds one of its values (the one such check)."""
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        _, choices = key_kind(f.name)
        value = getattr(section, f.name)
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name}: {_choices_message(choices, value)}")


def valid_depth(depth: int) -> bool:
    """WRN depth is 6n+4: n BasicBlocks (two convs each) in each of 3 stages, plus 4."""
    return depth >= 10 and (depth - 4) % 6 == 0


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 28
    width: int = 10
    dropout: float = 0.3  # in each block, where dropout_position says
    # "between" the two 3x3 convs (the WRN paper's code) or "after" the second (the WRN-28-10
    # seed document's literal text)
    dropout_position: DropoutPosition = "between"
    first_dropout: float = 0.0  # after the stem conv (light recipe: 0.1)
    num_classes: int = 100

    def __post_init__(self) -> None:
        _check(valid_depth(self.depth), "depth", f"must be 6n+4 with n >= 1, got {self.depth}")
        _check(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        _check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        _check(
            0.0 <= self.first_dropout < 1.0,
            "first_dropout",
            f"must be in [0, 1), got {self.first_dropout}",
        )
        _check(self.num_classes >= 2, "num_classes", f"must be >= 2, got {self.num_classes}")
        _check_choices(self)


@dataclass(frozen=True)
class DataConfig:
    dataset: Dataset = DEFAULT_DATASET
    data_dir: str = field(default=DEFAULT_DATA_DIR, metadata=_EXEC)
    # fetch the official archive when the pickles are missing
    download: bool = field(default=True, metadata=_EXEC)
    val_size: int = DEFAULT_VAL_SIZE  # held out of the training set; what trials score on
    eval_split: EvalSplit = "val"  # "test" only for full reruns
    augmentation: Augmentation = "albumentations"
    # "gpu": images held on the GPU as uint8 and augmented there, per image, batch at a time;
    # "cpu": a DataLoader with per-image augmentation in worker processes; "auto": gpu on CUDA
    pipeline: Pipeline = field(default="auto", metadata=_EXEC)
    # albumentations recipe: how the affine warp fills the border ("zero", Albumentations 2.x's
    # default; "reflect", 1.x's, which the seed notebook likely ran), and whether the separate
    # Rotate(±15) is stacked on the Affine's own rotation (up to ±30° together)
    aug_fill: AugFill = "zero"
    extra_rotate: bool = True
    # DataLoader worker processes; -1 = one per CPU core, at most 8
    workers: int = field(default=-1, metadata=_EXEC)
    synthetic_train_size: int = 50_000  # CIFAR-100 sized by default
    synthetic_test_size: int = 10_000

    def __post_init__(self) -> None:
        _check_choices(self)
        _check(self.val_size >= 0, "val_size", f"must be >= 0, got {self.val_size}")
        _check(
            self.eval_split == "test" or self.val_size > 0,
            "val_size",
            "must be > 0 when scoring on the validation split",
        )
        _check(self.workers >= -1, "workers", f"must be >= -1, got {self.workers}")
        _check(self.synthetic_train_size >= 1, "synthetic_train_size", "must be >= 1")
        _check(self.synthetic_test_size >= 1, "synthetic_test_size", "must be >= 1")


@dataclass(frozen=True)
class MixConfig:
    """Per batch: CutMix with ``cutmix_prob``; otherwise MixUp with ``mixup_prob``."""

    mixup_prob: float = 0.0
    cutmix_prob: float = 0.0
    mix_alpha: float = 1.0  # Beta(alpha, alpha) for both MixUp and CutMix

    def __post_init__(self) -> None:
        for key in ("mixup_prob", "cutmix_prob"):
            value = getattr(self, key)
            _check(0.0 <= value <= 1.0, key, f"must be in [0, 1], got {value}")
        _check(self.mix_alpha > 0.0, "mix_alpha", f"must be > 0, got {self.mix_alpha}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.3  # OneCycleLR max LR
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_frac: float = 0.3  # OneCycleLR pct_start
    initial_lr_div: float = 25.0  # start LR = lr / initial_lr_div
    final_lr: float = 1e-5  # LR at the last step
    grad_accum: int = 1  # micro-batches per optimiser step
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    # OneCycleLR cycles momentum (0.85..0.95) by default in PyTorch; the recipes name a fixed 0.9
    cycle_momentum: bool = False

    def __post_init__(self) -> None:
        _check(self.lr > 0.0, "lr", f"must be > 0, got {self.lr}")
        _check(0.0 <= self.momentum < 1.0, "momentum", f"must be in [0, 1), got {self.momentum}")
        _check(not self.nesterov or self.momentum > 0.0, "nesterov", "needs momentum > 0")
        _check(self.weight_decay >= 0.0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(
            0.0 <= self.label_smoothing < 1.0,
            "label_smoothing",
            f"must be in [0, 1), got {self.label_smoothing}",
        )
        _check(0.0 < self.warmup_frac < 1.0, "warmup_frac", "must be in (0, 1)")
        _check(self.initial_lr_div >= 1.0, "initial_lr_div", "must be >= 1")
        _check(
            0.0 < self.final_lr < self.lr / self.initial_lr_div,
            "final_lr",
            f"must be in (0, lr / initial_lr_div), got {self.final_lr}",
        )
        _check(self.grad_accum >= 1, "grad_accum", f"must be >= 1, got {self.grad_accum}")
        _check(self.grad_clip >= 0.0, "grad_clip", f"must be >= 0, got {self.grad_clip}")


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 200
    batch_size: int = 256  # images per micro-batch (optimiser step = batch_size * grad_accum)
    seed: int = 0
    device: Device = field(default=DEFAULT_DEVICE, metadata=_EXEC)
    bf16: bool = True  # autocast to bfloat16 on CUDA; CPU always runs fp32
    channels_last: bool = True  # on CUDA only
    compile: bool = field(default=False, metadata=_EXEC)  # torch.compile the model
    # epochs between checkpoints (the last epoch is always saved)
    checkpoint_every: int = field(default=DEFAULT_CHECKPOINT_EVERY, metadata=_EXEC)

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _check(
            self.epochs <= MAX_EPOCHS, "epochs", f"must be <= {MAX_EPOCHS:,}, got {self.epochs}"
        )
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(
            0 <= self.seed < SEED_LIMIT,
            "seed",
            f"must be in [0, {SEED_LIMIT - 1}] (2**31 - 1), got {self.seed}",
        )
        _check_choices(self)
        _check(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")


SECTIONS = ("model", "data", "mixing", "optim", "run")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mixing: MixConfig = field(default_factory=MixConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.data.eval_split == "val" and self.data.dataset == "synthetic":
            _check(
                self.data.val_size < self.data.synthetic_train_size,
                "val_size",
                f"must be smaller than the training set ({self.data.synthetic_train_size})",
            )

    def to_flat(self) -> dict[str, Any]:
        """All values as one ``{key: value}`` dict (JSON-serialisable)."""
        flat: dict[str, Any] = {}
        for section in SECTIONS:
            flat.update(dataclasses.asdict(getattr(self, section)))
        return flat

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from flat keys; missing keys take their defaults, unknown keys are an error."""
        return cls().replace(**values)

    def replace(self, **values: Any) -> TrainConfig:
        """A copy with some flat keys changed, each value coerced to its field's type.

        A new ``dataset`` brings its number of classes unless ``num_classes`` is given too.
        """
        by_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        dataset = coerce("dataset", values["dataset"]) if "dataset" in values else None
        if dataset in DATASET_CLASSES and "num_classes" not in values:
            values = {**values, "num_classes": DATASET_CLASSES[dataset]}  # the model follows
        for key, value in values.items():
            section = FLAT_KEYS.get(key)
            if section is None:
                raise ConfigError(unknown_key_message(key))
            by_section[section][key] = coerce(key, value)
        return dataclasses.replace(
            self,
            **{s: dataclasses.replace(getattr(self, s), **v) for s, v in by_section.items() if v},
        )


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {s: hints[s] for s in SECTIONS}


# flat key -> section name, and flat key -> declared type
FLAT_KEYS: dict[str, str] = {}
KEY_TYPES: dict[str, Any] = {}
for _section, _cls in _section_types().items():
    for _name, _hint in typing.get_type_hints(_cls).items():
        assert _name not in FLAT_KEYS, f"duplicate config key {_name}"
        FLAT_KEYS[_name] = _section
        KEY_TYPES[_name] = _hint

# keys marked ``metadata={"execution": True}``: device, workers, compile, data_dir, download,
# pipeline, checkpoint_every (in declaration order)
EXECUTION_KEYS: tuple[str, ...] = tuple(
    f.name
    for s in SECTIONS
    for f in dataclasses.fields(_section_types()[s])
    if f.metadata.get("execution", False)
)


def comparable(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config without its execution-only keys: equal for runs that compute the same."""
    return {k: v for k, v in flat.items() if k not in EXECUTION_KEYS}


def unknown_key_message(key: str) -> str:
    """"unknown config key 'depht' (did you mean 'depth'?)", or the known keys if none is near."""
    near = difflib.get_close_matches(key, FLAT_KEYS, n=1)
    if near:
        return f"unknown config key {key!r} (did you mean {near[0]!r}?)"
    return f"unknown config key {key!r} (known: {', '.join(FLAT_KEYS)})"


def key_kind(key: str) -> tuple[type, tuple[Any, ...] | None]:
    """The base type of a flat key and, for a Literal, its allowed values."""
    hint = KEY_TYPES[key]
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), choices
    if isinstance(hint, types.UnionType):
        raise AssertionError(f"{key}: union types are not used in the config")
    return hint, None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    result = float(value)
    if not math.isfinite(result):
        raise ValueError
    return result


_CONVERT: dict[type, Any] = {bool: _to_bool, int: _to_int, float: _to_float, str: str}


def coerce(key: str, value: Any) -> Any:
    """Convert a value (possibly a string from the command line) to ``key``'s type."""
    if key not in KEY_TYPES:
        raise ConfigError(unknown_key_message(key))
    kind, choices = key_kind(key)
    try:
        result = _CONVERT[kind](value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}") from None
    if choices is not None and result not in choices:
        raise ConfigError(f"{key}: {_choices_message(choices, result)}")
    return result


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` (from ``--set``) into a validated, typed pair."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key, coerce(key, value.strip())


def parse_assignments(texts: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Every ``--set KEY=VALUE`` as one dict (a later value wins); an error names the text."""
    values: dict[str, Any] = {}
    for text in texts:
        try:
            key, value = parse_assignment(text)
        except ConfigError as e:
            raise ConfigError(f"--set {text}: {e}") from None
        values[key] = value
    return values
