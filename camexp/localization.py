"""From CAMs to boxes (the paper's rule) and box overlap.

Boxes are xyxy in continuous pixel coordinates: a component spanning pixel columns x0..x1 gives
x_min = x0 and x_max = x1 + 1, the same convention as a CUB box (x, y, x + w, y + h).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou


def largest_component_box(mask: np.ndarray) -> np.ndarray:
    """Bounding box (xyxy, float32) of the largest 8-connected component of a boolean mask.

    Ties go to the component met first in raster order; an empty mask gives (0, 0, 0, 0).
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(4, dtype=np.float32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    x, y, w, h = stats[best, :4]
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def boxes_from_cams(cams: Tensor, threshold: float = 0.2) -> Tensor:
    """The paper's rule on each map (N x H x W, already at input size): keep pixels >= threshold * max
    after min-max normalization, box the largest connected component. Returns N x 4 xyxy boxes."""
    maps = cams.detach().float().cpu()
    low = maps.flatten(1).amin(1).view(-1, 1, 1)
    high = maps.flatten(1).amax(1).view(-1, 1, 1)
    span = high - low
    # x >= low + t * span  <=>  (x - low) / span >= t, without dividing (keeps "exactly at t" exact).
    masks = (maps >= low + threshold * span) & (span > 0)
    boxes = [largest_component_box(m) for m in masks.numpy()]
    return torch.from_numpy(np.stack(boxes)) if boxes else torch.zeros(0, 4)


def iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise IoU (N x M) of xyxy boxes; torchvision's implementation."""
    return box_iou(boxes_a.float(), boxes_b.float())


def best_iou_per_image(pred_boxes: Tensor, gt_boxes: Tensor, gt_counts: Tensor) -> Tensor:
    """For each image, the highest IoU between its predicted box (N x 4) and any of its GT boxes
    (N x B x 4, the first gt_counts[i] rows valid). Images without GT boxes get -1."""
    n, b = gt_boxes.shape[:2]
    if b == 0:
        return torch.full((n,), -1.0)
    # box_iou over the whole batch (N x N*B) then the diagonal: cheap at batch sizes, and torchvision's math.
    all_pairs = box_iou(pred_boxes.float().cpu(), gt_boxes.float().cpu().reshape(-1, 4)).view(n, n, b)
    ious = all_pairs[torch.arange(n), torch.arange(n)]
    valid = torch.arange(b)[None, :] < gt_counts.cpu()[:, None]
    return torch.where(valid, ious, -1.0).amax(1)
