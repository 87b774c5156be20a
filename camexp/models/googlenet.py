"""GoogLeNet-GAP, GoogLeNet-GMP and the original GoogLeNet, cut from torchvision's GoogLeNet (no aux heads).

At 224 input: conv1 112 -> maxpool1 56 -> conv2/conv3 56 -> maxpool2 28 -> inception3a/3b 28 -> maxpool3 14
-> inception4a..4e 14x14 (832 channels) -> maxpool4 7 -> inception5a/5b 7x7 (1024 channels).

Input normalization: torchvision's GoogLeNet weights were trained on inputs scaled to [-1, 1] per channel
(its `transform_input=True` converts ImageNet-normalized inputs to that). We build with
`transform_input=False` and keep the conversion as an explicit first layer, `features.transform_input`
(a per-channel affine held in buffers, identity by default). Loading torchvision's weights switches it on,
so the data pipeline always normalizes with the ImageNet mean/std, and a saved state dict carries the setting.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
import torchvision

from camexp.models.heads import ChannelAffine, GlobalPoolNet
from camexp.models.registry import register
from camexp.models.surgery import IMAGENET_CLASSES, AddedConvNet, added_convs
from camexp.models.weights import PretrainedLayout, load_weights

_UP_TO_4E = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2",
    "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
)  # fmt: skip
_UP_TO_5B = (*_UP_TO_4E, "maxpool4", "inception5a", "inception5b")
# torchvision GoogLeNet._transform_input: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def use_torchvision_input_transform(net: nn.Module) -> None:
    """Make `features.transform_input` do what torchvision's transform_input=True does."""
    net.features.transform_input.set_(
        tuple(s / 0.5 for s in _IMAGENET_STD), tuple((m - 0.5) / 0.5 for m in _IMAGENET_MEAN)
    )


def _googlenet_features(kept: tuple[str, ...], init: bool) -> nn.Sequential:
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=init)
    return nn.Sequential(OrderedDict([("transform_input", ChannelAffine()), *((n, getattr(tv, n)) for n in kept)]))


def _renamer(kept: tuple[str, ...], fc_to: str | None):
    def rename(tv_key: str) -> str | None:
        top = tv_key.split(".")[0]
        if top in kept:
            return "features." + tv_key
        if top == "fc" and fc_to is not None:
            return fc_to + tv_key[len("fc") :]
        return None  # aux1/aux2, and for the GAP nets inception5a/5b and fc: removed by the surgery

    return rename


@register("googlenet_gap")
def googlenet_gap(
    num_classes: int, pool: str = "avg", dropout: float = 0.0, pretrained: bool = False, weights_path=None, **_
) -> AddedConvNet:
    """GoogLeNet-GAP: conv1..inception4e (832 ch), + conv 3x3/1/1 1024 + ReLU, GAP (pool=max: GMP), linear.

    14x14 CAM at 224.
    """
    features = _googlenet_features(_UP_TO_4E, init=not (pretrained or weights_path))  # N x 832 x 14 x 14
    net = AddedConvNet(features, added_convs(832, (1024,)), num_classes, pool=pool, dropout=dropout)
    layout = PretrainedLayout(
        "googlenet",
        _renamer(_UP_TO_4E, fc_to=None),
        fresh=("added.", "classifier.", "features.transform_input."),
        after_load=use_torchvision_input_transform,
    )
    return load_weights(net, "googlenet_gap", layout, pretrained, weights_path)


@register("googlenet_gmp")
def googlenet_gmp(num_classes: int, **kwargs) -> AddedConvNet:
    """GoogLeNet-GMP: GoogLeNet-GAP with global max pooling (model.pool is forced to max; same architecture)."""
    kwargs["pool"] = "max"
    return googlenet_gap(num_classes, **kwargs)


@register("googlenet")
def googlenet(
    num_classes: int, pool: str = "avg", dropout: float = 0.2, pretrained: bool = False, weights_path=None, **_
) -> GlobalPoolNet:
    """The original GoogLeNet up to inception5b, its own average pooling, dropout and fc: a 7x7 CAM at 224.

    Its global average pooling + fc is already the CAM head (the paper's plain "GoogLeNet" localization row);
    the auxiliary classifiers are not built (one loss, as in the paper's recipe).
    """
    features = _googlenet_features(_UP_TO_5B, init=not (pretrained or weights_path))  # N x 1024 x 7 x 7
    new = () if num_classes == IMAGENET_CLASSES else ("classifier",)
    net = GlobalPoolNet(features, 1024, num_classes, pool=pool, dropout=dropout, new_modules=new)
    layout = PretrainedLayout(
        "googlenet",
        _renamer(_UP_TO_5B, fc_to="classifier"),
        fresh=("features.transform_input.",),
        class_layer=("classifier.",),
        after_load=use_torchvision_input_transform,
    )
    return load_weights(net, "googlenet", layout, pretrained, weights_path)
