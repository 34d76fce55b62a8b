"""MixUp / CutMix: mixing arithmetic, λ, probabilities, loss, weighted accuracy, seeding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)

from wrn.mixing import MixedBatch, mix_batch, sample_beta

N, C, H, W = 8, 3, 32, 32


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct random images; label i at index i, so targets_b reveals the permutation."""
    images = torch.randn(N, C, H, W, generator=torch.Generator().manual_seed(seed))
    return images, torch.arange(N)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_probability_zero_is_none_and_unchanged() -> None:
    images, targets = batch()
    state = torch.get_rng_state()
    mixed = mix_batch(images, targets, mixup_prob=0.0, cutmix_prob=0.0, alpha=1.0)
    assert mixed.kind == "none" and mixed.lam == 1.0
    assert torch.equal(mixed.images, images)
    assert torch.equal(mixed.targets_a, targets) and torch.equal(mixed.targets_b, targets)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn


@pytest.mark.parametrize(
    ("mixup_prob", "cutmix_prob", "kind"),
    [(1.0, 0.0, "mixup"), (0.0, 1.0, "cutmix"), (1.0, 1.0, "cutmix")],
)
def test_probability_one_always_that_kind(
    mixup_prob: float, cutmix_prob: float, kind: str
) -> None:
    images, targets = batch()
    generator = seeded(0)
    for _ in range(30):
        assert mix_batch(images, targets, mixup_prob, cutmix_prob, 1.0, generator).kind == kind


def test_kind_frequencies() -> None:
    images, targets = torch.rand(2, 1, 4, 4), torch.arange(2)
    generator = seeded(1)
    kinds = [mix_batch(images, targets, 0.5, 0.4, 1.0, generator).kind for _ in range(3000)]
    # CutMix 0.4; MixUp 0.6 * 0.5 = 0.3; none 0.3.
    assert kinds.count("cutmix") / 3000 == pytest.approx(0.4, abs=0.04)
    assert kinds.count("mixup") / 3000 == pytest.approx(0.3, abs=0.04)


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_lambda_is_beta(alpha: float) -> None:
    generator = seeded(2)
    draws = torch.tensor([sample_beta(alpha, generator) for _ in range(4000)])
    assert ((draws >= 0) & (draws <= 1)).all()
    assert draws.mean().item() == pytest.approx(0.5, abs=0.02)
    assert draws.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.1)


def test_mixup_is_convex_combination_with_partner() -> None:
    images, targets = batch()
    for seed in range(5):
        mixed = mix_batch(images, targets, 1.0, 0.0, 1.0, seeded(seed))
        assert mixed.kind == "mixup" and 0.0 <= mixed.lam <= 1.0
        perm = mixed.targets_b
        assert sorted(perm.tolist()) == list(range(N))
        expected = mixed.lam * images + (1 - mixed.lam) * images[perm]
        torch.testing.assert_close(mixed.images, expected)
        assert torch.equal(mixed.targets_a, targets)


def test_cutmix_lambda_is_fraction_unchanged() -> None:
    images, targets = batch()
    lams = []
    for seed in range(60):
        mixed = mix_batch(images, targets, 0.0, 1.0, 1.0, seeded(seed))
        assert mixed.kind == "cutmix"
        perm = mixed.targets_b
        moved = perm != targets  # self-paired images cannot change
        assert moved.any()
        changed = (mixed.images != images).any(dim=1)  # (N, H, W) per pixel
        unchanged = 1 - changed[moved].float().mean(dim=(1, 2))
        torch.testing.assert_close(unchanged, torch.full_like(unchanged, mixed.lam))
        # The pasted pixels are the partner's, in the same box for every image.
        box = changed[moved][0]
        assert (changed[moved] == box).all()
        torch.testing.assert_close(mixed.images[:, :, box], images[perm][:, :, box])
        lams.append(mixed.lam)
    # Boxes vary, and clipped boxes near the border give λ above the sampled value.
    assert len(set(lams)) > 30


def test_input_not_modified() -> None:
    images, targets = batch()
    images_copy, targets_copy = images.clone(), targets.clone()
    for mixup_prob, cutmix_prob in ((1.0, 0.0), (0.0, 1.0)):
        mixed = mix_batch(images, targets, mixup_prob, cutmix_prob, 1.0, seeded(3))
        assert mixed.images.data_ptr() != images.data_ptr()
        assert torch.equal(images, images_copy) and torch.equal(targets, targets_copy)


def test_generator_reproducible_and_leaves_global_rng_alone() -> None:
    images, targets = batch()
    state = torch.get_rng_state()
    runs = [
        [mix_batch(images, targets, 0.5, 0.5, 1.0, generator) for _ in range(10)]
        for generator in (seeded(11), seeded(11))
    ]
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(*runs, strict=True):
        assert (a.kind, a.lam) == (b.kind, b.lam)
        assert torch.equal(a.images, b.images) and torch.equal(a.targets_b, b.targets_b)
    other = [mix_batch(images, targets, 0.5, 0.5, 1.0, seeded(12)) for _ in range(10)]
    assert [m.lam for m in other] != [m.lam for m in runs[0]]


def test_global_rng_reproducible() -> None:
    images, targets = batch()
    results = []
    for _ in range(2):
        torch.manual_seed(5)
        results.append(mix_batch(images, targets, 0.0, 1.0, 1.0))
    assert results[0].lam == results[1].lam
    assert torch.equal(results[0].images, results[1].images)


def test_soft_targets_rows_sum_to_one() -> None:
    images, targets = batch()
    for mixup_prob, cutmix_prob in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        mixed = mix_batch(images, targets, mixup_prob, cutmix_prob, 1.0, seeded(4))
        soft = mixed.soft_targets(10)
        assert soft.shape == (N, 10) and soft.dtype == torch.float32
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(N))
        expected = mixed.lam * F.one_hot(targets, 10) + (1 - mixed.lam) * F.one_hot(
            mixed.targets_b, 10
        )
        torch.testing.assert_close(soft, expected.float())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_is_lambda_weighted_cross_entropy(smoothing: float) -> None:
    images, targets = batch()
    logits = torch.randn(N, 10, generator=seeded(5))
    for mixup_prob, cutmix_prob in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        mixed = mix_batch(images, targets, mixup_prob, cutmix_prob, 1.0, seeded(6))
        expected = mixed.lam * F.cross_entropy(logits, targets, label_smoothing=smoothing) + (
            1 - mixed.lam
        ) * F.cross_entropy(logits, mixed.targets_b, label_smoothing=smoothing)
        torch.testing.assert_close(mixed.loss(logits, smoothing), expected)
        # Same as CE against the smoothed soft targets (CE is linear in the target).
        soft = mixed.soft_targets(10) * (1 - smoothing) + smoothing / 10
        torch.testing.assert_close(mixed.loss(logits, smoothing), F.cross_entropy(logits, soft))


def test_correct_is_mix_weighted_accuracy() -> None:
    logits = torch.tensor(
        [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]
    )  # predictions 0, 1, 2, 0
    mixed = MixedBatch(
        images=torch.zeros(4, 1, 2, 2),
        targets_a=torch.tensor([0, 1, 0, 2]),
        targets_b=torch.tensor([1, 1, 2, 0]),
        lam=0.7,
        kind="mixup",
    )
    # Row scores: a only 0.7; both 1.0; b only 0.3; b only 0.3.
    correct = mixed.correct(logits)
    assert isinstance(correct, torch.Tensor) and correct.ndim == 0
    assert correct.item() == pytest.approx(2.3)
    unmixed = MixedBatch(mixed.images, mixed.targets_a, mixed.targets_a, 1.0, "none")
    assert unmixed.correct(logits).item() == 2.0


def test_rejects_bad_arguments() -> None:
    images, targets = batch()
    with pytest.raises(ValueError, match="mixup_prob"):
        mix_batch(images, targets, 1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        mix_batch(images, targets, 0.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="targets"):
        mix_batch(images, targets[:3], 0.5, 0.0, 1.0)
