"""Training data held on the device as uint8 and augmented there, a whole batch at a time.

:class:`GpuBatches` uploads an :class:`~wrn.data.ImageSet` once (uint8 NCHW; CIFAR's 50,000
training images take 150 MB) and yields ``(images, labels)`` batches already on the device:
float32 normalised images and int64 labels. Training batches are augmented with the recipes of
:mod:`wrn.augment`, re-implemented in plain torch ops that run on any device, with every random
parameter drawn per image (``torchvision.transforms.v2`` applied to a batch draws one parameter
set for the whole batch). There is no host sync per batch: no ``.item()``, no boolean indexing,
no Python loop over images (the loops are over op kinds), no host-to-device copy.

Randomness. Each epoch reseeds one ``torch.Generator`` on the device from ``(seed, epoch)``; it
draws the epoch's order and then, batch after batch, every augmentation parameter. An epoch is
thus replayed exactly on the same device type (a resumed run included), and the global RNG (the
train loop seeds it for dropout) is never touched. CUDA and CPU generators give different
streams, so a GPU run does not repeat a CPU run image for image.

The recipes, as implemented here (``sample_*_params`` draws, ``apply_*`` applies):

* ``"albumentations"`` (WRN-28-10): pad-4 crop, flip p=0.5, Rotate ±15° p=0.5, Affine
  (integer shift ``int(U(-0.1, 0.1) * 32)`` px per axis, scale 0.85-1.15, rotate ±15°) p=0.5,
  OneOf(CoarseDropout 1 hole of 8-16 x 8-16 px, GaussNoise std 2-5 % of 255) p=0.3, normalise.
  Crop and flip are an exact whole-pixel shift; Rotate and Affine are then composed into ONE
  bilinear warp per image (``grid_sample``, zero fill). The sequential pipeline fills with
  zeros at each step; where both rotations apply, the single warp keeps the first one's fill by
  multiplying with the coverage of its output frame (the weight a zero-padded bilinear sample
  puts on in-frame pixels) at the second one's source coordinates, so corners cut off by the
  first rotation are not rotated back in. It interpolates once instead of twice (slightly
  sharper) and stays in float (cv2 rounds to uint8 after each step).
* ``"randaugment"`` (light): pad-4 crop and flip, RandAugment(2 ops, magnitude 9 of 31 bins)
  over torchvision's 14 ops with the magnitudes torchvision uses (geometric ops as nearest
  warps, zero fill), ColorJitter(0.4, 0.4, 0.4) with per-image factors and per-image op order,
  normalise, RandomErasing p=0.2 (scale 0.02-0.33, ratio 0.3-3.3, value 0 after normalising).
  Up to the normalisation, images stay on the uint8 grid (floats holding 0..255, floored after
  each op like torchvision's uint8 kernels), so Posterize/Solarize/Equalize/AutoContrast see
  what they would see on uint8 images.
* ``"basic"``: pad-4 crop, flip p=0.5, normalise.

Evaluation batches (``train=False``) are only normalised, in order, every image once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)

from wrn.augment import CIFAR100_MEAN, CIFAR100_STD
from wrn.data import ImageSet

Params = dict[str, torch.Tensor]

GPU_AUGMENTATIONS = ("albumentations", "randaugment", "basic")
_SEED_SALT = 0x6A75_D47A  # keeps these streams apart from other users of (seed, epoch)

# -- the WRN-28-10 recipe (wrn/augment.py: albumentations_pipeline) --
CROP_PADDING = 4  # px: PadIfNeeded to 40 + RandomCrop 32 (also the basic/light crop)
FLIP_P = 0.5
ROTATE_LIMIT = 15.0  # degrees, A.Rotate
ROTATE_P = 0.5
AFFINE_SHIFT = 0.1  # fraction of the side, A.Affine translate_percent (truncated to whole px)
AFFINE_SCALE = (0.85, 1.15)
AFFINE_ROTATE = 15.0  # degrees
AFFINE_P = 0.5
ONEOF_P = 0.3  # OneOf(CoarseDropout, GaussNoise), children equally likely
HOLE_RANGE = (8, 16)  # px, CoarseDropout hole height and width, inclusive
NOISE_STD_RANGE = (0.02, 0.05)  # GaussNoise std as a fraction of 255

# -- the light recipe (wrn/augment.py: randaugment_pipeline) --
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
RANDAUGMENT_NUM_OPS = 2
RANDAUGMENT_MAGNITUDE = 9
RANDAUGMENT_BINS = 31


def _level(low: float, high: float) -> float:
    # the magnitude bin as torchvision computes it (float32 linspace)
    return float(torch.linspace(low, high, RANDAUGMENT_BINS)[RANDAUGMENT_MAGNITUDE])


RA_SHEAR = _level(0.0, 0.3)  # tan of the shear angle
RA_TRANSLATE = float(int(_level(0.0, 150.0 / 331.0 * 32)))  # px; torchvision truncates
RA_ROTATE = _level(0.0, 30.0)  # degrees
RA_ENHANCE = _level(0.0, 0.9)  # factor 1 ± this for Brightness/Color/Contrast/Sharpness
RA_POSTERIZE_BITS = int(
    (8 - torch.arange(RANDAUGMENT_BINS) / ((RANDAUGMENT_BINS - 1) / 4)).round()[
        RANDAUGMENT_MAGNITUDE
    ]
)
RA_SOLARIZE = 255.0 * _level(1.0, 0.0)  # threshold on the 0..255 scale
JITTER = 0.4  # ColorJitter brightness = contrast = saturation
ERASE_P = 0.2
ERASE_SCALE = (0.02, 0.33)  # fraction of the image area
ERASE_RATIO = (0.3, 3.3)  # width / height, sampled log-uniformly
ERASE_ATTEMPTS = 10  # as torchvision: no erasing when no attempt fits


def gpu_augmentations() -> tuple[str, ...]:
    """The ``DataConfig.augmentation`` names :class:`GpuBatches` implements."""
    return GPU_AUGMENTATIONS


def resolve_pipeline(pipeline: str, device: torch.device) -> str:
    """``DataConfig.pipeline`` -> ``"gpu"`` or ``"cpu"`` ("auto" is gpu on CUDA only).

    ``"gpu"`` on a CPU device is allowed: the same batched augmentation then runs on CPU tensors.
    """
    if pipeline not in ("auto", "gpu", "cpu"):
        raise ValueError(f"unknown pipeline {pipeline!r}")
    if pipeline == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return pipeline


# ----------------------------------------------------------------------------- random draws


def _uniform(
    shape: tuple[int, ...], low: float, high: float, gen: torch.Generator
) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).mul_(high - low).add_(low)


def _chance(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand((n,), generator=gen, device=gen.device) < p


def _below(high: torch.Tensor | int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Integers uniform in [0, high) (``high`` may differ per image)."""
    u = torch.rand(shape, generator=gen, device=gen.device)
    drawn = (u * high).floor_().long()
    # u * high can round up to high in float32 when u is within 2**-24 of 1
    if isinstance(high, torch.Tensor):
        return torch.minimum(drawn, high - 1)
    return drawn.clamp_(max=high - 1)


def _sign(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    # torchvision flips the sign when rand <= 0.5
    return torch.where(torch.rand(shape, generator=gen, device=gen.device) <= 0.5, -1.0, 1.0)


def _boxes(
    n: int, heights: torch.Tensor, widths: torch.Tensor, size: int, gen: torch.Generator
) -> torch.Tensor:
    """(n, 4) int64 boxes (top, left, height, width), placed uniformly inside the image."""
    top = _below(size - heights + 1, (n,), gen)
    left = _below(size - widths + 1, (n,), gen)
    return torch.stack([top, left, heights, widths], dim=1)


def sample_crop_flip_params(n: int, gen: torch.Generator, padding: int = CROP_PADDING) -> Params:
    """Per image: crop offsets (x, y) in [0, 2 * padding] into the padded image, flip flag."""
    return {
        "crop": _below(2 * padding + 1, (n, 2), gen),
        "flip": _chance(FLIP_P, n, gen),
    }


def sample_basic_params(n: int, gen: torch.Generator, size: int = 32) -> Params:
    """Per-image crop offsets and flips (``size`` is taken for a signature like the others)."""
    return sample_crop_flip_params(n, gen)


def sample_albumentations_params(n: int, gen: torch.Generator, size: int = 32) -> Params:
    """Per-image parameters of the WRN-28-10 recipe (ranges: module constants)."""
    params = sample_crop_flip_params(n, gen)
    params["rotate_on"] = _chance(ROTATE_P, n, gen)
    params["rotate_deg"] = _uniform((n,), -ROTATE_LIMIT, ROTATE_LIMIT, gen)
    params["affine_on"] = _chance(AFFINE_P, n, gen)
    params["affine_deg"] = _uniform((n,), -AFFINE_ROTATE, AFFINE_ROTATE, gen)
    params["affine_scale"] = _uniform((n,), *AFFINE_SCALE, gen)
    # albumentations: int(translate_percent * side), i.e. whole pixels truncated towards 0
    params["affine_shift"] = _uniform((n, 2), -AFFINE_SHIFT, AFFINE_SHIFT, gen).mul_(size).trunc_()
    params["oneof_on"] = _chance(ONEOF_P, n, gen)
    params["oneof_dropout"] = _chance(0.5, n, gen)  # else GaussNoise
    span = HOLE_RANGE[1] - HOLE_RANGE[0] + 1
    heights = _below(span, (n,), gen) + HOLE_RANGE[0]
    widths = _below(span, (n,), gen) + HOLE_RANGE[0]
    params["hole"] = _boxes(n, heights, widths, size, gen)
    params["noise_std"] = _uniform((n,), *NOISE_STD_RANGE, gen).mul_(255.0)  # 0..255 units
    params["noise"] = torch.randn((n, 3, size, size), generator=gen, device=gen.device)
    return params


def sample_erasing_params(n: int, gen: torch.Generator, size: int = 32) -> Params:
    """RandomErasing as torchvision draws it: the first of 10 attempts that fits, per image."""
    shape = (n, ERASE_ATTEMPTS)
    area = size * size * _uniform(shape, *ERASE_SCALE, gen)
    ratio = torch.exp(_uniform(shape, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), gen))
    heights = torch.sqrt(area * ratio).round_()  # round half to even, as Python's round
    widths = torch.sqrt(area / ratio).round_()
    fits = (heights < size) & (widths < size)
    first = fits.float().argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
    heights = heights.gather(1, first).squeeze(1).long()
    widths = widths.gather(1, first).squeeze(1).long()
    return {
        "erase_on": _chance(ERASE_P, n, gen) & fits.any(dim=1),
        "erase_box": _boxes(n, heights, widths, size, gen),
    }


def sample_randaugment_params(n: int, gen: torch.Generator, size: int = 32) -> Params:
    """Per-image parameters of the light recipe."""
    params = sample_crop_flip_params(n, gen)
    shape = (n, RANDAUGMENT_NUM_OPS)
    params["ops"] = _below(len(RANDAUGMENT_OPS), shape, gen)  # indices into RANDAUGMENT_OPS
    params["signs"] = _sign(shape, gen)
    # ColorJitter: factors for (brightness, contrast, saturation) and their per-image order
    params["jitter"] = _uniform((n, 3), 1.0 - JITTER, 1.0 + JITTER, gen)
    params["jitter_order"] = torch.rand((n, 3), generator=gen, device=gen.device).argsort(dim=1)
    params.update(sample_erasing_params(n, gen, size))
    return params


# ------------------------------------------------------------------------- geometric warps
# Matrices are (N, 3, 3) inverse maps: output pixel coordinates -> input pixel coordinates, in
# continuous coordinates with the origin at the top-left corner and pixel centres at i + 0.5.
# They are built and applied with elementwise ops only: a batched matmul may run in TF32 on
# CUDA, whose 10-bit mantissa would blur exact integer shifts.


def _identity(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


def _about(
    linear: torch.Tensor, center: float, offset: torch.Tensor | None = None
) -> torch.Tensor:
    """src = linear @ (p - center - offset) + center, as (N, 3, 3)."""
    n = linear.shape[0]
    matrix = _identity(n, linear.device)
    matrix[:, :2, :2] = linear
    shift = torch.full((n, 2), center, device=linear.device)
    if offset is not None:
        shift = shift + offset
    moved = (linear * shift[:, None, :]).sum(dim=2)  # linear @ (center + offset)
    matrix[:, :2, 2] = center - moved
    return matrix


def _compose(*matrices: torch.Tensor) -> torch.Tensor:
    """The product m1 @ m2 @ ... (apply the last one first), elementwise for exactness."""
    out = matrices[0]
    for m in matrices[1:]:
        out = (out[:, :, :, None] * m[:, None, :, :]).sum(dim=2)
    return out


def _linear(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2) matrices [[a, b], [c, d]] from four (N,) tensors."""
    return torch.stack([torch.stack([a, b], 1), torch.stack([c, d], 1)], 1)


def _rotation(degrees: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2) inverse of a rotation by ``degrees`` (torchvision's and cv2's direction)."""
    rad = torch.deg2rad(degrees)
    cos, sin = torch.cos(rad), torch.sin(rad)
    return _linear(cos, -sin, sin, cos)


def rotation_matrix(degrees: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Inverse map of a rotation by ``degrees`` about the image centre."""
    return _about(_rotation(degrees), size / 2)


def affine_matrix(
    degrees: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, size: int = 32
) -> torch.Tensor:
    """Inverse map of albumentations' Affine: scale and rotate about the centre, then shift px."""
    return _about(_rotation(degrees) / scale[:, None, None], size / 2, shift)


def crop_flip_matrix(
    crop: torch.Tensor, flip: torch.Tensor, size: int = 32, padding: int = CROP_PADDING
) -> torch.Tensor:
    """Inverse map of a crop at ``crop`` (x, y) of the zero-padded image, then an optional flip."""
    n = crop.shape[0]
    shift = _identity(n, crop.device)
    shift[:, :2, 2] = (crop - padding).float()
    mirror = _identity(n, crop.device)
    mirror[:, 0, 0] = torch.where(flip, -1.0, 1.0)
    mirror[:, 0, 2] = torch.where(flip, float(size), 0.0)
    return _compose(shift, mirror)


@functools.cache
def _pixel_centres(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    return u, v


def _map(matrix: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Apply (N, 3, 3) to coordinates (H, W) or (N, H, W) -> two (N, H, W)."""
    m = matrix[:, :, :, None, None]
    x = m[:, 0, 0] * u + m[:, 0, 1] * v + m[:, 0, 2]
    y = m[:, 1, 0] * u + m[:, 1, 1] * v + m[:, 1, 2]
    return x, y


def _sample(images: torch.Tensor, u: torch.Tensor, v: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample (N, C, H, W) at continuous coordinates (N, H, W), zeros outside."""
    height, width = images.shape[-2:]
    grid = torch.stack([u * (2.0 / width) - 1.0, v * (2.0 / height) - 1.0], dim=-1)
    return F.grid_sample(
        images, grid.to(images.dtype), mode=mode, padding_mode="zeros", align_corners=False
    )


def _coverage(u: torch.Tensor, v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 1, H, W) weight a zero-padded bilinear sample at (u, v) puts on in-frame pixels."""

    def axis(x: torch.Tensor, side: int) -> torch.Tensor:
        return torch.minimum(x + 0.5, side + 0.5 - x).clamp_(0.0, 1.0)

    return (axis(u, width) * axis(v, height)).unsqueeze(1)


def apply_affine(
    images: torch.Tensor, matrix: torch.Tensor, mode: str = "bilinear"
) -> torch.Tensor:
    """Warp float (N, C, H, W) by per-image inverse maps (N, 3, 3); zero fill outside.

    ``mode`` "bilinear" or "nearest"; an identity or whole-pixel map copies pixels exactly.
    """
    height, width = images.shape[-2:]
    u, v = _pixel_centres(height, width, images.device)
    return _sample(images, *_map(matrix, u, v), mode)


def apply_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flip`` (N,) bool is set."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 1, H, W) bool: inside each image's (top, left, height, width) box."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    top, left, h, w = (boxes[:, i, None] for i in range(4))
    inside_rows = (rows >= top) & (rows < top + h)  # (N, H)
    inside_cols = (cols >= left) & (cols < left + w)  # (N, W)
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).unsqueeze(1)


def erase(
    images: torch.Tensor, boxes: torch.Tensor, on: torch.Tensor, value: float = 0.0
) -> torch.Tensor:
    """Fill each box with ``value`` where ``on`` (N,) is set (CoarseDropout, RandomErasing)."""
    mask = box_mask(boxes, *images.shape[-2:]) & on[:, None, None, None]
    return images.masked_fill(mask, value)


def gaussian_noise(
    images: torch.Tensor, noise: torch.Tensor, std: torch.Tensor, on: torch.Tensor
) -> torch.Tensor:
    """Add ``std`` (N,) times unit noise (N, C, H, W) where ``on``, clipped to 0..255."""
    noisy = images.add(noise * std[:, None, None, None]).clamp_(0.0, 255.0)
    return torch.where(on[:, None, None, None], noisy, images)


# ---------------------------------------------------------- colour ops on the 0..255 grid
# Float tensors holding integers 0..255; each result is clamped and floored, as torchvision's
# uint8 kernels truncate. Factors are per image, shape (N,).


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor[:, None, None, None]


def _to_grid(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(0.0, 255.0).floor_()


def _blend(image: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _per_image(factor)
    # the operation order of torchvision's _blend (mul, then add with alpha = 1 - f)
    return _to_grid((image * f).addcmul_(other.expand_as(image), 1.0 - f))


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(dim=1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(1).floor_()


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _to_grid(images * _per_image(factor))


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, _grayscale(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


@functools.cache
def _smooth_kernel(channels: int, device: torch.device) -> torch.Tensor:
    kernel = torch.full((channels, 1, 3, 3), 1.0 / 13.0, device=device)
    kernel[:, :, 1, 1] = 5.0 / 13.0
    return kernel


def adjust_sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a 3x3 smoothed copy (border pixels kept), as PIL and torchvision do."""
    channels = images.shape[1]
    blurred = F.conv2d(images, _smooth_kernel(channels, images.device), groups=channels)
    out = images.clone()
    inner = out[..., 1:-1, 1:-1]
    inner += (blurred.round_() - inner) * (1.0 - _per_image(factor))
    return _to_grid(out)


def posterize(images: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep the top ``bits`` bits of each 8-bit value."""
    step = float(2 ** (8 - bits))
    return images.div(step).floor_().mul_(step)


def solarize(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert the values at or above ``threshold`` (0..255 scale)."""
    return torch.where(images >= threshold, 255.0 - images, images)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to 0..255 (flat channels are kept)."""
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low) * (1.0 / 255.0))
    low = torch.where(flat, 0.0, low)
    return _to_grid((images - low) / inv_scale)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise each channel of each image with PIL's look-up table.

    One batched histogram: a scatter_add over (image, channel) rows of 256 bins.
    """
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w).long()
    hist = torch.zeros((n * c, 256), dtype=torch.long, device=images.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    cum = hist.cumsum(dim=1)
    last = cum.argmax(dim=1, keepdim=True)  # the largest value present (first max of cum)
    step = torch.div(h * w - hist.gather(1, last), 255, rounding_mode="floor")
    lut = torch.div(cum[:, :-1] + step // 2, step.clamp(min=1), rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut.clamp_(0, 255)], dim=1)
    equalized = lut.gather(1, flat)
    out = torch.where(step != 0, equalized, flat)  # a one-valued channel is kept
    return out.to(images.dtype).reshape(n, c, h, w)


# ------------------------------------------------------------------------------ recipes


@functools.cache
def _stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(CIFAR100_MEAN, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    std = torch.tensor(CIFAR100_STD, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 or 0..255 float (N, 3, H, W) -> float32 normalised with the CIFAR-100 mean/std."""
    mean, std = _stats(images.device)
    return images.to(torch.float32).div(255.0).sub_(mean).div_(std)


def apply_basic(images: torch.Tensor, params: Params) -> torch.Tensor:
    """Crop and flip (0..255 float in), normalised float32 out."""
    size = images.shape[-1]
    matrix = crop_flip_matrix(params["crop"], params["flip"], size)
    return normalize(apply_affine(images, matrix, "nearest"))


def apply_albumentations(images: torch.Tensor, params: Params) -> torch.Tensor:
    """The WRN-28-10 recipe on 0..255 float (N, 3, H, W); normalised float32 out."""
    n, _, height, width = images.shape
    eye = _identity(n, images.device)
    rotate = torch.where(
        params["rotate_on"][:, None, None], rotation_matrix(params["rotate_deg"], width), eye
    )
    affine = torch.where(
        params["affine_on"][:, None, None],
        affine_matrix(
            params["affine_deg"], params["affine_scale"], params["affine_shift"].float(), width
        ),
        eye,
    )
    # crop and flip: an exact whole-pixel shift (nearest samples at pixel centres)
    crop_flip = crop_flip_matrix(params["crop"], params["flip"], width)
    out = apply_affine(images, crop_flip, "nearest")
    # Rotate then Affine as one bilinear warp: output -> before Affine -> before Rotate
    u, v = _pixel_centres(height, width, out.device)
    u3, v3 = _map(affine, u, v)
    out = _sample(out, *_map(rotate, u3, v3), "bilinear")
    # Rotate's zero fill: its output frame clips what Affine sees (when both apply)
    both = (params["rotate_on"] & params["affine_on"])[:, None, None, None]
    out = out * torch.where(both, _coverage(u3, v3, height, width), 1.0)
    dropout = params["oneof_on"] & params["oneof_dropout"]
    noise = params["oneof_on"] & ~params["oneof_dropout"]
    out = erase(out, params["hole"], dropout, 0.0)
    out = gaussian_noise(out, params["noise"], params["noise_std"], noise)
    return normalize(out)


def _randaugment_matrix(op: torch.Tensor, sign: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image inverse map of the geometric op chosen (identity for the others)."""
    n = op.shape[0]
    matrix = _identity(n, op.device)
    zero = torch.zeros_like(sign)
    one = torch.ones_like(sign)
    shear = sign * RA_SHEAR
    shift = sign * RA_TRANSLATE
    choices = {
        # shears about the top-left corner (torchvision passes center=[0, 0])
        "ShearX": _about(_linear(one, shear, zero, one), 0.0),
        "ShearY": _about(_linear(one, zero, shear, one), 0.0),
        "TranslateX": _about(_linear(one, zero, zero, one), 0.0, torch.stack([shift, zero], 1)),
        "TranslateY": _about(_linear(one, zero, zero, one), 0.0, torch.stack([zero, shift], 1)),
        "Rotate": rotation_matrix(sign * RA_ROTATE, size),
    }
    for name, candidate in choices.items():
        chosen = op == RANDAUGMENT_OPS.index(name)
        matrix = torch.where(chosen[:, None, None], candidate, matrix)
    return matrix


def _randaugment_colour_ops(
    sign: torch.Tensor,
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    factor = 1.0 + sign * RA_ENHANCE
    return {
        "Brightness": lambda x: adjust_brightness(x, factor),
        "Color": lambda x: adjust_saturation(x, factor),
        "Contrast": lambda x: adjust_contrast(x, factor),
        "Sharpness": lambda x: adjust_sharpness(x, factor),
        "Posterize": lambda x: posterize(x, RA_POSTERIZE_BITS),
        "Solarize": lambda x: solarize(x, RA_SOLARIZE),
        "AutoContrast": autocontrast,
        "Equalize": equalize,
    }


def randaugment_op(images: torch.Tensor, op: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """One RandAugment op per image: ``op`` (N,) indexes RANDAUGMENT_OPS, ``sign`` (N,) ±1.

    Every kind is computed for the whole batch and kept where chosen (no data-dependent
    shapes, so no host sync); the geometric kinds share one nearest warp.
    """
    out = apply_affine(images, _randaugment_matrix(op, sign, images.shape[-1]), "nearest")
    for name, fn in _randaugment_colour_ops(sign).items():
        chosen = (op == RANDAUGMENT_OPS.index(name))[:, None, None, None]
        out = torch.where(chosen, fn(out), out)
    return out


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter with per-image (brightness, contrast, saturation) factors (N, 3), applied
    in each image's own order (N, 3), a permutation of 0, 1, 2."""
    ops = (adjust_brightness, adjust_contrast, adjust_saturation)
    out = images
    for position in range(3):
        for index, fn in enumerate(ops):
            chosen = (order[:, position] == index)[:, None, None, None]
            out = torch.where(chosen, fn(out, factors[:, index]), out)
    return out


def apply_randaugment(images: torch.Tensor, params: Params) -> torch.Tensor:
    """The light recipe on 0..255 integer-valued float (N, 3, H, W); normalised float32 out."""
    size = images.shape[-1]
    out = apply_affine(images, crop_flip_matrix(params["crop"], params["flip"], size), "nearest")
    for slot in range(params["ops"].shape[1]):
        out = randaugment_op(out, params["ops"][:, slot], params["signs"][:, slot])
    out = color_jitter(out, params["jitter"], params["jitter_order"])
    # erasing after normalising: the erased pixels are 0 = the dataset mean
    return erase(normalize(out), params["erase_box"], params["erase_on"], 0.0)


Sampler = Callable[[int, torch.Generator, int], Params]
Applier = Callable[[torch.Tensor, Params], torch.Tensor]
_RECIPES: dict[str, tuple[Sampler, Applier]] = {
    "albumentations": (sample_albumentations_params, apply_albumentations),
    "randaugment": (sample_randaugment_params, apply_randaugment),
    "basic": (sample_basic_params, apply_basic),
}


def augment_batch(images: torch.Tensor, augmentation: str, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, 3, H, W) on ``gen``'s device -> augmented, normalised float32."""
    if augmentation not in _RECIPES:
        raise ValueError(f"unknown GPU augmentation {augmentation!r} (known: {GPU_AUGMENTATIONS})")
    sample, apply = _RECIPES[augmentation]
    params = sample(images.shape[0], gen, images.shape[-1])
    return apply(images.to(torch.float32), params)


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: distinct per (seed, epoch), fixed across runs."""
    state = np.random.SeedSequence([seed, epoch, _SEED_SALT]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class GpuBatches:
    """Training or evaluation batches from images held on ``device`` as uint8 NCHW.

    Iterating yields ``(images, labels)``: float32 normalised (N, 3, 32, 32) and int64 (N,),
    both on ``device``. Training batches are shuffled and augmented per image from a generator
    seeded by ``(seed, epoch)``; call :meth:`set_epoch` before each epoch. Like
    :func:`wrn.data.make_loader`, training drops the last partial batch when there is more
    than one batch; evaluation yields every image once, in order.
    """

    def __init__(
        self,
        data: ImageSet,
        device: torch.device,
        batch_size: int,
        train: bool,
        augmentation: str,
        seed: int,
        channels_last: bool = False,
    ) -> None:
        if augmentation not in GPU_AUGMENTATIONS:
            raise ValueError(
                f"unknown GPU augmentation {augmentation!r} (known: {GPU_AUGMENTATIONS})"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        # one upload, then NHWC -> NCHW on the device
        images = torch.from_numpy(np.ascontiguousarray(data.images)).to(self.device)
        self.images = images.permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(np.asarray(data.labels, dtype=np.int64)).to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.augmentation = augmentation
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0
        self.drop_last = train and len(self.labels) > batch_size
        self.generator = torch.Generator(device=self.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, size = len(self.labels), self.batch_size
        order = None
        if self.train:
            self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=self.generator, device=self.device)
        for b in range(len(self)):
            if order is None:
                images = self.images[b * size : (b + 1) * size]
                labels = self.labels[b * size : (b + 1) * size]
                batch = normalize(images)
            else:
                index = order[b * size : (b + 1) * size]
                images = self.images.index_select(0, index)
                labels = self.labels.index_select(0, index)
                batch = augment_batch(images, self.augmentation, self.generator)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            yield batch, labels
