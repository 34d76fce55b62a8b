"""What every ``python -m study.NAME`` command shares: argument types, flag groups, help that
shows every default, and one-line errors.

Nothing here imports torch or optuna: ``--help`` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import itertools
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from study.errors import StorageError, StudyStoppedError, UsageError, UserError, full_storage
from study.gpus import add_gpu_flag
from study.jobs import RunFlags
from study.storage import DEFAULT_STORAGE, check_url, default_checkpoint_dir
from wrn.config import DATASETS, DEVICES, MAX_EPOCHS, SEED_LIMIT, DataConfig, RunConfig

# the longest study name, derived ones (NAME-ablation) included: Optuna's study-name column holds
# 512 characters (PostgreSQL and MySQL refuse more; SQLite would store them)
STUDY_NAME_LIMIT = 512

# error classes that are user errors, by module and name; a class can only have been raised if
# its module was imported, so they are looked up in sys.modules at catch time and importing
# this module does not import torch (wrn.checkpoint and wrn.data do)
_USER_ERROR_CLASSES = (
    ("search_spaces", "SpaceError"),
    ("wrn.config", "ConfigError"),
    ("wrn.datasets", "DataError"),
    ("wrn.checkpoint", "CheckpointError"),
    ("wrn.stack", "StackError"),
)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes ``run_command`` reports in one line with exit status 2."""
    found: list[type[BaseException]] = [UserError, StorageError]
    for module_name, class_name in _USER_ERROR_CLASSES:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


_RST: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r":[\w:]+:`~([^`]+)`"), lambda m: m[1].rsplit(".", 1)[-1]),  # :class:`~a.B`: B
    (re.compile(r":[\w:]+:`([^`]+)`"), r"\1"),  # :func:`x`
    (re.compile(r"``([^`]+)``"), r"\1"),
    (re.compile(r"(?<![\w`])`([^`]+)`(?![\w`])"), r"\1"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),
    (re.compile(r"::$", re.MULTILINE), ":"),
)


def strip_rst(text: str) -> str:
    """Plain text from reStructuredText markup (double backticks, roles, bold) for --help."""
    for pattern, repl in _RST:
        text = pattern.sub(repl, text)
    return text


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    if not action.option_strings or isinstance(action, argparse._HelpAction):
        return False
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool):
        return False
    return not (isinstance(default, list | tuple | dict) and not default)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written (minus RST markup), every set default shown."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _shows_default(action):  # no help text: still show the default
            action = _copy_with_help(action, "default: %(default)s")
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = strip_rst(action.help or "")
        if not _shows_default(action) or re.search(r"%\(default\)|default:|\(default", text):
            return text
        if f"({action.default})" in text:
            return text  # the help already names it, as "(VALUE)"
        default = "%(default)s" if not isinstance(action.default, list) else "%(default)r"
        return f"{text} (default: {default})" if text else f"default: {default}"


def _copy_with_help(action: argparse.Action, text: str) -> argparse.Action:
    import copy

    action = copy.copy(action)
    action.help = text
    return action


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit with status 2, whose help shows
    every default, and which lists ``examples`` at the bottom of ``--help``."""

    def __init__(self, *args: Any, examples: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if kwargs.get("description"):
            kwargs["description"] = strip_rst(kwargs["description"])
        epilog = strip_rst(kwargs.get("epilog") or "")
        if examples:
            shown = "examples:\n" + "\n".join(f"  {line}" for line in examples)
            epilog = f"{epilog}\n\n{shown}" if epilog else shown
        kwargs["epilog"] = epilog or None
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def _suggestion(self, message: str) -> str:
        """ "; did you mean --trials?" for a mistyped option (Python 3.11's argparse has no
        ``suggest_on_error``), else ""."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        for word in message.removeprefix(prefix).split():
            typed = word.split("=", 1)[0]
            close = difflib.get_close_matches(typed, options, n=1) if typed[:2] == "--" else []
            if close:
                return f"; did you mean {close[0]}?"
        return ""


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


def seed_type(text: str) -> int:
    """A seed: an integer with 0 <= seed < ``SEED_LIMIT`` (wrn.config)."""
    value = int_at_least(0)(text)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be < 2**31 ({SEED_LIMIT}), got {value}")
    return value


def epochs_type(text: str) -> int:
    """``--epochs``: 1 to ``MAX_EPOCHS`` (wrn.config), refused before any storage is opened."""
    value = int_at_least(1)(text)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_EPOCHS:,}, got {value:,}")
    return value


def check_study_name(name: str, derived: str | None = None) -> str:
    """``name`` (a ``--study-name``) if a storage can hold it and one line can show it; else
    UsageError. ``derived``: the study a rerun or ablation records into (``NAME-rerun``), which
    must fit too."""
    problem = _study_name_problem(name)
    if problem is None and derived is not None and len(derived) > STUDY_NAME_LIMIT:
        problem = (
            f"with {derived[len(name) :]!r} appended it has {len(derived)} characters; a study "
            f"name holds at most {STUDY_NAME_LIMIT}"
        )
    if problem is not None:
        raise UsageError(f"--study-name: {problem}")
    return name


def _study_name_problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if not name.isprintable():
        return "must not hold control characters (newline, tab, NUL)"
    if len(name) > STUDY_NAME_LIMIT:
        return f"{len(name)} characters; a study name holds at most {STUDY_NAME_LIMIT}"
    return None


def study_name_type(text: str) -> str:
    """The ``--study-name`` type: refused at parse time (``check_study_name``)."""
    problem = _study_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def storage_url(text: str) -> str:
    """The ``--storage`` type: a bare ``.db`` path as SQLite, a malformed URL refused at once."""
    try:
        return check_url(text)
    except StorageError as e:
        # argparse prints only this message; it never echoes the typed value (the password)
        raise argparse.ArgumentTypeError(str(e)) from None


def add_storage_flag(p: argparse.ArgumentParser) -> None:
    """``--storage URL``; a bare ``.db`` path is taken as SQLite (args.storage is the URL)."""
    p.add_argument(
        "--storage",
        metavar="URL",
        type=storage_url,
        default=DEFAULT_STORAGE,
        help="Optuna storage: sqlite:///PATH.db (a bare PATH.db works too), "
        "postgresql://USER:PASSWORD@HOST:PORT/DB or grpc://HOST:PORT",
    )


def add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=DEVICES,
        default=RunConfig.device,
        help="where to train; auto takes the GPU when one is visible",
    )


def add_data_flags(
    p: argparse.ArgumentParser, dataset_default: str | None = DataConfig.dataset
) -> None:
    """``--data-dir`` and ``--dataset``; ``dataset_default=None``: the study's own dataset.
    ``args.data_dir`` is None when not given: the folder the study recorded, else ./data."""
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="holds, or receives (downloaded), the data set's folder (cifar-100-python/, "
        "cifar-10-batches-py/, fashion-mnist/); a resumed study, its rerun and ablation default "
        "to the folder the study recorded and refuse other data "
        f"(default: {DataConfig.data_dir})",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=dataset_default,
        help="synthetic: learnable class-dependent images made in memory, no download"
        + ("" if dataset_default else " (default: the dataset the study searched on)"),
    )


def add_artifact_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--artifact-dir",
        metavar="DIR",
        help="per-trial learning curves for optuna-dashboard "
        "(default: artifacts/ beside a SQLite storage, else studies/artifacts)",
    )


def add_checkpoint_flags(p: argparse.ArgumentParser) -> None:
    """``--checkpoint-dir``, ``--keep-checkpoints``, ``--checkpoint-every K``, ``--heartbeat``:
    how a run survives being stopped. ``args.checkpoint_dir`` is None when not given
    (``study.storage.default_checkpoint_dir`` of the storage then)."""
    p.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="per-run checkpoints; an interrupted or retried run resumes from there "
        "(default: checkpoints/ beside a SQLite storage, else studies/checkpoints)",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the checkpoints of finished runs (deleted by default)",
    )
    p.add_argument(
        "--checkpoint-every",
        metavar="K",
        type=int_at_least(1),
        default=RunConfig.checkpoint_every,
        help="save a checkpoint every K epochs (and after the last); a resume repeats at most "
        "K-1 epochs",
    )
    p.add_argument(
        "--heartbeat",
        metavar="S",
        type=int_at_least(1),
        default=60,
        help="seconds between a running trial's heartbeats; silent for 3 = dead",
    )


def run_flags(args: argparse.Namespace) -> RunFlags:
    """The flags a training command shares (storage, data, device, checkpoint, artifact and
    output flags), typed; the checkpoint folder defaults beside the storage."""
    checkpoints = args.checkpoint_dir or default_checkpoint_dir(args.storage)
    return RunFlags(
        storage=args.storage,
        data_dir=args.data_dir,
        dataset=args.dataset,
        device=args.device,
        gpus=args.gpus,
        checkpoint_dir=Path(checkpoints),
        keep_checkpoints=args.keep_checkpoints,
        checkpoint_every=args.checkpoint_every,
        heartbeat=args.heartbeat,
        artifact_dir=args.artifact_dir,
        quiet=args.quiet,
        tensorboard=args.tensorboard,
    )


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print nothing but errors and the final summary (no bars, no per-epoch lines)",
    )


def tensorboard_dir(text: str) -> str:
    if importlib.util.find_spec("tensorboard") is None:
        raise argparse.ArgumentTypeError(
            'needs the tensorboard package: pip install tensorboard (or -e ".[tensorboard]")'
        )
    return text


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """What a training command's runs share: GPUs, checkpoints, artifacts and output."""
    add_gpu_flag(p)
    add_checkpoint_flags(p)
    add_artifact_flag(p)
    add_output_flags(p)
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        type=tensorboard_dir,
        help="also write each trial's per-epoch curves and, when it ends, its parameters and "
        "result (the HParams view) as TensorBoard runs DIR/STUDY/trial-N "
        "(tensorboard --logdir DIR)",
    )


def add_retrain_flags(p: argparse.ArgumentParser) -> None:
    """Where a command that retrains a study's configs reads from and runs, and its runs'
    flags (``add_run_flags``)."""
    add_storage_flag(p)
    add_data_flags(p, dataset_default=None)
    add_device_flag(p)
    add_run_flags(p)


def command_parser(module: str, doc: str) -> Parser:
    """The parser of ``python -m MODULE``: the first line of its docstring ``doc`` describes it,
    and the ``python`` lines right after it are its examples."""
    lines = doc.splitlines()
    examples = list(itertools.takewhile(lambda line: line.startswith("python"), lines[2:]))
    return Parser(prog=f"python -m {module}", description=lines[0], examples=examples)


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(
    prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None
) -> NoReturn:
    """Run ``main`` and turn a user error into one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except StudyStoppedError as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except Exception as e:
        full = full_storage(e)  # not the user's input: status 1, as a stopped study
        if full is None and not isinstance(e, user_errors()):
            raise
        print(f"{prog}: error: {_one_line(full or e)}", file=sys.stderr)
        code = 2 if full is None else 1
    sys.exit(code)
