"""AlexNet-GAP, AlexNet*-GAP (paper and release variants) and the original AlexNet, cut from torchvision's AlexNet.

torchvision `features` indices: 0 conv1 (64), 3 conv2 (192), 6 conv3 (384), 8 conv4 (256), 10 conv5 (256),
each + ReLU; 2/5/12 max pools.
At 224 input: conv1 55x55 -> pool 27 -> conv2 27 -> pool 13 -> conv3..conv5 13x13 -> pool5 6x6.

`alexnet_small_gap` / `alexnet_small` are the CPU-sized versions `make reproduce` trains from scratch: the same
five conv layers (kernels, strides, pools) at a fraction of the width, with batch norm.
"""

from __future__ import annotations

import torch.nn as nn
import torchvision

from camexp.errors import CamexpError
from camexp.models.registry import register
from camexp.models.surgery import (
    AddedConvNet,
    FCNet,
    added_convs,
    fc_rename,
    features_only_rename,
    materialize,
    new_class_layer,
    require_avg_pool,
    torchvision_meta,
)
from camexp.models.weights import PretrainedLayout, load_weights

_GAP_LAYOUT = PretrainedLayout("alexnet", features_only_rename, fresh=("added.", "classifier."))


def _conv1_to_conv5() -> nn.Sequential:
    """torchvision AlexNet up to conv5 + ReLU (pool5 and the FC layers removed): N x 256 x 13 x 13 at 224."""
    return materialize(torchvision_meta("alexnet").features[:12])


@register("alexnet_gap")
def alexnet_gap(
    num_classes: int, pool: str = "avg", dropout: float = 0.0, pretrained: bool = False, weights_path=None, **_
) -> AddedConvNet:
    """AlexNet-GAP: conv1..conv5, + conv 3x3/1/1 1024 + ReLU, GAP, linear. 13x13 CAM at 224."""
    net = AddedConvNet(_conv1_to_conv5(), added_convs(256, (1024,)), num_classes, pool=pool, dropout=dropout)
    return load_weights(net, "alexnet_gap", _GAP_LAYOUT, pretrained, weights_path)


@register("alexnet_star_gap")
def alexnet_star_gap(
    num_classes: int, pool: str = "avg", dropout: float = 0.0, pretrained: bool = False, weights_path=None, **_
) -> AddedConvNet:
    """AlexNet*-GAP as the paper describes it: conv1..conv5, + two conv 3x3/1/1 1024 + ReLU, GAP, linear.

    13x13 CAM at 224 (the paper: a higher mapping resolution localizes better); all five pretrained conv
    layers are kept, so only the two added layers and the classifier are new.
    """
    net = AddedConvNet(_conv1_to_conv5(), added_convs(256, (1024, 1024)), num_classes, pool=pool, dropout=dropout)
    return load_weights(net, "alexnet_star_gap", _GAP_LAYOUT, pretrained, weights_path)


def _release_rename(tv_key: str) -> str | None:
    # conv5 is replaced by a 384-unit conv (part of `added`), the FC head is dropped
    return None if tv_key.startswith(("features.10.", "classifier.")) else tv_key


@register("alexnet_star_gap_release")
def alexnet_star_gap_release(
    num_classes: int, pool: str = "avg", dropout: float = 0.0, pretrained: bool = False, weights_path=None, **_
) -> AddedConvNet:
    """AlexNet*-GAP as in the official release ("AlexNet+"): 11x11 CAM at 224.

    conv1..conv4 kept; conv5 with 384 units (new), pool5 as a 3x3 stride-1 max pool (13 -> 11), two added
    conv 3x3/1/1 with 512 units, GAP, linear.
    """
    features = materialize(torchvision_meta("alexnet").features[:10])  # conv1..conv4 + ReLU: N x 256 x 13 x 13
    conv5 = added_convs(256, (384,))  # conv5 with 384 units instead of 256
    added = nn.Sequential(*conv5, nn.MaxPool2d(3, stride=1), *added_convs(384, (512, 512)))  # N x 512 x 11 x 11
    net = AddedConvNet(features, added, num_classes, pool=pool, dropout=dropout)
    layout = PretrainedLayout("alexnet", _release_rename, fresh=("added.", "classifier."))
    return load_weights(net, "alexnet_star_gap_release", layout, pretrained, weights_path)


@register("alexnet")
def alexnet(
    num_classes: int, pool: str = "avg", dropout: float = 0.5, pretrained: bool = False, weights_path=None, **_
) -> FCNet:
    """The original AlexNet (torchvision's definition) with its FC head: classification only, no CAM."""
    require_avg_pool(pool, "alexnet")
    tv = torchvision.models.alexnet(weights=None, dropout=dropout)
    net = FCNet(tv.features[:12], tv.features[12], tv.avgpool, tv.classifier[:6], new_class_layer(4096, num_classes))
    layout = PretrainedLayout("alexnet", fc_rename, class_layer=("fc8.",))
    return load_weights(net, "alexnet", layout, pretrained, weights_path)


ALEXNET_WIDTH = 64  # conv1's channels; conv2..conv5 have 3x, 6x, 4x, 4x as many


def _small_conv1_to_conv5(width: int) -> tuple[nn.Sequential, int]:
    """AlexNet's conv1..conv5 + ReLU (pool5 dropped) at `width`/64 of its channels, each conv followed by
    batch norm (from scratch in a few CPU minutes). 7x7 maps at 128 input, 6x6 at 112 (13x13 at 224)."""
    if not 4 <= width <= ALEXNET_WIDTH:
        raise CamexpError(
            f"model.width={width} is out of range for alexnet_small*: 4..{ALEXNET_WIDTH} (conv1's channels)."
        )
    c1, c2, c3, c4, c5 = (width * m // 4 for m in (4, 12, 24, 16, 16))

    def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
        layer = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        return [layer, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    features = nn.Sequential(
        *conv(3, c1, 11, 4, 2), nn.MaxPool2d(3, 2),
        *conv(c1, c2, 5, padding=2), nn.MaxPool2d(3, 2),
        *conv(c2, c3, 3, padding=1), *conv(c3, c4, 3, padding=1), *conv(c4, c5, 3, padding=1),
    )  # fmt: skip
    return features, c5


def _no_weights(name: str, pretrained: bool, weights_path) -> None:
    if pretrained or weights_path:
        raise CamexpError(
            f"{name} has no pretrained weights: it is a width-reduced AlexNet with batch norm, trained from scratch. "
            f"Set model.pretrained=false (and no model.weights_path), or use alexnet_gap / alexnet (ImageNet weights)."
        )


@register("alexnet_small_gap")
def alexnet_small_gap(
    num_classes: int,
    pool: str = "avg",
    width: int = 16,
    dropout: float = 0.0,
    pretrained: bool = False,
    weights_path=None,
    **_,
) -> AddedConvNet:
    """AlexNet-GAP at CPU size: conv1..conv5 at width/64 (+ batch norm), + conv 3x3/1/1 with 16 * width units
    (1024 at full width) + ReLU, GAP | GMP, linear."""
    _no_weights("alexnet_small_gap", pretrained, weights_path)
    features, channels = _small_conv1_to_conv5(width)
    return AddedConvNet(features, added_convs(channels, (16 * width,)), num_classes, pool=pool, dropout=dropout)


@register("alexnet_small")
def alexnet_small(
    num_classes: int,
    pool: str = "avg",
    width: int = 16,
    dropout: float = 0.5,
    pretrained: bool = False,
    weights_path=None,
    **_,
) -> FCNet:
    """AlexNet at CPU size: the conv layers of alexnet_small_gap, pool5, a 3x3 average pool (torchvision: 6x6
    at 224), fc6/fc7 with 64 * width units each (4096 at full width) + ReLU + dropout, fc8. No CAM."""
    require_avg_pool(pool, "alexnet_small")
    _no_weights("alexnet_small", pretrained, weights_path)
    features, channels = _small_conv1_to_conv5(width)
    hidden = 64 * width
    fc = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(channels * 9, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
    )  # torchvision's order: dropout before fc6 and fc7
    return FCNet(features, nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d(3), fc, new_class_layer(hidden, num_classes))
