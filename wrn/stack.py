"""The installed torch and torchvision must import together: a torchvision built for another
torch (pip mixing a CPU torch with a CUDA torchvision) fails only when a transform is first built,
which is inside a trial, so the commands check it once at start."""

from __future__ import annotations

from importlib import metadata


class StackError(RuntimeError):
    """torch and torchvision do not import together; the message names both versions."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def check_torchvision() -> None:
    """Import torchvision's transforms, or raise one line naming both versions and the fix."""
    try:
        from torchvision.transforms import v2  # noqa: F401 (what the pipelines use)
    except Exception as e:  # the mismatch shows as RuntimeError, ImportError or AttributeError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StackError(
            f"torch {_version('torch')} and torchvision {_version('torchvision')} do not import "
            f"together ({reason}); install both from one index: "
            "pip install --force-reinstall torch torchvision"
        ) from None
