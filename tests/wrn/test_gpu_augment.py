"""The batched augmentation's operations (wrn.gpu_augment) against torchvision and cv2."""

import math

import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.geometric import functional as fgeometric
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF  # noqa: N812

from wrn import gpu_augment as GA  # noqa: N812
from wrn import gpu_colour as GC  # noqa: N812
from wrn import gpu_data as G  # noqa: N812
from wrn.augment_spec import CIFAR100_MEAN, CIFAR100_STD, RANDAUGMENT_OPS

MEAN = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
K = GA.constants(torch.device("cpu"))  # the recipes' constants for 3x32x32 CPU images


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
        assert torch.equal(GA.crop_flip(image, crop, torch.tensor([flip]), K), expected)
        as_u8 = GA.crop_flip(image.to(torch.uint8), crop, torch.tensor([flip]), K)
        assert torch.equal(as_u8, expected.to(torch.uint8))  # any dtype: a gather
        basic = GA.apply_basic(image, {"crop": crop, "flip": torch.tensor([flip])}, K)
        assert torch.allclose(pixels(basic), expected, atol=1e-3)
    # each image its own offsets
    pair = torch.cat([image, image + 1])
    out = GA.crop_flip(pair, torch.tensor([[4, 4], [4, 4]]), torch.tensor([True, False]), K)
    assert torch.equal(out, torch.cat([image.flip(-1), image + 1]))


def test_whole_pixel_warps_copy_pixels_exactly() -> None:
    image = hand_made()
    shift = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]])  # src = p + (3, -2)
    expected = torch.nn.functional.pad(image, (0, 3, 2, 0))[..., :32, 3:]
    for mode in ("nearest", "bilinear"):
        assert torch.allclose(GA.apply_affine(image, shift, K, mode), expected, atol=1e-3), mode


def test_albumentations_with_only_crop_and_flip_is_an_exact_shift() -> None:
    image = hand_made().expand(6, 3, 32, 32)
    p = G.sample_params("albumentations", 6, gen(2))
    for key in ("rotate_on", "affine_on", "oneof_on"):
        p[key] = torch.zeros(6, dtype=torch.bool)
    out = pixels(GA.apply_albumentations(image, p, K))
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    for i in range(6):
        ox, oy = p["crop"][i].tolist()
        expected = padded[i, :, oy : oy + 32, ox : ox + 32]
        expected = expected.flip(-1) if p["flip"][i] else expected
        assert torch.allclose(out[i], expected, atol=1e-3)


BORDERS = {"zero": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


def cv2_warp(
    image: np.ndarray, shift: list[float], scale: float, degrees: float, fill: str
) -> np.ndarray:
    """One albumentations Rotate/Affine step: its own matrix, then cv2 (bilinear)."""
    matrix = fgeometric.create_affine_transformation_matrix(
        {"x": shift[0], "y": shift[1]},
        {"x": 0.0, "y": 0.0},
        {"x": scale, "y": scale},
        degrees,
        (15.5, 15.5),
    )
    return cv2.warpAffine(
        image, matrix[:2], (32, 32), flags=cv2.INTER_LINEAR, borderMode=BORDERS[fill]
    )


def warp_params(rotate_on: bool, affine_on: bool) -> dict[str, torch.Tensor]:
    p = G.sample_params("albumentations", 1, gen())
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
    return p


@pytest.mark.parametrize("fill", ["zero", "reflect"])
@pytest.mark.parametrize("steps", [(True, False), (False, True), (True, True)])
def test_albumentations_warp_matches_cv2(steps: tuple[bool, bool], fill: str) -> None:
    """Crop, flip, then Rotate and/or Affine vs albumentations' sequential cv2 warps."""
    rotate_on, affine_on = steps
    image = smooth_image()
    p = warp_params(rotate_on, affine_on)
    ours = pixels(GA.apply_albumentations(image, p, K, fill=fill))[0].permute(1, 2, 0).numpy()
    src = image[0].permute(1, 2, 0).numpy().astype(np.float32)
    expected = np.pad(src, ((4, 4), (4, 4), (0, 0)))[1:33, 7:39, :][:, ::-1].copy()
    if rotate_on:
        expected = cv2_warp(expected, [0, 0], 1.0, 12.0, fill)
    if affine_on:
        expected = cv2_warp(expected, [3, -2], 0.9, -7.0, fill)
    diff = np.abs(ours - expected)
    if rotate_on and affine_on:
        # one interpolation instead of two; the first warp's fill through its coverage (zero)
        # or through mirrored coordinates (reflect, which also mirrors the crop's hard black
        # edges: more pixels where one and two interpolations differ)
        assert diff.mean() < (1.5 if fill == "zero" else 2.5) and np.median(diff) < 0.5
        assert ((ours < 1) == (expected < 1)).mean() > 0.95  # the same zero-filled pixels
    else:
        assert diff.max() < 0.01  # a single step is exactly cv2's warp


def test_reflect_fill_mirrors_instead_of_blacking_corners() -> None:
    image = smooth_image() + 20  # no black pixels of its own
    p = warp_params(True, True)
    p["crop"] = torch.tensor([[4, 4]])  # no zero padding from the crop
    zero = pixels(GA.apply_albumentations(image, p, K, fill="zero"))
    reflect = pixels(GA.apply_albumentations(image, p, K, fill="reflect"))
    corners = zero.amax(dim=1) < 1  # (1, 32, 32) pixels the zero fill blacked out
    assert corners.float().mean() > 0.05
    assert (reflect.amax(dim=1)[corners] > 10).all()  # mirrored image content there
    # away from the crop's black border, one mirrored warp is two sequential cv2 warps
    src = image[0].permute(1, 2, 0).numpy().astype(np.float32)[:, ::-1].copy()
    expected = cv2_warp(cv2_warp(src, [0, 0], 1.0, 12.0, "reflect"), [3, -2], 0.9, -7.0, "reflect")
    diff = np.abs(reflect[0].permute(1, 2, 0).numpy() - expected)
    assert diff.mean() < 0.3 and np.median(diff) < 0.1
    with pytest.raises(ValueError, match="aug_fill"):
        G.augment_batch(random_u8(2), "albumentations", gen(), fill="wrap")


def test_without_extra_rotate_only_the_affine_rotates() -> None:
    image = smooth_image()
    rotated = warp_params(True, False)  # Rotate drawn, Affine not
    plain = warp_params(False, False)
    same = GA.apply_albumentations(image, rotated, K, extra_rotate=False)
    assert torch.equal(same, GA.apply_albumentations(image, plain, K))
    assert not torch.equal(same, GA.apply_albumentations(image, rotated, K))
    both = warp_params(True, True)
    affine_only = warp_params(False, True)
    ours = GA.apply_albumentations(image, both, K, extra_rotate=False)
    assert torch.equal(ours, GA.apply_albumentations(image, affine_only, K))


@pytest.mark.parametrize("name", ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"])
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_randaugment_geometry_matches_torchvision(name: str, sign: float) -> None:
    image = random_u8(1, seed=4)
    op = torch.tensor([RANDAUGMENT_OPS.index(name)])
    ours = GA.randaugment_op(image.float(), op, torch.tensor([sign]), K)
    fill = {"interpolation": v2.InterpolationMode.NEAREST, "fill": None}
    if name == "Rotate":
        ref = TF.rotate(image, angle=sign * GA.RA_ROTATE, **fill)
    elif name.startswith("Shear"):
        degrees = math.degrees(math.atan(sign * GA.RA_SHEAR))
        shear = [degrees, 0.0] if name == "ShearX" else [0.0, degrees]
        ref = TF.affine(image, 0.0, [0, 0], 1.0, shear, center=[0, 0], **fill)
    else:
        shift = int(sign * GA.RA_TRANSLATE)
        translate = [shift, 0] if name == "TranslateX" else [0, shift]
        ref = TF.affine(image, 0.0, translate, 1.0, [0.0, 0.0], **fill)
    assert (ours == ref.float()).float().mean() > 0.99  # rounding ties may differ


def test_randaugment_op_applies_each_images_own_op() -> None:
    n = len(RANDAUGMENT_OPS)
    images = random_u8(n, seed=5).float()
    ops = torch.arange(n)
    signs = torch.tensor([1.0, -1.0]).repeat(n)[:n]
    out = GA.randaugment_op(images, ops, signs, K)
    assert torch.equal(out[0], images[0])  # Identity
    for i in range(n):
        alone = GA.randaugment_op(images[i : i + 1], ops[i : i + 1], signs[i : i + 1], K)
        assert torch.equal(out[i : i + 1], alone)
    assert torch.equal(out, out.floor().clamp(0, 255))  # stays on the uint8 grid


def per_image(fn, images: torch.Tensor, factors: list[float]) -> torch.Tensor:
    return torch.cat([fn(images[i : i + 1], f) for i, f in enumerate(factors)]).float()


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return GC.adjust_sharpness(images, factor, K.smoothing, K.inner)


def test_uint8_ops_agree_with_torchvision() -> None:
    images = random_u8(6, seed=6)
    images[1] = images[1] // 4 + 60  # a low-contrast image
    images[2, 0] = 17  # a flat channel
    images[3] = (images[3].float() * 0.3).to(torch.uint8)  # dark: skewed histogram
    x = images.float()
    assert torch.equal(GC.equalize(x), TF.equalize(images).float())
    assert torch.equal(GC.posterize(x, 7), TF.posterize(images, 7).float())
    assert torch.equal(GC.posterize(x, 3), TF.posterize(images, 3).float())
    assert torch.equal(GC.solarize(x, GA.RA_SOLARIZE), TF.solarize(images, GA.RA_SOLARIZE).float())
    assert (GC.autocontrast(x) - TF.autocontrast(images).float()).abs().max() <= 1
    f = torch.tensor([0.6, 1.27, 0.73, 1.4, 1.0, 0.9])
    factors = f.tolist()  # the same float32 values for torchvision
    pairs = (
        (GC.adjust_brightness, TF.adjust_brightness),
        (GC.adjust_contrast, TF.adjust_contrast),
        (GC.adjust_saturation, TF.adjust_saturation),
        (sharpness, TF.adjust_sharpness),
    )
    for ours, theirs in pairs:
        diff = (ours(x, f) - per_image(theirs, images, factors)).abs()
        assert diff.max() <= 1 and diff.mean() < 0.001, ours.__name__


def test_equalize_of_a_single_valued_channel_is_unchanged() -> None:
    x = torch.full((2, 3, 32, 32), 90.0)
    x[1, :, :16] = 200.0
    out = GC.equalize(x)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], TF.equalize(x[1:].to(torch.uint8)).float()[0])


def test_erase_and_dropout_fill_only_their_box() -> None:
    x = torch.full((3, 3, 32, 32), 7.0)
    boxes = torch.tensor([[2, 5, 8, 16], [0, 0, 32, 1], [10, 10, 4, 4]])
    on = torch.tensor([True, True, False])
    out = GA.erase(x, boxes, on, K, 0.0)
    assert (out[0, :, 2:10, 5:21] == 0).all() and (out[0] == 0).sum() == 3 * 8 * 16
    assert (out[1, :, :, 0] == 0).all() and (out[1] == 0).sum() == 3 * 32
    assert torch.equal(out[2], x[2])


def test_color_jitter_follows_each_images_order() -> None:
    images = random_u8(2, seed=7).float()
    factors = torch.tensor([[1.3, 0.7, 0.5], [1.3, 0.7, 0.5]])
    order = torch.tensor([[0, 1, 2], [2, 1, 0]])
    out = GA.color_jitter(images, factors, order)
    f = factors[:1, 0], factors[:1, 1], factors[:1, 2]
    first = GC.adjust_saturation(
        GC.adjust_contrast(GC.adjust_brightness(images[:1], f[0]), f[1]), f[2]
    )
    second = GC.adjust_brightness(
        GC.adjust_contrast(GC.adjust_saturation(images[1:], f[2]), f[1]), f[0]
    )
    assert torch.equal(out, torch.cat([first, second]))


def test_noise_and_dropout_only_touch_chosen_images() -> None:
    p = G.sample_params("albumentations", 64, gen(8))
    p["rotate_on"][:] = False
    p["affine_on"][:] = False
    images = torch.full((64, 3, 32, 32), 128.0)
    out = pixels(GA.apply_albumentations(images, p, K))
    changed = (out - 128).abs().amax(dim=(1, 2, 3)) > 0.5
    # the crop brings in zero padding unless the offset is (4, 4); compare the centre only
    centre = (out[:, :, 8:24, 8:24] - 128).abs().amax(dim=(1, 2, 3)) > 0.5
    assert not (centre & ~p["oneof_on"]).any()
    noisy = p["oneof_on"] & ~p["oneof_dropout"]
    assert changed[noisy].all()
