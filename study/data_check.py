"""The data a search trained on, held to by every later command on the study.

A search records its ``--data-dir`` (absolute) and what that held (``DataRecord``: kind,
folder, image counts, a fingerprint of the files). Resuming it, rerunning or ablating it
default ``--data-dir`` to that folder and refuse other data in one line, before the storage is
written. A study recorded before these records has unknown data and is not refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from study.errors import UsageError
from study.jobs import RunFlags
from study.records import SearchSettings
from study.records.settings import DataRecord, describe_data
from wrn.config import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from wrn.config import TrainConfig

NEW_SEARCH = "start a new --study-name"  # what study.run suggests instead
NEW_STUDY = "search that data in a new study"  # what a rerun or an ablation suggests


def recorded_data(user_attrs: Mapping[str, Any] | None) -> DataRecord | None:
    """What the search study with ``user_attrs`` recorded of its data; None: no such study, or
    one recorded before data records (unknown)."""
    settings = SearchSettings.of(user_attrs or {})
    return None if settings is None else settings.data


def with_data_dir(flags: RunFlags, recorded: DataRecord | None) -> RunFlags:
    """``flags`` with ``--data-dir``, when not given, the folder the study recorded (or the
    default ./data for a study without one)."""
    if flags.data_dir is not None:
        return flags
    data_dir = recorded.data_dir if recorded is not None else DEFAULT_DATA_DIR
    return dataclasses.replace(flags, data_dir=data_dir)


def data_record(cfg: TrainConfig) -> DataRecord:
    """What ``cfg`` reads, once loaded (its files are there): the folder and its identity."""
    from wrn.data import data_identity

    identity = data_identity(cfg.data, cfg.model.num_classes)
    return DataRecord(os.path.abspath(cfg.data.data_dir), identity)


def check_same_data(
    study_name: str, recorded: DataRecord | None, mine: DataRecord, data_dir: str, instead: str
) -> None:
    """UsageError, in one line naming both, when the study recorded other data than ``mine``
    (``data_dir``: as the command was given it). ``instead``: the way out besides the recorded
    folder (``NEW_SEARCH``, ``NEW_STUDY``)."""
    if recorded is None or recorded.same_data(mine.identity):
        return
    was, now = recorded.identity, mine.identity
    holds = f"--data-dir {data_dir} holds" if now.folder else "this command makes"
    if was.folder and was.folder == now.folder:
        fix = f"its files changed since the search: put the searched ones back in {was.folder}"
    else:
        dataset = f"--dataset {was.dataset}" if was.dataset != now.dataset else ""
        where = "" if recorded.synthetic else f"--data-dir {recorded.data_dir}"
        fix = f"pass {' '.join(filter(None, (dataset, where)))}"
    raise UsageError(
        f"study {study_name!r} searched on {describe_data(was)}; {holds} {describe_data(now)}: "
        f"{fix}, or {instead}"
    )
