"""The augmentation recipes' names and strengths, written once.

Both pipelines read these: the per-image CPU pipelines of :mod:`wrn.augment` (Albumentations,
torchvision) and the batched re-implementation of :mod:`wrn.gpu_augment`. Plain Python only,
so importing it (e.g. from ``wrn.config`` or a ``--help``) loads no torch, torchvision or
albumentations.

Where the seed recipe (``wrn-28-10-cifar100.md``) gives no value, the choice and its reason
sit next to the constant.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

# DataConfig.augmentation values: WRN-28-10 recipe, light recipe, crop + flip only
Augmentation = Literal["albumentations", "randaugment", "basic"]
AUGMENTATION_NAMES: tuple[str, ...] = typing.get_args(Augmentation)
# DataConfig.aug_fill: border of the albumentations recipe's Rotate/Affine warps. "zero" is
# albumentations 2.x's constant fill; "reflect" is 1.x's default (cv2.BORDER_REFLECT_101,
# mirrored about the edge pixels), which the seed notebook most likely ran with.
AugFill = Literal["zero", "reflect"]
AUG_FILLS: tuple[str, ...] = typing.get_args(AugFill)


def check_aug_fill(fill: str) -> None:
    """Refuse a border fill no pipeline implements (``TrainConfig`` refuses it as a Literal)."""
    if fill not in AUG_FILLS:
        raise ValueError(f"unknown aug_fill {fill!r} (known: {', '.join(AUG_FILLS)})")


# per channel (R, G, B), on the 0..1 scale
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGE_SIZE = 32  # px, CIFAR's side


@dataclass(frozen=True)
class CropFlip:
    """Zero-pad by ``padding`` px (32 -> 40), random 32 px crop, horizontal flip."""

    padding: int = 4  # px per side
    flip_p: float = 0.5


@dataclass(frozen=True)
class Rotate:
    """A.Rotate: a uniform angle in ±``limit`` degrees, with probability ``p``."""

    limit: float = 15.0  # degrees
    p: float = 0.5  # albumentations' default; the recipe gives none


@dataclass(frozen=True)
class Affine:
    """A.Affine standing for ShiftScaleRotate(shift 0.1, scale 0.15, rotate 15)."""

    shift: float = 0.1  # fraction of the side per axis (albumentations truncates to whole px)
    scale: tuple[float, float] = (0.85, 1.15)  # isotropic
    rotate: float = 15.0  # degrees, ±
    p: float = 0.5  # albumentations' default; the recipe gives none


@dataclass(frozen=True)
class OneOfDropoutNoise:
    """OneOf(CoarseDropout, GaussNoise) with probability ``p``, the two equally likely.

    The recipe gives no parameters. CoarseDropout: one hole of 8..16 px per side, between
    Cutout's best sizes for CIFAR-100 (8 px) and CIFAR-10 (16 px). GaussNoise: std 2..5 % of
    the 0..255 range, visible on 32x32 images without swamping them (2.x's default, 20..44 %,
    would).
    """

    p: float = 0.3
    holes: int = 1
    hole_range: tuple[int, int] = (8, 16)  # px, height and width, inclusive
    noise_std_range: tuple[float, float] = (0.02, 0.05)  # fraction of 255


@dataclass(frozen=True)
class RandAugmentSpec:
    """torchvision's RandAugment: ``num_ops`` ops per image, magnitude bin ``magnitude``."""

    num_ops: int = 2
    magnitude: int = 9
    bins: int = 31


@dataclass(frozen=True)
class ColorJitter:
    """Factors uniform in 1 ± strength; the recipe gives none, 0.4 is the common CIFAR one."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4


@dataclass(frozen=True)
class Erasing:
    """torchvision's RandomErasing after normalising (erased pixels = 0 = the dataset mean)."""

    p: float = 0.2
    scale: tuple[float, float] = (0.02, 0.33)  # fraction of the image area
    ratio: tuple[float, float] = (0.3, 3.3)  # width / height, log-uniform
    value: float = 0.0
    attempts: int = 10  # torchvision's: no erasing when none of them fits


CROP_FLIP = CropFlip()
ROTATE = Rotate()
AFFINE = Affine()
ONE_OF = OneOfDropoutNoise()
RANDAUGMENT = RandAugmentSpec()
JITTER = ColorJitter()
ERASING = Erasing()

# torchvision.transforms.v2.RandAugment's op space, in its order (the GPU path indexes it)
RANDAUGMENT_OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)
