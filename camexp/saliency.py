"""The paper's "Backprop" baseline: class saliency (Simonyan et al., ICLR 2014 workshop).

|d S_c / d I|, max over colour channels: one backward pass per batch. Used on the FC networks
(AlexNet, VGG16, GoogLeNet as released) and fed through the same box rule and metrics as CAMs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


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
