import subprocess
import sys
from pathlib import Path

import pytest

from study import cli
from study.cli import (
    Parser,
    add_artifact_flag,
    add_checkpoint_flags,
    add_data_flags,
    add_device_flag,
    add_output_flags,
    add_storage_flag,
    run_command,
    seed_type,
    strip_rst,
)
from study.errors import UsageError, UserError
from tests.study.conftest import tiny_args


def _parser() -> Parser:
    p = Parser(
        prog="python -m study.demo",
        description="Runs ``demo`` on :func:`wrn.train.train`.\n\nUse it like this::\n",
        examples=["python -m study.demo --storage studies/smoke.db", "python -m study.demo -q"],
    )
    add_storage_flag(p)
    add_data_flags(p)
    add_device_flag(p)
    add_artifact_flag(p)
    add_checkpoint_flags(p)
    add_output_flags(p)
    p.add_argument("--seed", type=seed_type, default=0)
    p.add_argument("--trials", type=int, default=50, help="how many")
    p.add_argument("--name", help="the name (default: the space's name)")
    return p


def test_help_shows_every_default_and_the_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for shown in (
        "(default: sqlite:///studies/wrn.db)",
        "a bare PATH.db works too",
        "(default: ./data)",
        "(default: cifar100)",
        "(default: auto)",
        "(default: checkpoints/ beside a SQLite storage, else studies/checkpoints)",
        "--checkpoint-every K",
        "--heartbeat S",
        "(default: 60)",
        "--quiet",
        "--seed SEED           default: 0",  # a flag without help text still shows its default
        "how many (default: 50)",
        "Runs demo on wrn.train.train.",
    ):
        assert shown in " ".join(text.split()) or shown in text, shown
    assert "``" not in text and ":func:" not in text and "(default: None)" not in text
    assert "the name (default: the space's name)" in text  # not "... (default: None)" twice
    assert text.rstrip().endswith(
        "examples:\n  python -m study.demo --storage studies/smoke.db\n  python -m study.demo -q"
    )


def test_groups_parse(tmp_path) -> None:
    args = _parser().parse_args(["--storage", "studies/smoke.db", "--checkpoint-every", "3"])
    assert args.storage == "sqlite:///studies/smoke.db"
    # --data-dir not given: the study's recorded folder, else ./data (study.data_check)
    assert (args.data_dir, args.dataset, args.device) == (None, "cifar100", "auto")
    assert args.artifact_dir is None and args.checkpoint_every == 3 and not args.quiet
    assert args.keep_checkpoints is False and args.checkpoint_dir is None  # beside the storage
    assert args.heartbeat == 60
    retrain = Parser(prog="x")
    cli.add_retrain_flags(retrain)
    assert retrain.parse_args([]).dataset is None  # the study's own dataset


@pytest.mark.parametrize("seed", ["-1", "2147483648", "1.5"])
def test_seed_out_of_range_is_a_one_line_usage_error(
    seed: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--seed", seed])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--seed" in err
    assert err.count("\n") == 1 and err.startswith("python -m study.demo: error:")
    assert seed_type("2147483647") == 2**31 - 1


def test_strip_rst() -> None:
    assert strip_rst("``a`` and :class:`~b.C` and `d`; **e**::") == "a and C and d; e:"
    assert strip_rst("keep don't and 5`s") == "keep don't and 5`s"


def test_importing_cli_does_not_import_torch() -> None:
    code = "import study.cli, sys; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False"


def _exits_with(main, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_command("python -m study.demo", main, [])
    return info.value.code, capsys.readouterr().err


def test_user_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture) -> None:
    def usage(argv):
        raise UsageError("--trials: must be >= 1\n(second line)")

    code, err = _exits_with(usage, capsys)
    assert code == 2
    assert err == "python -m study.demo: error: --trials: must be >= 1; (second line)\n"

    class MarkedError(UserError):
        pass

    def marked(argv):
        raise MarkedError("custom")

    assert _exits_with(marked, capsys) == (2, "python -m study.demo: error: custom\n")

    from wrn.checkpoint import CheckpointError  # imported: its errors are the user's

    def checkpoint(argv):
        raise CheckpointError("stale checkpoint")

    assert _exits_with(checkpoint, capsys)[0] == 2

    def bug(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):  # not a user error: the traceback is wanted
        run_command("python -m study.demo", bug, [])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@ss@host:99999/db",
        "postgresql://u:p@ss@[::1/db",
        "grpc://host",
        "not-a-url",
    ],
)
def test_a_malformed_storage_url_is_refused_while_parsing(
    url: str, capsys: pytest.CaptureFixture
) -> None:
    """Before any data loads or driver imports: the error comes as fast as a bad flag."""
    p = cli.Parser(prog="prog")
    cli.add_storage_flag(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--storage", url])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "malformed storage URL" in err
    assert "p@ss" not in err and "ss@" not in err  # no part of the password


def test_a_bare_db_path_parses_as_sqlite(tmp_path) -> None:
    p = cli.Parser(prog="prog")
    cli.add_storage_flag(p)
    assert p.parse_args(["--storage", "studies/smoke.db"]).storage == (
        "sqlite:///studies/smoke.db"
    )


@pytest.mark.parametrize("command", ["run", "rerun", "ablate", "report", "status"])
def test_every_command_help_shows_defaults_and_explains_every_flag(command: str) -> None:
    import importlib

    parser = importlib.import_module(f"study.{command}").build_parser()
    text = parser.format_help()
    assert "(default: sqlite:///studies/wrn.db)" in " ".join(text.split())
    assert "``" not in text
    for action in parser._actions:  # argparse's own list: every flag has help text
        assert action.help, f"{command}: {action.option_strings} has no help"


def _command_fails(
    command: str, argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> str:
    """``python -m study.COMMAND ARGV`` ends in one line naming ``message``, exit status 2."""
    import importlib

    main = importlib.import_module(f"study.{command}").main
    with pytest.raises(SystemExit) as exit_info:
        run_command(f"python -m study.{command}", main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def _argv(command: str, storage: Path, name: str, *extra: str) -> list[str]:
    if command == "run":
        return [
            *tiny_args(storage, "--epochs", "1", "--trials", "1"),
            "--study-name",
            name,
            *extra,
        ]
    return ["--study-name", name, "--storage", f"sqlite:///{storage}", "--device", "cpu", *extra]


COMMANDS = ["run", "rerun", "ablate"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("a\nb", "control characters"),
        ("x" * (cli.STUDY_NAME_LIMIT + 1), f"a study name holds at most {cli.STUDY_NAME_LIMIT}"),
    ],
)
def test_an_unusable_study_name_is_refused_before_the_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str, name: str, message: str
) -> None:
    storage = tmp_path / "wrn.db"
    _command_fails(command, _argv(command, storage, name), message, capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "suffix"), [("rerun", "-rerun"), ("ablate", "-ablation")])
def test_a_derived_study_name_must_fit_too(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str, suffix: str
) -> None:
    name = "x" * (cli.STUDY_NAME_LIMIT - 3)  # a search may have it; NAME-rerun would not fit
    err = _command_fails(command, _argv(command, tmp_path / "wrn.db", name), suffix, capsys)
    assert f"{len(name) + len(suffix)} characters" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_epochs_beyond_the_bound_are_refused_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    from wrn.config import MAX_EPOCHS

    argv = _argv(command, tmp_path / "wrn.db", "tiny", "--epochs", "1000000000")
    err = _command_fails(command, argv, f"must be <= {MAX_EPOCHS:,}", capsys)
    assert "--epochs" in err and list(tmp_path.iterdir()) == []
