"""What a WideResNet config means without building it: its name and its parameter count.

Plain Python (no torch), for the cost caps, the reports and the trial records alike.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wrn.config import ModelConfig


def network_name(depth: int, width: int) -> str:
    """``WRN-28-10``: the one spelling of a network's name."""
    return f"WRN-{depth}-{width}"


def count_params(model: ModelConfig) -> int:
    """Parameters of the WideResNet ``model`` describes, counted without torch or allocation.

    What trials record and what cost caps compare: a closed form, so that reading a space or
    refusing bad input imports no torch (a test checks it against ``wrn.model.WideResNet``).
    """
    return _count_params(model.depth, model.width, model.num_classes)


@functools.cache
def _count_params(depth: int, width: int, num_classes: int) -> int:
    n = (depth - 4) // 6  # blocks per stage
    widths = (16, 16 * width, 32 * width, 64 * width)
    total = 3 * widths[0] * 9  # the 3x3 stem conv, no bias
    for stage in range(3):
        c_in, c_out = widths[stage], widths[stage + 1]
        for block in range(n):
            first = c_in if block == 0 else c_out
            total += 2 * first + first * c_out * 9  # BN (weight, bias) and conv1
            total += 2 * c_out + c_out * c_out * 9  # BN and conv2
            if block == 0 and (stage > 0 or first != c_out):  # stride 2 or wider: 1x1 conv
                total += first * c_out
    return total + 2 * widths[3] + widths[3] * num_classes + num_classes  # final BN and fc
