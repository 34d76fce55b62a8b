"""How a study was produced: the code version, the package versions and the device's name.

``study.records.mark_study`` writes the first two on every study, the lifecycle the device's
name on every trial. They live apart from ``study.records`` because finding them out is work
(a ``git`` subprocess, package metadata, a CUDA query that imports torch), while the records
only name and read what was written, and import nothing heavy.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGES = ("torch", "torchvision", "optuna", "albumentations", "numpy", "sqlalchemy", "plotly")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git(*args: str) -> str:
    """``git ARGS`` in this checkout: its output, stripped."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def code_version() -> str:
    """The git commit of this checkout (``+dirty`` if changed), else the package version."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return "wrn-study " + importlib.metadata.version("wrn-study")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine() or "cpu"
