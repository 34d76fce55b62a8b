import math
from pathlib import Path

import pytest
import torch

from wrn.checkpoint import CheckpointError, load_checkpoint
from wrn.config import TrainConfig
from wrn.data import load_splits
from wrn.train import EpochStats, NonFiniteLossError, train


def test_tiny_run_beats_chance_on_synthetic_data(tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(epochs=4)
    seen: list[EpochStats] = []
    result = train(cfg, on_epoch_end=seen.append)
    assert [s.epoch for s in seen] == [1, 2, 3, 4] and result.history == seen
    assert result.eval_name == "val"
    chance = 1 / cfg.model.num_classes
    assert result.final_acc > 3 * chance
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.num_params == 77_850  # WRN-10-1 with 10 classes
    assert all(s.seconds > 0 and s.images_per_s > 0 for s in result.history)


def test_cpu_run_is_exactly_repeatable(tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(mixup_prob=0.5, cutmix_prob=0.3, augmentation="albumentations")
    first = train(cfg)
    second = train(cfg)
    strip = [(s.train_loss, s.train_acc, s.eval_loss, s.eval_acc) for s in first.history]
    assert strip == [(s.train_loss, s.train_acc, s.eval_loss, s.eval_acc) for s in second.history]
    other = train(cfg.replace(seed=1))
    assert other.history[-1].train_loss != first.history[-1].train_loss


def test_lr_follows_one_cycle_to_final_lr(tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(epochs=3, lr=0.2, final_lr=1e-5)
    result = train(cfg)
    assert result.history[-1].lr == pytest.approx(1e-5)
    assert max(s.lr for s in result.history) <= 0.2


@pytest.mark.parametrize("augmentation", ["albumentations", "randaugment", "basic"])
def test_every_recipe_option_trains(tiny_config: TrainConfig, augmentation: str) -> None:
    cfg = tiny_config.replace(
        epochs=1,
        augmentation=augmentation,
        grad_accum=2,
        grad_clip=0.5,
        nesterov=True,
        first_dropout=0.1,
        dropout=0.25,
        label_smoothing=0.15,
        mixup_prob=1.0,
        cutmix_prob=0.2,
    )
    result = train(cfg)
    assert math.isfinite(result.history[0].train_loss)
    # mix-weighted accuracy is a fraction even when every batch is mixed
    assert 0.0 <= result.history[0].train_acc <= 1.0


def test_a_callback_exception_stops_training(tiny_config: TrainConfig) -> None:
    class StopError(Exception):
        pass

    def stop_after_first(stats: EpochStats) -> None:
        raise StopError

    with pytest.raises(StopError):
        train(tiny_config.replace(epochs=5), on_epoch_end=stop_after_first)


def test_a_config_without_one_step_per_epoch_is_refused_untrained(
    tiny_config: TrainConfig,
) -> None:
    from wrn.config import ConfigError

    # 500 training images make 15 batches of 32: grad_accum=16 would never step
    with pytest.raises(ConfigError, match=r"^grad_accum: 16 micro-batches per optimiser step"):
        train(tiny_config.replace(grad_accum=16), on_epoch_end=pytest.fail)


def test_non_finite_loss_is_reported(tiny_config: TrainConfig) -> None:
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        train(tiny_config.replace(lr=1e30, epochs=1, final_lr=1e-5))


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
def test_resume_from_checkpoint_replays_the_same_epochs(
    tiny_config: TrainConfig, tmp_path: Path, pipeline: str
) -> None:
    cfg = tiny_config.replace(pipeline=pipeline, epochs=3, mixup_prob=0.5, cutmix_prob=0.3)
    full = train(cfg)
    path = tmp_path / "ckpt.pt"

    def stop_at_2(stats: EpochStats) -> None:
        if stats.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=stop_at_2, checkpoint_path=path)
    assert load_checkpoint(path)["epoch"] == 2
    resumed_epochs: list[int] = []
    resumed = train(
        cfg, on_epoch_end=lambda s: resumed_epochs.append(s.epoch), checkpoint_path=path
    )
    assert resumed_epochs == [3]
    assert [s.eval_acc for s in resumed.history] == [s.eval_acc for s in full.history]
    assert resumed.history[-1].train_loss == full.history[-1].train_loss
    # the two pipelines draw other augmentations: resuming with the other would not replay
    other = "cpu" if pipeline == "gpu" else "gpu"
    with pytest.raises(CheckpointError, match=f"{pipeline} data pipeline"):
        train(cfg.replace(pipeline=other), checkpoint_path=path)


def test_checkpoint_of_another_config_is_refused(tiny_config: TrainConfig, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    train(tiny_config.replace(epochs=1), checkpoint_path=path)
    with pytest.raises(CheckpointError, match="another config"):
        train(tiny_config.replace(epochs=1, dropout=0.1), checkpoint_path=path)


def test_checkpoint_holds_the_training_state(tiny_config: TrainConfig, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    train(tiny_config.replace(epochs=1), checkpoint_path=path)
    state = load_checkpoint(path)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "history", "config"} <= set(state)
    assert state["config"]["depth"] == 10 and len(state["history"]) == 1
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_splits_can_be_passed_in(tiny_config: TrainConfig) -> None:
    splits = load_splits(tiny_config.data, tiny_config.model.num_classes, tiny_config.run.seed)
    result = train(tiny_config.replace(epochs=1), splits=splits)
    assert result.eval_name == "val" and 0.0 <= result.final_acc <= 1.0


def test_bf16_autocast_is_cuda_only(tiny_config: TrainConfig) -> None:
    # on CPU the run is fp32 whatever bf16 says: the same numbers with the flag on and off
    a = train(tiny_config.replace(epochs=1, bf16=True))
    b = train(tiny_config.replace(epochs=1, bf16=False))
    assert a.history[0].train_loss == b.history[0].train_loss
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("augmentation", ["albumentations", "randaugment", "basic"])
def test_gpu_pipeline_trains_and_repeats(tiny_config: TrainConfig, augmentation: str) -> None:
    # the GPU data path runs on CPU tensors too; CUDA only changes where the tensors live
    cfg = tiny_config.replace(
        pipeline="gpu", augmentation=augmentation, epochs=3, mixup_prob=0.5, cutmix_prob=0.2
    )
    first = train(cfg)
    if augmentation != "randaugment":  # its colour ops erase the synthetic classes' only cue
        assert first.final_acc > 1.5 / cfg.model.num_classes
    again = train(cfg.replace(epochs=1))
    assert again.history[0].train_loss != first.history[0].train_loss  # a one-epoch schedule
    assert again.history[0].train_loss == train(cfg.replace(epochs=1)).history[0].train_loss


@pytest.mark.parametrize("pipeline", ["gpu", "cpu"])
def test_seed_fidelity_keys_reach_the_augmentation(
    tiny_config: TrainConfig, pipeline: str
) -> None:
    from wrn.step import make_batches

    cfg = tiny_config.replace(
        augmentation="albumentations", aug_fill="reflect", extra_rotate=False
    )
    splits = load_splits(cfg.data, cfg.model.num_classes, cfg.run.seed)
    train_batches, _ = make_batches(cfg, splits, torch.device("cpu"), pipeline, False)
    if pipeline == "gpu":
        assert train_batches.options == {"fill": "reflect", "extra_rotate": False}
    else:
        import cv2

        steps = {type(t).__name__: t for t in train_batches.dataset.transform.compose.transforms}
        assert "Rotate" not in steps  # only the Affine's own rotation
        assert steps["Affine"].border_mode == cv2.BORDER_REFLECT_101
