"""``--gpus 0,2``: the CUDA GPUs a training command's processes train on.

A process is shown its GPUs through ``CUDA_VISIBLE_DEVICES``, set before torch starts CUDA (the
CUDA runtime reads it once, at its first call), so its GPU is ``cuda:0``. ``study.run --workers
N`` gives worker i the (i mod len)-th of them (``lifecycle.workers.worker_environments``). The
numbers are those CUDA gives this process: with ``CUDA_VISIBLE_DEVICES`` already set (a Slurm
allocation), positions in it. ``--gpus`` asks for CUDA: without it the command is refused, never
moved to the CPU. Imports no torch until the value has passed every check that needs none.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from study.errors import UsageError

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


def gpus_type(text: str) -> tuple[int, ...]:
    """The ``--gpus`` type: comma-separated GPU numbers from 0, none twice."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated GPU numbers from 0 (e.g. 0,2), got {text!r}"
        )
    gpus = tuple(int(part) for part in parts)
    twice = sorted({g for g in gpus if gpus.count(g) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"GPU {twice[0]} is listed twice in {text!r}")
    return gpus


def add_gpu_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gpus",
        metavar="0,2",
        type=gpus_type,
        help="CUDA GPUs to train on, numbered as CUDA_VISIBLE_DEVICES shows them: study.run's "
        "--workers take them in turn, rerun and ablate take one; refused without a CUDA GPU, "
        "never moved to the CPU (default: every visible GPU)",
    )


def visible_entries() -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (numbers, or UUIDs); None when it is not set."""
    current = os.environ.get(VISIBLE_ENV)
    if current is None:
        return None
    return [entry.strip() for entry in current.split(",") if entry.strip()]


def listed(gpus: Sequence[int]) -> str:
    return ",".join(map(str, gpus))


def chosen_gpus(gpus: Sequence[int], device: str, processes: int | None) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entries ``gpus`` name for a command of ``processes`` worker
    processes (``study.run --workers``; None: a command of one, rerun or ablate), after the
    checks that need no torch."""
    if device == "cpu":
        raise UsageError(f"--gpus {listed(gpus)}: --device cpu trains on no GPU; drop one of them")
    count = processes or 1
    if len(gpus) > count:
        more = (
            f"add --workers {len(gpus)}"
            if processes
            else "start one command per GPU, they share the study's runs"
        )
        raise UsageError(
            f"--gpus {listed(gpus)}: {len(gpus)} GPUs for {count} "
            f"process{'es' if count > 1 else ''}, each training on one GPU; {more}"
        )
    shown = visible_entries()
    if shown is None:
        return [str(g) for g in gpus]
    past = [g for g in gpus if g >= len(shown)]
    if past:
        raise UsageError(
            f"--gpus {past[0]}: {VISIBLE_ENV}={os.environ[VISIBLE_ENV]} shows this process "
            f"{len(shown)} GPU(s), numbered from 0 in its order"
        )
    return [shown[g] for g in gpus]


def use_gpus(gpus: Sequence[int] | None, device: str, processes: int | None) -> None:
    """Show this process (and the workers it starts) only ``gpus`` (``chosen_gpus``), before
    torch starts CUDA; refuse, in one line, a GPU that CUDA does not find. None: no --gpus."""
    if gpus is None:
        return
    chosen = chosen_gpus(gpus, device, processes)
    before = os.environ.get(VISIBLE_ENV)
    os.environ[VISIBLE_ENV] = ",".join(chosen)
    import torch  # only now: CUDA starts with the chosen GPUs

    found = torch.cuda.device_count()  # NVML's count: CUDA is not started by it
    if found == len(gpus):
        return
    if before is None:  # refused: this process sees what it saw before
        del os.environ[VISIBLE_ENV]
    else:
        os.environ[VISIBLE_ENV] = before
    total = torch.cuda.device_count()
    if total == 0:
        raise UsageError("--gpus: no CUDA GPU is available")
    raise UsageError(
        f"--gpus {listed(gpus)}: CUDA shows this process {total} GPU(s), numbered 0-{total - 1}"
    )
