"""What an epoch consumed, beside its wall time: this process's CPU seconds and, on CUDA, the
seconds the GPU spent on its work. Wall time alone misleads under load (a busy machine
stretches it several-fold) and when workers share a GPU (each would count the whole GPU)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Consumed:
    wall_seconds: float
    cpu_seconds: float  # this process, all its threads (DataLoader worker processes not)
    device_seconds: float | None  # CUDA: summed between events around each piece of work


class ComputeClock:
    """Times one epoch: ``start()``, each piece of GPU work inside ``with clock.work():``, then
    ``stop()`` after the device was synchronised.

    On CUDA a pair of events brackets each piece of work (an optimiser step, the evaluation),
    so the gaps in between (waiting for data, Python) are not counted: the sum is the GPU time
    of this process's stream, including any time-slicing with other processes inside a piece.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._wall0 = self._cpu0 = 0.0

    def start(self) -> None:
        self._events = []
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    @contextmanager
    def work(self) -> Iterator[None]:
        if not self.cuda:
            yield
            return
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        yield
        end.record()
        self._events.append((begin, end))

    def stop(self) -> Consumed:
        """Call after ``torch.cuda.synchronize()``: the events must have completed."""
        wall, cpu = time.perf_counter() - self._wall0, time.process_time() - self._cpu0
        device = None
        if self.cuda:  # elapsed_time is in milliseconds
            device = sum(begin.elapsed_time(end) for begin, end in self._events) / 1000.0
        return Consumed(wall, cpu, device)
