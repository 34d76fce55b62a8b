"""Training checkpoints: model, optimiser, scheduler, epoch, history and RNG state.

Written atomically (temporary file, fsync, then rename) so a crash never leaves a half-written
file, and read back with ``weights_only=True`` so loading one cannot run code.
:class:`CheckpointWriter` writes in a background thread from a CPU snapshot, so training only
waits for the device-to-host copy, not for serialising and writing hundreds of MB.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wrn.config import comparable

# torch's zip writer reports a full disk as a RuntimeError with one of these, not as ENOSPC
_ZIP_WRITE_ERRORS = ("unexpected pos", "file write failed")
_LOW_SPACE = 64 * 2**20  # bytes free under which a failed write is put down to a full disk


class CheckpointError(ValueError):
    """A checkpoint cannot be read, written, or does not belong to this run."""


class CheckpointDiskFullError(CheckpointError):
    """A checkpoint could not be written for want of space; the previous one is intact."""


class CheckpointLostError(Exception):
    """Another process took this run's checkpoint over; the save was dropped, unwritten."""


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states, as plain tensors, lists and ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`; its tensors may lie on any device (they are read on the CPU)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        # one state per device the writer saw; this process may see fewer (--workers sets
        # CUDA_VISIBLE_DEVICES), and each epoch reseeds them all: restore those that exist
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state.cpu(), index)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The original module behind a ``torch.compile`` wrapper."""
    return getattr(model, "_orig_mod", model)


def _tmp_path(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.tmp")


def _disk_full_error(path: Path, e: BaseException) -> CheckpointError | None:
    """A one-line error if ``e`` means the disk is full, else None."""
    full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or (isinstance(e, RuntimeError) and any(m in str(e) for m in _ZIP_WRITE_ERRORS)):
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = 0
        if full or free < _LOW_SPACE:
            return CheckpointDiskFullError(
                f"{path}: no space left on device ({free / 2**20:.1f} MiB free)"
            )
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return CheckpointError(f"{path}: checkpoint write failed ({first_line})")
    return None


def save_checkpoint(
    path: str | Path, state: dict[str, Any], may_write: Callable[[], bool] | None = None
) -> None:
    """Write ``state`` to ``path`` atomically; a full disk is a one-line
    CheckpointDiskFullError. ``may_write`` is asked right before the file replaces ``path``:
    False drops it (CheckpointLostError), so a run that lost its checkpoint never writes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, os.getpid())
    try:
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the checkpoint
        if may_write is not None and not may_write():
            raise CheckpointLostError(f"{path}: taken over by another process; save dropped")
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)  # first, so the free space said is what is left
        full = _disk_full_error(path, e)
        if full is None:
            raise
        raise full from None
    finally:
        tmp.unlink(missing_ok=True)


def remove_orphan_tmp(path: str | Path) -> list[Path]:
    """Delete ``.<name>.<pid>.tmp`` files next to ``path`` whose process is gone."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)  # signal 0: only asks whether the process exists
            continue
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue  # another user's live process, or not a pid at all
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


class CheckpointWriter:
    """Saves checkpoints from a background thread, at most one write pending at a time.

    :meth:`save` copies the state to CPU memory (into pinned buffers with one synchronisation
    on CUDA; into reused buffers on the CPU, since training mutates tensors in place), then
    hands the copy to a thread. A save waits for the previous write first; an error of the
    thread is raised in the caller at the next :meth:`save` or at :meth:`wait`.
    ``may_write``: asked by the thread before each write lands (see :func:`save_checkpoint`).
    """

    def __init__(self, path: str | Path, may_write: Callable[[], bool] | None = None) -> None:
        self.path = Path(path)
        self.may_write = may_write
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._buffers: list[torch.Tensor] = []  # CPU copies, reused by the next snapshot

    def save(self, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = self.snapshot(state)
        self._thread = threading.Thread(
            target=self._write, args=(snapshot,), name="checkpoint-writer", daemon=True
        )
        self._thread.start()

    def snapshot(self, state: Any) -> Any:
        """A CPU copy of ``state`` that later training steps cannot change."""
        tensors: list[torch.Tensor] = []
        copy = self._copy(state, tensors)
        if any(t.is_cuda for t in tensors):
            torch.cuda.synchronize()  # once, for all the non-blocking copies
        return copy

    def _copy(self, value: Any, tensors: list[torch.Tensor]) -> Any:
        if isinstance(value, torch.Tensor):
            i = len(tensors)
            tensors.append(value)
            buf = self._buffers[i] if i < len(self._buffers) else None
            if (
                buf is None
                or buf.shape != value.shape
                or buf.dtype != value.dtype
                or buf.stride() != value.stride()
            ):
                pin = value.is_cuda  # pinned host memory: the copy runs asynchronously
                buf = torch.empty_strided(
                    value.shape, value.stride(), dtype=value.dtype, pin_memory=pin
                )
                if i < len(self._buffers):
                    self._buffers[i] = buf
                else:
                    self._buffers.append(buf)
            return buf.copy_(value.detach(), non_blocking=value.is_cuda)
        if isinstance(value, dict):
            return {k: self._copy(v, tensors) for k, v in value.items()}
        if isinstance(value, list):
            return [self._copy(v, tensors) for v in value]
        if isinstance(value, tuple):
            return tuple(self._copy(v, tensors) for v in value)
        return value  # numbers, strings, None: immutable

    def _write(self, snapshot: dict[str, Any]) -> None:
        try:
            save_checkpoint(self.path, snapshot, self.may_write)
        except BaseException as e:  # re-raised in the training thread
            self._error = e

    def wait(self) -> None:
        """Block until the pending write is on disk; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; any failure is a one-line CheckpointError."""
    try:
        state = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a wrn checkpoint (no 'model' entry)")
    return state


def saved_history(
    path: str | Path, config: dict[str, Any], owner: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The per-epoch history stored in a checkpoint, without reading its tensors, once its
    owner (an opaque identity its caller wrote) and ``config`` (flat) are this run's."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
        history = list(state["history"])
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
    check_owner(path, state, owner)
    if comparable(state.get("config", {})) != comparable(config):
        raise CheckpointError(f"{path}: written by a run with another config")
    return history


def check_owner(path: str | Path, state: dict[str, Any], owner: dict[str, Any] | None) -> None:
    """Refuse a checkpoint written for another owner (another trial, study or storage)."""
    if state.get("owner") != owner:
        raise CheckpointError(f"{path}: written for another trial ({state.get('owner')})")
