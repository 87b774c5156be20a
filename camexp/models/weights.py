"""Pretrained and local weights for the paper's networks.

`load_weights` fills a built network from torchvision's ImageNet release (`pretrained=True`, needs internet
or a filled torch hub cache) or from a local file (`weights_path`, offline, `torch.load(weights_only=True)`).
A file may hold either

- a state dict of torchvision's full architecture (`features.0.weight` of alexnet/vgg16, `conv1.conv.weight`
  of googlenet): its keys are renamed into the kept layers; keys of layers the surgery dropped are reported
  at info level; or
- a state dict of the camexp network itself (also a Lightning checkpoint, whose `net.` prefix is stripped).

Anything else that does not fit (a missing key, an unexpected key, a wrong shape) is a `WeightsError`
naming the file and listing the keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from camexp.errors import CamexpError

log = logging.getLogger(__name__)
_MAX_LISTED = 12


class WeightsError(CamexpError):
    """Weights cannot be found, downloaded or fitted into the network (names the file and the keys)."""


@dataclass(frozen=True)
class TorchvisionLayout:
    """How a torchvision state dict maps onto one camexp network.

    arch: torchvision builder name (alexnet | vgg16 | googlenet), whose IMAGENET1K_V1 weights `pretrained` loads.
    rename: torchvision key -> our key, or None for a layer the surgery dropped (reported, not an error).
    fresh: prefixes of our keys that torchvision's weights do not cover (added layers, a new class layer):
        they keep their documented initialization.
    class_layer: prefixes of our keys of the final class layer: loaded when the class count matches
        (1000), kept at initialization otherwise.
    after_load: run after torchvision weights are loaded (e.g. GoogLeNet's input conversion).
    """

    arch: str
    rename: Callable[[str], str | None]
    fresh: tuple[str, ...] = ()
    class_layer: tuple[str, ...] = ()
    after_load: Callable[[nn.Module], None] | None = None


def load_weights(
    net: nn.Module,
    name: str,
    layout: TorchvisionLayout | None,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """Load `weights_path` (preferred: offline) or torchvision's ImageNet weights into `net`; no-op when neither."""
    if weights_path:
        if pretrained:
            log.info("model.weights_path is set: loading %s instead of downloading torchvision weights", weights_path)
        state = read_state_dict(weights_path)
        source = str(weights_path)
    elif pretrained:
        if layout is None:
            raise WeightsError(
                f"No ImageNet weights exist for network {name!r} (model.pretrained=true). Set "
                f"model.pretrained=false to train it from scratch, or pass model.weights_path=FILE with a state dict "
                f"saved from this network."
            )
        state = download_torchvision_state_dict(layout.arch)
        source = f"torchvision {layout.arch} IMAGENET1K_V1"
    else:
        return net
    if layout is not None and _looks_like_torchvision(state, net, layout):
        _load_torchvision_layout(net, name, layout, state, source)
    else:
        _load_own_layout(net, name, state, source)
    return net


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a local file: a plain state dict, or a Lightning checkpoint (`state_dict`, `net.` keys)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"Weights file not found: {path} (model.weights_path). Give the path of a state dict saved with "
            f"torch.save(model.state_dict(), FILE), or torchvision's .pth file from ~/.cache/torch/hub/checkpoints/."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise WeightsError(
            f"Cannot read weights file {path}: {err}. It must be a state dict (a dict of tensors) saved with "
            f"torch.save; it is opened with weights_only=True, so pickled objects other than tensors are refused."
        ) from err
    checkpoint = isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
    if checkpoint:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"Weights file {path} holds a {type(obj).__name__}, not a state dict of tensors.")
    state = dict(obj)
    prefixed = [k for k in state if k.startswith("net.")]
    if prefixed and (checkpoint or len(prefixed) == len(state)):  # a CAMNet: the network lives at .net
        state = {k[len("net.") :]: state[k] for k in prefixed}
    return state


def download_torchvision_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's IMAGENET1K_V1 state dict for `arch` (downloaded once into the torch hub cache)."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, HTTP errors, hash mismatch, no disk space
        raise WeightsError(
            f"Cannot download torchvision's {arch} ImageNet weights from {weights.url}: {err}. On a machine "
            f"without internet, download that file elsewhere and pass model.weights_path=FILE, or set "
            f"model.pretrained=false."
        ) from err


def _looks_like_torchvision(state: Mapping[str, Tensor], net: nn.Module, layout: TorchvisionLayout) -> bool:
    """True when the file's keys match torchvision's architecture better than ours (ties: ours)."""
    import torchvision

    with torch.device("meta"):  # key names only: no memory, no init
        tv_keys = set(torchvision.models.get_model(layout.arch, weights=None, **_meta_kwargs(layout.arch)).state_dict())
    ours = set(net.state_dict())
    return len(tv_keys & state.keys()) > len(ours & state.keys())


def _meta_kwargs(arch: str) -> dict:
    return {"aux_logits": True, "init_weights": False} if arch == "googlenet" else {}


def _load_torchvision_layout(
    net: nn.Module, name: str, layout: TorchvisionLayout, state: Mapping[str, Tensor], source: str
) -> None:
    ours = net.state_dict()
    loaded: dict[str, Tensor] = {}
    dropped, unexpected, wrong_shape, class_skipped = [], [], [], []
    for key, value in state.items():
        target = layout.rename(key)
        if target is None:
            dropped.append(key)
        elif target not in ours:
            unexpected.append(f"{key} (-> {target})")
        elif ours[target].shape != value.shape:
            if layout.class_layer and target.startswith(layout.class_layer):
                class_skipped.append(target)
            else:
                wrong_shape.append(f"{key}: file {tuple(value.shape)} vs network {tuple(ours[target].shape)}")
        else:
            loaded[target] = value
    fresh = layout.fresh + tuple(class_skipped)
    missing = [k for k in ours if k not in loaded and k not in class_skipped and not k.startswith(fresh)]
    if missing or unexpected or wrong_shape:
        raise WeightsError(
            _mismatch_message(name, source, f"torchvision {layout.arch}", missing, unexpected, wrong_shape)
        )
    net.load_state_dict(loaded, strict=False)
    if layout.after_load is not None:
        layout.after_load(net)
    if dropped:
        log.info(
            "%s: %d keys of layers removed by the surgery left unused (%s)", source, len(dropped), _listed(dropped)
        )
    if class_skipped:
        log.info("%s: class layer %s kept at initialization (class count differs from 1000)", source, class_skipped)
    log.info("Loaded %d tensors from %s into %s; %s keep their initialization", len(loaded), source, name, layout.fresh)


def _load_own_layout(net: nn.Module, name: str, state: Mapping[str, Tensor], source: str) -> None:
    ours = net.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong_shape = [
        f"{k}: file {tuple(v.shape)} vs network {tuple(ours[k].shape)}"
        for k, v in state.items()
        if k in ours and ours[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        raise WeightsError(_mismatch_message(name, source, f"camexp {name}", missing, unexpected, wrong_shape))
    net.load_state_dict(state, strict=True)
    log.info("Loaded %d tensors from %s into %s", len(state), source, name)


def _listed(keys: list[str]) -> str:
    head = ", ".join(keys[:_MAX_LISTED])
    return head + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def _mismatch_message(
    name: str, source: str, read_as: str, missing: list[str], unexpected: list[str], wrong_shape: list[str]
) -> str:
    parts = [f"Weights from {source} do not fit network {name!r} (read as a {read_as} state dict)."]
    if missing:
        parts.append(f"Missing keys: {_listed(missing)}.")
    if unexpected:
        parts.append(f"Unexpected keys: {_listed(unexpected)}.")
    if wrong_shape:
        parts.append(f"Wrong shapes: {_listed(wrong_shape)}.")
    parts.append(
        "Use a state dict saved from the same network (torch.save(net.state_dict(), FILE)) or torchvision's "
        "state dict of the architecture it was cut from (docs/networks.md, 'Weights')."
    )
    return " ".join(parts)
