"""The tiny network every CPU test trains, written once: as config values (``TINY``) and as
the ``--set`` flags of a study command (``tiny_flags``)."""

from __future__ import annotations

# a WRN-10-1 on a few hundred images: the whole training path in well under a second per epoch
TINY = {
    "depth": 10,
    "width": 1,
    "batch_size": 32,
    "epochs": 2,
    "workers": 0,
    "device": "cpu",
    "augmentation": "basic",
    "mixup_prob": 0.0,
    "cutmix_prob": 0.0,
    "lr": 0.1,
}
# what every tiny study fixes: the network, its batch and no loader processes
NETWORK_KEYS = ("depth", "width", "batch_size", "workers")


def tiny_flags(*keys: str) -> list[str]:
    """``--set KEY=VALUE`` with TINY's values for the network keys, then for ``keys``."""
    return [flag for key in (*NETWORK_KEYS, *keys) for flag in ("--set", f"{key}={TINY[key]}")]
