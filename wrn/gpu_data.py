"""Training data held on the device as uint8 and augmented there, a whole batch at a time.

:class:`GpuBatches` uploads an :class:`~wrn.data.ImageSet` once (uint8 NCHW; CIFAR's 50,000
training images take 150 MB) and yields ``(images, labels)`` batches already on the device:
float32 normalised images and int64 labels. Training batches are augmented with the recipes of
:mod:`wrn.augment` (strengths in :mod:`wrn.augment_spec`), as whole-batch torch ops
(:mod:`wrn.gpu_augment`) with every random parameter drawn per image
(``torchvision.transforms.v2`` applied to a batch draws one parameter set for the whole batch).

Per batch: ONE ``torch.rand(N, K)`` draws every parameter of every image (plus one
``torch.randn`` for GaussNoise, :func:`draw`); the ``derive_*`` functions turn its columns
into parameters and the recipe is applied, both through ``torch.compile`` on CUDA. No
``.item()``, no boolean indexing, no Python loop over images, no host-to-device copy: no host
sync.

Randomness. Each epoch reseeds one ``torch.Generator`` on the device from ``(seed, epoch)``; it
draws the epoch's order and then, batch after batch, every augmentation parameter. An epoch is
thus replayed exactly on the same device type (a resumed run included), and the global RNG (the
train loop seeds it for dropout) is never touched. CUDA and CPU generators give different
streams, so a GPU run does not repeat a CPU run image for image.

Evaluation batches (``train=False``) are only normalised, in order, every image once.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from wrn import augment_spec as spec
from wrn import seeding
from wrn.data import ImageSet
from wrn.gpu_augment import APPLIERS, Consts, Params, constants, normalize

_SEED_SALT = 0x6A75_D47A  # keeps these streams apart from other users of (seed, epoch)


def check_options(augmentation: str, fill: str) -> None:
    """Refuse an augmentation or ``aug_fill`` the batched pipeline does not implement."""
    if augmentation not in DERIVERS:
        known = ", ".join(spec.AUGMENTATION_NAMES)
        raise ValueError(f"unknown GPU augmentation {augmentation!r} (known: {known})")
    spec.check_aug_fill(fill)


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


class Draws:
    """Hands out the columns of one uniform draw ``u`` (n, width) in order, derived on the way."""

    def __init__(self, u: torch.Tensor) -> None:
        self.u = u
        self.used = 0

    def take(self, count: int = 1) -> torch.Tensor:
        """The next ``count`` columns: (n,) for one, (n, count) for more; uniform in [0, 1)."""
        if self.used + count > self.u.shape[1]:
            raise ValueError(f"{self.u.shape[1]} columns drawn, {self.used + count} wanted")
        cols = self.u[:, self.used : self.used + count]
        self.used += count
        return cols[:, 0] if count == 1 else cols

    def done(self) -> None:
        """Check that every column was used: COLUMNS matches what the recipe derives."""
        if self.used != self.u.shape[1]:
            raise ValueError(f"{self.u.shape[1]} columns drawn, {self.used} used")

    def uniform(self, low: float, high: float, count: int = 1) -> torch.Tensor:
        return self.take(count) * (high - low) + low

    def chance(self, p: float, count: int = 1) -> torch.Tensor:
        return self.take(count) < p

    def below(self, high: torch.Tensor | int, count: int = 1) -> torch.Tensor:
        """Integers uniform in [0, high) (``high`` may differ per image)."""
        drawn = (self.take(count) * high).long()  # floor: the product is >= 0
        # u * high can round up to high in float32 when u is within 2**-24 of 1
        if isinstance(high, torch.Tensor):
            return torch.minimum(drawn, high - 1)
        return drawn.clamp_(max=high - 1)

    def sign(self, count: int = 1) -> torch.Tensor:
        # torchvision flips the sign when rand <= 0.5
        return torch.where(self.take(count) <= 0.5, -1.0, 1.0)

    def boxes(self, heights: torch.Tensor, widths: torch.Tensor, size: int) -> torch.Tensor:
        """(n, 4) int64 boxes (top, left, height, width), placed uniformly inside the image."""
        top = self.below(size - heights + 1)
        left = self.below(size - widths + 1)
        return torch.stack([top, left, heights, widths], dim=1)


# uniform columns each recipe derives its parameters from (Draws.done checks the count)
_ERASING_COLUMNS = 2 * spec.ERASING.attempts + 3
COLUMNS = {
    "basic": 3,
    "albumentations": 3 + 14,
    "randaugment": 3 + 2 * spec.RANDAUGMENT.num_ops + 6 + _ERASING_COLUMNS,
}


def draw(
    augmentation: str, n: int, gen: torch.Generator, size: int = spec.IMAGE_SIZE
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch's random numbers: ONE ``torch.rand`` (n, COLUMNS) and, for the albumentations
    recipe's GaussNoise, one ``torch.randn`` (n, 3, size, size)."""
    u = torch.rand((n, COLUMNS[augmentation]), generator=gen, device=gen.device)
    noise = None
    if augmentation == "albumentations":
        noise = torch.randn((n, 3, size, size), generator=gen, device=gen.device)
    return u, noise


def _crop_flip(draws: Draws) -> Params:
    """Per image: crop offsets (x, y) in [0, 2 * padding] into the padded image, flip flag."""
    return {
        "crop": draws.below(2 * spec.CROP_FLIP.padding + 1, 2),
        "flip": draws.chance(spec.CROP_FLIP.flip_p),
    }


def derive_basic(u: torch.Tensor, noise: torch.Tensor | None, size: int) -> Params:
    """Per-image crop offsets and flips."""
    draws = Draws(u)
    params = _crop_flip(draws)
    draws.done()
    return params


def derive_albumentations(u: torch.Tensor, noise: torch.Tensor | None, size: int) -> Params:
    """Per-image parameters of the WRN-28-10 recipe (ranges: :mod:`wrn.augment_spec`)."""
    draws = Draws(u)
    params = _crop_flip(draws)
    rotate, affine, one_of = spec.ROTATE, spec.AFFINE, spec.ONE_OF
    params["rotate_on"] = draws.chance(rotate.p)
    params["rotate_deg"] = draws.uniform(-rotate.limit, rotate.limit)
    params["affine_on"] = draws.chance(affine.p)
    params["affine_deg"] = draws.uniform(-affine.rotate, affine.rotate)
    params["affine_scale"] = draws.uniform(*affine.scale)
    # albumentations: int(translate_percent * side), i.e. whole pixels truncated towards 0
    params["affine_shift"] = draws.uniform(-affine.shift, affine.shift, 2).mul_(size).trunc_()
    params["oneof_on"] = draws.chance(one_of.p)
    params["oneof_dropout"] = draws.chance(0.5)  # else GaussNoise
    low, high = one_of.hole_range
    sides = draws.below(high - low + 1, 2) + low
    params["hole"] = draws.boxes(sides[:, 0], sides[:, 1], size)
    params["noise_std"] = draws.uniform(*one_of.noise_std_range) * 255.0  # 0..255 units
    params["noise"] = noise
    draws.done()
    return params


def _erasing(draws: Draws, size: int) -> Params:
    """RandomErasing as torchvision draws it: the first of 10 attempts that fits, per image."""
    erasing = spec.ERASING
    area = draws.uniform(*erasing.scale, erasing.attempts) * (size * size)
    log_ratio = (math.log(erasing.ratio[0]), math.log(erasing.ratio[1]))
    ratio = draws.uniform(*log_ratio, erasing.attempts).exp_()
    heights = torch.sqrt(area * ratio).round_()  # round half to even, as Python's round
    widths = torch.sqrt(area / ratio).round_()
    fits = (heights < size) & (widths < size)
    first = fits.float().argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
    heights = heights.gather(1, first).squeeze(1).long()
    widths = widths.gather(1, first).squeeze(1).long()
    return {
        "erase_on": draws.chance(erasing.p) & fits.any(dim=1),
        "erase_box": draws.boxes(heights, widths, size),
    }


def derive_randaugment(u: torch.Tensor, noise: torch.Tensor | None, size: int) -> Params:
    """Per-image parameters of the light recipe."""
    draws = Draws(u)
    params = _crop_flip(draws)
    slots = spec.RANDAUGMENT.num_ops
    params["ops"] = draws.below(len(spec.RANDAUGMENT_OPS), slots)  # indices into RANDAUGMENT_OPS
    params["signs"] = draws.sign(slots)
    # ColorJitter: factors for (brightness, contrast, saturation) and their per-image order
    jitter = spec.JITTER
    strengths = (jitter.brightness, jitter.contrast, jitter.saturation)
    params["jitter"] = torch.stack([draws.uniform(1.0 - s, 1.0 + s) for s in strengths], 1)
    params["jitter_order"] = draws.take(3).argsort(dim=1)
    params.update(_erasing(draws, size))
    draws.done()
    return params


Deriver = Callable[[torch.Tensor, torch.Tensor | None, int], Params]
DERIVERS: dict[str, Deriver] = {
    "albumentations": derive_albumentations,
    "randaugment": derive_randaugment,
    "basic": derive_basic,
}


def sample_params(
    augmentation: str, n: int, gen: torch.Generator, size: int = spec.IMAGE_SIZE
) -> Params:
    """Draw and derive the per-image parameters of one batch of ``n`` images."""
    return DERIVERS[augmentation](*draw(augmentation, n, gen, size), size)


def augment_drawn(
    images: torch.Tensor,
    u: torch.Tensor,
    noise: torch.Tensor | None,
    k: Consts,
    augmentation: str,
    fill: str = "zero",
    extra_rotate: bool = True,
) -> torch.Tensor:
    """Derive the parameters from the batch's draws and apply the recipe: everything after
    the random number generation, the part :func:`compiled` compiles. ``k``: the device's
    :func:`wrn.gpu_augment.constants`, inputs of the graph."""
    params = DERIVERS[augmentation](u, noise, images.shape[-1])
    if augmentation == "albumentations":
        return APPLIERS[augmentation](images, params, k, fill=fill, extra_rotate=extra_rotate)
    return APPLIERS[augmentation](images, params, k)


@functools.cache
def compiled(backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """:func:`augment_drawn` through ``torch.compile`` (one graph per recipe and options).

    Fixed shapes: every training batch has the same size (a last partial batch compiles once
    more); each batch's draws and the constants are inputs, so a new batch reuses the graph.
    Meant for CUDA, where it fuses the derivations and the recipe's elementwise chains into a
    few kernels."""
    # fullgraph: a graph break would be a host round trip; better an error at the first batch
    return torch.compile(augment_drawn, backend=backend, dynamic=False, fullgraph=True)


def augment_batch(
    images: torch.Tensor,
    augmentation: str,
    gen: torch.Generator,
    *,
    fill: str = "zero",
    extra_rotate: bool = True,
    compile_backend: str | None = None,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) on ``gen``'s device -> augmented, normalised float32.

    ``fill`` and ``extra_rotate``: the albumentations recipe's options (``DataConfig.aug_fill``,
    ``.extra_rotate``). ``compile_backend``: derive and apply through ``torch.compile`` with
    this backend (None: eager). Should compiling fail (say, no compiler toolchain on the
    machine), this warns once and goes on eagerly with the same draws: the run's augmentations
    do not change.
    """
    check_options(augmentation, fill)
    u, noise = draw(augmentation, images.shape[0], gen, images.shape[-1])
    k = constants(images.device, *images.shape[1:])
    args = (images, u, noise, k, augmentation, fill, extra_rotate)
    if compile_backend is not None and (augmentation, compile_backend) not in _COMPILE_FAILED:
        try:
            return compiled(compile_backend)(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # any compiler failure: fall back, once
            _COMPILE_FAILED.add((augmentation, compile_backend))
            warnings.warn(
                f"torch.compile ({compile_backend}) of the {augmentation} augmentation failed, "
                f"augmenting eagerly: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                RuntimeWarning,
                stacklevel=2,
            )
    return augment_drawn(*args)


_COMPILE_FAILED: set[tuple[str, str]] = set()  # (augmentation, backend) that did not compile


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: distinct per (seed, epoch), fixed across runs; the
    pipeline's own stream of :func:`wrn.seeding.epoch_seed` (apart from the training loop's)."""
    return seeding.epoch_seed(seed, epoch, _SEED_SALT)


class GpuBatches:
    """Training or evaluation batches from images held on ``device`` as uint8 NCHW.

    Iterating yields ``(images, labels)``: float32 normalised (N, 3, 32, 32) and int64 (N,),
    both on ``device``. Training batches are shuffled and augmented per image from a generator
    seeded by ``(seed, epoch)``; call :meth:`set_epoch` before each epoch. Like
    :func:`wrn.data.make_loader`, training drops the last partial batch when there is more
    than one batch; evaluation yields every image once, in order.

    ``fill``, ``extra_rotate``: ``DataConfig.aug_fill`` and ``.extra_rotate`` (albumentations
    recipe). ``compile``: augment through ``torch.compile`` (None: on CUDA only; compiling on
    CPU takes longer than it saves); ``compile_backend``: its backend.
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
        *,
        fill: str = "zero",
        extra_rotate: bool = True,
        compile: bool | None = None,
        compile_backend: str = "inductor",
    ) -> None:
        check_options(augmentation, fill)
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
        self.options = {"fill": fill, "extra_rotate": extra_rotate}
        if compile is None:
            compile = self.device.type == "cuda"
        self.compile_backend = compile_backend if compile else None

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
                batch = normalize(images, constants(images.device, *images.shape[1:]))
            else:
                index = order[b * size : (b + 1) * size]
                images = self.images.index_select(0, index)
                labels = self.labels.index_select(0, index)
                batch = augment_batch(
                    images,
                    self.augmentation,
                    self.generator,
                    compile_backend=self.compile_backend,
                    **self.options,
                )
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            yield batch, labels
