"""Colour ops on the 0..255 grid, whole-batch with per-image factors (any device).

Float tensors holding integers 0..255; each result is clamped and floored, as torchvision's
uint8 kernels truncate, so that they match torchvision's uint8 results. Factors are per image,
shape (N,). :mod:`wrn.gpu_augment` builds RandAugment and ColorJitter from these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)


def to_grid(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(0.0, 255.0).floor_()


def blend(image: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's _blend: factor * image + (1 - factor) * other, on the grid. A factor of 1
    returns ``image`` exactly, whatever ``other`` is."""
    f = factor[:, None, None, None]
    return to_grid((image * f).addcmul_(other.expand_as(image), 1.0 - f))


def grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(dim=1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(1).floor_()


def sharpness_partner(
    images: torch.Tensor, smoothing: torch.Tensor, inner: torch.Tensor
) -> torch.Tensor:
    """The image smoothed by ``smoothing`` (C, 1, 3, 3), pixels outside ``inner`` (H, W) kept:
    PIL's and torchvision's degenerate image."""
    blurred = F.conv2d(images, smoothing, groups=images.shape[1]).round_()
    return F.pad(blurred, (1, 1, 1, 1)).where(inner, images)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return to_grid(images * factor[:, None, None, None])


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, grayscale(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, grayscale(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def sharpen(images: torch.Tensor, partner: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # torchvision's sharpness blend: x + (1 - f) * (partner - x), rounding as it does
    return to_grid(images + (partner - images) * (1.0 - factor[:, None, None, None]))


def adjust_sharpness(
    images: torch.Tensor, factor: torch.Tensor, smoothing: torch.Tensor, inner: torch.Tensor
) -> torch.Tensor:
    return sharpen(images, sharpness_partner(images, smoothing, inner), factor)


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
    return to_grid((images - low) / inv_scale)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise each channel of each image with PIL's look-up table (one batched
    histogram: a scatter_add over (image, channel) rows of 256 bins)."""
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w).long()
    hist = torch.zeros((n * c, 256), dtype=torch.long, device=images.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    cum = hist.cumsum(dim=1)
    last = cum.argmax(dim=1, keepdim=True)  # the largest value present (first max of cum)
    step = torch.div(h * w - hist.gather(1, last), 255, rounding_mode="floor")
    lut = torch.div(cum[:, :-1] + step // 2, step.clamp(min=1), rounding_mode="floor")
    lut = F.pad(lut.clamp_(0, 255), (1, 0))
    equalized = torch.where(step != 0, lut.gather(1, flat), flat)  # a one-valued channel kept
    return equalized.to(images.dtype).reshape(n, c, h, w)
