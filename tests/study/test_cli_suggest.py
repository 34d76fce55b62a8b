"""A mistyped option is answered with the nearest one, in the usage error's one line."""

from __future__ import annotations

import pytest

from study import run, status


def test_a_mistyped_option_gets_the_nearest(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run.build_parser().parse_args(["--trails", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("unrecognized arguments: --trails 5; did you mean --trials?\n")
    assert err.count("\n") == 1


def test_a_value_with_equals_and_no_close_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run.build_parser().parse_args(["--trails=5"])
    assert capsys.readouterr().err.endswith("did you mean --trials?\n")
    with pytest.raises(SystemExit) as exit_info:
        status.build_parser().parse_args(["--zzzzzz"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith("unrecognized arguments: --zzzzzz\n")
