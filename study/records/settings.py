"""What each kind of study records as its settings, typed both ways (``to_dict`` and back),
with the names of a rerun's and an ablation's planned runs and variants."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from search_spaces import ParamSpec, SearchSpace
from study.pruning import DEFAULT_PRUNER
from study.records.keys import StudyAttrs, StudyKind, study_kind
from wrn.datasets import DataIdentity

SAMPLERS = ("tpe", "random")  # the first is the default
SAMPLER_STARTUP_TRIALS = 10  # TPE's random draws before it models (Optuna's default)

# -- a search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataRecord:
    """The data a search trained on: its ``--data-dir`` made absolute, and what that held."""

    data_dir: str
    identity: DataIdentity

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, **asdict(self.identity)}

    @classmethod
    def from_dict(cls, d: Any) -> DataRecord | None:
        """The record read back; None (unknown) for one this code did not write."""
        try:
            fields = {f: d[f] for f in DataIdentity.__dataclass_fields__}
            return cls(str(d["data_dir"]), DataIdentity(**fields))
        except (KeyError, TypeError):
            return None

    @property
    def synthetic(self) -> bool:
        """The synthetic set is made in memory: no folder to name or pass."""
        return self.identity.folder == ""

    def same_data(self, other: DataIdentity) -> bool:
        """Whether ``other`` is this data: the same kind, counts and file fingerprint (the
        folder may have moved)."""
        mine = self.identity
        return (mine.dataset, mine.train_images, mine.test_images, mine.fingerprint) == (
            other.dataset,
            other.train_images,
            other.test_images,
            other.fingerprint,
        )


def describe_data(identity: DataIdentity) -> str:
    """The data in words: ``cifar100 in /abs/cifar-100-python (50,000 train images, 10,000
    test; fingerprint ...)``."""
    where = f" in {identity.folder}" if identity.folder else ""
    return (
        f"{identity.dataset}{where} ({identity.train_images:,} train images, "
        f"{identity.test_images:,} test; fingerprint {identity.fingerprint})"
    )


@dataclass(frozen=True)
class SearchSettings:
    """What a search pins: a resumed study must keep the ``PINNED`` ones."""

    space: SearchSpace
    fixed: dict[str, Any]
    epochs: int
    recipe_epochs: int | None
    dataset: str
    val_size: int
    seed: int
    pruner: str = DEFAULT_PRUNER
    sampler: str = SAMPLERS[0]
    # a study recorded before this setting ran with Optuna's default, the same number
    sampler_startup_trials: int = SAMPLER_STARTUP_TRIALS
    # None: a study recorded before data identities, its data unknown (never refused)
    data: DataRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    PINNED = ("space", "fixed", "epochs", "dataset", "val_size", "seed", "sampler_startup_trials")

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "extra"}
        data = None if self.data is None else self.data.to_dict()
        return {**self.extra, **d, "space": self.space.to_dict(), "data": data}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSettings:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values = {k: v for k, v in d.items() if k in known}
        values["space"] = space_from_dict(d.get("space") or {})
        values["data"] = DataRecord.from_dict(d.get("data"))
        values.setdefault("recipe_epochs", None)
        return cls(**values, extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def of(cls, user_attrs: Mapping[str, Any]) -> SearchSettings | None:
        """A search study's settings; None for another kind, or a study made before them."""
        recorded = user_attrs.get(StudyAttrs.SETTINGS)
        if study_kind(user_attrs) != StudyKind.SEARCH or not isinstance(recorded, dict):
            return None
        try:
            return cls.from_dict(recorded)
        except TypeError:  # a required setting missing: not one this code wrote
            return None

    def study_attrs(self) -> dict[str, Any]:
        return {StudyAttrs.KIND: StudyKind.SEARCH.value, StudyAttrs.SETTINGS: self.to_dict()}

    @property
    def split_seed(self) -> int:
        """The seed every trial trained and split the validation set with (``--set seed``
        overrides ``--seed``)."""
        return int(self.fixed.get("seed", self.seed))

    def changed_from(self, recorded: Mapping[str, Any]) -> list[str]:
        """One phrase per pinned setting this differs from ``recorded`` in, naming both."""
        mine = self.to_dict()
        return [
            f"{k}={_short(recorded[k])}; this command asks for {k}={_short(mine[k])}"
            for k in self.PINNED
            if k in recorded and recorded[k] != mine[k]
        ]


def space_from_dict(d: Mapping[str, Any]) -> SearchSpace:
    """A space recorded as ``SearchSpace.to_dict()``, read back; what an older or hand-made
    record lacks reads as empty (0 epochs, no parameters)."""
    search = d.get("search") or {}
    params = {
        name: ParamSpec(
            name=name,
            type=str(spec.get("type", "float")),
            low=spec.get("low"),
            high=spec.get("high"),
            log=bool(spec.get("log", False)),
            step=spec.get("step"),
            choices=None if spec.get("choices") is None else tuple(spec["choices"]),
        )
        for name, spec in (search.get("params") or {}).items()
    }
    return SearchSpace(
        name=str(d.get("name", "?")),
        path=Path(str(d.get("path", ""))),
        description=str(d.get("description", "")),
        source=str(d.get("source", "")),
        recipe=dict(d.get("recipe") or {}),
        search_epochs=int(search.get("epochs") or 0),
        params=params,
        ablation=dict(d.get("ablation") or {}),
        cost_cap=int(search.get("max_params") or 0),
    )


def _short(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:  # a space definition: its name says enough
        return f"the space {value['name']!r} as then defined"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- a rerun --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RerunSettings:
    """What a rerun study (``NAME-rerun``) records: the search it retrains."""

    source_study: str

    def study_attrs(self) -> dict[str, Any]:
        return {StudyAttrs.KIND: StudyKind.RERUN.value, StudyAttrs.SOURCE_STUDY: self.source_study}

    @classmethod
    def of(cls, user_attrs: Mapping[str, Any]) -> RerunSettings | None:
        if study_kind(user_attrs) != StudyKind.RERUN:
            return None
        return cls(str(user_attrs.get(StudyAttrs.SOURCE_STUDY, "?")))


def rerun_run_key(trial: int, seed: int, epochs: int) -> str:
    """A rerun's planned run: trial ``trial`` of the search, trained with ``seed``."""
    return f"trial{trial}-seed{seed}-e{epochs}"


@dataclass(frozen=True)
class RerunRun:
    seed: int
    test_acc: float
    checkpoint: str | None = None


@dataclass(frozen=True)
class RerunSummary:
    """A search study's record of one of its trials rerun at ``epochs``, one run per seed."""

    trial: int
    epochs: int
    runs: tuple[RerunRun, ...]

    KEY = re.compile(r"^rerun_trial(\d+)_e(\d+)$")

    @property
    def key(self) -> str:
        return f"rerun_trial{self.trial}_e{self.epochs}"

    @property
    def mean(self) -> float:
        return math.fsum(r.test_acc for r in self.runs) / len(self.runs)

    @property
    def std(self) -> float:
        import statistics

        accs = [r.test_acc for r in self.runs]
        return statistics.stdev(accs) if len(accs) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "epochs": self.epochs,
            "runs": [asdict(r) for r in self.runs],
            "test_acc_mean": self.mean,
            "test_acc_std": self.std,
        }

    def record(self, study: optuna.Study) -> None:
        study.set_user_attr(self.key, self.to_dict())

    @classmethod
    def all(cls, user_attrs: Mapping[str, Any]) -> list[RerunSummary]:
        """Every rerun summary a search study holds, by (trial, epochs)."""
        found = []
        for key, value in user_attrs.items():
            match = cls.KEY.match(key)
            if match and isinstance(value, dict) and value.get("runs"):
                runs = tuple(
                    RerunRun(int(r["seed"]), float(r["test_acc"]), r.get("checkpoint"))
                    for r in value["runs"]
                )
                found.append(cls(int(match[1]), int(match[2]), runs))
        return sorted(found, key=lambda s: (s.trial, s.epochs))


# -- an ablation ----------------------------------------------------------------------------

BASE_VARIANT = "base"  # the base configuration itself
PATH_PREFIX = "path-"
PATH_START = "path-0-recipe"  # the path's first configuration, when it is not the base


def off_variant(factor: str) -> str:
    """The variant with ``factor`` switched off."""
    return f"{factor}-off"


def path_variant(step: int, key: str) -> str:
    """The path's candidate at ``step`` that changes ``key``."""
    return f"{PATH_PREFIX}{step}-{key}"


def is_path_variant(variant: str) -> bool:
    return variant.startswith(PATH_PREFIX)


def ablation_run_key(variant: str, seed: int) -> str:
    """An ablation's planned run: ``variant`` trained with ``seed``."""
    return f"{variant}/seed{seed}"


@dataclass(frozen=True)
class AblationSettings:
    """What an ablation study (``NAME-ablation``) records, one study attribute per field."""

    source_study: str
    base: str = "best"  # "best" (a trial of the search) or "recipe"
    base_trial: int | None = None
    base_config: dict[str, Any] = field(default_factory=dict)  # flat TrainConfig
    epochs: int | None = None
    dataset: str | None = None
    data_dir: str | None = None  # absolute; for the note's resume command
    val_size: int | None = None
    factors: dict[str, Any] = field(default_factory=dict)  # factor -> its "off" value
    skipped: list[str] = field(default_factory=list)  # factors already (near) off in the base
    skip_reasons: dict[str, str] = field(default_factory=dict)  # factor -> why not ablated
    seeds: list[int] = field(default_factory=list)
    search_seeds: list[int] = field(default_factory=list)  # the search's: never an ablation's
    path_target: dict[str, Any] | None = None  # with --path: the flat config it walks to
    path_target_trial: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.path_target is None:  # not asked for the path: a recorded target stays
            del d["path_target"], d["path_target_trial"]
        return d

    def study_attrs(self) -> dict[str, Any]:
        return {StudyAttrs.KIND: StudyKind.ABLATION.value, **self.to_dict()}

    @classmethod
    def of(cls, user_attrs: Mapping[str, Any]) -> AblationSettings | None:
        if study_kind(user_attrs) != StudyKind.ABLATION:
            return None
        known = {f: user_attrs[f] for f in cls.__dataclass_fields__ if f in user_attrs}
        return cls(**{"source_study": "?", **known})

    def planned_variants(self) -> list[str]:
        """The base and one variant per factor not already off in it."""
        return [BASE_VARIANT, *(off_variant(k) for k in self.factors if k not in self.skipped)]


@dataclass(frozen=True)
class PathStep:
    """One step of the ablation path: ``param`` changed ``from_`` -> ``to`` (None: the start)."""

    step: int
    param: str | None
    mean: float
    from_: Any = None
    to: Any = None
    variant: str = ""
    std: float = 0.0
    n: int = 0
    candidates: dict[str, float] = field(default_factory=dict)  # each key's mean at this step

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["from"] = d.pop("from_")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PathStep:
        known = {f: d[f] for f in cls.__dataclass_fields__ if f in d}
        return cls(**known, **({"from_": d["from"]} if "from" in d else {}))


def ablation_path(user_attrs: Mapping[str, Any]) -> list[PathStep]:
    """The ablation path an ablation study recorded (none if it walked none)."""
    return [PathStep.from_dict(s) for s in user_attrs.get(StudyAttrs.PATH) or []]


def record_ablation_path(study: optuna.Study, path: Sequence[PathStep]) -> None:
    study.set_user_attr(StudyAttrs.PATH, [s.to_dict() for s in path])


# -- any study ---------------------------------------------------------------------------


def mark_study(
    study: optuna.Study, settings: SearchSettings | RerunSettings | AblationSettings
) -> None:
    """Record what made ``study``, and with which code and packages."""
    from study.metadata import code_version, package_versions

    attrs = {
        **settings.study_attrs(),
        StudyAttrs.CODE_VERSION: code_version(),
        StudyAttrs.PACKAGES: package_versions(),
    }
    if StudyAttrs.CREATED not in study.user_attrs:
        attrs[StudyAttrs.CREATED] = datetime.datetime.now(datetime.UTC).isoformat()
    for key, value in attrs.items():
        study.set_user_attr(key, value)
