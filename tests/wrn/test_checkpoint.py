import random
from pathlib import Path

import numpy as np
import pytest
import torch

from wrn.checkpoint import (
    CheckpointError,
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
