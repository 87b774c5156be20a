"""VGGnet-GAP and the original VGG16, cut from torchvision's VGG16 (configuration D, no batch norm).

torchvision `features` indices: 28 conv5_3, 29 its ReLU, 30 pool5. At 224 input conv5_3 is 14x14.
"""

from __future__ import annotations

import torchvision

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


@register("vgg16_gap")
def vgg16_gap(
    num_classes: int, pool: str = "avg", dropout: float = 0.0, pretrained: bool = False, weights_path=None, **_
) -> AddedConvNet:
    """VGGnet-GAP: conv1_1..conv5_3 (pool5, FCs removed), + conv 3x3/1/1 1024 + ReLU, GAP, linear. 14x14 CAM."""
    features = materialize(torchvision_meta("vgg16").features[:30], kaiming_convs=True)  # N x 512 x 14 x 14
    net = AddedConvNet(features, added_convs(512, (1024,)), num_classes, pool=pool, dropout=dropout)
    layout = PretrainedLayout("vgg16", features_only_rename, fresh=("added.", "classifier."))
    return load_weights(net, "vgg16_gap", layout, pretrained, weights_path)


@register("vgg16")
def vgg16(
    num_classes: int, pool: str = "avg", dropout: float = 0.5, pretrained: bool = False, weights_path=None, **_
) -> FCNet:
    """The original VGG16 (torchvision's definition) with its FC head: classification only, no CAM."""
    require_avg_pool(pool, "vgg16")
    tv = torchvision.models.vgg16(weights=None, dropout=dropout, init_weights=not (pretrained or weights_path))
    net = FCNet(tv.features[:30], tv.features[30], tv.avgpool, tv.classifier[:6], new_class_layer(4096, num_classes))
    layout = PretrainedLayout("vgg16", fc_rename, class_layer=("fc8.",))
    return load_weights(net, "vgg16", layout, pretrained, weights_path)
