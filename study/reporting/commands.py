"""The commands a dashboard note or the report suggests, with the flags a study was made with.

Each is read from what the study recorded (``study.records``), so that a suggested command
resumes or extends the same study rather than starting another.
"""

from __future__ import annotations

import dataclasses
import shlex

from study.pruning import DEFAULT_PRUNER
from study.records import AblationSettings, SearchSettings
from study.storage import DEFAULT_STORAGE, redact
from wrn.config import TrainConfig


def storage_flags(storage_url: str) -> list[str]:
    """``--storage URL`` (password masked) unless it is the default."""
    return [] if storage_url == DEFAULT_STORAGE else ["--storage", redact(storage_url)]


def command(*words: object) -> str:
    """A command line, quoted for a POSIX shell."""
    return " ".join(shlex.quote(str(w)) for w in words)


def data_flags(settings: SearchSettings | AblationSettings | None) -> list[str]:
    """``--data-dir DIR`` (absolute) where the study read a folder: a copied command reads the
    same data, never ./data or a fresh download (none for synthetic data, or data unknown)."""
    if isinstance(settings, AblationSettings):
        data_dir, synthetic = settings.data_dir, settings.dataset == "synthetic"
    else:
        data = None if settings is None else settings.data
        data_dir, synthetic = (None, True) if data is None else (data.data_dir, data.synthetic)
    return [] if synthetic or not data_dir else ["--data-dir", data_dir]


def search_flags(settings: SearchSettings, storage_url: str) -> list[str]:
    """The flags a search was started with, where they differ from ``study.run``'s defaults,
    and its data folder."""
    train = TrainConfig()  # the defaults study.run's flags take
    sampler = next(f for f in dataclasses.fields(SearchSettings) if f.name == "sampler")
    flags: list[str] = data_flags(settings)
    for flag, value, default in (
        ("--dataset", settings.dataset, train.data.dataset),
        ("--epochs", settings.epochs, settings.space.search_epochs),  # the space's budget
        ("--val-size", settings.val_size, train.data.val_size),
        ("--seed", settings.seed, train.run.seed),
        ("--pruner", settings.pruner, DEFAULT_PRUNER),
        ("--sampler", settings.sampler, sampler.default),
    ):
        if value != default:
            flags += [flag, str(value)]
    for key, value in settings.fixed.items():
        flags += ["--set", f"{key}={value}"]
    return flags + storage_flags(storage_url)


def ablation_flags(
    settings: AblationSettings,
    storage_url: str,
    *,
    walked_path: bool,
    search_epochs: int | None = None,
) -> list[str]:
    """The flags that resume an ablation as it was started: its base, seeds, epochs, path and
    data folder.

    ``search_epochs``: the search's own epochs, which ``--epochs`` then need not repeat; None:
    ``--epochs`` always, as the recorded runs were trained.
    """
    flags = ["--study-name", settings.source_study, *storage_flags(storage_url)]
    flags += ["--base", settings.base]
    if settings.seeds:
        flags += ["--seeds", str(len(settings.seeds))]
    if settings.epochs and settings.epochs != search_epochs:
        flags += ["--epochs", str(settings.epochs)]
    if walked_path or settings.path_target:
        flags.append("--path")
    return flags + data_flags(settings)
