import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from wrn.checkpoint import (
    CheckpointDiskFullError,
    CheckpointError,
    CheckpointLostError,
    CheckpointWriter,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_untrusted_pickles_are_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a wrn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_checkpoint_from_a_machine_with_more_gpus_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written by a process that saw 8 GPUs, resumed by a worker that sees 1 (a crafted file;
    CUDA stood in for by a one-device fake that refuses any other index, as CUDA does)."""
    state = rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "rng": state})
    restored: list[tuple[int, list[int]]] = []

    def one_device(new_state: torch.Tensor, device: int | str = "cuda") -> None:
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= 1:
            raise IndexError(f"device {index} of 1")
        restored.append((index, new_state.tolist()))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", one_device)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", one_device)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert restored == [(0, [0] * 16)]  # its own device's state, the others left out


def test_a_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})

    def full(fd: int) -> None:  # the write of the data reaches a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointDiskFullError, match=r"c\.pt: no space left on device \("):
        save_checkpoint(path, {"model": {}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_a_save_is_dropped_when_the_run_lost_its_checkpoint(tmp_path: Path) -> None:
    """``may_write`` is asked where the write lands, in the writer thread, so a save queued
    before the run lost its checkpoint is not written either."""
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})  # the retry's
    asked: list[int] = []
    writer = CheckpointWriter(path, may_write=lambda: bool(asked.append(1)))
    writer.save({"model": {"w": torch.ones(3)}, "epoch": 2})
    with pytest.raises(CheckpointLostError, match="taken over"):
        writer.wait()
    assert asked == [1]
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
