"""What ``study.rerun`` and ``study.ablate`` share: the search they retrain configs of, and the
study their runs are recorded in (``NAME-rerun``, ``NAME-ablation``) with what the runs need.

``Retrain(job, kind, progress)`` opens the storage and the source study before any input check
that needs them (no torch yet); ``start`` comes after the checks: the device, the data, the
artifact folder, then the derived study is created (or resumed), marked and its command
recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from study.data_check import (
    NEW_STUDY,
    check_same_data,
    data_record,
    recorded_data,
    with_data_dir,
)
from study.gpus import use_gpus
from study.jobs import RetrainJob
from study.progress import Progress
from study.records import (
    AblationSettings,
    RerunSettings,
    StudyKind,
    derived_name,
    mark_study,
    record_command,
    require_study,
)
from study.storage import open_storage

if TYPE_CHECKING:
    from study.lifecycle import Lifecycle
    from wrn.config import TrainConfig
    from wrn.data import Splits


@dataclass(frozen=True)
class Started:
    """The derived study, ready for its runs."""

    study: optuna.Study
    life: Lifecycle
    splits_for: Callable[[TrainConfig], Splits]  # the search's split of each data config


class Retrain:
    """A rerun or an ablation of the search ``job.study_name``."""

    def __init__(self, job: RetrainJob, kind: StudyKind, progress: Progress) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines instead
        self.job, self.kind, self.progress = job, kind, progress
        flags = job.flags
        use_gpus(flags.gpus, flags.device, None)  # before torch, and before the storage
        self.storage = open_storage(
            flags.storage, create=False, heartbeat_interval=flags.heartbeat
        )
        require_study(self.storage, job.study_name)
        self.source = optuna.load_study(study_name=job.study_name, storage=self.storage)
        self.name = derived_name(job.study_name, kind)
        # the data the search recorded; --data-dir defaults to its folder (read job.flags here)
        self.data = recorded_data(self.source.user_attrs)
        self.job = dataclasses.replace(job, flags=with_data_dir(flags, self.data))

    def recorded(self) -> Mapping[str, Any]:
        """The derived study's attributes, if an earlier run made it ({} if not)."""
        for summary in self.storage.get_all_studies():
            if summary.study_name == self.name:
                return summary.user_attrs
        return {}

    def start(
        self,
        settings: RerunSettings | AblationSettings,
        split_seed: int,
        configs: Iterable[TrainConfig],
        *,
        keep_checkpoints: bool,
    ) -> Started:
        """Check the device, the data of every config (split with the search's ``split_seed``)
        and the artifact folder, then create or resume the derived study."""
        from study.dashboard import artifact_store, default_artifact_dir, name_metric
        from study.lifecycle import ClaimLock, Lifecycle, require_device, splits_loader
        from study.tensorboard import tensorboard_log

        flags = self.job.flags
        on_cpu = require_device(flags.device)
        if on_cpu is not None:
            self.progress.message(on_cpu)
        splits_for = splits_loader(split_seed)
        checked = set()
        for cfg in configs:  # a bad data directory or other data fails here, before any write
            splits_for(cfg)
            if (cfg.data, cfg.model.num_classes) not in checked:
                mine = data_record(cfg)
                check_same_data(self.job.study_name, self.data, mine, cfg.data.data_dir, NEW_STUDY)
                checked.add((cfg.data, cfg.model.num_classes))
        if self.data is None:
            self.progress.message(
                f"note: {self.job.study_name!r} recorded no data identity (made before them): "
                f"--data-dir {flags.data_dir} is not checked against its search"
            )
        store = artifact_store(flags.artifact_dir or default_artifact_dir(flags.storage))
        study = optuna.create_study(
            storage=self.storage, study_name=self.name, direction="maximize", load_if_exists=True
        )
        mark_study(study, settings)
        name_metric(study, self.kind.value)  # "test_acc" for a rerun in optuna-dashboard
        record_command(study, self.job.command, self.job.argv)  # the note's resume command
        life = Lifecycle(
            checkpoint_dir=flags.checkpoint_dir,
            keep_checkpoints=keep_checkpoints,
            artifact_store=store,
            progress=self.progress,
            claims=ClaimLock(flags.storage),
            tensorboard=tensorboard_log(flags, self.name, self.kind),
        )
        return Started(study, life, splits_for)

    def show_start(
        self, done: Sequence[float], total: int, epochs: int, metric: str = "val_acc"
    ) -> None:
        """The display's first line: runs done (read from the storage, so a resumed study shows
        them) of ``total``, and the best so far, but for a rerun: the best of test scores is
        chosen on the test set (its result is each trial's mean over seeds, at the end)."""
        tested = self.kind == StudyKind.RERUN
        self.progress.study_start(
            self.name,
            total=total,
            finished=len(done),
            best=None if tested else max(done, default=None),
            epochs=epochs,
            unit="run",
            metric=metric,
            shows_best=not tested,
        )
