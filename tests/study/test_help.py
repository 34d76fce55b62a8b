"""Every command's --help ends with examples a user can copy."""

from __future__ import annotations

import importlib

import pytest

COMMANDS = ("run", "rerun", "ablate", "report", "status", "proxy", "export", "delete")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_examples(name: str) -> None:
    module = importlib.import_module(f"study.{name}")
    text = module.build_parser().format_help()
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.strip().startswith("python -m ") for line in examples if line)
