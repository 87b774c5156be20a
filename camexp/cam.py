"""Class Activation Mapping math (Zhou et al., CVPR 2016, eq. 2), and the paper's "Backprop"
baseline it is compared with: pure tensor functions.

    M_c(x, y) = sum_k w_k^c f_k(x, y)                         (CAM)
    |d S_c / d I|, max over colour channels                   (Backprop: Simonyan et al., ICLR 2014 workshop)

No Lightning, no I/O: these run on whatever device the features live on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def class_activation_maps(features: Tensor, class_weights: Tensor, class_ids: Tensor | None = None) -> Tensor:
    """CAMs of the chosen classes, batched.

    features: N x K x h x w (last conv maps); class_weights: C x K (the linear layer's weight).
    class_ids: None -> every class (N x C x h x w); shape N -> one class per image (N x h x w);
    shape N x M -> M classes per image (N x M x h x w). Mixed dtypes (bf16 features from a mixed-precision
    step, fp32 weights) are computed in the wider one.
    """
    dtype = torch.promote_types(features.dtype, class_weights.dtype)
    features, class_weights = features.to(dtype), class_weights.to(dtype)
    if class_ids is None:
        return torch.einsum("nkhw,ck->nchw", features, class_weights)
    selected = class_weights[class_ids]  # N x K or N x M x K
    n, _, h, w = features.shape
    flat = features.flatten(2)  # N x K x hw: a batched matrix product, ~3x cheaper than einsum's permuted copy
    if class_ids.dim() == 1:
        return torch.bmm(selected[:, None, :], flat).view(n, h, w)
    return torch.bmm(selected, flat).view(n, -1, h, w)


def normalize_cams(cams: Tensor) -> Tensor:
    """Min-max normalize each map to [0, 1] over its last two dims; constant or non-finite maps become zeros."""
    flat = cams.flatten(-2)
    low = flat.amin(-1, keepdim=True)
    high = flat.amax(-1, keepdim=True)
    span = high - low
    # One new tensor, divided in place. A finite span > 0 bounds every value (no NaN / inf to clean up);
    # any other span (NaN, inf, <= 0) makes a map of zeros, as where(span > 0) + nan_to_num would.
    normalized = (flat - low).div_(span.clamp_min(torch.finfo(cams.dtype).tiny))
    dead = ~((span > 0) & (span < float("inf")))
    if dead.any():
        normalized.view(-1, flat.shape[-1]).index_fill_(0, dead.flatten().nonzero().flatten(), 0.0)
    return normalized.view_as(cams)


def upsample_cams(cams: Tensor, size: tuple[int, int] | int) -> Tensor:
    """Bilinearly resize maps (... x h x w) to the network input size (... x H x W)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    lead = cams.shape[:-2]
    resized = F.interpolate(cams.reshape(-1, 1, *cams.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return resized.reshape(*lead, *size)


# The paper's "Backprop" baseline, used on the FC networks (AlexNet, VGG16, GoogLeNet as released) and fed
# through the same box rule and metrics as CAMs: one backward pass per batch.
def gradient_saliency(forward: Callable[[Tensor], Tensor], images: Tensor, class_ids: Tensor) -> Tensor:
    """N x H x W saliency of class `class_ids[i]` for image i.

    Summing the chosen scores over the batch gives each image's own gradient because images do not
    interact in eval mode (batch norm uses running statistics). Needs autograd: run with
    `Trainer(inference_mode=False)`.
    """
    with torch.enable_grad():
        images = images.detach().clone().requires_grad_(True)
        scores = forward(images).gather(1, class_ids.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(scores, images)
    return grad.abs().amax(dim=1)
