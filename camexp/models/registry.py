"""Name -> network builder. Builders take plain arguments and return a module with the
`forward_features` / `forward_head` contract of `camexp.models.heads.GlobalPoolNet`."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

NetworkBuilder = Callable[..., nn.Module]
_NETWORKS: dict[str, NetworkBuilder] = {}


def register(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    def add(builder: NetworkBuilder) -> NetworkBuilder:
        _NETWORKS[name] = builder
        return builder

    return add


def available_networks() -> list[str]:
    return sorted(_NETWORKS)


def build_network(name: str, **kwargs) -> nn.Module:
    """Build a registered network; an unknown name lists the known ones."""
    if name not in _NETWORKS:
        from camexp.errors import CamexpError

        raise CamexpError(f"Unknown network model.name={name!r}. Available: {', '.join(available_networks())}.")
    return _NETWORKS[name](**kwargs)
