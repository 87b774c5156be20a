"""Train / evaluation transforms and the box geometry that goes with them.

Training (paper): resize the short side, random square crop, horizontal flip; no boxes exist there.
Evaluation: resize the WHOLE image to S x S (no crop) and scale the GT boxes with it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalization(kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for `data.normalize`."""
    return (IMAGENET_MEAN, IMAGENET_STD) if kind == "imagenet" else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _to_normalized_tensor(kind: str) -> list:
    mean, std = normalization(kind)
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(input_size: int, resize: int, hflip: bool = True, normalize: str = "imagenet") -> v2.Compose:
    steps = [v2.Resize(resize, antialias=True), v2.RandomCrop(input_size)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalized_tensor(normalize))


def eval_transform(input_size: int, normalize: str = "imagenet") -> v2.Compose:
    return v2.Compose([v2.Resize((input_size, input_size), antialias=True)] + _to_normalized_tensor(normalize))


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Clip xyxy boxes to the image (boxes partly outside the image happen in real annotations)."""
    width, height = image_size
    # one broadcast min/max per call: this runs for every evaluation image, fancy indexing costs 5x more
    limits = np.array([width, height, width, height], dtype=np.float32)
    return np.minimum(np.maximum(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), 0), limits)


def resize_mask(mask: Image.Image, input_size: int) -> torch.Tensor:
    """Segmentation mask -> bool S x S (nearest neighbour; > 127 is foreground, as CUB's soft masks)."""
    resized = mask.resize((input_size, input_size), Image.NEAREST)
    return torch.from_numpy(np.asarray(resized) > 127)
