"""One attempt of a trial: train a config as an Optuna trial, resuming its checkpoint.

Reports epochs (the only caller of ``trial.report``), checkpoints, records the result, and ends
in a value, a prune, a failure with its reason, or an interruption that keeps the checkpoint
(Ctrl-C, SIGTERM, a full checkpoint disk). A worker whose trial was taken over by another
process while it was stopped leaves it, writing and reporting nothing more.
``Lifecycle.run_and_tell`` is the one path from an asked trial to a told one, for search and
planned runs alike.
"""

from __future__ import annotations

import datetime
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

import wrn.train as training
from study.dashboard import upload_learning_curve
from study.errors import DiskFullError, full_storage
from study.lifecycle.checkpoints import Hold, TrialTakenOverError, checkpoint_of
from study.lifecycle.claims import ClaimLock
from study.lifecycle.promote import TrialPaused, pause_epoch, pause_if_there
from study.lifecycle.recording import (
    free_memory,
    record_result,
    record_setup,
    report_epoch,
)
from study.lifecycle.workers import (
    Heartbeat,
    queue_interrupted,
    record_worker,
    recover_dead_trials,
)
from study.progress import Progress
from study.records import TrialAttrs as A
from study.records import paused_at, promoted_from
from wrn.checkpoint import (
    CheckpointDiskFullError,
    CheckpointError,
    CheckpointLostError,
    saved_history,
)
from wrn.config import TrainConfig
from wrn.data import Splits
from wrn.train import EpochStats, NonFiniteLossError, TrainResult

if TYPE_CHECKING:  # study.tensorboard imports the lifecycle's checkpoint names
    from study.tensorboard import TensorBoardLog


class TrialFailedError(RuntimeError):
    """A trial failed; the reason is recorded on it and the study goes on."""


# the trial is no longer this worker's: another process failed it and queued its retry
LEFT = (TrialTakenOverError, CheckpointLostError, optuna.exceptions.UpdateFinishedTrialError)


@dataclass
class _Attempt:
    """What one attempt tracks while it trains."""

    trial: optuna.Trial
    cfg: TrainConfig
    splits: Splits | None
    checkpoint: Path | None
    owner: dict[str, Any] | None  # the identity its checkpoint carries
    history: list[EpochStats]  # restored epochs first
    hold: Hold | None  # asked before each report and checkpoint write
    # this attempt's epochs only: restored epochs were counted by the attempt that ran them
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_compute: list[float] = field(default_factory=list)  # what those epochs consumed
    pause_at: int | None = None  # --pruner promote: the rung it pauses at (promote.py)


@dataclass(frozen=True)
class Lifecycle:
    """What the lifecycle needs, built by each command from its job."""

    checkpoint_dir: Path | None = None
    keep_checkpoints: bool = False
    artifact_store: Any | None = None  # learning curves go here (checkpoints stay in their dir)
    prune: bool = False  # search trials may be pruned by the study's pruner
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))
    # the storage's lock on recovering and taking trials (None: no other process on the study)
    claims: ClaimLock | None = None
    tensorboard: TensorBoardLog | None = None  # --tensorboard: each trial's curves and hparams
    # trials run_and_tell is running (by number), and those it left to another process
    holds: dict[int, Hold] = field(default_factory=dict, repr=False, compare=False)
    left: set[int] = field(default_factory=set, repr=False, compare=False)

    def note(self, text: str, always: bool = True) -> None:
        """A line of its own on the display; ``always``: printed even with ``--quiet``."""
        self.progress.message(text, always=always)

    def recover(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
        """Requeue the trials whose worker is gone (under ``claims``), saying which."""
        recovered = recover_dead_trials(study, storage, self.claims)
        if recovered:
            gone = ", ".join(map(str, recovered))
            self.note(f"trials {gone}: worker gone, queued to resume", always=False)
        return recovered

    def show_end(self, trial: FrozenTrial) -> None:
        """The display's line for a trial the study was told about, with why it was pruned or
        failed (a failure's line goes to stderr, even with ``--quiet``)."""
        if trial.number in self.left:
            return  # its one line was said
        pruned = trial.state == TrialState.PRUNED
        reason = trial.user_attrs.get(A.PRUNED_REASON) if pruned else None
        if trial.state == TrialState.FAIL:
            if trial.user_attrs.get(A.INTERRUPTED):
                return  # queued to resume; the interruption's own line says so
            reason = trial.user_attrs.get(A.FAIL_REASON) or "unknown error"
        paused, promotion = paused_at(trial) is not None, promoted_from(trial) is not None
        self.progress.trial_end(
            trial.number, trial.state.name, trial.value, reason, paused=paused, promotion=promotion
        )
        if self.tensorboard is not None:
            self.tensorboard.end(trial)

    def run_and_tell(
        self,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        trial: optuna.Trial,
        train: Callable[[optuna.Trial], float],
    ) -> FrozenTrial:
        """Run ``train`` on ``trial`` with heartbeats and tell the study how it ended.

        Ctrl-C/SIGTERM: the trial is queued to resume (its checkpoint kept), the display says
        what was saved, and the interrupt goes on to the command; so does a full checkpoint
        disk (``DiskFullError``). A trial taken over by another process is left as it is, in
        one line; ``left`` holds its number.
        """
        hold = self.holds[trial.number] = Hold(study, storage, trial.number)
        try:
            with Heartbeat(storage, hold.tid):
                return self._tell(study, storage, hold, trial, train)
        except LEFT:
            self.left.add(trial.number)
            self.note(hold.left())
            return storage.get_trial(hold.tid)
        finally:
            del self.holds[trial.number]

    def _tell(
        self,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        hold: Hold,
        trial: optuna.Trial,
        train: Callable[[optuna.Trial], float],
    ) -> FrozenTrial:
        try:
            value = train(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except TrialFailedError:
            return study.tell(trial, state=TrialState.FAIL)
        except LEFT:
            raise
        except KeyboardInterrupt:
            if not hold.held():  # its retry is queued already, by another process
                self.left.add(trial.number)
                self.note(hold.left())
                raise
            trial.set_user_attr(A.INTERRUPTED, True)  # queued, not a failure
            self.note(queue_interrupted(study, storage, trial.number, self.claims))
            raise
        except DiskFullError as e:
            trial.set_user_attr(A.INTERRUPTED, True)  # queued, not a failure
            trial.set_user_attr(A.FAIL_REASON, str(e)[:500])
            queue_interrupted(study, storage, trial.number, self.claims)  # the error line says so
            raise
        except BaseException as e:
            # a bug: the trial is not left RUNNING; but a full storage takes no write, so it
            # stays RUNNING and the next command requeues it (its process is gone)
            if full_storage(e) is None:
                study.tell(trial, state=TrialState.FAIL)
            raise
        return study.tell(trial, value)

    # -- one attempt -------------------------------------------------------------------------

    def run(
        self,
        trial: optuna.Trial,
        cfg: TrainConfig,
        splits: Splits | None,
        label: dict[str, Any] | None = None,
    ) -> float:
        """Train ``cfg`` as ``trial`` (resuming its checkpoint) and return the final value.

        ``label``: what the display shows the trial as (default: its parameters).

        Raises ``optuna.TrialPruned`` (pruned, or a non-finite loss), ``TrialFailedError``
        (the reason recorded) or ``KeyboardInterrupt`` (the checkpoint kept, for a resume).
        """
        attempt = self._start(trial, cfg, splits, label)
        left = False
        try:
            result = self._train(attempt)
        except LEFT:
            left = True  # the checkpoint is the retry's now: nothing is removed nor uploaded
            raise
        except CheckpointDiskFullError as e:
            raise DiskFullError(str(e), trial.number, saved_epochs(attempt)) from None
        except optuna.TrialPruned as e:
            trial.set_user_attr(A.PRUNED_REASON, str(e))
            # a paused trial's checkpoint stays, for the trial that continues it
            self._remove(trial, None if isinstance(e, TrialPaused) else attempt.checkpoint)
            raise
        except NonFiniteLossError as e:
            # a diverged run cannot recover: prune it now rather than train on NaNs
            trial.set_user_attr(A.PRUNED_REASON, f"non-finite loss: {e}")
            self._remove(trial, attempt.checkpoint)
            raise optuna.TrialPruned(f"non-finite loss: {e}") from None
        except torch.cuda.OutOfMemoryError:
            reason = f"CUDA out of memory (batch_size {cfg.run.batch_size})"
            self._fail(trial, attempt.checkpoint, reason)
        except Exception as e:
            if full_storage(e) is not None:
                raise  # nothing more can be recorded: the checkpoint stays for the resume
            reason = f"{type(e).__name__}: {e}"
            self._fail(trial, attempt.checkpoint, reason, traceback.format_exc())
        finally:
            # before the trial is told (a finished trial takes no artifacts), so pruned,
            # failed and interrupted trials get their curve too
            if self.artifact_store is not None and not left:
                upload_learning_curve(
                    trial, self.artifact_store, attempt.history, eval_name=cfg.data.eval_split
                )
        record_result(trial, result)
        self._remove(trial, attempt.checkpoint)
        return result.final_acc

    def _start(
        self,
        trial: optuna.Trial,
        cfg: TrainConfig,
        splits: Splits | None,
        label: dict[str, Any] | None,
    ) -> _Attempt:
        """Record what the trial is and where it runs, and restore its checkpoint's epochs."""
        record_setup(trial, cfg)
        record_worker(trial)
        checkpoint = owner = None
        if self.checkpoint_dir is not None:
            checkpoint, owner = checkpoint_of(self.checkpoint_dir, trial)
            trial.set_user_attr(A.CHECKPOINT, str(checkpoint))
        history = self._resume(trial, cfg, checkpoint, owner)
        hold = self.holds.get(trial.number)
        attempt = _Attempt(trial, cfg, splits, checkpoint, owner, history, hold)
        attempt.pause_at = pause_epoch(trial.user_attrs.get(A.TARGET_RUNG), cfg.run.epochs)
        trial.set_user_attr(A.EPOCH_SECONDS, attempt.epoch_seconds)
        self.progress.trial_start(
            trial.number,
            trial.params if label is None else label,
            epochs=cfg.run.epochs,
            start_epoch=len(attempt.history),
        )
        return attempt

    def _on_epoch_end(self, attempt: _Attempt, stats: EpochStats) -> None:
        trial, epochs = attempt.trial, attempt.cfg.run.epochs
        if attempt.hold is not None:
            attempt.hold.check()  # one storage read: still this worker's trial?
        attempt.history.append(stats)
        attempt.epoch_seconds.append(stats.seconds)
        trial.set_user_attr(A.EPOCH_SECONDS, attempt.epoch_seconds)
        consumed = stats.cpu_seconds if stats.device_seconds is None else stats.device_seconds
        if consumed is not None:  # GPU seconds on CUDA, the process's CPU seconds on CPU
            attempt.epoch_compute.append(consumed)
            trial.set_user_attr(A.EPOCH_COMPUTE_SECONDS, attempt.epoch_compute)
        trial.set_user_attr(A.IMAGES_PER_S, stats.images_per_s)
        report_epoch(trial, stats)
        if self.tensorboard is not None:
            self.tensorboard.epoch(trial.number, stats)
        self.progress.epoch(
            trial.number,
            stats.epoch,
            epochs,
            stats.eval_acc,
            stats.seconds,
            images_per_s=stats.images_per_s,
        )
        pause_if_there(attempt.trial, attempt.pause_at, attempt.history, attempt.cfg.run.epochs)
        # the study's pruners (study.pruning) never prune at the last epoch themselves
        if self.prune and trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {stats.epoch} (val_acc {stats.eval_acc:.4f})"
            )

    def _train(self, attempt: _Attempt) -> TrainResult:
        def run() -> TrainResult:
            return training.train(
                attempt.cfg,
                on_epoch_end=lambda stats: self._on_epoch_end(attempt, stats),
                splits=attempt.splits,
                checkpoint_path=attempt.checkpoint,
                on_batch=self.progress.batch,  # the bar moves within an epoch
                owner=attempt.owner,
                may_write=attempt.hold.held if attempt.hold is not None else None,
                save_at=() if attempt.pause_at is None else (attempt.pause_at,),
            )

        # its checkpoint may hold the rung already (a retry)
        pause_if_there(attempt.trial, attempt.pause_at, attempt.history, attempt.cfg.run.epochs)
        try:
            return run()
        except CheckpointError as e:
            # refused before any epoch ran (unreadable, another config): start over from zero;
            # an error while saving (disk full) fails the trial instead
            checkpoint = attempt.checkpoint
            if (
                isinstance(e, CheckpointDiskFullError)
                or checkpoint is None
                or attempt.epoch_seconds
                or not checkpoint.exists()
            ):
                raise
            self._set_aside(attempt.trial, checkpoint, str(e))
            attempt.history.clear()
            return run()

    def _resume(
        self,
        trial: optuna.Trial,
        cfg: TrainConfig,
        checkpoint: Path | None,
        owner: dict[str, Any] | None,
    ) -> list[EpochStats]:
        """The epochs a checkpoint already holds, reporting any not yet reported; its owner
        and config are checked first, so another run's epochs are never reported."""
        trial.set_user_attr(A.RESUMED_FROM_EPOCH, 0)
        if checkpoint is None or not checkpoint.exists():
            return []
        try:
            history = [EpochStats(**h) for h in saved_history(checkpoint, cfg.to_flat(), owner)]
        except (CheckpointError, TypeError) as e:
            self._set_aside(trial, checkpoint, str(e))
            return []
        with warnings.catch_warnings():
            # epochs the retried trial inherited are already reported; Optuna ignores the repeat
            warnings.simplefilter("ignore")
            for stats in history:
                report_epoch(trial, stats)
        trial.set_user_attr(A.RESUMED_FROM_EPOCH, len(history))
        return history

    def _set_aside(self, trial: optuna.Trial, checkpoint: Path, error: str) -> None:
        """Keep a bad checkpoint for inspection under another name; the trial starts over."""
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        kept = checkpoint.with_name(f"{checkpoint.name}.corrupt-{stamp}")
        checkpoint.replace(kept)
        reason = f"checkpoint not usable ({error}); kept as {kept.name}, restarted from epoch 0"
        trial.set_user_attr(A.CHECKPOINT_DISCARDED, reason[:500])
        trial.set_user_attr(A.RESUMED_FROM_EPOCH, 0)
        self.note(f"trial {trial.number}: {reason}")

    def _fail(
        self, trial: optuna.Trial, checkpoint: Path | None, reason: str, trace: str | None = None
    ) -> NoReturn:
        trial.set_user_attr(A.FAIL_REASON, reason[:500])
        if trace:
            trial.set_user_attr(A.FAIL_TRACEBACK, trace[-4000:])
        self._remove(trial, checkpoint, force=True)
        free_memory()
        raise TrialFailedError(reason) from None

    def _remove(self, trial: optuna.Trial, checkpoint: Path | None, force: bool = False) -> None:
        if checkpoint is not None and (force or not self.keep_checkpoints):
            checkpoint.unlink(missing_ok=True)
            trial.set_user_attr(A.CHECKPOINT, None)  # the trial names no file that is gone


def saved_epochs(attempt: _Attempt) -> int:
    """The epochs the attempt's checkpoint holds (0 for none)."""
    if attempt.checkpoint is None or not attempt.checkpoint.exists():
        return 0
    try:
        return len(saved_history(attempt.checkpoint, attempt.cfg.to_flat(), attempt.owner))
    except CheckpointError:
        return 0
