"""Shared pieces of the paper's networks (section 3.1): the GAP/GMP surgery and the FC baselines.

    AddedConvNet   kept torchvision layers (`features`) -> added 3x3/1/1 conv(s) + ReLU (`added`)
                   -> GAP | GMP -> dropout -> linear (`classifier`)          CAM-capable
    FCNet          last conv maps (`features`) -> pool5 -> fc6/fc7 (`fc`) -> fc8   classification only

The families live in alexnet.py, vgg.py, googlenet.py and nin.py; docs/networks.md has the table.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from camexp.errors import CamexpError
from camexp.models.heads import GlobalPoolNet

IMAGENET_CLASSES = 1000


def added_convs(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """The surgery's new 3x3/1/1 conv layers, each + ReLU; kaiming normal (fan_out) weights, zero bias."""
    layers: list[nn.Module] = []
    for width in widths:
        conv = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers)


class AddedConvNet(GlobalPoolNet):
    """GlobalPoolNet whose features are the kept pretrained layers followed by the added conv layer(s).

    The added layers are a top-level module (`added`) so that `new_modules = ("added", "classifier")`
    gives them the new-layer learning-rate multiplier while `features` keeps torchvision's key names.
    """

    def __init__(
        self,
        features: nn.Module,
        added: nn.Sequential,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.0,
    ) -> None:
        channels = [m.out_channels for m in added if isinstance(m, nn.Conv2d)][-1]
        super().__init__(
            features, channels, num_classes, pool=pool, dropout=dropout, new_modules=("added", "classifier")
        )
        self.added = added

    def forward_features(self, x: Tensor) -> Tensor:
        return self.added(self.features(x))  # N x K x h x w: the CAM layer


class FCNet(nn.Module):
    """An original FC network (AlexNet, VGG16) split at its last conv layer: classification only.

    `forward_features` returns the last conv maps (after ReLU, before pool5) and `forward_head` the rest,
    so the Backprop baseline can use the same two-step contract; there is no CAM (`classifier` is None).
    """

    cam_capable = False
    classifier = None

    def __init__(
        self, features: nn.Sequential, pool5: nn.Module, avgpool: nn.Module, fc: nn.Sequential, fc8: nn.Linear
    ):
        super().__init__()
        self.features = features
        self.pool5 = pool5
        self.avgpool = avgpool
        self.fc = fc  # torchvision's classifier without its last layer: fc6, fc7 with ReLU and dropout
        self.fc8 = fc8
        self.new_modules: tuple[str, ...] = () if fc8.out_features == IMAGENET_CLASSES else ("fc8",)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc8(self.fc(torch.flatten(self.avgpool(self.pool5(features)), 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def torchvision_meta(arch: str, **kwargs) -> nn.Module:
    """torchvision's architecture on the meta device: no memory, no init; materialize only the kept parts."""
    import torchvision

    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None, **kwargs)


def materialize(module: nn.Module, kaiming_convs: bool = False) -> nn.Module:
    """Allocate a meta module on the CPU with PyTorch's default init (kaiming_convs: torchvision VGG's conv init)."""
    module.to_empty(device="cpu")
    for m in module.modules():
        if kaiming_convs and isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return module


def new_class_layer(in_features: int, num_classes: int) -> nn.Linear:
    """A final linear layer: normal(0, 0.01) weights, zero bias (as the GAP classifier)."""
    layer = nn.Linear(in_features, num_classes)
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)
    return layer


def fc_rename(tv_key: str) -> str | None:
    """torchvision alexnet/vgg16 key -> FCNet key: features.* stay, classifier.6 -> fc8, classifier.* -> fc."""
    if tv_key.startswith("features."):
        return tv_key
    if tv_key.startswith("classifier.6."):
        return "fc8." + tv_key[len("classifier.6.") :]
    if tv_key.startswith("classifier."):
        return "fc." + tv_key[len("classifier.") :]
    return tv_key


def features_only_rename(tv_key: str) -> str | None:
    """torchvision alexnet/vgg16 key -> AddedConvNet key: kept conv layers stay, the FC head is dropped."""
    return None if tv_key.startswith("classifier.") else tv_key


def require_avg_pool(pool: str, name: str) -> None:
    """The FC baselines have no global pooling to switch: model.pool=max is a user error, not ignored."""
    if pool != "avg":
        raise CamexpError(
            f"model.pool={pool!r} does not apply to {name}: its FC head pools with pool5 and fixed FC layers. "
            f"Leave model.pool=avg, or use its GAP/GMP version ({name}_gap)."
        )
