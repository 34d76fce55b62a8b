import subprocess
import sys
from pathlib import Path

from wrn.stack import check_torchvision


def test_a_matching_torch_and_torchvision_pass() -> None:
    check_torchvision()


def test_a_torchvision_built_for_another_torch_is_one_line(tmp_path: Path) -> None:
    # what a CUDA torchvision raises on import beside a CPU torch
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    code = "from wrn.stack import check_torchvision; check_torchvision()"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wrn.stack.StackError: torch ")
    assert "torchvision::nms does not exist" in last and "pip install --force-reinstall" in last
