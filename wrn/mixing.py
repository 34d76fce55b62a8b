"""Batch-level MixUp / CutMix, with the matching loss and mix-weighted training accuracy.

Per batch (see ``MixConfig``): CutMix with probability ``cutmix_prob``; otherwise MixUp with
probability ``mixup_prob``; otherwise the batch is left alone. Both mix each image with a
partner from a random permutation of the batch, weighted by λ ~ Beta(alpha, alpha).

Every random draw comes from ``generator`` (a CPU ``torch.Generator``) when one is given,
else from torch's global RNG, so a seeded run mixes the same way every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)


@dataclass
class MixedBatch:
    """A (possibly) mixed batch: the loss target is ``lam`` * a + (1 - ``lam``) * b."""

    images: torch.Tensor  # (N, C, H, W), mixed
    targets_a: torch.Tensor  # (N,) int64 original labels
    targets_b: torch.Tensor  # (N,) int64 partner labels
    lam: float  # weight of targets_a (1.0 when not mixed)
    kind: str  # "none" | "mixup" | "cutmix"

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """(N, num_classes) float32 label distributions; each row sums to 1."""
        soft = F.one_hot(self.targets_a, num_classes).to(torch.float32)
        if self.lam == 1.0:
            return soft
        partner = F.one_hot(self.targets_b, num_classes).to(torch.float32)
        return soft.mul_(self.lam).add_(partner, alpha=1.0 - self.lam)

    def loss(self, logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        """Mean label-smoothed cross-entropy against the mixed targets.

        Cross-entropy is linear in the target distribution, so this equals the CE against
        ``soft_targets`` smoothed the same way.
        """
        loss_a = F.cross_entropy(logits, self.targets_a, label_smoothing=label_smoothing)
        if self.lam == 1.0:
            return loss_a
        loss_b = F.cross_entropy(logits, self.targets_b, label_smoothing=label_smoothing)
        return self.lam * loss_a + (1.0 - self.lam) * loss_b

    def correct(self, logits: torch.Tensor) -> torch.Tensor:
        """Mix-weighted number of correct predictions (a float32 scalar on logits' device).

        Each sample scores ``lam`` for predicting its own label and ``1 - lam`` for its
        partner's: the "true" training accuracy of the WRN-28-10 recipe's note, rather than
        the inflated one that ignores the mixing. No ``.item()``, so no device sync.
        """
        pred = logits.argmax(dim=1)
        hits = (pred == self.targets_a).to(torch.float32).mul_(self.lam)
        if self.lam != 1.0:
            hits.add_((pred == self.targets_b).to(torch.float32), alpha=1.0 - self.lam)
        return hits.sum()


def sample_beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """One draw of Beta(alpha, alpha) as X / (X + Y) with X, Y ~ Gamma(alpha, 1).

    ``torch.distributions.Beta`` cannot take a generator; ``torch._standard_gamma`` can.
    """
    concentration = torch.full((2,), float(alpha), dtype=torch.float64)
    x, y = torch._standard_gamma(concentration, generator=generator).tolist()
    if x + y > 0.0:
        return x / (x + y)
    # Both gammas underflowed (alpha ~< 0.01): Beta(alpha, alpha) is then ~ a fair coin on
    # {0, 1}.
    return float(torch.rand((), generator=generator).item() < 0.5)


def _uniform(generator: torch.Generator | None) -> float:
    return torch.rand((), generator=generator).item()


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (), generator=generator).item())


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    mixup_prob: float,
    cutmix_prob: float,
    alpha: float,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Maybe CutMix (p = ``cutmix_prob``), else maybe MixUp (p = ``mixup_prob``) a batch.

    ``images`` (N, C, H, W) float, ``targets`` (N,) int64, on any device; neither is
    modified (an unmixed batch returns them as they are, without a copy). CutMix pastes a box
    of area ~(1 - λ)·H·W, centred at a uniform random pixel and clipped to the image, from
    the partner; λ is then recomputed as exactly the fraction of the image not pasted.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (N, C, H, W) tensor, got {images.shape}")
    if targets.shape != images.shape[:1]:
        raise ValueError(f"targets must have shape ({images.shape[0]},), got {targets.shape}")
    for name, prob in (("mixup_prob", mixup_prob), ("cutmix_prob", cutmix_prob)):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {prob}")
    if not alpha > 0.0:
        raise ValueError(f"alpha must be > 0, got {alpha}")

    # A zero probability draws nothing, so runs without mixing keep the RNG stream untouched.
    if cutmix_prob > 0.0 and _uniform(generator) < cutmix_prob:
        kind = "cutmix"
    elif mixup_prob > 0.0 and _uniform(generator) < mixup_prob:
        kind = "mixup"
    else:
        return MixedBatch(images, targets, targets, 1.0, "none")

    lam = sample_beta(alpha, generator)
    perm = torch.randperm(images.shape[0], generator=generator)
    if images.device.type == "cuda":
        # from pinned memory the copy is asynchronous: no wait for the GPU's queued work
        perm = perm.pin_memory()
    image_perm = perm.to(images.device, non_blocking=True)
    targets_b = targets[perm.to(targets.device, non_blocking=True)]

    if kind == "mixup":
        mixed = images.mul(lam).add_(images[image_perm], alpha=1.0 - lam)
        return MixedBatch(mixed, targets, targets_b, lam, kind)

    height, width = images.shape[-2:]
    side = math.sqrt(1.0 - lam)  # box area (1 - λ)·H·W with the image's aspect ratio
    cut_h, cut_w = round(height * side), round(width * side)
    centre_y, centre_x = _randint(height, generator), _randint(width, generator)
    top, left = centre_y - cut_h // 2, centre_x - cut_w // 2
    y1, y2 = max(top, 0), min(top + cut_h, height)
    x1, x2 = max(left, 0), min(left + cut_w, width)

    mixed = images.clone()
    mixed[:, :, y1:y2, x1:x2] = images[image_perm, :, y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
    return MixedBatch(mixed, targets, targets_b, lam, kind)
