"""The one per-epoch seed formula, shared by the training loop and the GPU data pipeline."""

from __future__ import annotations

import numpy as np


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 62-bit seed, distinct and reproducible per ``(seed, epoch, stream)``.

    A resumed run replays the same epoch. ``stream`` keeps independent users of one
    ``(seed, epoch)`` apart (0: the training loop's dropout and mixing; the GPU pipeline passes
    its own salt), so their random draws are not correlated.
    """
    words = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])
