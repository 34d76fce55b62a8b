"""Wide Residual Network (Zagoruyko & Komodakis, 2016) with pre-activation BasicBlocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)
from torch import nn

from wrn.config import DROPOUT_POSITIONS, ConfigError, ModelConfig, valid_depth


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose probability enters a compiled graph as an input, not a constant.

    A study's trials differ in p: as a constant, each would compile its own graphs; as a
    (non-persistent) buffer, trials of one depth and width share them. Eagerly this is
    ``F.dropout`` (one fused kernel on CUDA); compiled, the same distribution written out:
    keep where a float32 uniform draw >= p, scale by 1 / (1 - p).
    """

    def __init__(self, p: float) -> None:
        super().__init__(p)
        # not saved: checkpoints keep their keys, and the run's config holds p
        self.register_buffer("p_tensor", torch.tensor(float(p)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if torch.compiler.is_compiling():
            keep = torch.rand(x.shape, device=x.device) >= self.p_tensor
            return x * keep / (1.0 - self.p_tensor)
        return F.dropout(x, self.p, training=True)


class BasicBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus an identity or 1x1 projection shortcut.

    Dropout sits "between" the two convs (after the second BN-ReLU, as in the WRN paper's code)
    or "after" the second conv, before the residual add.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        dropout: float,
        dropout_position: str = "between",
    ) -> None:
        super().__init__()
        if dropout_position not in DROPOUT_POSITIONS:
            raise ConfigError(f"dropout_position: must be one of {DROPOUT_POSITIONS}")
        self.dropout_after = dropout_position == "after"
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_ch != out_ch or stride != 1:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        # a projection shortcut sees the pre-activated input, as in the original WRN code
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = torch.relu(self.bn2(self.conv1(pre)))
        if self.dropout_after:
            return self.dropout(self.conv2(out)) + residual
        return self.conv2(self.dropout(out)) + residual


class WideResNet(nn.Module):
    """WRN-depth-width: a 16-channel stem, then 3 stages of n blocks of 16k, 32k, 64k channels."""

    def __init__(
        self,
        depth: int = 28,
        width: int = 10,
        dropout: float = 0.3,
        first_dropout: float = 0.0,
        num_classes: int = 100,
        dropout_position: str = "between",
    ) -> None:
        super().__init__()
        if not valid_depth(depth):
            raise ConfigError(f"depth: must be 6n+4 with n >= 1, got {depth}")
        if width < 1:
            raise ConfigError(f"width: must be >= 1, got {width}")
        n = (depth - 4) // 6
        channels = (16, 16 * width, 32 * width, 64 * width)
        self.stem = nn.Conv2d(3, channels[0], 3, padding=1, bias=False)
        self.stem_dropout = Dropout(first_dropout) if first_dropout > 0 else nn.Identity()
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [
                BasicBlock(
                    channels[i] if j == 0 else channels[i + 1],
                    channels[i + 1],
                    stride if j == 0 else 1,
                    dropout,
                    dropout_position,
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        self.num_features = channels[3]
        self._init_weights()

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> WideResNet:
        return cls(
            cfg.depth,
            cfg.width,
            cfg.dropout,
            cfg.first_dropout,
            cfg.num_classes,
            cfg.dropout_position,
        )

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N,3,H,W) -> final feature map (N, 64*width, H/4, W/4), activated."""
        x = self.stem_dropout(self.stem(x))
        x = self.stages(x)
        return torch.relu(self.bn(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map -> logits (N, num_classes)."""
        # the global average pool as a mean: adaptive_avg_pool2d's CUDA backward has no
        # deterministic kernel (torch.use_deterministic_algorithms refuses it)
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
