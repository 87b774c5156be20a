"""Network in Network (Lin, Chen, Yan, ICLR 2014), the ImageNet model: four mlpconv blocks ending in GAP.

torchvision has no NIN, so it is defined here in the same style. An mlpconv block is a k x k conv followed
by two 1x1 convs ("cccp" layers in the Caffe release), each with ReLU. Pools are 3x3 stride-2 max pools
with ceil rounding, as in Caffe: at 224 input 54 -> 27 -> 13 -> 6, a 6x6 CAM.

NIN's last layer is a 1x1 conv to `num_classes` maps followed by GAP. A 1x1 conv commutes with spatial
averaging, so mean_xy(W f(x, y) + b) = W mean_xy f(x, y) + b: GAP then a linear layer is the same function.
Here `features` end at the 1024-channel maps and GlobalPoolNet's `classifier` *is* that last 1x1 conv, so
the CAM contract holds unchanged. (The Caffe release puts a ReLU on the class maps before pooling; it is
dropped, as it would break that identity and the CAM's linearity.) Under GMP the two orders differ; NIN
is a GAP network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

from camexp.models.heads import GlobalPoolNet
from camexp.models.registry import register
from camexp.models.weights import load_weights


def mlpconv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """k x k conv + two 1x1 convs, each followed by ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1),
        nn.ReLU(inplace=True),
    )


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


@register("nin")
def nin(
    num_classes: int, pool: str = "avg", dropout: float = 0.0, pretrained: bool = False, weights_path=None, **_
) -> GlobalPoolNet:
    """ImageNet NIN. `dropout` adds dropout after GAP (not in NIN; leave 0); NIN's own 0.5 dropout is built in."""
    features = nn.Sequential(
        OrderedDict(
            [
                ("mlpconv1", mlpconv(3, 96, 11, stride=4)),  # N x 96 x 54 x 54
                ("pool1", _pool()),  # N x 96 x 27 x 27
                ("mlpconv2", mlpconv(96, 256, 5, padding=2)),
                ("pool2", _pool()),  # N x 256 x 13 x 13
                ("mlpconv3", mlpconv(256, 384, 3, padding=1)),
                ("pool3", _pool()),  # N x 384 x 6 x 6
                ("dropout", nn.Dropout(0.5)),
                # conv4-1024 3x3 + cccp7-1024 1x1 (the last cccp to num_classes is `classifier`)
                ("mlpconv4", nn.Sequential(*list(mlpconv(384, 1024, 3, padding=1))[:4])),  # N x 1024 x 6 x 6
            ]
        )
    )
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    # Trained from scratch: no layer is added on top of pretrained ones, so the new-layer lr multiplier is moot.
    net = GlobalPoolNet(features, 1024, num_classes, pool=pool, dropout=dropout, new_modules=())
    return load_weights(net, "nin", None, pretrained, weights_path)
