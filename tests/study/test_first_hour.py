"""What a newcomer is told at start: a CPU fall back, too few optimiser steps, a torch and
torchvision that do not go together (each one line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study import run
from tests.tiny import tiny_flags


def _argv(tmp_path: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        *("--storage", f"sqlite:///{tmp_path / 'wrn.db'}", "--data-dir", str(data_dir)),
        *("--val-size", "100", "--epochs", "1", "--pruner", "none", "--trials", "1"),
        *tiny_flags("augmentation"),
        *extra,
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fall back needs a machine without GPU")
@pytest.mark.usefixtures("one_thread")
def test_device_auto_without_a_gpu_says_it_trains_on_the_cpu(
    cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main(_argv(tmp_path, cifar_dir, "--device", "auto")) == 0
    out = capsys.readouterr().out
    assert out.count("no CUDA GPU here: --device auto trains on the CPU") == 1
    assert run.main(_argv(tmp_path / "again", cifar_dir, "--device", "cpu")) == 0
    assert "no CUDA GPU here" not in capsys.readouterr().out  # asked for: nothing to say


@pytest.mark.usefixtures("one_thread")
def test_a_batch_too_large_for_the_data_is_warned_in_one_line(
    cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 300 training images in batches of 128: 2 optimiser steps an epoch
    argv = [*_argv(tmp_path, cifar_dir, "--device", "cpu"), "--set", "batch_size=128"]
    assert run.main(argv) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "warning:" in x]
    assert "300 training images in batches of 128 x 1 (grad_accum) make 2 optimiser" in line


def test_a_torchvision_for_another_torch_is_one_line_before_any_storage(
    cifar_dir: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "fake" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{Path.cwd()}"}
    argv = _argv(tmp_path, cifar_dir, "--device", "cpu")
    result = subprocess.run(
        [sys.executable, "-m", "study.run", *argv], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("python -m study.run: error: torch ") and "torchvision " in line
    assert "torchvision::nms does not exist" in line and not (tmp_path / "wrn.db").exists()
