"""The augmentation recipes as whole-batch torch ops with per-image parameters (any device).

``apply_*`` take uint8-valued images (N, 3, H, W) and the per-image parameters that
:mod:`wrn.gpu_data` draws, and return normalised float32. Every image gets its own operation
without a Python loop over images and without computing every variant for every image: the
choice is folded into per-image parameters, so that the ops an image did not draw reduce to
exact identities (a blend with factor 1, an identity warp, an empty box). No ``.item()``, no
boolean indexing, no data-dependent shapes: no host sync, and fixed shapes for
``torch.compile`` (:func:`wrn.gpu_data.compiled`). The per-device constants (index ranges,
pixel centres, mean and std, kernels, RandAugment's maps) are made once by :func:`constants`,
outside any compiled graph, and passed in: a graph holds no host tensor to copy.

* ``"albumentations"`` (WRN-28-10): pad-4 crop and flip (an exact gather), Rotate and Affine
  composed into ONE bilinear warp per image (``grid_sample``). With ``fill="zero"`` the
  sequential pipeline's first zero fill is kept by multiplying with the coverage of its output
  frame at the second step's source coordinates; with ``fill="reflect"`` (cv2's
  BORDER_REFLECT_101) those coordinates are mirrored into the frame, which reproduces the
  sequential warps exactly up to the one interpolation. Then OneOf(CoarseDropout, GaussNoise).
* ``"randaugment"`` (light): crop and flip, two RandAugment ops over torchvision's 14 with its
  magnitudes (geometric ones as one nearest warp, zero fill; Identity, Brightness, Color,
  Contrast and Sharpness as one blend with a per-image partner image and factor),
  ColorJitter with per-image factors and order, normalise, RandomErasing. Up to the
  normalisation images stay on the uint8 grid (floats holding 0..255, floored after each op
  like torchvision's uint8 kernels).
* ``"basic"``: crop and flip, normalise.

Strengths: :mod:`wrn.augment_spec`. Warps use inverse maps (N, 2, 3): output pixel -> source
pixel, continuous coordinates with pixel centres at i + 0.5, applied elementwise (a batched
matmul may run in TF32 on CUDA, whose 10-bit mantissa would blur exact integer shifts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)

from wrn.augment_spec import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    CROP_FLIP,
    IMAGE_SIZE,
    RANDAUGMENT,
    RANDAUGMENT_OPS,
)
from wrn.gpu_colour import (
    autocontrast,
    blend,
    equalize,
    grayscale,
    posterize,
    sharpen,
    sharpness_partner,
)

Params = dict[str, torch.Tensor]


def _level(low: float, high: float) -> float:
    # the magnitude bin as torchvision computes it (float32 linspace)
    return float(torch.linspace(low, high, RANDAUGMENT.bins)[RANDAUGMENT.magnitude])


RA_SHEAR = _level(0.0, 0.3)  # tan of the shear angle
RA_TRANSLATE = float(int(_level(0.0, 150.0 / 331.0 * 32)))  # px; torchvision truncates
RA_ROTATE = _level(0.0, 30.0)  # degrees
RA_ENHANCE = _level(0.0, 0.9)  # factor 1 ± this for Brightness/Color/Contrast/Sharpness
RA_POSTERIZE_BITS = int(
    (8 - torch.arange(RANDAUGMENT.bins) / ((RANDAUGMENT.bins - 1) / 4)).round()[
        RANDAUGMENT.magnitude
    ]
)
RA_SOLARIZE = 255.0 * _level(1.0, 0.0)  # threshold on the 0..255 scale
_OP = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
_BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")  # factor 1 ± RA_ENHANCE


class Consts(NamedTuple):
    """One device's constants for images of one shape (:func:`constants`)."""

    rows: torch.Tensor  # (H,) int64: 0..H-1
    cols: torch.Tensor  # (W,) int64
    u: torch.Tensor  # (1, W) float32 pixel-centre x coordinates, i + 0.5
    v: torch.Tensor  # (H, 1)
    mean: torch.Tensor  # (1, C, 1, 1) the CIFAR-100 mean on the 0..1 scale
    std: torch.Tensor
    smoothing: torch.Tensor  # (C, 1, 3, 3) PIL's smoothing kernel per channel
    inner: torch.Tensor  # (H, W) bool: not a border pixel
    ra_maps: torch.Tensor  # (14, 2, 2, 3) RandAugment's inverse maps for sign -1 and +1


@functools.cache
def constants(
    device: torch.device, channels: int = 3, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE
) -> Consts:
    """The recipes' constants on ``device``, made (and uploaded) once per device and shape,
    outside any compiled graph: the graph takes them as inputs."""
    kernel = torch.full((channels, 1, 3, 3), 1.0 / 13.0)
    kernel[:, :, 1, 1] = 5.0 / 13.0
    inner = torch.zeros((height, width), dtype=torch.bool)
    inner[1:-1, 1:-1] = True
    made = Consts(
        rows=torch.arange(height),
        cols=torch.arange(width),
        u=torch.arange(width, dtype=torch.float32).add_(0.5)[None, :],
        v=torch.arange(height, dtype=torch.float32).add_(0.5)[:, None],
        mean=torch.tensor(CIFAR100_MEAN, dtype=torch.float32).view(1, channels, 1, 1),
        std=torch.tensor(CIFAR100_STD, dtype=torch.float32).view(1, channels, 1, 1),
        smoothing=kernel,
        inner=inner,
        ra_maps=_randaugment_maps(width),
    )
    return Consts(*(t.to(device) for t in made))


# ------------------------------------------------------------------------- geometric warps


def _rotation(degrees: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2) inverse of a rotation by ``degrees`` (torchvision's and cv2's direction)."""
    rad = torch.deg2rad(degrees)
    cos, sin = torch.cos(rad), torch.sin(rad)
    return torch.stack([cos, -sin, sin, cos], dim=1).view(-1, 2, 2)


def _about(
    linear: torch.Tensor, center: float, offset: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, 2, 3) map src = linear @ (p - center - offset) + center."""
    shift = linear.new_full((linear.shape[0], 1, 2), center)
    if offset is not None:
        shift = shift + offset[:, None, :]
    moved = (linear * shift).sum(dim=2, keepdim=True)  # linear @ (center + offset)
    return torch.cat([linear, center - moved], dim=2)


def rotation_matrix(degrees: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Inverse map of a rotation by ``degrees`` (N,) about the image centre."""
    return _about(_rotation(degrees), size / 2)


def affine_matrix(
    degrees: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, size: int = 32
) -> torch.Tensor:
    """Inverse map of albumentations' Affine: scale and rotate about the centre, then shift px."""
    return _about(_rotation(degrees) / scale[:, None, None], size / 2, shift)


def _map(matrix: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Apply (N, 2, 3) to coordinates u (1, W) or (N, H, W) and v (H, 1) or (N, H, W)."""
    m = matrix[:, :, :, None, None]
    x = m[:, 0, 0] * u + m[:, 0, 1] * v + m[:, 0, 2]
    return x, m[:, 1, 0] * u + m[:, 1, 1] * v + m[:, 1, 2]


def _reflect(x: torch.Tensor, side: int) -> torch.Tensor:
    """Mirror continuous coordinates into [0.5, side - 0.5] about the edge pixels' centres
    (BORDER_REFLECT_101; exact for bilinear sampling, whose weights are symmetric there)."""
    last = side - 1
    return (torch.remainder(x - 0.5, 2 * last) - last).abs_().neg_().add_(last + 0.5)


def _sample(
    images: torch.Tensor, u: torch.Tensor, v: torch.Tensor, mode: str, fill: str = "zero"
) -> torch.Tensor:
    """Sample (N, C, H, W) at continuous coordinates (N, H, W); ``fill`` outside the frame."""
    height, width = images.shape[-2:]
    if fill == "zero":
        grid = torch.stack([u * (2.0 / width) - 1.0, v * (2.0 / height) - 1.0], dim=-1)
        padding, corners = "zeros", False
    else:  # align_corners=True reflects about the edge pixels' centres: REFLECT_101
        grid = torch.stack(
            [(u - 0.5) * (2.0 / (width - 1)) - 1.0, (v - 0.5) * (2.0 / (height - 1)) - 1.0], -1
        )
        padding, corners = "reflection", True
    return F.grid_sample(
        images, grid.to(images.dtype), mode=mode, padding_mode=padding, align_corners=corners
    )


def _coverage(u: torch.Tensor, v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 1, H, W) weight a zero-padded bilinear sample at (u, v) puts on in-frame pixels."""

    def axis(x: torch.Tensor, side: int) -> torch.Tensor:
        return torch.minimum(x + 0.5, side + 0.5 - x).clamp_(0.0, 1.0)

    return (axis(u, width) * axis(v, height)).unsqueeze(1)


def apply_affine(
    images: torch.Tensor,
    matrix: torch.Tensor,
    k: Consts,
    mode: str = "bilinear",
    fill: str = "zero",
) -> torch.Tensor:
    """Warp float (N, C, H, W) by per-image inverse maps (N, 2, 3); an identity or whole-pixel
    map copies pixels exactly. ``mode`` "bilinear" or "nearest"."""
    return _sample(images, *_map(matrix, k.u, k.v), mode, fill)


def crop_flip(
    images: torch.Tensor,
    crop: torch.Tensor,
    flip: torch.Tensor,
    k: Consts,
    padding: int = CROP_FLIP.padding,
) -> torch.Tensor:
    """Crop at offsets ``crop`` (N, 2) = (x, y) into the zero-padded image, then mirror where
    ``flip`` (N,): an exact gather, any dtype."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4).view(n, c, -1)
    cols = torch.where(flip[:, None], w - 1 - k.cols, k.cols) + crop[:, :1]  # (N, W)
    rows = k.rows + crop[:, 1:]  # (N, H)
    index = (rows * (w + 2 * padding))[:, :, None] + cols[:, None, :]
    return padded.gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


def box_mask(boxes: torch.Tensor, k: Consts) -> torch.Tensor:
    """(N, 1, H, W) bool: inside each image's (top, left, height, width) box."""
    top, left, h, w = boxes[:, :, None].unbind(1)
    inside_rows = (k.rows >= top) & (k.rows < top + h)  # (N, H)
    inside_cols = (k.cols >= left) & (k.cols < left + w)  # (N, W)
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).unsqueeze(1)


def erase(
    images: torch.Tensor, boxes: torch.Tensor, on: torch.Tensor, k: Consts, value: float = 0.0
) -> torch.Tensor:
    """Fill each box with ``value`` where ``on`` (N,) is set (CoarseDropout, RandomErasing)."""
    mask = box_mask(boxes, k) & on[:, None, None, None]
    return images.masked_fill(mask, value)


def gaussian_noise(
    images: torch.Tensor, noise: torch.Tensor, std: torch.Tensor, on: torch.Tensor
) -> torch.Tensor:
    """Add ``std`` (N,) times unit noise (N, C, H, W) where ``on``, clipped to 0..255."""
    scale = torch.where(on, std, 0.0)[:, None, None, None]  # 0: adds exactly nothing
    return images.addcmul(noise, scale).clamp_(0.0, 255.0)


# ------------------------------------------------------------------------------ recipes


def normalize(images: torch.Tensor, k: Consts) -> torch.Tensor:
    """uint8 or 0..255 float (N, 3, H, W) -> float32 normalised with the CIFAR-100 mean/std."""
    return images.to(torch.float32).div(255.0).sub_(k.mean).div_(k.std)


def apply_basic(images: torch.Tensor, params: Params, k: Consts) -> torch.Tensor:
    """Crop and flip; normalised float32 out."""
    return normalize(crop_flip(images, params["crop"], params["flip"], k), k)


def apply_albumentations(
    images: torch.Tensor,
    params: Params,
    k: Consts,
    fill: str = "zero",
    extra_rotate: bool = True,
) -> torch.Tensor:
    """The WRN-28-10 recipe; normalised float32 out. ``fill``: "zero" or "reflect" border of
    the Rotate/Affine warps; ``extra_rotate=False`` drops the separate Rotate step."""
    height, width = images.shape[-2:]
    out = crop_flip(images, params["crop"], params["flip"], k).to(torch.float32)
    rotate_on = params["rotate_on"] & extra_rotate
    affine_on = params["affine_on"]
    # a step not drawn is the identity map (angle 0, scale 1, shift 0: exact)
    rotate = rotation_matrix(torch.where(rotate_on, params["rotate_deg"], 0.0), width)
    affine = affine_matrix(
        torch.where(affine_on, params["affine_deg"], 0.0),
        torch.where(affine_on, params["affine_scale"], 1.0),
        torch.where(affine_on[:, None], params["affine_shift"], 0.0),
        width,
    )
    # Rotate then Affine as one bilinear warp: output -> before Affine (u3, v3) -> before Rotate
    u3, v3 = _map(affine, k.u, k.v)
    if fill == "reflect":  # Rotate's output frame, mirrored as its own fill would be
        u3, v3 = _reflect(u3, width), _reflect(v3, height)
    out = _sample(out, *_map(rotate, u3, v3), "bilinear", fill)
    if fill == "zero":  # Rotate's zero fill: its output frame clips what Affine sees
        both = (rotate_on & affine_on)[:, None, None, None]
        out = out * torch.where(both, _coverage(u3, v3, height, width), 1.0)
    dropout = params["oneof_on"] & params["oneof_dropout"]
    noise = params["oneof_on"] & ~params["oneof_dropout"]
    out = erase(out, params["hole"], dropout, k, 0.0)
    out = gaussian_noise(out, params["noise"], params["noise_std"], noise)
    return normalize(out, k)


def _randaugment_maps(size: int) -> torch.Tensor:
    """(14, 2, 2, 3): each op's inverse map for sign -1 and +1 (identity for colour ops)."""
    signs = torch.tensor([-1.0, 1.0])
    one, zero = torch.ones(2), torch.zeros(2)
    eye = torch.eye(2).expand(2, 2, 2)
    maps = torch.eye(2, 3).expand(len(RANDAUGMENT_OPS), 2, 2, 3).clone()
    shear, shift = signs * RA_SHEAR, signs * RA_TRANSLATE

    def linear(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return torch.stack([a, b, c, d], dim=1).view(2, 2, 2)

    # shears about the top-left corner (torchvision passes center=[0, 0])
    maps[_OP["ShearX"]] = _about(linear(one, shear, zero, one), 0.0)
    maps[_OP["ShearY"]] = _about(linear(one, zero, shear, one), 0.0)
    maps[_OP["TranslateX"]] = _about(eye, 0.0, torch.stack([shift, zero], 1))
    maps[_OP["TranslateY"]] = _about(eye, 0.0, torch.stack([zero, shift], 1))
    maps[_OP["Rotate"]] = rotation_matrix(signs * RA_ROTATE, size)
    return maps


def randaugment_op(
    images: torch.Tensor, op: torch.Tensor, sign: torch.Tensor, k: Consts
) -> torch.Tensor:
    """One RandAugment op per image: ``op`` (N,) indexes RANDAUGMENT_OPS, ``sign`` (N,) ±1.

    Geometric ops: one nearest warp (the others' map is the identity). Identity, Brightness,
    Color, Contrast: one blend, each image with its own partner (0, its grey, its mean grey)
    and factor (1, an exact identity, for the ops that are not blends); Sharpness: torchvision
    blends in another order, so its own blend.
    Posterize, Solarize, AutoContrast, Equalize: computed for the batch, kept where drawn.
    """
    out = apply_affine(images, k.ra_maps[op, (sign > 0).long()], k, "nearest")

    drawn = F.one_hot(op, len(RANDAUGMENT_OPS)).bool()[:, :, None, None, None]

    def drew(name: str) -> torch.Tensor:
        return drawn[:, _OP[name]]

    is_blend = (op >= _OP[_BLENDS[0]]) & (op <= _OP[_BLENDS[-1]])
    factor = torch.where(is_blend, 1.0 + sign * RA_ENHANCE, 1.0)
    grey = grayscale(out)
    partner = torch.where(drew("Color"), grey, grey.mean(dim=(1, 2, 3), keepdim=True))
    partner = torch.where(drew("Brightness"), 0.0, partner)
    sharp = sharpen(out, sharpness_partner(out, k.smoothing, k.inner), factor)
    out = torch.where(drew("Sharpness"), sharp, blend(out, partner, factor))
    out = torch.where(drew("Posterize"), posterize(out, RA_POSTERIZE_BITS), out)
    out = torch.where(drew("Solarize") & (out >= RA_SOLARIZE), 255.0 - out, out)
    out = torch.where(drew("AutoContrast"), autocontrast(out), out)
    return torch.where(drew("Equalize"), equalize(out), out)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter with per-image (brightness, contrast, saturation) factors (N, 3), applied
    in each image's own order (N, 3), a permutation of 0, 1, 2: at each position one blend,
    with partner 0, the mean grey or the grey image as the image's op there says."""
    out = images
    for position in range(3):
        op = order[:, position : position + 1]
        grey = grayscale(out)
        partner = torch.where(
            (op == 2)[:, :, None, None], grey, grey.mean(dim=(1, 2, 3), keepdim=True)
        )
        partner = torch.where((op == 0)[:, :, None, None], 0.0, partner)
        out = blend(out, partner, factors.gather(1, op).squeeze(1))
    return out


def apply_randaugment(images: torch.Tensor, params: Params, k: Consts) -> torch.Tensor:
    """The light recipe on uint8-valued images; normalised float32 out."""
    out = crop_flip(images, params["crop"], params["flip"], k).to(torch.float32)
    for slot in range(params["ops"].shape[1]):
        out = randaugment_op(out, params["ops"][:, slot], params["signs"][:, slot], k)
    out = color_jitter(out, params["jitter"], params["jitter_order"])
    # erasing after normalising: the erased pixels are 0 = the dataset mean
    return erase(normalize(out, k), params["erase_box"], params["erase_on"], k, 0.0)


Applier = Callable[..., torch.Tensor]
APPLIERS: dict[str, Applier] = {
    "albumentations": apply_albumentations,
    "randaugment": apply_randaugment,
    "basic": apply_basic,
}
