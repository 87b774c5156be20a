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


# -- the official release's box generator (Table 3's "heuristics") --------------------------------
RELEASE_THRESHOLDS = (20, 100, 110)  # out of 255, generate_bbox.m in the CAM release


def _thinned_mask(heatmap: np.ndarray, threshold: int) -> np.ndarray:
    """Release `fromDT`: binarize (> threshold), Euclidean distance to the nearest background pixel,
    rescale so the farthest pixel is 255, keep > 10: a thinning that drops a rim of ~4% of the
    object's thickness and splits blobs joined by thin bridges."""
    binary = (heatmap > threshold).astype(np.uint8)
    if binary.all() or not binary.any():  # the release leaves such maps unchanged
        return binary
    distance = cv2.distanceTransform(binary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
    scaled = np.clip(np.floor(distance * (255.0 / distance.max()) + 0.5), 0, 255)
    return (scaled > 10).astype(np.uint8)


def release_boxes(heatmap: np.ndarray, thresholds: tuple[int, ...] = RELEASE_THRESHOLDS) -> np.ndarray:
    """All boxes of the release's `dt_box` on a uint8 heatmap (H x W, 0..255), largest first (K x 4 xyxy).

    Every contour (outer and hole, RETR_CCOMP) of each thinned mask gives a box, clamped 5 px inside
    the image as the release does; boxes are sorted by area and a box overlapping a larger one by
    more than half of the larger's area is dropped (the release's single forward pass, kept as is).
    """
    height, width = heatmap.shape
    rects: list[tuple[int, int, int, int]] = []
    for threshold in thresholds:
        contours, _ = cv2.findContours(_thinned_mask(heatmap, threshold), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            rects.append(
                (
                    min(max(x, 0), width - 5),
                    min(max(y, 0), height - 5),
                    min(max(w, 0), width - x - 5),
                    min(max(h, 0), height - y - 5),
                )
            )
    rects.sort(key=lambda r: r[2] * r[3], reverse=True)  # stable: ties keep threshold/contour order
    i = 0
    while i < len(rects):
        j = i + 1
        while j < len(rects):
            if _big_overlap(rects[i], rects[j]):
                del rects[j]  # the release erases and then advances j, skipping one candidate
            j += 1
        i += 1
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in rects], dtype=np.float32)
    return boxes.reshape(-1, 4)


def _big_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    limit = int(max(a[2] * a[3], b[2] * b[3]) * 0.5)
    x_overlap = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    y_overlap = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return x_overlap * y_overlap > limit


def loose_and_tight_boxes(cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loose, tight) for one [0, 1] map: the release's largest and second-largest box
    (the largest again when only one exists; (0, 0, 0, 0) when none)."""
    boxes = release_boxes((np.clip(cam, 0, 1) * 255).astype(np.uint8))
    if len(boxes) == 0:
        empty = np.zeros(4, np.float32)
        return empty, empty
    return boxes[0], boxes[1] if len(boxes) > 1 else boxes[0]


def heuristic_top5(cams_top3: np.ndarray) -> np.ndarray:
    """Table 3's five guesses from the CAMs of the top-3 classes (3 x H x W in [0, 1]):
    c1-loose, c1-tight, c2-loose, c2-tight, c3-loose (5 x 4 xyxy)."""
    (l1, t1), (l2, t2), (l3, _) = (loose_and_tight_boxes(c) for c in cams_top3)
    return np.stack([l1, t1, l2, t2, l3])


def heuristic_top5_hits(
    cams_top3: Tensor, top3: Tensor, labels: Tensor, gt_boxes: Tensor, gt_counts: Tensor, iou_threshold: float = 0.5
) -> Tensor:
    """Per image: does one of Table 3's five (class, box) guesses have the GT class and IoU >= threshold
    with a GT box? cams_top3: N x 3 x H x W in [0, 1] for the top-3 classes `top3` (N x 3)."""
    guess_classes = top3[:, [0, 0, 1, 1, 2]].cpu()
    hits = torch.zeros(len(labels), dtype=torch.bool)
    for i in torch.nonzero((top3.cpu() == labels.cpu()[:, None]).any(1)).flatten().tolist():
        boxes = torch.from_numpy(heuristic_top5(cams_top3[i].detach().float().cpu().numpy()))
        right_class = guess_classes[i] == int(labels[i])
        gt = gt_boxes[i, : int(gt_counts[i])].float().cpu()
        if len(gt) and right_class.any():
            hits[i] = bool((box_iou(boxes[right_class], gt) >= iou_threshold).any())
    return hits
