"""The errors the study package raises for the commands to report: a user's mistake in one line
(exit 2) or a study that stopped itself (exit 1). Imports nothing: every module may raise them."""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """Marker: an exception of this kind is the user's mistake, told in one line (exit 2)."""


class UsageError(UserError, ValueError):
    """A command-line value is invalid (message names the flag)."""


class NoSuchStudyError(UserError, LookupError):
    """A study name the storage does not hold; the message lists the ones it does."""

    def __init__(self, name: str, names: Sequence[str]) -> None:
        super().__init__(
            f"no study {name!r} in the storage (studies: {', '.join(names) or 'none'})"
        )


class StorageError(RuntimeError):
    """The storage URL is malformed, unreachable, or not an Optuna database."""


class StorageFullError(StorageError):
    """A write to a SQLite storage failed because its disk is full (SQLITE_FULL)."""


def full_storage(error: BaseException | None) -> StorageFullError | None:
    """The ``StorageFullError`` that ``error`` is, or was raised while handling (on a full disk
    every later write fails too, so a command ends in one of those), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, StorageFullError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class StudyStoppedError(RuntimeError):
    """A study stopped itself (too many failed trials in a row)."""


class DiskFullError(StudyStoppedError):
    """The checkpoint disk is full: the trial keeps its last checkpoint, is queued to resume
    (not a failure), and the command stops (every later save would fail too)."""

    def __init__(self, error: str, number: int, saved: int) -> None:
        kept = f"resume from epoch {saved} (its checkpoint kept)" if saved else "run again"
        super().__init__(
            f"{error}; trial {number} is queued to {kept}: free space and run the same command"
        )
