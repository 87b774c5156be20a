"""SynthNet: a small all-conv GAP network sized for a laptop CPU (the embedded default experiment).

Four 3x3 conv blocks with batch norm, downsampling early so it trains at ~70 img/s on 2 cores
(total stride 8: a 16x16 CAM at 128 input), then the paper's
added 3x3 conv with ReLU before global pooling.
"""

from __future__ import annotations

import torch.nn as nn

from camexp.models.heads import GlobalPoolNet
from camexp.models.registry import register
from camexp.models.weights import load_weights


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@register("synthnet")
def synthnet(
    num_classes: int,
    pool: str = "avg",
    width: int = 32,
    dropout: float = 0.0,
    pretrained: bool = False,
    weights_path: str | None = None,
    **_,
) -> GlobalPoolNet:
    w = width
    features = nn.Sequential(
        *_conv_block(3, w, stride=2),  # N x w x S/2 x S/2
        nn.MaxPool2d(2),  # N x w x S/4 x S/4
        *_conv_block(w, 2 * w),
        *_conv_block(2 * w, 4 * w),
        nn.MaxPool2d(2),  # N x 4w x S/8 x S/8
        *_conv_block(4 * w, 4 * w),
        nn.Conv2d(4 * w, 8 * w, 3, 1, 1),  # the CAM layer (paper: 3x3/1/1 conv + ReLU before GAP)
        nn.ReLU(inplace=True),  # N x 8w x S/8 x S/8
    )
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    net = GlobalPoolNet(features, 8 * w, num_classes, pool=pool, dropout=dropout)
    return load_weights(net, "synthnet", None, pretrained, weights_path)  # no ImageNet weights: pretrained errors
