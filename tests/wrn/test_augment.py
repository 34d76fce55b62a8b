"""Augmentation pipelines: shapes, normalisation, recipe parameters, seeding, pickling."""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import random
import warnings

import albumentations as A  # noqa: N812 (the library's own convention)
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from wrn.augment import (
    AUGMENTATION_NAMES,
    CIFAR100_MEAN,
    CIFAR100_STD,
    albumentations_pipeline,
    build_transform,
    randaugment_pipeline,
    reseed,
)
from wrn.config import ConfigError, DataConfig, key_kind

MEAN = torch.tensor(CIFAR100_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR100_STD).view(3, 1, 1)


def random_images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(count)]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def augment_run(name: str, seed: int, images: list[np.ndarray]) -> torch.Tensor:
    """One "run": seed the process, build a fresh train transform, augment each image."""
    seed_everything(seed)
    transform = build_transform(name, train=True)
    return torch.stack([transform(image) for image in images])


def test_every_augmentation_the_config_takes_has_a_pipeline_of_its_own() -> None:
    _, accepted = key_kind("augmentation")
    assert set(accepted) == set(AUGMENTATION_NAMES)
    images = random_images(4)
    batches = {}
    for name in accepted:
        assert DataConfig(augmentation=name).augmentation == name
        batches[name] = augment_run(name, 0, images)
    for a, b in itertools.combinations(accepted, 2):  # no name falls back on another's pipeline
        assert not torch.equal(batches[a], batches[b]), (a, b)
    with pytest.raises(ConfigError, match="augmentation"):
        DataConfig(augmentation="autoaugment")
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_transform("autoaugment", train=True)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_shape_and_dtype(name: str, train: bool) -> None:
    transform = build_transform(name, train)
    for image in random_images(8):
        out = transform(image)
        assert out.shape == (3, 32, 32)
        assert out.dtype == torch.float32
        assert out.is_contiguous()
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_eval_is_to_tensor_and_normalise(name: str) -> None:
    image = np.empty((32, 32, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 128, 250
    out = build_transform(name, train=False)(image)
    values = torch.tensor([10.0, 128.0, 250.0]).view(3, 1, 1)
    expected = ((values / 255 - MEAN) / STD).expand(3, 32, 32)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)

    # Channel order and layout: HWC pixel (y, x, c) lands at CHW (c, y, x).
    noisy = random_images(1)[0]
    out = build_transform(name, train=False)(noisy)
    expected = (torch.from_numpy(noisy).permute(2, 0, 1).float() / 255 - MEAN) / STD
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_train_output_is_normalised(name: str) -> None:
    # Un-normalised values lie in [0, 1], and dark pixels come out clearly negative (they
    # would not without Normalize, nor with the wrong scale).
    seed_everything(0)
    transform = build_transform(name, train=True)
    for image in random_images(20):
        out = transform(image)
        unnormalised = out * STD + MEAN
        assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5
        assert out.min() < -1.0


@pytest.mark.parametrize("name", ["albumentations", "basic"])
def test_geometric_steps_keep_colours(name: str) -> None:
    # Cropping/flipping/rotating a constant image only moves pixels and pads with 0, so
    # (nearly) every value is the normalised input colour or normalised black, exactly as
    # the eval transform computes them.
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    seed_everything(0)
    transform = build_transform(name, train=True)
    allowed = torch.stack([(torch.full((3, 1, 1), v / 255) - MEAN) / STD for v in (0, 200)])
    hits = 0
    for _ in range(20):
        out = transform(image)
        close = (out.unsqueeze(0) - allowed).abs().min(dim=0).values < 1e-5
        hits += int(close.float().mean() > 0.8)
    # Interpolated box edges and GaussNoise (~15% of images) move some values.
    assert hits >= 14


def test_albumentations_matches_recipe() -> None:
    compose = albumentations_pipeline()
    steps = list(compose.transforms)
    kinds = [type(t) for t in steps]
    assert kinds == [
        A.PadIfNeeded,
        A.RandomCrop,
        A.HorizontalFlip,
        A.Rotate,
        A.Affine,
        A.OneOf,
        A.Normalize,
        ToTensorV2,
    ]
    pad, crop, flip, rotate, affine, one_of, normalize, _ = steps

    assert (pad.min_height, pad.min_width) == (40, 40)
    assert pad.border_mode == cv2.BORDER_CONSTANT and pad.fill == 0 and pad.p == 1.0
    assert (crop.height, crop.width) == (32, 32) and crop.p == 1.0
    assert flip.p == 0.5
    assert tuple(rotate.limit) == (-15, 15)
    # ShiftScaleRotate(shift_limit=0.1, scale_limit=0.15, rotate_limit=15), as Affine.
    assert affine.translate_percent == {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
    assert affine.scale == {"x": (0.85, 1.15), "y": (0.85, 1.15)}
    assert affine.keep_ratio
    assert tuple(affine.rotate) == (-15, 15)
    assert affine.shear == {"x": (0.0, 0.0), "y": (0.0, 0.0)}

    assert one_of.p == 0.3
    assert {type(t) for t in one_of.transforms} == {A.CoarseDropout, A.GaussNoise}

    assert tuple(normalize.mean) == CIFAR100_MEAN
    assert tuple(normalize.std) == CIFAR100_STD
    assert normalize.max_pixel_value == 255.0


def test_pipelines_run_without_warnings() -> None:
    # e.g. ShiftScaleRotate, or 1.x-style arguments, warn under albumentations 2.x.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compose = albumentations_pipeline()
        seed_everything(0)
        for name in AUGMENTATION_NAMES:
            transform = build_transform(name, train=True)
            for image in random_images(30):
                transform(image)
    assert compose is not None


def test_randaugment_matches_recipe() -> None:
    steps = list(randaugment_pipeline().transforms)
    (rand_augment,) = [t for t in steps if isinstance(t, v2.RandAugment)]
    assert (rand_augment.num_ops, rand_augment.magnitude) == (2, 9)
    (erasing,) = [t for t in steps if isinstance(t, v2.RandomErasing)]
    assert erasing.p == 0.2
    (crop,) = [t for t in steps if isinstance(t, v2.RandomCrop)]
    assert crop.size == (32, 32) and crop.padding == [4, 4, 4, 4]
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in steps)
    assert any(isinstance(t, v2.ColorJitter) for t in steps)
    (normalize,) = [t for t in steps if isinstance(t, v2.Normalize)]
    assert tuple(normalize.mean) == CIFAR100_MEAN and tuple(normalize.std) == CIFAR100_STD


def test_unknown_name_raises() -> None:
    for train in (True, False):
        with pytest.raises(ValueError, match="autoaugment"):
            build_transform("autoaugment", train)


@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_same_seed_same_images_different_seed_differs(name: str) -> None:
    images = random_images(16)
    first = augment_run(name, 1234, images)
    second = augment_run(name, 1234, images)
    assert torch.equal(first, second)
    other = augment_run(name, 4321, images)
    assert not torch.equal(first, other)
    # Not a degenerate "same augmentation every call" either.
    same = augment_run(name, 1234, [images[0]] * 8)
    assert len({tuple(x.flatten().tolist()) for x in same}) > 1


def test_albumentations_follows_torch_seed_not_construction() -> None:
    images = random_images(8)
    seed_everything(7)
    early = build_transform("albumentations", train=True)  # built before the seed below
    seed_everything(99)
    late_seeded = torch.stack([early(image) for image in images])
    assert torch.equal(late_seeded, augment_run("albumentations", 99, images))


def test_reseed_pins_albumentations_state() -> None:
    images = random_images(8)
    first = build_transform("albumentations", train=True)
    second = build_transform("albumentations", train=True)
    first(images[0])  # advance one of them; reseed must reset it
    reseed(first, 5)
    reseed(second, 5)
    a = torch.stack([first(image) for image in images])
    b = torch.stack([second(image) for image in images])
    assert torch.equal(a, b)
    reseed(second, 6)
    assert not torch.equal(a, torch.stack([second(image) for image in images]))
    # Torch-RNG pipelines have nothing to reseed.
    reseed(build_transform("basic", train=True), 5)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_transforms_pickle(name: str, train: bool) -> None:
    transform = build_transform(name, train)
    image = random_images(1)[0]
    transform(image)
    clone = pickle.loads(pickle.dumps(transform))
    if train:
        # Same torch seed and (for albumentations) the same generator state => same output.
        state = torch.get_rng_state()
        expected = transform(image)
        torch.set_rng_state(state)
        assert torch.equal(clone(image), expected)
    else:
        assert torch.equal(clone(image), transform(image))


class ImageDataset(Dataset):
    """The same image at every index, so differing outputs come from augmentation alone."""

    def __init__(self, image: np.ndarray, size: int, transform) -> None:
        self.image, self.size, self.transform = image, size, transform

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.image)


def seed_worker(worker_id: int) -> None:
    # What the brief's data loader does; deliberately no reseed() call, to show the
    # albumentations transform reseeds itself per worker.
    seed = torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)


def loader_run(name: str, seed: int) -> list[torch.Tensor]:
    seed_everything(seed)
    dataset = ImageDataset(random_images(1)[0], 8, build_transform(name, train=True))
    loader = DataLoader(
        dataset,
        batch_size=4,
        num_workers=2,
        worker_init_fn=seed_worker,
        multiprocessing_context="fork",
    )
    return list(loader)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork workers"
)
@pytest.mark.parametrize("name", ["albumentations", "randaugment"])
def test_dataloader_workers_reproducible_and_distinct(name: str) -> None:
    first, second = loader_run(name, 3), loader_run(name, 3)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    # Batch 0 comes from worker 0, batch 1 from worker 1: same image, same position in
    # each worker's stream. Copied-over generator state would make them identical.
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], loader_run(name, 4)[0])


@pytest.mark.parametrize("fill", ["zero", "reflect"])
def test_aug_fill_sets_the_warps_border(fill: str) -> None:
    # A constant image through Rotate and Affine alone (each forced on): zero fill blacks out
    # the corners, reflect (BORDER_REFLECT_101) only mirrors the constant colour in.
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    steps = albumentations_pipeline(fill=fill).transforms
    warps = [t for t in steps if isinstance(t, A.Rotate | A.Affine)]
    assert len(warps) == 2
    for warp in warps:
        warp.p = 1.0
        warp.set_random_seed(0)
        out = warp(image=image)["image"]
        black = (out == 0).all(axis=2).mean()
        assert (black > 0.005) if fill == "zero" else (black == 0 and (out == 200).all())


def test_extra_rotate_false_leaves_only_the_affine_rotation() -> None:
    kinds = [type(t) for t in albumentations_pipeline(extra_rotate=False).transforms]
    assert A.Rotate not in kinds and A.Affine in kinds
    assert A.Rotate in [type(t) for t in albumentations_pipeline().transforms]
    transform = build_transform("albumentations", True, fill="reflect", extra_rotate=False)
    assert A.Rotate not in [type(t) for t in transform.compose.transforms]
    with pytest.raises(ValueError, match="aug_fill"):
        build_transform("albumentations", True, fill="wrap")
