"""Wide Residual Network training library (CIFAR-100). Never imports Optuna."""

from wrn.config import ConfigError, TrainConfig

__all__ = ["ConfigError", "TrainConfig"]
