"""What every ``python -m study.NAME`` command shares: argument types and one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from search_spaces import SpaceError
from study.storage import DEFAULT_STORAGE, StorageError
from wrn.checkpoint import CheckpointError
from wrn.config import ConfigError
from wrn.data import DataError


class UsageError(ValueError):
    """A command-line value is invalid (message names the flag)."""


class StudyStoppedError(RuntimeError):
    """A study stopped itself (too many failed trials in a row)."""


USER_ERRORS = (UsageError, ConfigError, DataError, SpaceError, StorageError, CheckpointError)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_retrain_flags(p: argparse.ArgumentParser) -> None:
    """Where a command that retrains a study's configs reads from and runs."""
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.add_argument("--data-dir", default="./data")
    p.add_argument(
        "--dataset",
        choices=("cifar100", "synthetic"),
        help="default: the dataset the study searched on",
    )
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")


def run_command(
    prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None
) -> NoReturn:
    """Run ``main`` and turn a user error into one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 2
    except StudyStoppedError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
