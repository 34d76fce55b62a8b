"""How a config's epochs divide into micro-batches and optimiser steps on a given training set:
the count both pipelines use, a config that cannot make one step an epoch (refused before any
work), and one that makes too few to learn much (warned)."""

from __future__ import annotations

import math

from wrn.config import ConfigError, TrainConfig


def train_batches(images: int, batch_size: int) -> int:
    """Micro-batches per epoch of ``images`` training images (both pipelines' rule).

    Full batches only, so BatchNorm statistics and the schedule's step count stay stable; a
    set no larger than one batch is one (partial) batch.
    """
    return images // batch_size if images > batch_size else math.ceil(images / batch_size)


# optimiser steps per epoch below which a run barely trains: the light recipe's 512 x 2 batch on
# 2,500 images makes 2, and such a study scored below chance on 10 classes
FEW_STEPS_PER_EPOCH = 5


def few_steps_warning(cfg: TrainConfig, train_images: int) -> str | None:
    """One line when ``cfg`` makes fewer than ``FEW_STEPS_PER_EPOCH`` optimiser steps an epoch
    on ``train_images`` images (None when it makes enough)."""
    batch, accum = cfg.run.batch_size, cfg.optim.grad_accum
    steps = train_batches(train_images, batch) // accum
    if steps >= FEW_STEPS_PER_EPOCH:
        return None
    return (
        f"warning: {train_images} training images in batches of {batch} x {accum} (grad_accum) "
        f"make {steps} optimiser step{'s' * (steps != 1)} per epoch, {steps * cfg.run.epochs} "
        "in all: too few to learn much; a smaller batch_size gives more (--set batch_size=64)"
    )


def check_runnable(cfg: TrainConfig, train_images: int) -> None:
    """Refuse, before any training, a config that cannot run on ``train_images`` images.

    Each epoch needs at least one optimiser step: ``grad_accum`` micro-batches of
    ``batch_size``. (``epochs`` is bounded by ``MAX_EPOCHS`` when the config is built.)
    """
    batches = train_batches(train_images, cfg.run.batch_size)
    accum = cfg.optim.grad_accum
    if batches < accum:
        raise ConfigError(
            f"grad_accum: {accum} micro-batches per optimiser step, but {train_images} "
            f"training images make {batches} batches of batch_size={cfg.run.batch_size} "
            "per epoch: lower grad_accum or batch_size"
        )
