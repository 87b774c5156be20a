"""From CAMs to boxes (the paper's rule) and box overlap.

Boxes are xyxy in continuous pixel coordinates: a component spanning pixel columns x0..x1 gives
x_min = x0 and x_max = x1 + 1, the same convention as a CUB box (x, y, x + w, y + h).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou


def _cuts(maps: Tensor, row_max: Tensor, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """T x N cuts of the paper rule (a pixel is kept when x >= cut) and which maps can have foreground.

    x >= low + t * span  <=>  (x - low) / span >= t, without dividing (keeps "exactly at t" exact);
    a constant or non-finite map (span not a finite number > 0) has no foreground. The max comes from the row
    maxima.
    """
    low, high = maps.flatten(1).amin(1), row_max.amax(1)
    span = high - low
    # float32 t * span, as `low + float(t) * span` computes it for one t (the scalar is cast to float32).
    scale = torch.tensor([float(t) for t in thresholds], dtype=maps.dtype)[:, None]
    return (low[None] + scale * span[None]).numpy(), ((span > 0) & torch.isfinite(span)).numpy()


def _extents(maps: Tensor, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cuts T x N, inclusive pixel extent (x0, y0, x1, y1) of every (threshold, map) foreground T x N x 4,
    whether it is non-empty T x N) of float32 maps (N x H x W), from the row / column maxima: no mask is built."""
    row_max = maps.amax(2)
    cuts, live = _cuts(maps, row_max, thresholds)
    in_rows = row_max.numpy()[None] >= cuts[:, :, None]  # T x N x H: a row holds foreground iff its max >= cut
    in_cols = maps.amax(1).numpy()[None] >= cuts[:, :, None]  # T x N x W
    present = in_rows.any(2) & live[None]
    last_row, last_col = in_rows.shape[2] - 1, in_cols.shape[2] - 1
    y0, y1 = in_rows.argmax(2), last_row - in_rows[:, :, ::-1].argmax(2)  # argmax: the first True
    x0, x1 = in_cols.argmax(2), last_col - in_cols[:, :, ::-1].argmax(2)
    return cuts, np.stack([x0, y0, x1, y1], axis=2), present


def _largest_component_in_crop(image: np.ndarray, cut: float, extent: Sequence[int]) -> tuple[np.ndarray, int]:
    """Bounding box (xyxy, float32) of the largest 8-connected component of ``image >= cut`` (ties: the first
    in raster order; no foreground: zeros) and that component's area, labeling only the crop of the foreground
    extent. The crop's origin stays on even coordinates, so OpenCV's 2 x 2-block labeling, and with it the
    label order that breaks area ties, is the full image's."""
    left, top, right, bottom = extent
    x0, y0 = left - left % 2, top - top % 2
    mask = (image[y0 : bottom + 1, x0 : right + 1] >= cut).view(np.uint8)
    # Labels only (the same labels as connectedComponentsWithStats, ~5x cheaper than its stats pass);
    # the areas and the one box needed come from the labels.
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        return np.zeros(4, dtype=np.float32), 0
    if count == 2:  # a single component: its box is the foreground extent
        return np.array([left, top, right + 1, bottom + 1], dtype=np.float32), int(np.count_nonzero(mask))
    # Up to 7 components (most masks here): a comparison per label is cheaper than bincount's scatter.
    areas = [np.count_nonzero(labels == k) for k in range(1, count)] if count <= 8 else np.bincount(labels.ravel())[1:]
    best = 1 + int(np.argmax(areas))  # first label on ties, as argmax over the stats rows
    x, y, w, h = cv2.boundingRect((labels == best).view(np.uint8))  # of the component's pixels
    return np.array([x + x0, y + y0, x + w + x0, y + h + y0], dtype=np.float32), int(areas[best - 1])


def boxes_from_cams(cams: Tensor, threshold: float = 0.2) -> Tensor:
    """The paper's rule on each map (N x H x W, already at input size): keep pixels >= threshold * max
    after min-max normalization, box the largest connected component. Returns N x 4 xyxy boxes
    (the box of each mask's largest 8-connected component, labeling only the crop of its foreground)."""
    maps = cams.detach().float().cpu()
    cuts, extents, present = _extents(maps, [threshold])
    boxes = np.zeros((len(maps), 4), dtype=np.float32)
    images, cut = maps.numpy(), cuts[0]
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
    return _sweep(cams, gt_boxes, gt_counts, thresholds, iou_threshold, None)[2]


def paper_boxes_and_sweep(
    cams: Tensor,
    gt_boxes: Tensor,
    gt_counts: Tensor,
    box_threshold: float,
    thresholds: Sequence[float],
    iou_threshold: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """(``boxes_from_cams(cams, box_threshold)``, their ``best_iou_per_image``, ``box_hits_sweep(cams, ...,
    thresholds, iou_threshold)``) from one sweep: the maps' extents are found once, and the box
    threshold's labelings (all maps, none pruned) serve both when it is one of the sweep's thresholds."""
    grid = list(thresholds)
    if box_threshold not in grid:
        grid.append(box_threshold)
    at = grid.index(box_threshold)
    boxes, ious, hits = _sweep(cams, gt_boxes, gt_counts, grid, iou_threshold, at)
    return boxes[at], ious[at], hits[: len(thresholds)]


def _sweep(
    cams: Tensor,
    gt_boxes: Tensor,
    gt_counts: Tensor,
    thresholds: Sequence[float],
    iou_threshold: float,
    full: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``box_hits_sweep`` as (boxes T x N x 4, their best IoUs T x N, hits T x N). Threshold index `full`
    (if any) labels every map, so its boxes and IoUs are ``boxes_from_cams`` / ``best_iou_per_image``'s;
    at the others, boxes of proven misses stay (0, 0, 0, 0)."""
    maps = cams.detach().float().cpu()
    n = len(maps)
    cuts, extents, present = _extents(maps, thresholds)
    # float32 IoUs (torchvision) may round a little above the exact value: prune with a margin only.
    limit = iou_threshold - 1e-4
    bound, largest_gt = _reach_bound(extents, gt_boxes, gt_counts)
    label = present & (bound >= limit)
    if full is not None:
        label[full] = present[full]
    boxes = np.zeros((len(cuts), n, 4), dtype=np.float32)
    images = maps.numpy()
    order = sorted(range(len(cuts)), key=lambda k: float(thresholds[k]), reverse=True)
    # Map by map, highest threshold first: (2) needs the largest component area seen at a higher threshold.
    for i, wanted in enumerate(label[order].T.tolist()):
        largest_area = 0
        for t in (t for t, w in zip(order, wanted, strict=True) if w):
            if t != full and largest_gt[i] < limit * largest_area:
                label[t, i] = False
                continue
            boxes[t, i], area = _largest_component_in_crop(images[i], cuts[t, i], extents[t, i].tolist())
            largest_area = max(largest_area, area)
    known = torch.from_numpy(label | ~present)  # labeled, or empty (box (0, 0, 0, 0)); the rest: proven misses
    boxes_t = torch.from_numpy(boxes)
    ious = best_iou_per_image(boxes_t, gt_boxes, gt_counts)
    return boxes_t, ious, known & (ious >= iou_threshold)


def _reach_bound(extents: np.ndarray, gt_boxes: Tensor, gt_counts: Tensor) -> tuple[np.ndarray, list[float]]:
    """Rule (1) of ``box_hits_sweep``: T x N max over valid GT boxes g of |F & g| / |g|, F the foreground
    extent (T x N x 4, inclusive pixels); and each image's largest valid GT box area, for rule (2)."""
    gt = gt_boxes.detach().double().cpu().numpy()  # N x B x 4
    n, b = gt.shape[:2]
    if b == 0:
        return np.zeros(extents.shape[:2]), [0.0] * n
    valid = np.arange(b)[None, :] < gt_counts.cpu().numpy()[:, None]  # N x B
    frame = extents + np.array([0, 0, 1, 1])  # F in continuous coordinates (x0, y0, x1 + 1, y1 + 1)
    with np.errstate(all="ignore"):  # a NaN / inf GT box gets no bound (0), as an empty one
        wh = np.minimum(frame[..., None, 2:], gt[None, :, :, 2:]) - np.maximum(frame[..., None, :2], gt[None, :, :, :2])
        area_gt = np.where(valid, (gt[:, :, 2:] - gt[:, :, :2]).clip(min=0).prod(2), 0.0)  # N x B
        bound = np.where(area_gt > 0, wh.clip(min=0).prod(3) / np.maximum(area_gt, 1e-12), 0.0)
    return bound.max(2), area_gt.max(1).tolist()


def iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise IoU (N x M) of xyxy boxes; torchvision's implementation."""
    return box_iou(boxes_a.float(), boxes_b.float())


def paired_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of corresponding xyxy boxes (... x 4, broadcast): torchvision's ``box_iou`` arithmetic op for op,
    so the same float values as its all-pairs matrix at those pairs, without computing the other pairs."""
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]) * (boxes_a[..., 3] - boxes_a[..., 1])
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]) * (boxes_b[..., 3] - boxes_b[..., 1])
    lt = torch.max(boxes_a[..., :2], boxes_b[..., :2])
    rb = torch.min(boxes_a[..., 2:], boxes_b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a + area_b - inter)


def best_iou_per_image(pred_boxes: Tensor, gt_boxes: Tensor, gt_counts: Tensor) -> Tensor:
    """For each image, the highest IoU between its predicted box (N x 4; or ... x N x 4, several boxes per
    image, e.g. one per threshold, giving ... x N) and any of its GT boxes (N x B x 4, the first
    gt_counts[i] rows valid). Images without GT boxes get -1."""
    pred = pred_boxes.float().cpu()
    b = gt_boxes.shape[1]
    if b == 0:
        return torch.full(pred.shape[:-1], -1.0)
    ious = paired_iou(pred[..., None, :], gt_boxes.float().cpu())  # ... x N x B
    valid = torch.arange(b)[None, :] < gt_counts.cpu()[:, None]
    return torch.where(valid, ious, -1.0).amax(-1)


# -- the official release's box generator (Table 3's "heuristics") --------------------------------
RELEASE_THRESHOLDS = (20, 100, 110)  # out of 255, generate_bbox.m in the CAM release


def _thinned_mask(heatmap: np.ndarray, threshold: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Release `fromDT`: binarize (> threshold), Euclidean distance to the nearest background pixel,
    rescale so the farthest pixel is 255, keep > 10: a thinning that drops a rim of ~4% of the
    object's thickness and splits blobs joined by thin bridges.

    Returns the mask cropped to the foreground's bounding box plus a 1-pixel background ring (where the
    image has room), and the crop's (x, y) origin. The distances are those of the whole image: a background
    pixel outside the ring is never nearer than the ring pixel between it and the foreground. At the
    original resolution of a photo this is several times cheaper than the whole-image transform."""
    binary = (heatmap > threshold).view(np.uint8)
    rows, cols = np.flatnonzero(binary.any(1)), np.flatnonzero(binary.any(0))
    if len(rows) == 0:  # the release leaves such maps unchanged
        return binary, (0, 0)
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, binary.shape[0])
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, binary.shape[1])
    crop = binary[y0:y1, x0:x1]
    if crop.all():  # no background at all: unchanged
        return crop, (x0, y0)
    distance = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # The release keeps round(255 d / max d) > 10. With p = d * (255 / max d) in float64, floor(p + 0.5) > 10
    # <=> p + 0.5 >= 11 <=> p >= 10.5 (p + 0.5 is exact for p in [8, 16)): one pass instead of four.
    return (distance.astype(np.float64) * (255.0 / float(distance.max())) >= 10.5).view(np.uint8), (x0, y0)


def release_boxes(heatmap: np.ndarray, thresholds: tuple[int, ...] = RELEASE_THRESHOLDS) -> np.ndarray:
    """All boxes of the release's `dt_box` on a uint8 heatmap (H x W, 0..255), largest first (K x 4 xyxy).

    Every contour (outer and hole, RETR_CCOMP) of each thinned mask gives a box, clamped 5 px inside
    the image as the release does; boxes are sorted by area and a box overlapping a larger one by
    more than half of the larger's area is dropped (the release's single forward pass, kept as is).
    """
    height, width = heatmap.shape
    rects: list[tuple[int, int, int, int]] = []
    for threshold in thresholds:
        mask, origin = _thinned_mask(heatmap, threshold)
        contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=origin)
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


# -- sanity baselines: a map and a box that ignore the image ----------------------------------------
# Printed beside CAM in every table, scored by the same code on the same images, so a reader sees what
# CAM adds over knowing nothing but "objects sit near the middle" / "the object is somewhere in here".
# Keys: <split>/baseline_<name>/<metric> (docs/evaluation.md, "Sanity baselines").

BASELINES = ("center_gaussian", "whole_image")
CENTER_GAUSSIAN_SIGMA = 0.25  # the Gaussian's standard deviation, as a fraction of each side


def baseline_prefix(split: str, name: str) -> str:
    """`val/baseline_center_gaussian`: the key prefix of a baseline's metrics."""
    return f"{split}/baseline_{name}"


def center_gaussian_map(height: int, width: int, sigma_fraction: float = CENTER_GAUSSIAN_SIGMA) -> Tensor:
    """H x W float32 map exp(-(dx^2 / 2 sx^2 + dy^2 / 2 sy^2)) centred on the image (pixel centres,
    ((W - 1) / 2, (H - 1) / 2)), sx = sigma_fraction * W, sy = sigma_fraction * H: wsolevaluation's
    centre-Gaussian baseline (Choe et al.), a score map that ignores the image. Drawn in whatever frame
    the protocol scores (S x S for the paper rule, 224 x 224 for wsoleval), so no resize changes it."""
    ys = (torch.arange(height, dtype=torch.float64) - (height - 1) / 2) / (sigma_fraction * height)
    xs = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2) / (sigma_fraction * width)
    return torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).float()


def whole_image_box(height: int, width: int) -> Tensor:
    """The box of the whole image, (0, 0, W, H) in continuous xyxy: the other sanity baseline's prediction."""
    return torch.tensor([0.0, 0.0, float(width), float(height)])


def baseline_boxes(height: int, width: int, threshold: float = 0.2) -> dict[str, Tensor]:
    """Each baseline's (4,) paper-rule box for an H x W input: the centre Gaussian's through
    ``boxes_from_cams`` at `threshold` (the same rule as a CAM's), and the whole-image box.
    The same for every image of that size, so computed once per size and threshold."""
    return {name: box.clone() for name, box in _baseline_boxes(int(height), int(width), float(threshold))}


@functools.lru_cache(maxsize=16)
def _baseline_boxes(height: int, width: int, threshold: float) -> tuple[tuple[str, Tensor], ...]:
    gaussian = boxes_from_cams(center_gaussian_map(height, width)[None], threshold)[0]
    return ("center_gaussian", gaussian), ("whole_image", whole_image_box(height, width))


def baseline_best_ious(
    height: int, width: int, threshold: float, gt_boxes: Tensor, gt_counts: Tensor
) -> dict[str, Tensor]:
    """Per baseline, each image's best IoU (N,) of the baseline's box with its GT boxes (-1 without boxes):
    the `gt_class_iou` a baseline gives ``metrics.localization_counts``."""
    n = len(gt_counts)
    return {
        name: best_iou_per_image(box.expand(n, 4), gt_boxes, gt_counts)
        for name, box in baseline_boxes(height, width, threshold).items()
    }
