"""``--tensorboard DIR``: each trial as a TensorBoard run, ``DIR/<study>/trial-N``: its
per-epoch curves (accuracy on the scored split, losses, learning rate, seconds) while it trains,
and once it ends its parameters with its result and state (the HParams view), so a user who
lives in TensorBoard sees the study there (``tensorboard --logdir DIR``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from study.jobs import RunFlags
from study.lifecycle.checkpoints import folder_name
from study.records import StudyKind
from study.records.keys import metric_name
from wrn.train import EpochStats


class TensorBoardLog:
    """The event files of one study's trials; ``metric`` is the study's value name."""

    def __init__(self, root: Path, study_name: str, metric: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self._writer_class = SummaryWriter
        self.folder = Path(root) / folder_name(study_name)
        self.metric = metric
        self._writers: dict[int, Any] = {}

    def _writer(self, number: int) -> Any:
        if number not in self._writers:
            self._writers[number] = self._writer_class(str(self.folder / f"trial-{number}"))
        return self._writers[number]

    def epoch(self, number: int, stats: EpochStats) -> None:
        """One epoch's scalars, at step = epoch (as the trial reports its value)."""
        writer = self._writer(number)
        for tag, value in (
            (self.metric, stats.eval_acc),
            ("eval_loss", stats.eval_loss),
            ("train_loss", stats.train_loss),
            ("train_acc", stats.train_acc),
            ("lr", stats.lr),
            ("epoch_seconds", stats.seconds),
        ):
            writer.add_scalar(tag, value, stats.epoch)
        writer.flush()  # a killed run keeps what it showed

    def end(self, trial: FrozenTrial) -> None:
        """The trial's parameters and result in the HParams view; closes its event file."""
        writer = self._writer(trial.number)
        hparams: dict[str, Any] = {
            key: value if isinstance(value, int | float | str | bool) else str(value)
            for key, value in trial.params.items()
        }
        hparams["state"] = trial.state.name
        value = math.nan if trial.value is None else float(trial.value)
        # run_name ".": the hparams go into the trial's own run, beside its curves
        writer.add_hparams(hparams, {f"hparams/{self.metric}": value}, run_name=".")
        writer.close()
        del self._writers[trial.number]


def tensorboard_log(flags: RunFlags, study_name: str, kind: StudyKind) -> TensorBoardLog | None:
    """The study's log when ``--tensorboard`` was given, else None."""
    if flags.tensorboard is None:
        return None
    return TensorBoardLog(Path(flags.tensorboard), study_name, metric_name(kind))
