"""Where a trial's checkpoint lives and whom it belongs to.

A file is named by a slug of the study name (so no name leaves ``--checkpoint-dir``), the
trial's first attempt and a random key drawn by that attempt (inherited by its retries), so two
storages in one folder, or a study deleted and re-created, never share a file. The same
identity is written into the checkpoint and checked before any of its epochs is reported.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import optuna

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
    folder = checkpoint_dir / folder_name(name)
    return folder / f"trial-{root}-{key[:KEY_LENGTH]}.pt", owner
