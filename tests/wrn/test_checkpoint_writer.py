"""The background checkpoint writer: snapshots, one pending write, errors, full disks, orphans."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wrn.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    load_checkpoint,
    remove_orphan_tmp,
    save_checkpoint,
)


def test_the_write_holds_the_state_of_the_save_not_later_in_place_changes(
    tmp_path: Path,
) -> None:
    weight = torch.zeros(1000)
    momentum = {"state": {0: {"momentum_buffer": torch.ones(3)}}, "lrs": [0.1]}
    writer = CheckpointWriter(tmp_path / "c.pt")
    writer.save({"model": {"w": weight}, "optimizer": momentum, "epoch": 1})
    weight.add_(5.0)  # training goes on while the thread writes
    momentum["state"][0]["momentum_buffer"].mul_(3.0)
    momentum["lrs"].append(0.2)
    writer.wait()
    state = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(state["model"]["w"], torch.zeros(1000))
    assert torch.equal(state["optimizer"]["state"][0]["momentum_buffer"], torch.ones(3))
    assert state["optimizer"]["lrs"] == [0.1]


def test_saves_follow_one_another_and_the_last_one_wins(tmp_path: Path) -> None:
    writer = CheckpointWriter(tmp_path / "c.pt")
    weight = torch.zeros(10)
    for epoch in range(1, 4):
        weight.fill_(epoch)
        writer.save({"model": {"w": weight}, "epoch": epoch})
    writer.wait()
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.full((10,), 3.0))
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_error_of_the_thread_is_raised_in_the_caller(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    writer = CheckpointWriter(tmp_path / "file" / "c.pt")
    writer.save({"model": {}})  # the thread fails; the caller learns at the next call
    with pytest.raises(OSError):
        writer.wait()
    writer.wait()  # raised once


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0"
        ),
        RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
    ],
)
def test_a_full_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(CheckpointError, match=r"c\.pt: no space left on device") as info:
        save_checkpoint(tmp_path / "c.pt", {"model": {}})
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "c.pt").exists()


def test_a_zip_writer_error_with_free_space_is_not_called_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(CheckpointError, match="write failed") as info:
        save_checkpoint(tmp_path / "c.pt", {"model": {}})
    assert "no space" not in str(info.value)


def test_orphan_tmp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f".c.pt.{int(done.stdout)}.tmp"
    alive = tmp_path / f".c.pt.{os.getppid()}.tmp"  # our parent process runs
    mine = tmp_path / f".c.pt.{os.getpid()}.tmp"
    other = tmp_path / f".d.pt.{int(done.stdout)}.tmp"  # another checkpoint's
    for p in (dead, alive, mine, other):
        p.write_bytes(b"partial")
    assert remove_orphan_tmp(tmp_path / "c.pt") == [dead]
    assert not dead.exists() and alive.exists() and mine.exists() and other.exists()
