"""benchmarks.deterministic: the kill-and-resume workers' bit-for-bit mode (CUDA settings
checked as flags: no GPU needed)."""

import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.kill_resume import study_command
from wrn.step import autotune_cudnn

ROOT = Path(__file__).resolve().parents[2]


def test_the_mode_turns_off_autotuning_and_nondeterministic_kernels() -> None:
    code = (
        "import os, torch\n"
        "from benchmarks.deterministic import enable\n"
        "from wrn.step import autotune_cudnn\n"
        "enable()\n"
        "autotune_cudnn(torch.device('cuda'))  # what every TrainStep on CUDA calls\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,"
        " torch.backends.cudnn.benchmark, os.environ['CUBLAS_WORKSPACE_CONFIG'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["True", "True", "False", ":4096:8"]


def test_without_the_mode_cuda_runs_autotune() -> None:
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        autotune_cudnn(torch.device("cpu"))
        assert torch.backends.cudnn.benchmark is False
        autotune_cudnn(torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


def test_modules_run_under_it_with_their_arguments(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.deterministic", "json.tool", "--compact"],
        input='{"a": [1, 2]}',
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == '{"a":[1,2]}'
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks.deterministic"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_kill_and_resume_workers_run_deterministically(tmp_path: Path) -> None:
    command = study_command(["--device", "cuda"], "sqlite:///x.db", tmp_path, 4, 1)
    assert command[1:4] == ["-m", "benchmarks.deterministic", "study.run"]
