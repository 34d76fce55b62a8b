"""Where a trial's checkpoint lives and whom it belongs to.

A file is named by a slug of the study name (so no name leaves ``--checkpoint-dir``), the
trial's first attempt and a random key drawn by that attempt (inherited by its retries), so two
storages in one folder, or a study deleted and re-created, never share a file. The same
identity is written into the checkpoint and checked before any of its epochs is reported.
A worker writes and reports only while it still holds its trial (:class:`Hold`).
"""

from __future__ import annotations

import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from study.lifecycle.workers import trial_id
from study.records import TrialAttrs as A

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
SLUG_LENGTH = 64  # characters of the study name kept in its folder's name
KEY_LENGTH = 12  # hex digits of the trial's key in its file's name


def folder_name(study_name: str) -> str:
    """A file name made of ``study_name``'s safe characters (never ``.``, ``..`` or empty)."""
    slug = _UNSAFE.sub("-", study_name).strip(".-")[:SLUG_LENGTH]
    return slug or "study"


def checkpoint_of(checkpoint_dir: Path, trial: optuna.Trial) -> tuple[Path, dict[str, Any]]:
    """The trial's checkpoint file and the owner identity it must carry."""
    # every retry of a trial inherits its user attrs, so shares the first attempt's file
    root = trial.user_attrs.get(A.FIRST_ATTEMPT, trial.number)
    key = trial.user_attrs.get(A.CHECKPOINT_KEY) or uuid.uuid4().hex
    trial.set_user_attr(A.FIRST_ATTEMPT, root)
    trial.set_user_attr(A.CHECKPOINT_KEY, key)
    name = trial.study.study_name
    owner = {"study": name, "trial": root, "key": key}
    return checkpoint_file(checkpoint_dir, name, root, key), owner


def checkpoint_file(checkpoint_dir: Path, study_name: str, root: int, key: str) -> Path:
    """The file of the trial whose first attempt is ``root`` and whose key is ``key``."""
    return checkpoint_dir / folder_name(study_name) / f"trial-{root}-{key[:KEY_LENGTH]}.pt"


class TrialTakenOverError(RuntimeError):
    """Another process failed this worker's trial (its heartbeats stopped) and queued a retry
    that owns the checkpoint now; the worker leaves it, writing and reporting nothing more."""


class Hold:
    """A worker's claim on a RUNNING trial, as the storage sees it.

    A stopped (SIGSTOP, suspended VM) worker's trial is failed by another process's
    ``fail_stale_trials`` and retried on the same checkpoint; once resumed, the worker asks
    :meth:`held` before each report and each checkpoint write (one storage read).
    """

    def __init__(
        self, study: optuna.Study, storage: optuna.storages.BaseStorage, number: int
    ) -> None:
        self.study, self.storage, self.number = study, storage, number
        self.tid = trial_id(storage, study, number)

    def held(self) -> bool:
        """Whether the trial is still RUNNING, so still this worker's (a retry is another)."""
        return self.storage.get_trial(self.tid).state == TrialState.RUNNING

    def check(self) -> None:
        if not self.held():
            raise TrialTakenOverError(self.left())

    def left(self) -> str:
        """The line that says who took the trial over."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retries = [
                t.number
                for t in self.study.get_trials(deepcopy=False)
                if self.number in RetryHeartbeatStaleTrialCallback.retry_history(t)
            ]
        by = f"taken over by trial {min(retries)}" if retries else "failed by another process"
        return f"trial {self.number} was {by} while this worker was stopped; leaving it"
