"""What each command will do, typed: the command module builds its job from its flags, and
everything past it (the lifecycle, the ablation runner) reads the job, never the flags.

Imports nothing heavy (no torch, no optuna): the commands build their job before either loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import SearchSpace
from wrn.config import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from study.records.settings import DataRecord


@dataclass(frozen=True)
class RunFlags:
    """The flags every training command shares: where it records, reads and trains, and how
    its runs survive being stopped (``cli.run_flags`` reads them)."""

    storage: str
    # None: not given; the folder the study recorded (``study.data_check``), else ./data
    data_dir: str | None
    dataset: str | None  # None: the dataset of the study a rerun or ablation reads
    device: str
    gpus: tuple[int, ...] | None  # --gpus; None: every visible GPU (``study.gpus``)
    checkpoint_dir: Path
    keep_checkpoints: bool
    checkpoint_every: int
    heartbeat: int
    artifact_dir: str | None  # None: dashboard.default_artifact_dir of the storage
    quiet: bool
    tensorboard: str | None = None  # --tensorboard DIR: each trial's curves and hparams there

    def execution(self) -> dict[str, Any]:
        """The config keys these flags set on every run (the dataset apart)."""
        return {
            "data_dir": self.data_dir or DEFAULT_DATA_DIR,
            "device": self.device,
            "checkpoint_every": self.checkpoint_every,
        }


@dataclass(frozen=True)
class PrunerChoice:
    kind: str
    startup_trials: int
    wait_epochs: int | None  # None: until the learning rate peaks (study.pruning)
    reduction: int  # promote's: rungs x reduction apart, each promoting its top 1/reduction


@dataclass(frozen=True)
class SearchJob:
    """``python -m study.run``: a search of ``space`` until the study holds ``trials``."""

    flags: RunFlags
    argv: tuple[str, ...]  # as typed, for the study's recorded command and the workers
    name: str
    space: SearchSpace
    fixed: dict[str, Any]  # --set values
    epochs: int
    trials: int
    val_size: int
    seed: int
    sampler: str
    sampler_seed: int
    sampler_startup_trials: int  # TPE's random draws before it models
    pruner: PrunerChoice
    timeout: float | None
    workers: int
    max_failures: int
    worker: int = 0  # this process's number among --workers (0: the parent, or the only one)
    data: DataRecord | None = None  # what --data-dir holds, once read (``study.data_check``)

    def base(self) -> dict[str, Any]:
        """Every trial's values before sampling: the recipe, then the command line's."""
        return {
            **self.space.recipe,
            **self.flags.execution(),
            "epochs": self.epochs,
            "dataset": self.flags.dataset,
            "val_size": self.val_size,
            "eval_split": "val",
            "seed": self.seed,
        }


@dataclass(frozen=True)
class RetrainJob:
    """What ``study.rerun`` and ``study.ablate`` share: the search they retrain from."""

    command: str  # "study.rerun", "study.ablate"
    flags: RunFlags
    argv: tuple[str, ...]
    study_name: str  # the search study
    epochs: int | None  # None: the command's default length
    seeds: int


@dataclass(frozen=True)
class RerunJob:
    """``python -m study.rerun``: the chosen trials retrained in full and tested."""

    retrain: RetrainJob
    trial: int | None = None  # one trial by number; None: the ``top`` best
    top: int = 1


@dataclass(frozen=True)
class AblationJob:
    """``python -m study.ablate``: each factor of the space switched off in turn."""

    retrain: RetrainJob
    base: str = "best"  # "best" or "recipe"
    path: bool = False  # also the ablation path from the recipe to the best
