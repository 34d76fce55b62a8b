"""--gpus: parsed at once, refused in one line without CUDA, each worker given one GPU."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

from study.errors import UsageError
from study.gpus import VISIBLE_ENV, chosen_gpus, use_gpus
from study.lifecycle.workers import worker_environments
from tests.study.conftest import tiny_args

COMMANDS = ("study.run", "study.rerun", "study.ablate")
NEEDS = {
    "study.run": [],
    "study.rerun": ["--study-name", "s"],
    "study.ablate": ["--study-name", "s"],
}
no_cuda = pytest.mark.skipif(torch.cuda.device_count() > 0, reason="a CUDA GPU is here")


@pytest.fixture(autouse=True)
def no_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without CUDA_VISIBLE_DEVICES, and leaves this process as it was."""
    monkeypatch.delenv(VISIBLE_ENV, raising=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_training_command_takes_gpus(command: str) -> None:
    parser = importlib.import_module(command).build_parser()
    assert parser.parse_args([*NEEDS[command], "--gpus", "0,2"]).gpus == (0, 2)
    assert parser.parse_args([*NEEDS[command], "--gpus", " 3 "]).gpus == (3,)
    assert parser.parse_args(NEEDS[command]).gpus is None
    assert "--gpus" in parser.format_help()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0,x", "expected comma-separated GPU numbers"),
        ("-1", "expected comma-separated GPU numbers"),
        ("", "expected comma-separated GPU numbers"),
        ("0,,1", "expected comma-separated GPU numbers"),
        ("1.5", "expected comma-separated GPU numbers"),
        ("\u0663", "expected comma-separated GPU numbers"),  # an Arabic-Indic 3: not ASCII
        ("0,2,0", "GPU 0 is listed twice"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2(
    command: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = importlib.import_module(command).build_parser()
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args([*NEEDS[command], f"--gpus={value}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gpus" in err and says in err, err


def test_the_numbers_are_those_cuda_visible_devices_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    assert chosen_gpus((2,), "auto", None) == ["2"]
    assert chosen_gpus((0, 2), "cuda", 2) == ["0", "2"]
    monkeypatch.setenv(VISIBLE_ENV, "4,5,6")  # e.g. a Slurm allocation: positions in it
    assert chosen_gpus((2, 0), "auto", 4) == ["6", "4"]
    with pytest.raises(UsageError, match=r"^--gpus 3: CUDA_VISIBLE_DEVICES=4,5,6 shows .* 3 GPU"):
        chosen_gpus((3,), "auto", None)


@pytest.mark.parametrize(
    ("gpus", "device", "processes", "says"),
    [
        ((0,), "cpu", 1, "--gpus 0: --device cpu trains on no GPU"),
        ((0, 1, 2), "auto", 2, "--gpus 0,1,2: 3 GPUs for 2 processes, .*add --workers 3"),
        ((0, 1), "auto", None, "--gpus 0,1: 2 GPUs for 1 process, .*one command per GPU"),
    ],
)
def test_what_cannot_be_meant_is_refused_without_torch(
    gpus: tuple[int, ...], device: str, processes: int | None, says: str
) -> None:
    with pytest.raises(UsageError, match=says):
        chosen_gpus(gpus, device, processes)


def test_worker_i_trains_on_the_i_th_gpu_round_robin() -> None:
    envs = worker_environments(5, ["0", "2"], "WORKER", {})
    assert [e[VISIBLE_ENV] for e in envs] == ["0", "2", "0", "2", "0"]
    assert [e["WORKER"] for e in envs] == ["1", "2", "3", "4", "5"]
    # no GPU (--device cpu, or none visible): the environment's own setting is left alone
    assert VISIBLE_ENV not in worker_environments(2, [], "WORKER", {})[0]


@no_cuda
def test_without_cuda_gpus_is_refused_and_nothing_changes() -> None:
    with pytest.raises(UsageError, match=r"^--gpus: no CUDA GPU is available$"):
        use_gpus((0,), "auto", 1)
    assert VISIBLE_ENV not in os.environ  # the refused choice is not left behind


@no_cuda
@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_refuses_before_the_storage_is_touched(command: str, tmp_path: Path) -> None:
    storage = tmp_path / "wrn.db"
    args = ["--storage", str(storage)]
    if command == "study.run":  # the tiny search, but asking for a GPU
        args = tiny_args(storage, "--device", "auto")
    with pytest.raises(UsageError, match=r"^--gpus: no CUDA GPU is available$"):
        importlib.import_module(command).main([*NEEDS[command], *args, "--gpus", "0"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # trains a tiny trial
def test_a_worker_keeps_the_gpu_its_parent_gave_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker's command line holds the parent's --gpus 0,2 with --workers 1: the worker trains
    (on the one GPU its environment shows) instead of refusing two GPUs for one process."""
    from study import run

    monkeypatch.setenv(run.WORKER_ENV, "2")
    monkeypatch.setenv(VISIBLE_ENV, "2")
    argv = tiny_args(tmp_path / "wrn.db", "--epochs", "1", "--trials", "1", "--gpus", "0,2")
    assert run.main(argv) == 0
    assert os.environ[VISIBLE_ENV] == "2"
