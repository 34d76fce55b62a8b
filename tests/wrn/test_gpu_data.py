"""GpuBatches and the batched augmentation's parameter draws (wrn.gpu_data)."""

import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from benchmarks.augment_ops import OpCounter, count_ops
from wrn import augment_spec as S  # noqa: N812
from wrn import gpu_augment as GA  # noqa: N812
from wrn import gpu_data as G  # noqa: N812
from wrn.augment import albumentations_pipeline, build_transform, randaugment_pipeline
from wrn.augment_spec import (
    AUG_FILLS,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGE_SIZE,
    RANDAUGMENT,
    RANDAUGMENT_OPS,
)
from wrn.augment_spec import AUGMENTATION_NAMES as AUGMENTATIONS
from wrn.data import ImageSet

MEAN = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image_set(n: int, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return ImageSet(images, np.arange(n, dtype=np.int64))  # label = index


def random_u8(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=gen(seed), dtype=torch.uint8)


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


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
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


# ------------------------------------------------------------- parameter sampling


def rate(flags: torch.Tensor) -> float:
    return flags.float().mean().item()


def test_albumentations_params_are_per_image_and_in_the_recipe_ranges() -> None:
    n = 4000
    p = G.sample_params("albumentations", n, gen())
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
    p = G.sample_params("randaugment", n, gen(1))
    for slot in range(RANDAUGMENT.num_ops):
        counts = torch.bincount(p["ops"][:, slot], minlength=len(RANDAUGMENT_OPS))
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


def test_draws_hand_out_each_column_once() -> None:
    u = torch.rand(5, 3, generator=gen())
    draws = G.Draws(u)
    first, rest = draws.take(), draws.take(2)
    assert first.shape == (5,) and rest.shape == (5, 2)
    assert torch.equal(torch.cat([first[:, None], rest], 1), u)
    draws.done()
    with pytest.raises(ValueError, match="3 columns drawn, 4 wanted"):
        draws.take()
    short = G.Draws(u)
    short.take()
    with pytest.raises(ValueError, match="3 columns drawn, 1 used"):
        short.done()


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_parameters_come_from_one_fused_draw(augmentation: str) -> None:
    with OpCounter() as counter:
        params = G.sample_params(augmentation, 64, gen())  # Draws.done: every column used
    assert counter.ops["rand"] == 1  # every uniform of every image: one launch
    noise = augmentation == "albumentations"  # GaussNoise's per-pixel noise
    assert counter.ops["randn"] == noise and ("noise" in params) == noise
    assert sum(n for op, n in counter.ops.items() if "rand" in op) == 1 + noise
    u = torch.rand(64, G.COLUMNS[augmentation] - 1)
    with pytest.raises(ValueError, match="columns drawn"):
        G.DERIVERS[augmentation](u, None, 32)  # a column short


def test_aten_ops_per_batch_stay_few() -> None:
    """The counts behind benchmarks/augment_ops.py (before: 42, 189, 582 compute ops)."""
    counts = count_ops(G, batch=64)
    assert counts["basic"]["compute"] <= 20
    assert counts["albumentations"]["compute"] <= 150
    assert counts["randaugment"]["compute"] <= 350


def compiled_and_eager(
    augmentation: str, backend: str
) -> list[tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
    """Three batches each of GpuBatches compiled with ``backend`` and eager, same draws. The
    compiled ones fail on a fallback to eager (a warning) and on any recompile after the
    first batch: the batch's new draws and the constants are inputs of one graph."""
    data = image_set(48)
    options = {"fill": "reflect", "extra_rotate": False}
    eager = G.GpuBatches(data, torch.device("cpu"), 16, True, augmentation, 4, **options)
    compiled = G.GpuBatches(
        data, torch.device("cpu"), 16, True, augmentation, 4, compile=True,
        compile_backend=backend, **options,
    )  # fmt: skip
    assert eager.compile_backend is None and compiled.compile_backend == backend
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*augmenting eagerly")
        batches = iter(compiled)
        first = next(batches)
        with torch._dynamo.config.patch(error_on_recompile=True):
            got = [first, *batches]
    return list(zip(eager, got, strict=True))


@pytest.mark.parametrize(
    "augmentation",
    ["basic", "albumentations", pytest.param("randaugment", marks=pytest.mark.slow)],
)
def test_each_recipe_compiles_through_aot_autograd_as_one_graph(augmentation: str) -> None:
    """aot_eager runs AOTAutograd (the old per-device constants failed there: every recipe
    fell back to eager), without code generation: the outputs are eager's exactly."""
    for (a, la), (b, lb) in compiled_and_eager(augmentation, "aot_eager"):
        assert torch.equal(la, lb) and torch.equal(a, b)


@pytest.mark.slow  # CPU inductor: a C++ compile per recipe
@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_each_recipe_compiles_with_inductor(augmentation: str) -> None:
    grid_step = 1.0 / 255.0 / min(CIFAR100_STD)  # one 0..255 step, normalised
    for (a, la), (b, lb) in compiled_and_eager(augmentation, "inductor"):
        assert torch.equal(la, lb)
        diff = (a - b).abs()
        # fused float maths may land a floor on the other side, and a later op carry it on:
        # at most two steps, on a few values (randaugment: under 1e-4 of them)
        assert diff.max() <= 2 * grid_step * 1.01 and (diff > 1e-4).float().mean() < 1e-3


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_a_cuda_graph_of_each_recipe_copies_nothing_to_the_device(augmentation: str) -> None:
    """Traced for CUDA under FakeTensorMode (no GPU needed): every input and constant is on
    the device already; no op copies a host tensor over, none is a tensor constant."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    cuda = torch.device("cuda")
    with FakeTensorMode(allow_non_fake_inputs=False):
        k = GA.constants.__wrapped__(cuda)  # uncached: fake tensors stay in this test
        images = torch.empty((16, 3, 32, 32), dtype=torch.uint8, device=cuda)
        u = torch.rand((16, G.COLUMNS[augmentation]), device=cuda)
        noise = None
        if augmentation == "albumentations":
            noise = torch.randn((16, 3, 32, 32), device=cuda)

        def recipe(images, u, noise, k):
            return G.augment_drawn(images, u, noise, k, augmentation, "reflect", True)

        graph = make_fx(recipe)(images, u, noise, k).graph
        assert recipe(images, u, noise, k).device.type == "cuda"
    copies = [
        n for n in graph.nodes if n.op == "call_function" and n.kwargs.get("device") is not None
        and torch.device(n.kwargs["device"]).type != "cuda"
    ]  # fmt: skip
    moved = [n for n in graph.nodes if "_to_copy" in str(n.target) and "device" in n.kwargs]
    assert not copies and not moved and not [n for n in graph.nodes if n.op == "get_attr"]


def test_fill_and_extra_rotate_reach_the_gpu_recipe() -> None:
    data = image_set(32)

    def first(**options: object) -> torch.Tensor:
        batches = G.GpuBatches(data, torch.device("cpu"), 32, True, "albumentations", 1, **options)
        return next(iter(batches))[0]

    default = first()
    assert torch.equal(default, first(fill="zero", extra_rotate=True))
    assert not torch.equal(default, first(fill="reflect"))
    assert not torch.equal(default, first(extra_rotate=False))
    with pytest.raises(ValueError, match="aug_fill"):
        G.GpuBatches(data, torch.device("cpu"), 8, True, "albumentations", 1, fill="edge")


def test_importing_the_pipelines_loads_neither_torchvision_nor_albumentations() -> None:
    code = (
        "import sys, wrn.augment_spec\n"
        "assert 'torch' not in sys.modules\n"
        "import wrn.augment, wrn.gpu_data, wrn.gpu_augment\n"
        "print(sorted(m for m in ('torchvision', 'albumentations', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_wrn_turns_off_the_albumentations_update_check() -> None:
    # albumentations asks PyPI for a newer version on import (DNS is not under its 2 s
    # timeout): an offline GPU node would wait; a user's own setting is kept
    code = "import os, wrn; print(os.environ.get('NO_ALBUMENTATIONS_UPDATE'))"
    for given, expected in ((None, "1"), ("0", "0")):
        env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
        if given is not None:
            env["NO_ALBUMENTATIONS_UPDATE"] = given
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("fill", AUG_FILLS)
def test_every_configured_augmentation_runs_on_both_pipelines(fill: str) -> None:
    """Each name and fill the config accepts is implemented by the CPU and the GPU pipeline,
    and the GPU pipeline implements nothing the config would refuse."""
    assert set(G.DERIVERS) == set(GA.APPLIERS) == set(G.COLUMNS) == set(AUGMENTATIONS)
    image = image_set(1).images[0]
    for name in AUGMENTATIONS:
        cpu = build_transform(name, True, fill=fill)(image)
        gpu = G.augment_batch(random_u8(2), name, gen(), fill=fill)
        assert cpu.shape == gpu.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
        assert cpu.dtype == gpu.dtype == torch.float32
    assert tuple(v2.RandAugment._AUGMENTATION_SPACE) == RANDAUGMENT_OPS


@pytest.mark.parametrize("fill", S.AUG_FILLS)
@pytest.mark.parametrize("extra_rotate", [True, False])
def test_cpu_albumentations_pipeline_reads_the_spec(fill: str, extra_rotate: bool) -> None:
    steps = albumentations_pipeline(fill, extra_rotate).transforms
    by_name = {type(t).__name__: t for t in steps}
    border = {"zero": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}[fill]
    assert ("Rotate" in by_name) == extra_rotate
    if extra_rotate:
        rotate = by_name["Rotate"]
        assert rotate.limit == (-S.ROTATE.limit, S.ROTATE.limit) and rotate.p == S.ROTATE.p
        assert rotate.border_mode == border
    assert by_name["PadIfNeeded"].min_height == 32 + 2 * S.CROP_FLIP.padding
    assert by_name["PadIfNeeded"].border_mode == cv2.BORDER_CONSTANT  # the crop pads with 0
    assert by_name["HorizontalFlip"].p == S.CROP_FLIP.flip_p
    affine = by_name["Affine"]
    assert affine.p == S.AFFINE.p and affine.keep_ratio and affine.border_mode == border
    assert affine.translate_percent["x"] == (-S.AFFINE.shift, S.AFFINE.shift)
    assert affine.scale["x"] == S.AFFINE.scale
    assert affine.rotate == (-S.AFFINE.rotate, S.AFFINE.rotate)
    one_of = by_name["OneOf"]
    assert one_of.p == S.ONE_OF.p
    dropout, noise = one_of.transforms
    assert dropout.hole_height_range == S.ONE_OF.hole_range == dropout.hole_width_range
    assert dropout.num_holes_range == (S.ONE_OF.holes,) * 2 and dropout.fill == 0
    assert noise.std_range == S.ONE_OF.noise_std_range and noise.per_channel
    transform = build_transform("albumentations", True, fill=fill, extra_rotate=extra_rotate)
    assert [type(t) for t in transform.compose.transforms] == [type(t) for t in steps]
    with pytest.raises(ValueError, match="aug_fill"):
        build_transform("basic", True, fill="mirror")


def test_cpu_light_pipeline_and_gpu_levels_read_the_spec() -> None:
    light = {type(t).__name__: t for t in randaugment_pipeline().transforms}
    ra = light["RandAugment"]
    spec = S.RANDAUGMENT
    assert (ra.num_ops, ra.magnitude, ra.num_magnitude_bins) == (
        spec.num_ops,
        spec.magnitude,
        spec.bins,
    )
    levels = {
        k: float(fn(spec.bins, 32, 32)[spec.magnitude])
        for k, (fn, _) in v2.RandAugment._AUGMENTATION_SPACE.items()
        if fn(spec.bins, 32, 32) is not None
    }
    assert levels["ShearX"] == GA.RA_SHEAR and levels["Rotate"] == GA.RA_ROTATE
    assert int(levels["TranslateX"]) == GA.RA_TRANSLATE and levels["Color"] == GA.RA_ENHANCE
    assert int(levels["Posterize"]) == GA.RA_POSTERIZE_BITS
    assert levels["Solarize"] * 255 == GA.RA_SOLARIZE
    jitter = light["ColorJitter"]
    assert jitter.brightness == (1 - S.JITTER.brightness, 1 + S.JITTER.brightness)
    assert jitter.contrast == (1 - S.JITTER.contrast, 1 + S.JITTER.contrast)
    assert jitter.saturation == (1 - S.JITTER.saturation, 1 + S.JITTER.saturation)
    assert light["RandomCrop"].padding == [S.CROP_FLIP.padding] * 4
    erasing = light["RandomErasing"]
    assert (erasing.p, erasing.scale, erasing.ratio) == (
        S.ERASING.p,
        S.ERASING.scale,
        S.ERASING.ratio,
    )


def test_a_failing_compile_falls_back_to_eager_with_the_same_draws() -> None:
    data = image_set(32)
    eager = G.GpuBatches(data, torch.device("cpu"), 16, True, "basic", 2)
    broken = G.GpuBatches(
        data, torch.device("cpu"), 16, True, "basic", 2, compile=True, compile_backend="nope"
    )
    with pytest.warns(RuntimeWarning, match="augmenting eagerly"):
        got = list(broken)
    for (a, la), (b, lb) in zip(eager, got, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
