"""train() on the paths a CUDA run takes: resuming, background checkpoints, compile, progress."""

import errno
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import wrn.train
from wrn.checkpoint import CheckpointError, load_checkpoint
from wrn.config import TrainConfig
from wrn.step import TrainStep, evaluate
from wrn.train import BatchProgress, EpochStats, train


class _Stop(BaseException):  # not an Exception: nothing on the way catches it
    pass


def test_resume_reads_the_checkpoint_to_cpu_whatever_the_device(
    tiny_config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config.replace(epochs=2, pipeline="cpu")
    path = tmp_path / "ckpt.pt"

    def stop(stats: EpochStats) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        train(cfg, on_epoch_end=stop, checkpoint_path=path)
    # a CUDA run: the RNG states in the file must reach set_rng_state as CPU tensors, so the
    # file is read to CPU memory (and before a model or batches are put on the device)
    monkeypatch.setattr(wrn.train, "resolve_device", lambda name: torch.device("cuda"))
    asked: list[object] = []

    def spy(*args: object, map_location: object = None, **kwargs: object) -> None:
        asked.append(map_location)
        raise _Stop

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(_Stop):
        train(cfg, checkpoint_path=path)
    assert asked == ["cpu"]


def test_checkpoint_every_saves_every_kth_and_the_last_epoch(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    cfg = tiny_config.replace(epochs=3, checkpoint_every=2)
    path = tmp_path / "ckpt.pt"

    def stop_at_2(stats: EpochStats) -> None:
        # the save of epoch 1 was skipped; the one of epoch 2 may still be pending here
        assert stats.epoch == 2 or not path.exists()
        if stats.epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train(cfg, on_epoch_end=stop_at_2, checkpoint_path=path)
    assert load_checkpoint(path)["epoch"] == 2  # on disk once train() has raised
    # checkpoint_every is an execution key: a resume with another value is accepted, and the
    # last epoch is saved though 3 % 5 != 0
    resumed: list[int] = []
    result = train(
        cfg.replace(checkpoint_every=5),
        on_epoch_end=lambda s: resumed.append(s.epoch),
        checkpoint_path=path,
    )
    assert resumed == [3] and [s.epoch for s in result.history] == [1, 2, 3]
    assert load_checkpoint(path)["epoch"] == 3


def test_a_full_disk_stops_training_with_one_line(
    tiny_config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="no space left on device"):
        train(tiny_config.replace(epochs=1), checkpoint_path=tmp_path / "ckpt.pt")


def test_on_batch_reports_the_first_step_then_throttled_progress(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wrn.train, "PROGRESS_INTERVAL", 3600.0)  # only the compulsory calls
    cfg = tiny_config.replace(epochs=2, grad_accum=2)
    calls: list[BatchProgress] = []
    result = train(cfg, on_batch=calls.append)
    batches = 500 // 32 // 2 * 2  # 500 training images, micro-batches of 32, pairs of them
    assert [(c.epoch, c.batch, c.first_step) for c in calls] == [
        (1, 2, True),  # right after the first optimiser step (the second micro-batch)
        (1, batches, False),
        (2, batches, False),
    ]
    assert all(c.batches == batches and c.images == c.batch * 32 for c in calls)
    assert calls[-1].loss == pytest.approx(result.history[-1].train_loss)
    assert all(c.seconds > 0 for c in calls)


def test_cycle_momentum_follows_one_cycle(tiny_config: TrainConfig) -> None:
    def momenta(cycle: bool) -> list[float]:
        cfg = tiny_config.replace(cycle_momentum=cycle, momentum=0.9, warmup_frac=0.5)
        step = TrainStep(cfg, torch.device("cpu"), total_steps=11)
        seen = []
        for _ in range(10):
            seen.append(step.optimizer.param_groups[0]["momentum"])
            step.optimizer.step()
            step.scheduler.step()
        return seen

    assert momenta(False) == [0.9] * 10
    cycled = momenta(True)
    low = cycled.index(min(cycled))  # at the LR peak, step 4.5 of 11
    assert cycled[0] == pytest.approx(0.9) and 0.85 <= min(cycled) < 0.86 and low in (4, 5)
    assert cycled[:low + 1] == sorted(cycled[:low + 1], reverse=True)
    assert cycled[low:] == sorted(cycled[low:])


def test_padded_evaluation_gives_the_plain_figures() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.BatchNorm1d(5))
    batches = [(torch.randn(8, 3, 2, 2), torch.randint(0, 5, (8,))) for _ in range(2)]
    batches.append((torch.randn(3, 3, 2, 2), torch.randint(0, 5, (3,))))
    shapes: list[int] = []
    model.register_forward_hook(lambda m, i, o: shapes.append(len(i[0])))
    criterion = nn.CrossEntropyLoss(reduction="sum")
    cpu = torch.device("cpu")
    plain = evaluate(model, batches, cpu, None, False, criterion)
    assert shapes == [8, 8, 3]
    shapes.clear()
    padded = evaluate(model, batches, cpu, None, False, criterion, pad=True)
    assert shapes == [8, 8, 8]  # one input shape for a compiled model
    assert padded == pytest.approx(plain, rel=1e-6)


def test_importing_the_library_stays_light() -> None:
    # the CLIs import wrn.config (and wrn.train) before parsing --help: no torchvision (which
    # pulls torch._dynamo), albumentations or cv2 until a run builds its batches
    code = (
        "import sys, wrn.config; assert 'torch' not in sys.modules, 'config imports torch'; "
        "import wrn.train; heavy = {'torchvision', 'albumentations', 'cv2', 'torch._dynamo'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert out.stdout.strip() == "[]"
