"""What an epoch consumed: CPU seconds of this process, GPU seconds between CUDA events."""

from __future__ import annotations

import pytest
import torch

from wrn.compute import ComputeClock
from wrn.config import TrainConfig
from wrn.train import train


def _spin(seconds: float) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_count_this_process_and_no_device_on_cpu() -> None:
    clock = ComputeClock(torch.device("cpu"))
    clock.start()
    with clock.work():
        _spin(0.05)
    consumed = clock.stop()
    assert consumed.cpu_seconds >= 0.05 and consumed.device_seconds is None
    assert consumed.wall_seconds >= consumed.cpu_seconds * 0.5


class _FakeEvent:
    """A CUDA event on a clock the test moves: record() stamps it, elapsed_time() in ms."""

    now = 0.0

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing  # elapsed_time needs it on a real GPU
        self.stamp: float | None = None

    def record(self) -> None:
        self.stamp = _FakeEvent.now

    def elapsed_time(self, end: _FakeEvent) -> float:
        assert self.stamp is not None and end.stamp is not None
        return (end.stamp - self.stamp) * 1000.0


def test_device_seconds_sum_the_work_and_not_the_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    clock = ComputeClock(torch.device("cuda"))
    clock.start()
    for work, gap in ((0.25, 1.0), (0.5, 2.0)):  # a step's GPU work, then waiting for data
        with clock.work():
            _FakeEvent.now += work
        _FakeEvent.now += gap
    assert clock.stop().device_seconds == pytest.approx(0.75)


def test_each_epoch_records_what_it_consumed(tiny_config: TrainConfig) -> None:
    result = train(tiny_config.replace(epochs=1))
    (epoch,) = result.history
    assert epoch.cpu_seconds is not None and epoch.cpu_seconds > 0
    assert epoch.device_seconds is None  # a CPU run has no GPU seconds
