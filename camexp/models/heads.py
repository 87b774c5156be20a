"""The one contract every CAM network follows: features -> global pooling (avg | max) -> linear.

`forward_features` returns the unpooled last conv maps (what CAMs are made of), `forward_head` pools
and classifies; `classifier.weight` (C x K) are the w_k^c of the paper. Networks whose head is not a
single linear layer over pooled maps (the FC baselines) set `cam_capable = False`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def global_pool(features: Tensor, pool: str) -> Tensor:
    """N x K x h x w -> N x K by global average (GAP) or max (GMP) pooling."""
    if pool == "avg":
        return features.mean(dim=(2, 3))
    if pool == "max":
        return features.amax(dim=(2, 3))
    raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")


class GlobalPoolNet(nn.Module):
    """features -> GAP/GMP -> (dropout) -> linear."""

    cam_capable = True

    def __init__(
        self,
        features: nn.Module,
        feature_channels: int,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.0,
        new_modules: tuple[str, ...] = ("classifier",),
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.features = features
        self.pool = pool
        self.feature_channels = feature_channels
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(feature_channels, num_classes)
        self.new_modules = new_modules  # names of modules not covered by pretrained weights
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x K x h x w

    def forward_head(self, features: Tensor) -> Tensor:
        return self.classifier(self.dropout(global_pool(features, self.pool)))  # N x C

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class ChannelAffine(nn.Module):
    """x * scale_c + shift_c per input channel; identity until `set_`; buffers, so it is saved and loaded."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(1, channels, 1, 1))
        self.register_buffer("shift", torch.zeros(1, channels, 1, 1))

    def set_(self, scale: tuple[float, ...], shift: tuple[float, ...]) -> None:
        self.scale.copy_(torch.tensor(scale).view_as(self.scale))
        self.shift.copy_(torch.tensor(shift).view_as(self.shift))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift
