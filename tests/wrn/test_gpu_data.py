import math

import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.geometric import functional as fgeometric
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF  # noqa: N812

from wrn import gpu_data as G  # noqa: N812
from wrn.augment import CIFAR100_MEAN, CIFAR100_STD, albumentations_pipeline, randaugment_pipeline
from wrn.data import ImageSet

MEAN = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image_set(n: int, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return ImageSet(images, np.arange(n, dtype=np.int64))  # label = index


def pixels(normalised: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: back to the 0..255 scale."""
    return (normalised * STD + MEAN) * 255.0


def random_u8(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=gen(seed), dtype=torch.uint8)


def smooth_image() -> torch.Tensor:
    """(1, 3, 32, 32) float 0..255 with low-frequency content (interpolation-friendly)."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    channels = [
        128 + 100 * torch.sin(x / 5.0) * torch.cos(y / 7.0),
        128 + 90 * torch.cos((x + y) / 9.0),
        40 + 6 * x,
    ]
    return torch.stack(channels).unsqueeze(0).clamp(0, 255)


# ------------------------------------------------------------------ GpuBatches


def test_eval_batches_normalise_and_cover_every_image_once_in_order() -> None:
    data = image_set(70)
    data.images[:] = 200  # constant image
    batches = G.GpuBatches(data, torch.device("cpu"), 32, False, "albumentations", seed=0)
    out = list(batches)
    assert len(batches) == 3 and len(out) == 3  # no drop_last in evaluation
    assert [len(labels) for _, labels in out] == [32, 32, 6]
    labels = torch.cat([labels for _, labels in out])
    assert labels.tolist() == list(range(70))
    images, first = out[0]
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32
    assert first.dtype == torch.int64 and images.device.type == "cpu"
    expected = ((torch.full((1, 3, 1, 1), 200.0) / 255.0) - MEAN) / STD
    assert torch.allclose(images, expected.expand_as(images), atol=1e-6)


@pytest.mark.parametrize("augmentation", G.gpu_augmentations())
def test_train_epoch_is_a_reproducible_permutation(augmentation: str) -> None:
    data = image_set(100)
    batches = G.GpuBatches(data, torch.device("cpu"), 32, True, augmentation, seed=3)
    assert len(batches) == 3  # drop_last, like make_loader
    batches.set_epoch(1)
    first = list(batches)
    labels = torch.cat([labels for _, labels in first])
    assert len(labels) == 96 and len(set(labels.tolist())) == 96  # each image at most once
    for images, _ in first:
        assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32
    again = list(batches)  # a resumed run replays the epoch
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    batches.set_epoch(2)
    other = list(batches)
    assert not torch.equal(torch.cat([lb for _, lb in other]), labels)
    assert not torch.equal(other[0][0], first[0][0])
    twin = G.GpuBatches(data, torch.device("cpu"), 32, True, augmentation, seed=3)
    twin.set_epoch(1)
    assert torch.equal(next(iter(twin))[0], first[0][0])
    whole = G.GpuBatches(image_set(64), torch.device("cpu"), 16, True, augmentation, seed=3)
    order = torch.cat([labels for _, labels in whole])
    assert sorted(order.tolist()) == list(range(64)) and order.tolist() != list(range(64))


def test_train_batches_leave_the_global_rng_alone_and_can_be_channels_last() -> None:
    data = image_set(40)
    state = torch.get_rng_state()
    batches = G.GpuBatches(data, torch.device("cpu"), 16, True, "randaugment", 0, True)
    images, _ = next(iter(batches))
    assert torch.equal(torch.get_rng_state(), state)
    assert images.is_contiguous(memory_format=torch.channels_last)
    small = G.GpuBatches(image_set(10), torch.device("cpu"), 16, True, "basic", 0)
    assert len(small) == 1 and len(next(iter(small))[1]) == 10  # one partial batch is kept


def test_unknown_augmentation_and_pipeline_resolution() -> None:
    with pytest.raises(ValueError, match="unknown GPU augmentation"):
        G.GpuBatches(image_set(4), torch.device("cpu"), 2, True, "autoaugment", 0)
    assert G.resolve_pipeline("auto", torch.device("cpu")) == "cpu"
    assert G.resolve_pipeline("auto", torch.device("cuda")) == "gpu"
    assert G.resolve_pipeline("gpu", torch.device("cpu")) == "gpu"
    assert set(G.gpu_augmentations()) == {"albumentations", "randaugment", "basic"}


# ------------------------------------------------------------- parameter sampling


def rate(flags: torch.Tensor) -> float:
    return flags.float().mean().item()


def test_albumentations_params_are_per_image_and_in_the_recipe_ranges() -> None:
    n = 4000
    p = G.sample_albumentations_params(n, gen())
    assert p["crop"].min() == 0 and p["crop"].max() == 8
    assert len(p["crop"][:, 0].unique()) == 9 and len(p["crop"][:, 1].unique()) == 9
    assert p["rotate_deg"].abs().max() <= 15 and p["affine_deg"].abs().max() <= 15
    assert p["rotate_deg"].unique().numel() > n * 0.99  # independent per image
    assert p["affine_scale"].min() >= 0.85 and p["affine_scale"].max() <= 1.15
    assert p["affine_scale"].unique().numel() > n * 0.99
    shift = p["affine_shift"]
    assert shift.abs().max() <= 0.1 * 32 and torch.equal(shift, shift.round())  # whole px
    assert set(shift.unique().tolist()) == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    for key, expected in (("flip", 0.5), ("rotate_on", 0.5), ("affine_on", 0.5)):
        assert rate(p[key]) == pytest.approx(expected, abs=0.04), key
    assert rate(p["oneof_on"]) == pytest.approx(0.3, abs=0.04)
    assert rate(p["oneof_dropout"][p["oneof_on"]]) == pytest.approx(0.5, abs=0.06)
    top, left, h, w = p["hole"].unbind(1)
    assert h.min() == 8 and h.max() == 16 and w.min() == 8 and w.max() == 16
    assert top.min() >= 0 and left.min() >= 0
    assert (top + h).max() <= 32 and (left + w).max() <= 32
    assert p["noise_std"].min() >= 0.02 * 255 and p["noise_std"].max() <= 0.05 * 255


def test_randaugment_params_spread_over_every_op_and_erase_a_fifth() -> None:
    n = 7000
    p = G.sample_randaugment_params(n, gen(1))
    for slot in range(G.RANDAUGMENT_NUM_OPS):
        counts = torch.bincount(p["ops"][:, slot], minlength=len(G.RANDAUGMENT_OPS))
        assert len(counts) == 14 and counts.min() > n / 14 * 0.8
    assert rate(p["signs"] > 0) == pytest.approx(0.5, abs=0.03)
    assert set(p["signs"].unique().tolist()) == {-1.0, 1.0}
    assert p["jitter"].min() >= 0.6 and p["jitter"].max() <= 1.4
    assert p["jitter"][:, 0].unique().numel() > n * 0.99
    assert torch.equal(p["jitter_order"].sort(dim=1).values, torch.arange(3).expand(n, 3))
    assert len({tuple(r) for r in p["jitter_order"].tolist()}) == 6
    assert rate(p["erase_on"]) == pytest.approx(0.2, abs=0.03)
    top, left, h, w = p["erase_box"][p["erase_on"]].unbind(1)
    assert top.min() >= 0 and left.min() >= 0
    assert (top + h).max() <= 32 and (left + w).max() <= 32
    area = (h * w).float() / 1024
    assert area.min() > 0.01 and area.max() < 0.4  # scale 0.02-0.33, after rounding the sides


def test_recipe_constants_match_the_cpu_pipelines() -> None:
    by_name = {type(t).__name__: t for t in albumentations_pipeline().transforms}
    assert by_name["HorizontalFlip"].p == G.FLIP_P
    assert by_name["Rotate"].limit == (-G.ROTATE_LIMIT, G.ROTATE_LIMIT)
    assert by_name["Rotate"].p == G.ROTATE_P
    affine = by_name["Affine"]
    assert affine.p == G.AFFINE_P and affine.keep_ratio
    assert affine.translate_percent["x"] == (-G.AFFINE_SHIFT, G.AFFINE_SHIFT)
    assert affine.scale["x"] == G.AFFINE_SCALE and affine.rotate == (-15.0, 15.0)
    one_of = by_name["OneOf"]
    assert one_of.p == G.ONEOF_P
    dropout, noise = one_of.transforms
    assert dropout.hole_height_range == G.HOLE_RANGE == dropout.hole_width_range
    assert dropout.num_holes_range == (1, 1) and dropout.fill == 0
    assert noise.std_range == G.NOISE_STD_RANGE and noise.per_channel
    assert by_name["PadIfNeeded"].min_height == 32 + 2 * G.CROP_PADDING

    light = {type(t).__name__: t for t in randaugment_pipeline().transforms}
    ra = light["RandAugment"]
    assert (ra.num_ops, ra.magnitude, ra.num_magnitude_bins) == (2, 9, 31)
    assert tuple(v2.RandAugment._AUGMENTATION_SPACE) == G.RANDAUGMENT_OPS
    levels = {
        k: float(fn(31, 32, 32)[9])
        for k, (fn, _) in v2.RandAugment._AUGMENTATION_SPACE.items()
        if fn(31, 32, 32) is not None
    }
    assert levels["ShearX"] == G.RA_SHEAR and levels["Rotate"] == G.RA_ROTATE
    assert int(levels["TranslateX"]) == G.RA_TRANSLATE and levels["Color"] == G.RA_ENHANCE
    assert int(levels["Posterize"]) == G.RA_POSTERIZE_BITS
    assert levels["Solarize"] * 255 == G.RA_SOLARIZE
    jitter = light["ColorJitter"]
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.6, 1.4)
    assert light["RandomCrop"].padding == [G.CROP_PADDING] * 4
    erasing = light["RandomErasing"]
    assert (erasing.p, erasing.scale, erasing.ratio) == (G.ERASE_P, G.ERASE_SCALE, G.ERASE_RATIO)


# ------------------------------------------------------------------- primitives


def hand_made() -> torch.Tensor:
    """(1, 3, 32, 32): every pixel distinct, so any misplaced pixel shows."""
    ramp = torch.arange(32 * 32, dtype=torch.float32).view(32, 32) % 251
    return torch.stack([ramp, 250 - ramp, (ramp * 7) % 251]).unsqueeze(0)


def test_crop_and_flip_move_pixels_exactly() -> None:
    image = hand_made()
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    for (ox, oy), flip in (((8, 0), False), ((0, 5), True), ((4, 4), True), ((2, 7), False)):
        crop = torch.tensor([[ox, oy]])
        expected = padded[..., oy : oy + 32, ox : ox + 32]
        if flip:
            expected = expected.flip(-1)
        for mode in ("nearest", "bilinear"):
            matrix = G.crop_flip_matrix(crop, torch.tensor([flip]))
            out = G.apply_affine(image, matrix, mode)
            assert torch.allclose(out, expected, atol=1e-3), (ox, oy, flip, mode)
        basic = G.apply_basic(image, {"crop": crop, "flip": torch.tensor([flip])})
        assert torch.allclose(pixels(basic), expected, atol=1e-3)
    flips = torch.tensor([True, False])
    pair = torch.cat([image, image + 1])
    assert torch.equal(G.apply_flip(pair, flips), torch.cat([image.flip(-1), image + 1]))


def test_albumentations_with_only_crop_and_flip_is_an_exact_shift() -> None:
    image = hand_made().expand(6, 3, 32, 32)
    p = G.sample_albumentations_params(6, gen(2))
    for key in ("rotate_on", "affine_on", "oneof_on"):
        p[key] = torch.zeros(6, dtype=torch.bool)
    out = pixels(G.apply_albumentations(image, p))
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    for i in range(6):
        ox, oy = p["crop"][i].tolist()
        expected = padded[i, :, oy : oy + 32, ox : ox + 32]
        expected = expected.flip(-1) if p["flip"][i] else expected
        assert torch.allclose(out[i], expected, atol=1e-3)


def cv2_warp(image: np.ndarray, shift: list[float], scale: float, degrees: float) -> np.ndarray:
    """One albumentations Rotate/Affine step: its own matrix, then cv2 (bilinear, zero fill)."""
    matrix = fgeometric.create_affine_transformation_matrix(
        {"x": shift[0], "y": shift[1]},
        {"x": 0.0, "y": 0.0},
        {"x": scale, "y": scale},
        degrees,
        (15.5, 15.5),
    )
    return cv2.warpAffine(
        image, matrix[:2], (32, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


@pytest.mark.parametrize("steps", [(True, False), (False, True), (True, True)])
def test_albumentations_warp_matches_cv2(steps: tuple[bool, bool]) -> None:
    """Crop, flip, then Rotate and/or Affine vs albumentations' sequential cv2 warps."""
    rotate_on, affine_on = steps
    image = smooth_image()
    p = G.sample_albumentations_params(1, gen())
    p.update(
        crop=torch.tensor([[7, 1]]),
        flip=torch.tensor([True]),
        rotate_on=torch.tensor([rotate_on]),
        rotate_deg=torch.tensor([12.0]),
        affine_on=torch.tensor([affine_on]),
        affine_deg=torch.tensor([-7.0]),
        affine_scale=torch.tensor([0.9]),
        affine_shift=torch.tensor([[3.0, -2.0]]),
        oneof_on=torch.tensor([False]),
    )
    ours = pixels(G.apply_albumentations(image, p))[0].permute(1, 2, 0).numpy()
    src = image[0].permute(1, 2, 0).numpy().astype(np.float32)
    expected = np.pad(src, ((4, 4), (4, 4), (0, 0)))[1:33, 7:39, :][:, ::-1].copy()
    if rotate_on:
        expected = cv2_warp(expected, [0, 0], 1.0, 12.0)
    if affine_on:
        expected = cv2_warp(expected, [3, -2], 0.9, -7.0)
    diff = np.abs(ours - expected)
    if rotate_on and affine_on:
        # one interpolation instead of two; the first warp's zero fill through its coverage
        assert diff.mean() < 1.5 and np.median(diff) < 0.5
        assert ((ours < 1) == (expected < 1)).mean() > 0.95  # the same zero-filled corners
    else:
        assert diff.max() < 0.01  # a single step is exactly cv2's warp


@pytest.mark.parametrize("name", ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"])
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_randaugment_geometry_matches_torchvision(name: str, sign: float) -> None:
    image = random_u8(1, seed=4)
    op = torch.tensor([G.RANDAUGMENT_OPS.index(name)])
    ours = G.randaugment_op(image.float(), op, torch.tensor([sign]))
    fill = {"interpolation": v2.InterpolationMode.NEAREST, "fill": None}
    if name == "Rotate":
        ref = TF.rotate(image, angle=sign * G.RA_ROTATE, **fill)
    elif name.startswith("Shear"):
        degrees = math.degrees(math.atan(sign * G.RA_SHEAR))
        shear = [degrees, 0.0] if name == "ShearX" else [0.0, degrees]
        ref = TF.affine(image, 0.0, [0, 0], 1.0, shear, center=[0, 0], **fill)
    else:
        shift = int(sign * G.RA_TRANSLATE)
        translate = [shift, 0] if name == "TranslateX" else [0, shift]
        ref = TF.affine(image, 0.0, translate, 1.0, [0.0, 0.0], **fill)
    assert (ours == ref.float()).float().mean() > 0.99  # rounding ties may differ


def test_randaugment_op_applies_each_images_own_op() -> None:
    n = len(G.RANDAUGMENT_OPS)
    images = random_u8(n, seed=5).float()
    ops = torch.arange(n)
    signs = torch.tensor([1.0, -1.0]).repeat(n)[:n]
    out = G.randaugment_op(images, ops, signs)
    assert torch.equal(out[0], images[0])  # Identity
    for i in range(n):
        alone = G.randaugment_op(images[i : i + 1], ops[i : i + 1], signs[i : i + 1])
        assert torch.equal(out[i : i + 1], alone)
    assert torch.equal(out, out.floor().clamp(0, 255))  # stays on the uint8 grid


def per_image(fn, images: torch.Tensor, factors: list[float]) -> torch.Tensor:
    return torch.cat([fn(images[i : i + 1], f) for i, f in enumerate(factors)]).float()


def test_uint8_ops_agree_with_torchvision() -> None:
    images = random_u8(6, seed=6)
    images[1] = images[1] // 4 + 60  # a low-contrast image
    images[2, 0] = 17  # a flat channel
    images[3] = (images[3].float() * 0.3).to(torch.uint8)  # dark: skewed histogram
    x = images.float()
    assert torch.equal(G.equalize(x), TF.equalize(images).float())
    assert torch.equal(G.posterize(x, 7), TF.posterize(images, 7).float())
    assert torch.equal(G.posterize(x, 3), TF.posterize(images, 3).float())
    assert torch.equal(G.solarize(x, G.RA_SOLARIZE), TF.solarize(images, G.RA_SOLARIZE).float())
    assert (G.autocontrast(x) - TF.autocontrast(images).float()).abs().max() <= 1
    f = torch.tensor([0.6, 1.27, 0.73, 1.4, 1.0, 0.9])
    factors = f.tolist()  # the same float32 values for torchvision
    pairs = (
        (G.adjust_brightness, TF.adjust_brightness),
        (G.adjust_contrast, TF.adjust_contrast),
        (G.adjust_saturation, TF.adjust_saturation),
        (G.adjust_sharpness, TF.adjust_sharpness),
    )
    for ours, theirs in pairs:
        diff = (ours(x, f) - per_image(theirs, images, factors)).abs()
        assert diff.max() <= 1 and diff.mean() < 0.001, ours.__name__


def test_equalize_of_a_single_valued_channel_is_unchanged() -> None:
    x = torch.full((2, 3, 32, 32), 90.0)
    x[1, :, :16] = 200.0
    out = G.equalize(x)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], TF.equalize(x[1:].to(torch.uint8)).float()[0])


def test_erase_and_dropout_fill_only_their_box() -> None:
    x = torch.full((3, 3, 32, 32), 7.0)
    boxes = torch.tensor([[2, 5, 8, 16], [0, 0, 32, 1], [10, 10, 4, 4]])
    on = torch.tensor([True, True, False])
    out = G.erase(x, boxes, on, 0.0)
    assert (out[0, :, 2:10, 5:21] == 0).all() and (out[0] == 0).sum() == 3 * 8 * 16
    assert (out[1, :, :, 0] == 0).all() and (out[1] == 0).sum() == 3 * 32
    assert torch.equal(out[2], x[2])


def test_color_jitter_follows_each_images_order() -> None:
    images = random_u8(2, seed=7).float()
    factors = torch.tensor([[1.3, 0.7, 0.5], [1.3, 0.7, 0.5]])
    order = torch.tensor([[0, 1, 2], [2, 1, 0]])
    out = G.color_jitter(images, factors, order)
    f = factors[:1, 0], factors[:1, 1], factors[:1, 2]
    first = G.adjust_saturation(
        G.adjust_contrast(G.adjust_brightness(images[:1], f[0]), f[1]), f[2]
    )
    second = G.adjust_brightness(
        G.adjust_contrast(G.adjust_saturation(images[1:], f[2]), f[1]), f[0]
    )
    assert torch.equal(out, torch.cat([first, second]))


def test_noise_and_dropout_only_touch_chosen_images() -> None:
    p = G.sample_albumentations_params(64, gen(8))
    p["rotate_on"][:] = False
    p["affine_on"][:] = False
    images = torch.full((64, 3, 32, 32), 128.0)
    out = pixels(G.apply_albumentations(images, p))
    changed = (out - 128).abs().amax(dim=(1, 2, 3)) > 0.5
    # the crop brings in zero padding unless the offset is (4, 4); compare the centre only
    centre = (out[:, :, 8:24, 8:24] - 128).abs().amax(dim=(1, 2, 3)) > 0.5
    assert not (centre & ~p["oneof_on"]).any()
    noisy = p["oneof_on"] & ~p["oneof_dropout"]
    assert changed[noisy].all()
