"""From CAMs to boxes (the paper's rule) and box overlap.

Boxes are xyxy in continuous pixel coordinates: a component spanning pixel columns x0..x1 gives
x_min = x0 and x_max = x1 + 1, the same convention as a CUB box (x, y, x + w, y + h).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _cuts(maps: Tensor, thresholds: Sequence[float]) -> tuple[Tensor, Tensor]:
    """T x N cuts of the paper rule (a pixel is kept when x >= cut) and which maps can have foreground.

    x >= low + t * span  <=>  (x - low) / span >= t, without dividing (keeps "exactly at t" exact);
    a constant or non-finite map (span not > 0) has no foreground.
    """
    flat = maps.flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    span = high - low
    cuts = torch.stack([low + float(t) * span for t in thresholds]) if len(thresholds) else maps.new_zeros(0, len(maps))
    return cuts, span > 0


def _extents(maps: Tensor, cuts: Tensor, live: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive pixel extent (x0, y0, x1, y1) of every (threshold, map) foreground, T x N x 4, and
    whether it is non-empty (T x N), from the row / column maxima: no mask is built."""
    height, width = maps.shape[-2:]
    in_rows = maps.amax(2)[None] >= cuts[:, :, None]  # T x N x H: a row holds foreground iff its max >= cut
    in_cols = maps.amax(1)[None] >= cuts[:, :, None]  # T x N x W
    present = in_rows.any(2) & live[None]
    y0 = in_rows.byte().argmax(2)
    y1 = height - 1 - in_rows.flip(2).byte().argmax(2)
    x0 = in_cols.byte().argmax(2)
    x1 = width - 1 - in_cols.flip(2).byte().argmax(2)
    return torch.stack([x0, y0, x1, y1], dim=2).numpy(), present.numpy()


def _largest_component_in_crop(image: np.ndarray, cut: float, extent: Sequence[int]) -> tuple[np.ndarray, int]:
    """``largest_component_box(image >= cut)`` and that component's area, labeling only the crop of
    the foreground extent. The crop's origin stays on even coordinates, so OpenCV's 2 x 2-block
    labeling, and with it the label order that breaks area ties, is the full image's."""
    left, top, right, bottom = extent
    x0, y0 = left - left % 2, top - top % 2
    mask = (image[y0 : bottom + 1, x0 : right + 1] >= cut).view(np.uint8)
    # Labels only (the same labels as connectedComponentsWithStats, ~5x cheaper than its stats pass);
    # the areas and the one box needed come from numpy.
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        return np.zeros(4, dtype=np.float32), 0
    if count == 2:  # a single component: its box is the foreground extent
        return np.array([left, top, right + 1, bottom + 1], dtype=np.float32), int(np.count_nonzero(mask))
    areas = np.bincount(labels.ravel(), minlength=count)
    best = 1 + int(np.argmax(areas[1:]))  # first label on ties, as argmax over the stats rows
    chosen = labels == best
    rows, cols = chosen.any(1), chosen.any(0)
    top, left = int(rows.argmax()), int(cols.argmax())
    bottom, right = rows.size - int(rows[::-1].argmax()), cols.size - int(cols[::-1].argmax())
    return np.array([left + x0, top + y0, right + x0, bottom + y0], dtype=np.float32), int(areas[best])


def boxes_from_cams(cams: Tensor, threshold: float = 0.2) -> Tensor:
    """The paper's rule on each map (N x H x W, already at input size): keep pixels >= threshold * max
    after min-max normalization, box the largest connected component. Returns N x 4 xyxy boxes
    (``largest_component_box`` of each mask, labeling only the crop of its foreground)."""
    maps = cams.detach().float().cpu()
    cuts, live = _cuts(maps, [threshold])
    extents, present = _extents(maps, cuts, live)
    boxes = np.zeros((len(maps), 4), dtype=np.float32)
    images, cut = maps.numpy(), cuts[0].numpy()
    for i in np.flatnonzero(present[0]).tolist():
        boxes[i] = _largest_component_in_crop(images[i], cut[i], extents[0, i].tolist())[0]
    return torch.from_numpy(boxes)


def box_hits_sweep(
    cams: Tensor, gt_boxes: Tensor, gt_counts: Tensor, thresholds: Sequence[float], iou_threshold: float = 0.5
) -> Tensor:
    """T x N bool: does the paper-rule box of each map hit a GT box (IoU >= iou_threshold) at each threshold?

    Equal to ``best_iou_per_image(boxes_from_cams(cams, t), gt_boxes, gt_counts) >= iou_threshold`` for
    every t, labeling far fewer masks. A (threshold, map) pair is a proven miss, not labeled, when
    (1) its foreground bounding box F cannot reach the IoU with any GT box (the box b lies in F and
    IoU(b, g) <= |F & g| / |g|), or (2) a higher threshold's largest component already has area A with
    |g| / A below the IoU for every GT box (masks are nested, so the largest component here is at least
    as large, and IoU(b, g) <= |g| / |b|). The rest label only the crop of their foreground.
    """
    maps = cams.detach().float().cpu()
    n = len(maps)
    cuts, live = _cuts(maps, thresholds)
    extents, present = _extents(maps, cuts, live)
    # (1) max over valid GT boxes of |F & g| / |g|, F in continuous coordinates (x0, y0, x1 + 1, y1 + 1).
    frame = torch.from_numpy(extents).double() + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    gt = gt_boxes.detach().double().cpu()  # N x B x 4
    valid = torch.arange(gt.shape[1])[None, :] < gt_counts.cpu()[:, None]  # N x B
    wh = torch.minimum(frame[:, :, None, 2:], gt[None, :, :, 2:]) - torch.maximum(
        frame[:, :, None, :2], gt[None, :, :, :2]
    )
    area_gt = torch.where(valid, (gt[:, :, 2:] - gt[:, :, :2]).clamp_min(0).prod(2), 0.0)  # N x B
    bound = (wh.clamp_min(0).prod(3) / area_gt.clamp_min(1e-12)[None]).where(area_gt[None] > 0, 0.0)
    bound = bound.amax(2) if gt.shape[1] else torch.zeros(len(cuts), n, dtype=torch.float64)
    # float32 IoUs (torchvision) may round a little above the exact value: prune with a margin only.
    limit = iou_threshold - 1e-4
    label = present & (bound >= limit).numpy()
    largest_gt = area_gt.amax(1).numpy() if gt.shape[1] else np.zeros(n)
    largest_area = np.zeros(n)  # (2): largest component area seen at a higher threshold, per map
    boxes = np.zeros((len(cuts), n, 4), dtype=np.float32)
    images, cut = maps.numpy(), cuts.numpy()
    for t in sorted(range(len(cuts)), key=lambda k: float(thresholds[k]), reverse=True):
        for i in np.flatnonzero(label[t]).tolist():
            if largest_gt[i] < limit * largest_area[i]:
                label[t, i] = False
                continue
            boxes[t, i], area = _largest_component_in_crop(images[i], cut[t, i], extents[t, i].tolist())
            largest_area[i] = max(largest_area[i], area)
    known = torch.from_numpy(label | ~present)  # labeled, or empty (box (0, 0, 0, 0)); the rest: proven misses
    hits = torch.zeros(len(cuts), n, dtype=torch.bool)
    for t in range(len(cuts)):
        hits[t] = known[t] & (best_iou_per_image(torch.from_numpy(boxes[t]), gt_boxes, gt_counts) >= iou_threshold)
    return hits


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
