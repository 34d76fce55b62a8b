"""Wide Residual Network training library (CIFAR-100). Never imports Optuna."""

import os

# albumentations asks PyPI for a newer version when imported, a wait on a machine without
# network (its timeout does not cover DNS); set before any module here imports it
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from wrn.config import ConfigError, TrainConfig

__all__ = ["ConfigError", "TrainConfig"]
