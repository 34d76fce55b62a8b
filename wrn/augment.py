"""Per-image augmentation pipelines: one numpy HWC uint8 image in, a normalised CHW tensor out.

``build_transform(name, train)`` picks one of the ``DataConfig.augmentation`` pipelines:

* ``"albumentations"``: the WRN-28-10 recipe (pad/crop, flip, rotate, shift-scale-rotate,
  one of CoarseDropout / GaussNoise), built by :func:`albumentations_pipeline`.
* ``"randaugment"``: the light recipe (crop, flip, RandAugment, ColorJitter, RandomErasing),
  with ``torchvision.transforms.v2``.
* ``"basic"``: crop with 4-px zero padding and horizontal flip.

With ``train=False`` every name gives the same deterministic eval transform.

Randomness. The torchvision pipelines draw from torch's global RNG, which DataLoader already
seeds per worker (``torch.initial_seed()`` = base seed + worker id). An albumentations
``Compose`` instead carries its own numpy/python generators, which would be copied unchanged
into every worker (identical augmentations in all workers, and not tied to the run's seed).
:class:`AlbumentationsTransform` therefore reseeds those generators from
``torch.initial_seed()`` whenever that seed differs from the one it last used, so it follows
``torch.manual_seed`` in the main process and the per-worker seed in workers with no hook.
:func:`reseed` pins an explicit seed (e.g. from a ``worker_init_fn``).

All transforms are module-level classes so they pickle into DataLoader worker processes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from wrn.augment_spec import (
    AFFINE,
    AUGMENTATION_NAMES,
    CIFAR100_MEAN,
    CIFAR100_STD,
    CROP_FLIP,
    ERASING,
    IMAGE_SIZE,
    JITTER,
    ONE_OF,
    RANDAUGMENT,
    ROTATE,
    check_aug_fill,
)

if TYPE_CHECKING:  # imported where the pipelines are built: a plain import stays fast
    import albumentations as A  # noqa: N812 (the library's own convention)
    from torchvision.transforms import v2

__all__ = ["AUGMENTATION_NAMES", "CIFAR100_MEAN", "CIFAR100_STD", "build_transform", "reseed"]

Transform = Callable[[np.ndarray], torch.Tensor]

# Salt for the albumentations generators, so they never replay the worker's global
# numpy/random streams when a worker_init_fn seeds those from the same torch seed.
_SEED_SALT = 0x5EED_A1B0
_U64 = (1 << 64) - 1


def albumentations_pipeline(fill: str = "zero", extra_rotate: bool = True) -> A.Compose:
    """The WRN-28-10 recipe's augmentation, as an inspectable albumentations 2.x Compose.

    ``fill``: the Rotate/Affine border, "zero" or "reflect" (cv2.BORDER_REFLECT_101,
    albumentations 1.x's default); the crop's padding is zeros either way. ``extra_rotate``:
    stack the separate Rotate on the Affine's own rotation (False: the Affine's only).
    Strengths: :mod:`wrn.augment_spec`.
    """
    import albumentations as A  # noqa: N812 (the library's own convention)
    import cv2
    from albumentations.pytorch import ToTensorV2

    check_aug_fill(fill)
    border = cv2.BORDER_CONSTANT if fill == "zero" else cv2.BORDER_REFLECT_101
    side = IMAGE_SIZE + 2 * CROP_FLIP.padding
    steps = [
        # "Random padding to 40x40, then random crop to 32x32" = a random shift of <= 4 px.
        A.PadIfNeeded(min_height=side, min_width=side, border_mode=cv2.BORDER_CONSTANT, fill=0),
        A.RandomCrop(height=IMAGE_SIZE, width=IMAGE_SIZE, p=1.0),
        A.HorizontalFlip(p=CROP_FLIP.flip_p),
    ]
    if extra_rotate:
        steps.append(A.Rotate(limit=ROTATE.limit, border_mode=border, fill=0, p=ROTATE.p))
    steps += [
        # ShiftScaleRotate(shift_limit=0.1, scale_limit=0.15, rotate_limit=15) warns as
        # deprecated in albumentations 2.x; this Affine is its equivalent. keep_ratio=True
        # keeps the classic isotropic scaling (2.x's ShiftScaleRotate scales x and y apart).
        A.Affine(
            translate_percent=(-AFFINE.shift, AFFINE.shift),
            scale=AFFINE.scale,
            rotate=(-AFFINE.rotate, AFFINE.rotate),
            shear=0.0,
            keep_ratio=True,
            border_mode=border,
            fill=0,
            p=AFFINE.p,
        ),
        A.OneOf(
            [
                A.CoarseDropout(
                    num_holes_range=(ONE_OF.holes, ONE_OF.holes),
                    hole_height_range=ONE_OF.hole_range,
                    hole_width_range=ONE_OF.hole_range,
                    fill=0,
                    p=1.0,
                ),
                A.GaussNoise(std_range=ONE_OF.noise_std_range, mean_range=(0.0, 0.0), p=1.0),
            ],
            p=ONE_OF.p,
        ),
        A.Normalize(mean=CIFAR100_MEAN, std=CIFAR100_STD, max_pixel_value=255.0),
        ToTensorV2(),
    ]
    return A.Compose(steps)


def randaugment_pipeline() -> v2.Compose:
    """The light recipe's augmentation (expects a uint8 CHW tensor)."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            # on a PIL image RandAugment takes ~0.15 ms; on a CHW tensor it took ~20 ms here
            v2.ToPILImage(),
            v2.RandomCrop(IMAGE_SIZE, padding=CROP_FLIP.padding),
            v2.RandomHorizontalFlip(p=CROP_FLIP.flip_p),
            v2.RandAugment(
                num_ops=RANDAUGMENT.num_ops,
                magnitude=RANDAUGMENT.magnitude,
                num_magnitude_bins=RANDAUGMENT.bins,
            ),
            v2.ColorJitter(
                brightness=JITTER.brightness,
                contrast=JITTER.contrast,
                saturation=JITTER.saturation,
            ),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=CIFAR100_MEAN, std=CIFAR100_STD),
            # After Normalize, so erased pixels are 0 = the dataset mean.
            v2.RandomErasing(
                p=ERASING.p, scale=ERASING.scale, ratio=ERASING.ratio, value=ERASING.value
            ),
        ]
    )


def basic_pipeline() -> v2.Compose:
    """Random 32-px crop of the 4-px zero-padded image, horizontal flip (uint8 CHW in)."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomCrop(
                IMAGE_SIZE, padding=CROP_FLIP.padding, fill=0, padding_mode="constant"
            ),
            v2.RandomHorizontalFlip(p=CROP_FLIP.flip_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=CIFAR100_MEAN, std=CIFAR100_STD),
        ]
    )


def _hwc_to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


class EvalTransform:
    """To tensor and normalise only (deterministic)."""

    def __init__(self) -> None:
        self.mean = torch.tensor(CIFAR100_MEAN, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(CIFAR100_STD, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        x = _hwc_to_chw(image).to(torch.float32).div_(255.0)
        return x.sub_(self.mean).div_(self.std)


class TorchvisionTransform:
    """Runs a ``torchvision.transforms.v2`` pipeline on a numpy HWC uint8 image."""

    def __init__(self, pipeline: v2.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.pipeline(_hwc_to_chw(image)).contiguous()


class AlbumentationsTransform:
    """Runs an albumentations Compose; its generators follow ``torch.initial_seed()``."""

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose
        self._torch_seed: int | None = None  # torch seed the generators were last set under

    def seed(self, seed: int) -> None:
        """Reset the Compose's generators (shared by all its transforms) from ``seed``."""
        words = np.random.SeedSequence([int(seed) & _U64, _SEED_SALT]).generate_state(3, np.uint64)
        # One generator pair shared by every child: Compose(seed=...) would give each child
        # its own generators with the same seed, i.e. correlated draws across transforms.
        self.compose.set_random_state(
            np.random.default_rng(int(words[0])),
            random.Random((int(words[1]) << 64) | int(words[2])),
        )
        self._torch_seed = torch.initial_seed()

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        torch_seed = torch.initial_seed()
        if torch_seed != self._torch_seed:
            # First call in this process (e.g. a fresh DataLoader worker) or after a new
            # torch.manual_seed: derive our generators from torch's seed.
            self.seed(torch_seed)
        return self.compose(image=image)["image"].contiguous()


def build_transform(
    name: str, train: bool, *, fill: str = "zero", extra_rotate: bool = True
) -> Transform:
    """The augmentation pipeline ``name`` (train) or the shared eval transform (not train).

    ``fill`` and ``extra_rotate`` (``DataConfig.aug_fill``, ``.extra_rotate``) shape the
    albumentations recipe only; the other recipes ignore them.
    """
    if name not in AUGMENTATION_NAMES:
        raise ValueError(f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATION_NAMES)})")
    check_aug_fill(fill)
    if not train:
        return EvalTransform()
    if name == "albumentations":
        return AlbumentationsTransform(albumentations_pipeline(fill, extra_rotate))
    if name == "randaugment":
        return TorchvisionTransform(randaugment_pipeline())
    return TorchvisionTransform(basic_pipeline())


def reseed(transform: Transform, seed: int) -> None:
    """Pin the random state of ``transform`` to ``seed``; a no-op for torch-RNG transforms.

    Optional: an albumentations transform already reseeds itself from
    ``torch.initial_seed()`` on its first call in each DataLoader worker. A data loader that
    wants explicit control can call this from its ``worker_init_fn``::

        def worker_init_fn(worker_id: int) -> None:
            seed = torch.initial_seed()
            np.random.seed(seed % 2**32)
            random.seed(seed)
            reseed(torch.utils.data.get_worker_info().dataset.transform, seed)

    The pinned state holds until ``torch.manual_seed`` changes the process's torch seed.
    """
    if isinstance(transform, AlbumentationsTransform):
        transform.seed(seed)
