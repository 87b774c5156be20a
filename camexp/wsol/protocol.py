"""The "wsoleval" localization protocol (Choe et al., CVPR 2020): MaxBoxAcc, MaxBoxAccV2, PxAP.

Pure numpy/OpenCV math, no torch, no I/O. Results equal the reference implementation
(github.com/clovaai/wsolevaluation, ``evaluation.py``, ``inference.py``, ``util.py``) bit for bit;
the ``reference_*`` functions below are a straight port of that code and serve as the oracle in
the tests and the baseline in ``benchmarks/bench_wsoleval.py``.

The protocol, per image (reference behaviour, checked line by line):

1. the CAM is cast to float64, resized to 224x224 with ``cv2.INTER_CUBIC`` and min-max normalized
   (a NaN or constant map becomes all zeros; an infinite value too,
   where the reference's result is undefined)                        -- ``normalize_scoremap``;
2. GT boxes are scaled with ``int(x * 224 / W)``                      -- ``resize_gt_boxes``;
3. the map is quantized ``q = (map * 255).astype(uint8)``; for each threshold ``tau`` of
   ``np.arange(0, 1, 0.001)`` the foreground is ``q > int(tau * max(q))``; its contours
   (``cv2.findContours``, ``RETR_TREE``, ``CHAIN_APPROX_SIMPLE``, so hole borders count too) give
   boxes ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``: all of them (V2, "multi contour") or the
   one of largest ``cv2.contourArea``, first on ties (V1); no contour gives ``(0, 0, 0, 0)``;
4. the image is a hit at ``tau`` when the best IoU (inclusive, ``+1`` pixel coordinates) between
   its boxes and its GT boxes is ``>= iou / 100``                    -- ``box_hits_per_threshold``;
5. MaxBoxAcc = max over ``tau`` of 100 * hits / images, V1 at IoU 50, V2 averaged over IoU
   30/50/70                                                          -- ``maxboxacc_from_hits``;
6. PxAP: histograms of the normalized map over fg / bg mask pixels with bin edges
   ``thresholds + [1, 2, 3]``, then the reference's area under the precision-recall curve
                                                                     -- ``pixel_histograms``,
   ``pxap_from_histograms``.

Per image the metric state is a fixed-size array of counts (hits per IoU x threshold, or two
histograms), so a streaming metric sums them and DDP reduction is a sum.

Why the fast path is exact: after quantization the mask ``q > c`` only depends on the smallest
value of ``q`` above ``c``, so the 1000 thresholds collapse to at most 256 distinct masks
``q >= L``, and their contours come from one of two exact strategies, whichever a cost model
(``_prefer_tracing``; speed only) expects to be cheaper for the map:

* tracing: OpenCV's own ``findContours`` once per distinct mask, cropped to its foreground, skipping
  masks whose foreground box cannot reach the IoU threshold against any GT box (every predicted
  box lies inside it, and IoU(b, g) <= |b & g| / |g|); boxes and contour areas (an integer
  shoelace, exact as ``cv2.contourArea``'s float64 sum over integer points) for all contours at once;
* trees: ``contour_tree`` reads the box and ``cv2.contourArea`` of every contour of every level
  off two component trees of ``q`` (one union-find pass each; checked against ``cv2.findContours``
  level by level in ``tests/test_contour_tree.py``). V1's "first on ties" depends on OpenCV's
  contour order, so a level where two largest contours tie in area but not in IoU is traced.

IoUs use the reference's arithmetic in both; ``tests/test_wsoleval.py`` holds each strategy to
hand-checked values and to the reference port.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from camexp.errors import ConfigError
from camexp.wsol.contour_tree import level_contours, level_largest, level_max

RESIZE_LENGTH = 224
"""Side of the square frame the protocol evaluates in (reference ``_RESIZE_LENGTH``)."""

CAM_CURVE_INTERVAL = 0.001
"""Threshold step of the reference (``cam_curve_interval``)."""

IOU_THRESHOLDS_V2: tuple[int, ...] = (30, 50, 70)
"""IoU thresholds (percent) averaged by MaxBoxAccV2."""

V1_IOU = 50
"""The IoU threshold (percent) of MaxBoxAcc (V1), with the largest contour's box."""


def check_settings(
    cam_curve_interval: float,
    iou_thresholds: Sequence[int],
    interval_name: str = "cam_curve_interval",
    iou_name: str = "iou_thresholds",
) -> None:
    """The protocol's settings, checked once for every caller: a threshold step in (0, 1) and IoU
    thresholds in percent, (0, 100]. The names are the caller's (the CLI passes its flags)."""
    if not 0 < cam_curve_interval < 1:
        raise ConfigError(
            f"{interval_name} must lie in (0, 1), e.g. 0.001 (the reference); got {cam_curve_interval}."
        )
    ious = list(iou_thresholds)
    if not ious or any(not 0 < iou <= 100 for iou in ious):
        raise ConfigError(f"{iou_name} takes percentages in (0, 100], e.g. 30 50 70; got {ious}.")


def default_thresholds(interval: float = CAM_CURVE_INTERVAL) -> np.ndarray:
    """The reference threshold grid ``np.arange(0, 1, interval)`` (1000 values for 0.001)."""
    return np.arange(0, 1, interval)


def _as_thresholds(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if thresholds is None:
        return default_thresholds()
    return np.asarray(thresholds, dtype=np.float64).reshape(-1)


# --------------------------------------------------------------------------------------------
# Preprocessing: score maps and GT boxes in the 224 x 224 frame
# --------------------------------------------------------------------------------------------


def normalize_scoremap(cam: np.ndarray, size: tuple[int, int] = (RESIZE_LENGTH, RESIZE_LENGTH)) -> np.ndarray:
    """Resize a raw CAM to ``size`` (height, width) bicubically in float64 and min-max normalize it.

    Same arithmetic as the reference (``inference.py``: ``t2n`` casts to float64, ``cv2.resize``
    with ``INTER_CUBIC``, then ``normalize_scoremap``): a map with a NaN, or a constant map,
    becomes all zeros. A map with an infinite value (a network's overflow) becomes all zeros too: the
    reference turns it into NaN pixels that its uint8 cast then maps to arbitrary values, so no number
    could match it. (``camexp evaluate-maps`` refuses an infinite value in a saved map file instead:
    ``score_maps.load_map``.) Upstream passes ``images.shape[2:]`` (h, w) as cv2's (w, h) ``dsize``;
    that only matters for non-square sizes, where this function resizes to (height, width).
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"normalize_scoremap expects a 2-D (H, W) map; got shape {cam.shape}.")
    height, width = int(size[0]), int(size[1])
    resized = cv2.resize(cam, (width, height), interpolation=cv2.INTER_CUBIC)
    if not np.isfinite(resized).all():  # a NaN (the reference's rule) or an infinite value
        return np.zeros_like(resized)
    if resized.min() == resized.max():
        return np.zeros_like(resized)
    resized -= resized.min()
    resized /= resized.max()
    return resized


def integer_gt_boxes(boxes: np.ndarray | Sequence[Sequence[float]], image_wh: tuple[float, float]) -> np.ndarray:
    """xyxy GT boxes in original pixels -> clipped to the image (0..W, 0..H) and rounded to integers (half to
    even), int64 (K, 4): the boxes as ``localization.txt`` stores them and as every command scores them."""
    limits = np.array([image_wh[0], image_wh[1], image_wh[0], image_wh[1]], dtype=np.float64)
    clipped = np.minimum(np.maximum(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 0.0), limits)
    return np.rint(clipped).astype(np.int64)


def scored_gt_boxes(
    boxes: np.ndarray | Sequence[Sequence[float]],
    image_wh: tuple[float, float],
    resized_wh: tuple[float, float] = (RESIZE_LENGTH, RESIZE_LENGTH),
) -> np.ndarray:
    """THE GT boxes as scored, the one path of `validate`, `evaluate` and `evaluate-maps`: original-pixel xyxy
    boxes clipped to the image and made integer (``integer_gt_boxes``), then scaled to the frame
    (``resize_gt_boxes``). Boxes already clipped and integer (saved metadata) pass the first step unchanged."""
    return resize_gt_boxes(integer_gt_boxes(boxes, image_wh), image_wh, resized_wh)


def resize_gt_boxes(
    boxes: np.ndarray | Sequence[Sequence[float]],
    image_wh: tuple[float, float],
    resized_wh: tuple[float, float] = (RESIZE_LENGTH, RESIZE_LENGTH),
) -> np.ndarray:
    """Scale xyxy GT boxes from the original image (width, height) to the resized frame.

    Reference ``resize_bbox``: ``int(float(x) * new_w / w)`` per coordinate (truncation, the
    product first), returned as an int64 (K, 4) array.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    image_w, image_h = float(image_wh[0]), float(image_wh[1])
    new_w, new_h = float(resized_wh[0]), float(resized_wh[1])
    scale_num = np.array([new_w, new_h, new_w, new_h])
    scale_den = np.array([image_w, image_h, image_w, image_h])
    return (boxes * scale_num / scale_den).astype(np.int64)


def _check_scoremap(scoremap: np.ndarray, batched: bool = False) -> np.ndarray:
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2 and not (batched and scoremap.ndim > 2):
        raise ValueError(f"Score map must be a 2-D (H, W) array; got shape {scoremap.shape}.")
    scoremap = scoremap.astype(np.float64, copy=False)
    if np.isnan(scoremap).any():
        raise ValueError("Score map contains NaN; normalize it first with normalize_scoremap().")
    if (scoremap > 1).any() or (scoremap < 0).any():
        raise ValueError(
            f"Score map must lie in [0, 1] (min {scoremap.min()}, max {scoremap.max()}); "
            "normalize it first with normalize_scoremap()."
        )
    return scoremap


def _check_gt_boxes(gt_boxes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    gt = np.asarray(gt_boxes).reshape(-1, 4)
    if gt.shape[0] == 0:
        raise ValueError("An image needs at least one GT box; got none.")
    if not np.issubdtype(gt.dtype, np.integer):
        if not np.array_equal(gt, np.floor(gt)):
            raise ValueError("GT boxes must hold integer pixel coordinates; scale them with resize_gt_boxes().")
    gt = gt.astype(np.int64)
    if (gt < 0).any() or (gt[:, 2] < gt[:, 0]).any() or (gt[:, 3] < gt[:, 1]).any():
        raise ValueError(f"GT boxes must be non-negative xyxy with x1 >= x0 and y1 >= y0; got {gt.tolist()}.")
    return gt


def quantize_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """The reference's uint8 image of a normalized map: ``(scoremap * 255).astype(np.uint8)``."""
    return (_check_scoremap(scoremap) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Fast path: the contours of each distinct level, traced by OpenCV or read off component trees
# --------------------------------------------------------------------------------------------


def _iou_many(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Best IoU over GT per predicted box; reference ``calculate_multiple_iou`` arithmetic."""
    bx0, by0, bx1, by1 = (boxes[:, i : i + 1] for i in range(4))
    gx0, gy0, gx1, gy1 = gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3]
    inter = np.maximum(0, np.minimum(bx1, gx1) - np.maximum(bx0, gx0) + 1) * np.maximum(
        0, np.minimum(by1, gy1) - np.maximum(by0, gy0) + 1
    )
    area_b = (bx1 - bx0 + 1) * (by1 - by0 + 1)
    area_g = (gx1 - gx0 + 1) * (gy1 - gy0 + 1)
    denominator = area_b + area_g - inter
    degenerate = denominator <= 0
    ious = inter / np.where(degenerate, 1, denominator)
    ious[degenerate] = 0
    return ious.max(axis=1)


def _reference_boxes(extents: np.ndarray, width: int, height: int) -> np.ndarray:
    """Inclusive contour extents -> the reference's boxes (x, y, min(x + w, W - 1), min(y + h, H - 1))."""
    boxes = extents.copy()
    np.minimum(boxes[:, 2] + 1, width - 1, out=boxes[:, 2])
    np.minimum(boxes[:, 3] + 1, height - 1, out=boxes[:, 3])
    return boxes


class _Levels:
    """The distinct foreground masks of one quantized map and the threshold -> mask mapping.

    Level ``k`` is the mask ``q >= lowest_value[k]`` (256 for the empty mask); ``extent[k]`` is the
    inclusive (x0, y0, x1, y1) pixel extent of its foreground, read off the running maxima of the
    row / column profiles of ``q`` (no mask is built for it; only OpenCV's tracing needs it).
    """

    def __init__(self, q: np.ndarray, thresholds: np.ndarray):
        self.q = q
        self.height, self.width = q.shape
        # Reference: thresh=int(threshold * np.max(scoremap_image)); float64 product, truncation.
        cuts = (thresholds * q.max()).astype(np.int64)
        present = np.flatnonzero(np.bincount(q.ravel(), minlength=256))
        # q > c  <=>  q >= (smallest present value above c): one mask per such value.
        group = np.searchsorted(present, cuts, side="right")
        self.keys, self.threshold_to_level = np.unique(group, return_inverse=True)
        self.threshold_to_level = self.threshold_to_level.reshape(-1)
        self.empty = self.keys == present.size  # no value above the cut: empty mask
        lowest = present[np.minimum(self.keys, present.size - 1)]
        self.lowest_value = np.where(self.empty, 256, lowest)

    @cached_property
    def extent(self) -> np.ndarray:
        """Per level, the inclusive (x0, y0, x1, y1) extent of its foreground (meaningless on empty levels)."""
        q, v = self.q, self.lowest_value
        row_max, col_max = q.max(axis=1), q.max(axis=0)
        # First row whose max reaches v = first index where the running max reaches v.
        y0 = np.searchsorted(np.maximum.accumulate(row_max), v)
        y1 = self.height - 1 - np.searchsorted(np.maximum.accumulate(row_max[::-1]), v)
        x0 = np.searchsorted(np.maximum.accumulate(col_max), v)
        x1 = self.width - 1 - np.searchsorted(np.maximum.accumulate(col_max[::-1]), v)
        return np.stack([x0, y0, x1, y1], axis=1)

    def foreground_boxes(self) -> np.ndarray:
        """Per level, the reference box of its whole foreground: it contains every predicted box."""
        x0, y0, x1, y1 = self.extent.T
        return np.stack([x0, y0, np.minimum(x1 + 1, self.width - 1), np.minimum(y1 + 1, self.height - 1)], axis=1)

    def opencv_contours(self, level_ids: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
        """``cv2.findContours`` of the given non-empty levels in OpenCV's order: flat list, per-level counts.

        Each mask is cropped to its foreground extent: the zero padding that findContours adds
        around the crop stands for the empty pixels outside it, so the contours and their order
        are the full-image ones, in crop coordinates (shift by the level's extent x0, y0).
        """
        flat: list[np.ndarray] = []
        counts: list[int] = []
        q = self.q
        cuts = (self.lowest_value[level_ids] - 1).tolist()
        x0, y0, x1, y1 = (self.extent[level_ids] + [0, 0, 1, 1]).T.tolist()
        for cut, a, b, c, d in zip(cuts, x0, y0, x1, y1, strict=True):
            mask = cv2.threshold(q[b:d, a:c], cut, 255, cv2.THRESH_BINARY)[1]
            found = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            counts.append(len(found))
            flat += found
        return flat, counts


def _segment_starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


class _TracedContours:
    """Boxes (reference rule) and ``cv2.contourArea`` of every contour of some levels, traced by OpenCV.

    One findContours pass per level serves both rules; the per-contour work (boundingRect,
    contourArea) is done for all contours at once with ``reduceat`` over the concatenated points.
    """

    def __init__(self, levels: _Levels, level_ids: np.ndarray, need_area: bool):
        flat, counts = levels.opencv_contours(level_ids)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.starts = _segment_starts(self.counts)  # first contour of each level
        lengths = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat))
        points = np.concatenate(flat).reshape(-1, 2)  # int32 crop coordinates
        x, y = points[:, 0], points[:, 1]
        starts = _segment_starts(lengths)
        shift = np.repeat(levels.extent[level_ids, :2], self.counts, axis=0)
        extents = np.stack(
            [
                np.minimum.reduceat(x, starts) + shift[:, 0],
                np.minimum.reduceat(y, starts) + shift[:, 1],
                np.maximum.reduceat(x, starts) + shift[:, 0],
                np.maximum.reduceat(y, starts) + shift[:, 1],
            ],
            axis=1,
        )
        self.boxes = _reference_boxes(extents, levels.width, levels.height)
        self.areas = None
        if need_area:
            # Shoelace as cv2.contourArea: sum of x[i] * y[i+1] - y[i] * x[i+1] along the contour
            # plus its closing edge, halved. Integer sums are exact, as OpenCV's float64 sum over
            # integer points is, and translation-invariant, so crop coordinates give the same area.
            ends = starts + lengths - 1
            if max(levels.width, levels.height) > 32767:  # int32 cross terms could overflow
                x, y = x.astype(np.int64), y.astype(np.int64)
            cross = np.empty(x.size, dtype=x.dtype)
            np.subtract(x[:-1] * y[1:], y[:-1] * x[1:], out=cross[:-1])
            cross[ends] = x[ends] * y[starts] - y[ends] * x[starts]
            self.areas = np.abs(np.add.reduceat(cross, starts, dtype=np.int64))

    def best_ious(self, gt: np.ndarray, multi_contour: bool) -> np.ndarray:
        """Per traced level: max IoU over all its boxes (V2) or of its largest contour's box (V1)."""
        if multi_contour:
            return np.maximum.reduceat(_iou_many(self.boxes, gt), self.starts)
        # Largest contourArea per level, the first one on ties (Python's max keeps the first).
        largest = np.maximum.reduceat(self.areas, self.starts)
        is_largest = self.areas == np.repeat(largest, self.counts)
        index = np.where(is_largest, np.arange(self.areas.size), self.areas.size)
        return _iou_many(self.boxes[np.minimum.reduceat(index, self.starts)], gt)


def _largest_contour_ious_by_opencv(levels: _Levels, level_ids: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """V1 best IoU of some levels the reference way: OpenCV's contour list, largest contourArea, first on ties."""
    return _TracedContours(levels, level_ids, need_area=True).best_ious(gt, multi_contour=False)


def _reachable_levels(levels: _Levels, gt: np.ndarray, min_iou: float) -> np.ndarray:
    """Non-empty levels whose upper bound max_g |fg_box & g| / |g| reaches ``min_iou``.

    Every predicted box of a level lies inside its foreground box, and IoU(b, g) <= |b & g| / |g|;
    float division is monotone, so a bound below the threshold proves the reference's miss.
    """
    fg = levels.foreground_boxes()
    inter = np.maximum(0, np.minimum(fg[:, None, 2], gt[:, 2]) - np.maximum(fg[:, None, 0], gt[:, 0]) + 1) * (
        np.maximum(0, np.minimum(fg[:, None, 3], gt[:, 3]) - np.maximum(fg[:, None, 1], gt[:, 1]) + 1)
    )
    area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    return ((inter / area_g).max(axis=1) >= min_iou) & ~levels.empty


TRACE_COST_PER_LEVEL = 70
"""Cost model of ``_prefer_tracing``, in units of one contour pixel traced by OpenCV: the fixed cost
of one traced level. Fitted on 224 x 224 CAM-like, noise and trained-model maps (benchmarks/)."""
TREE_COST_PER_CONTOUR_PIXEL = 0.1
"""Same units: what each contour pixel adds to the two component trees, which cost 1 per image pixel."""

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)


def _prefer_tracing(levels: _Levels, level_ids: np.ndarray) -> bool:
    """Whether tracing these levels with OpenCV should be cheaper than the component trees (speed only).

    Tracing costs about one unit per contour pixel of the traced levels plus a fixed cost per level,
    the trees one unit per image pixel: smooth maps with a coarse grid or few reachable levels trace
    faster, contour-rich maps (noise, many small blobs) are far faster with the trees. A pixel is a
    contour pixel of level L when q >= L there and some 4-neighbour (or the border) is below L, so
    the count over the traced levels follows from the histograms of q and of its 4-neighbour minimum.
    """
    values = np.sort(levels.lowest_value[level_ids])
    levels_up_to = np.searchsorted(values, np.arange(256), side="right")  # traced levels <= v
    neighbour_min = cv2.erode(levels.q, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    contour_pixels = int(
        (np.bincount(levels.q.ravel(), minlength=256) - np.bincount(neighbour_min.ravel(), minlength=256))
        @ levels_up_to
    )
    tracing = contour_pixels + TRACE_COST_PER_LEVEL * level_ids.size
    trees = levels.q.size + TREE_COST_PER_CONTOUR_PIXEL * contour_pixels
    return tracing < trees


def _best_ious_per_level(
    levels: _Levels, gt: np.ndarray, v1_iou: float | None, v2_iou: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU per level under the V1 (largest contour) and V2 (all contours) rules; empty arrays if not asked.

    ``v1_iou`` / ``v2_iou`` are the smallest IoU threshold each rule is scored at (None: skip the rule);
    levels that provably miss it may be left NaN (counted as misses). Empty levels get the
    reference's box (0, 0, 0, 0). Two exact strategies, picked by ``_prefer_tracing``: OpenCV traces
    each level whose foreground box can reach the IoU, or ``contour_tree`` reads every level's
    contours off two component trees.
    """
    n = levels.keys.size
    rules = [(False, v1_iou), (True, v2_iou)]
    best = {multi: np.full(n, np.nan) for multi, iou in rules if iou is not None}
    empty_iou = _iou_many(np.zeros((1, 4), dtype=np.int64), gt)[0]
    for values in best.values():
        values[levels.empty] = empty_iou
    reachable = {multi: _reachable_levels(levels, gt, iou) for multi, iou in rules if iou is not None}
    todo = np.flatnonzero(np.logical_or.reduce(list(reachable.values()))) if reachable else np.zeros(0, int)
    if todo.size and _prefer_tracing(levels, todo):
        traced = _TracedContours(levels, todo, need_area=False in best)
        for multi, values in best.items():
            keep = reachable[multi][todo]
            values[todo[keep]] = traced.best_ious(gt, multi)[keep]
    elif todo.size:
        _best_ious_from_trees(levels, gt, best)
    empty = np.zeros(0)
    return best.get(False, empty), best.get(True, empty)


def _best_ious_from_trees(levels: _Levels, gt: np.ndarray, best: dict[bool, np.ndarray]) -> None:
    """Fill ``best`` (V1 under False, V2 under True) at every non-empty level from the component trees."""
    traced = np.flatnonzero(~levels.empty)
    contours = level_contours(levels.q, levels.lowest_value[traced], need_area=False in best)
    ious = _iou_many(_reference_boxes(contours.boxes, levels.width, levels.height), gt)
    if True in best:
        best[True][traced] = level_max(contours.k0, contours.k1, ious, traced.size)
    if False in best:
        largest, ambiguous = level_largest(contours.k0, contours.k1, contours.area2, ious, traced.size)
        if ambiguous.any():  # tied largest areas, different IoUs: OpenCV's contour order decides
            largest[ambiguous] = _largest_contour_ious_by_opencv(levels, traced[ambiguous], gt)
        best[False][traced] = largest


def best_iou_per_threshold(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    multi_contour: bool,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Exact best IoU between the predicted boxes and the GT boxes at every threshold, shape (T,).

    The value the reference compares with ``iou / 100`` (its ``sliced_multiple_iou``); no level
    is skipped, so this is the slower, complete form of ``box_hits_per_threshold``.
    """
    q = quantize_scoremap(scoremap)
    gt = _check_gt_boxes(gt_boxes)
    levels = _Levels(q, _as_thresholds(thresholds))
    best_v1, best_v2 = _best_ious_per_level(levels, gt, None if multi_contour else 0.0, 0.0 if multi_contour else None)
    return (best_v2 if multi_contour else best_v1)[levels.threshold_to_level]


def _hits(best: np.ndarray, iou_thresholds: Sequence[int]) -> np.ndarray:
    limits = np.array([t / 100 for t in iou_thresholds], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return best[None, :] >= limits[:, None]  # NaN (a level skipped as a sure miss) compares False


def whole_frame_box(height: int = RESIZE_LENGTH, width: int = RESIZE_LENGTH) -> np.ndarray:
    """The reference's box around a map whose every pixel is foreground: (0, 0, W - 1, H - 1), its
    contour box (x, y, min(x + w, W - 1), min(y + h, H - 1)) in inclusive pixels. The whole-image baseline."""
    return np.array([0, 0, width - 1, height - 1], dtype=np.int64)


def fixed_box_hits(
    box: np.ndarray,
    gt_boxes: np.ndarray,
    v1_iou_thresholds: Sequence[int] = (V1_IOU,),
    v2_iou_thresholds: Sequence[int] = IOU_THRESHOLDS_V2,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``box_hits_v1_v2`` for a prediction that is the same box at every CAM threshold (and is both the
    largest contour and the only one): bool (len(v1), T) and (len(v2), T), each row constant.
    IoU with the reference's inclusive arithmetic, best over the GT boxes."""
    gt = _check_gt_boxes(gt_boxes)
    best = _iou_many(np.asarray(box, dtype=np.int64).reshape(1, 4), gt)  # (1,)
    size = _as_thresholds(thresholds).size
    v1 = np.repeat(_hits(best, v1_iou_thresholds), size, axis=1)
    v2 = np.repeat(_hits(best, v2_iou_thresholds), size, axis=1)
    return v1.reshape(len(v1_iou_thresholds), size), v2.reshape(len(v2_iou_thresholds), size)


def box_hits_per_threshold(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    iou_thresholds: Sequence[int] = IOU_THRESHOLDS_V2,
    multi_contour: bool = True,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Whether one image is a box hit, per IoU threshold (percent) and CAM threshold: bool (n_iou, T).

    ``scoremap`` is a normalized (H, W) map (``normalize_scoremap``), ``gt_boxes`` (K, 4) xyxy in
    the same frame (``resize_gt_boxes``). ``multi_contour=True`` is MaxBoxAccV2's all-contours
    rule, False the V1 largest-contour rule. Summing these over images gives the reference's
    ``num_correct``.
    """
    hits_v1, hits_v2 = box_hits_v1_v2(
        scoremap,
        gt_boxes,
        v1_iou_thresholds=() if multi_contour else iou_thresholds,
        v2_iou_thresholds=iou_thresholds if multi_contour else (),
        thresholds=thresholds,
    )
    return hits_v2 if multi_contour else hits_v1


def box_hits_v1_v2(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    v1_iou_thresholds: Sequence[int] = (V1_IOU,),
    v2_iou_thresholds: Sequence[int] = IOU_THRESHOLDS_V2,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """V1 (largest contour) and V2 (all contours) hits of one image from one pass over the map.

    Returns bool arrays (len(v1_iou_thresholds), T) and (len(v2_iou_thresholds), T); an empty
    IoU tuple skips that rule. Same values as two ``box_hits_per_threshold`` calls, for little more
    than the cost of one.
    """
    q = quantize_scoremap(scoremap)
    gt = _check_gt_boxes(gt_boxes)
    levels = _Levels(q, _as_thresholds(thresholds))
    best_v1, best_v2 = _best_ious_per_level(
        levels,
        gt,
        min(v1_iou_thresholds) / 100 if v1_iou_thresholds else None,
        min(v2_iou_thresholds) / 100 if v2_iou_thresholds else None,
    )
    to_level = levels.threshold_to_level
    hits_v1 = _hits(best_v1, v1_iou_thresholds)[:, to_level] if v1_iou_thresholds else None
    hits_v2 = _hits(best_v2, v2_iou_thresholds)[:, to_level] if v2_iou_thresholds else None
    size = to_level.size
    empty = np.zeros((0, size), dtype=bool)
    return (empty if hits_v1 is None else hits_v1), (empty if hits_v2 is None else hits_v2)


# --------------------------------------------------------------------------------------------
# Accumulated counts -> metrics
# --------------------------------------------------------------------------------------------


def maxboxacc_from_hits(
    hit_counts: np.ndarray,
    num_images: int,
    iou_thresholds: Sequence[int] = IOU_THRESHOLDS_V2,
    thresholds: Sequence[float] | np.ndarray | None = None,
    scale: float = 100.0,
) -> dict[str, Any]:
    """MaxBoxAcc per IoU threshold, its best CAM threshold, and their mean (MaxBoxAccV2), in PERCENT
    (``scale=1``: fractions, hits / num_images exactly).

    ``hit_counts`` is (n_iou, T), the per-image hits summed over a split. As the reference:
    accuracy = hits * 100. / num_images, best = max over thresholds (first on ties), and the
    V2 number is ``np.average`` over the IoU rows, each row at its own best threshold. Keys:
    ``accuracy`` {iou: %}, ``best_index`` {iou: int}, ``best_threshold`` {iou: float; NaN when
    ``thresholds`` is not given and T is not the default grid's length}, ``mean`` (%), ``curve``.
    """
    counts = np.asarray(hit_counts, dtype=np.float64)
    counts = counts.reshape(len(iou_thresholds), -1)
    grid = _as_thresholds(thresholds)
    if grid.size != counts.shape[1]:
        grid = np.full(counts.shape[1], np.nan)
    if num_images <= 0:
        raise ValueError("maxboxacc_from_hits needs at least one image (num_images=0).")
    curve = counts * scale / float(num_images)
    best_index = curve.argmax(axis=1)
    maxima = [curve[i].max() for i in range(len(iou_thresholds))]
    return {
        "accuracy": {int(t): float(m) for t, m in zip(iou_thresholds, maxima, strict=True)},
        "best_index": {int(t): int(i) for t, i in zip(iou_thresholds, best_index, strict=True)},
        "best_threshold": {int(t): float(grid[i]) for t, i in zip(iou_thresholds, best_index, strict=True)},
        "mean": float(np.average(maxima)),
        "curve": curve,
    }


def select_threshold_index(hit_counts: np.ndarray) -> int:
    """Held-out protocol, step 1: the CAM threshold index that maximizes the summed hits of a split.

    One operating threshold for all IoU rows: summing the rows maximizes their mean accuracy (V2);
    with one row it is that row's argmax. Ties go to the first (lowest) threshold, as ``np.argmax``.
    Not part of the reference, which reports each row at its own best threshold on the same split.
    """
    counts = np.atleast_2d(np.asarray(hit_counts, dtype=np.float64))
    return int(counts.sum(axis=0).argmax())


def accuracy_at_threshold_index(
    hit_counts: np.ndarray, num_images: int, index: int, iou_thresholds: Sequence[int] = IOU_THRESHOLDS_V2
) -> dict[str, Any]:
    """Held-out protocol, step 2: box accuracy (percent) of another split at a fixed threshold index.

    Returns ``accuracy`` {iou: %} and their ``mean`` (%), computed like ``maxboxacc_from_hits``.
    """
    counts = np.asarray(hit_counts, dtype=np.float64).reshape(len(iou_thresholds), -1)
    if num_images <= 0:
        raise ValueError("accuracy_at_threshold_index needs at least one image (num_images=0).")
    values = [counts[i, index] * 100.0 / float(num_images) for i in range(len(iou_thresholds))]
    return {
        "accuracy": {int(t): float(v) for t, v in zip(iou_thresholds, values, strict=True)},
        "mean": float(np.average(values)),
    }


# --------------------------------------------------------------------------------------------
# PxAP
# --------------------------------------------------------------------------------------------


def histogram_edges(thresholds: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """The reference MaskEvaluator's bin edges: ``thresholds + [1.0, 2.0, 3.0]`` (T + 2 bins)."""
    return np.append(_as_thresholds(thresholds), [1.0, 2.0, 3.0])


def pixel_histograms(
    scoremap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PxAP state: int64 histograms (T + 2,) of the map over GT-foreground and background.

    ``mask`` is the reference's (H, W) GT mask: 1 foreground, 0 background, any other value
    (255) ignored; a bool mask means True foreground, False background. Bins as the reference
    (``histogram_edges``); summing the histograms over images gives its score histograms, so a
    batch (N, H, W) with masks of the same shape gives the batch's sum in one call.
    """
    scoremap = _check_scoremap(scoremap, batched=True)
    mask = np.asarray(mask)
    if mask.shape != scoremap.shape:
        raise ValueError(f"Mask shape {mask.shape} differs from score map shape {scoremap.shape}.")
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    edges = histogram_edges(thresholds)
    fg, _ = np.histogram(scoremap[mask == 1], bins=edges)
    bg, _ = np.histogram(scoremap[mask == 0], bins=edges)
    return fg.astype(np.int64), bg.astype(np.int64)


def pxap_from_histograms(fg_hist: np.ndarray, bg_hist: np.ndarray) -> float:
    """PxAP in PERCENT: the reference MaskEvaluator.compute() area under the precision-recall curve.

    Raises RuntimeError, as the reference, when there is no foreground pixel or no positive
    prediction at all.
    """
    gt_true = np.asarray(fg_hist, dtype=np.float64)
    gt_false = np.asarray(bg_hist, dtype=np.float64)
    num_gt_true = gt_true.sum()
    tp = gt_true[::-1].cumsum()
    fn = num_gt_true - tp
    fp = gt_false[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise RuntimeError("No positive ground truth in the eval set.")
    if ((tp + fp) <= 0).all():
        raise RuntimeError("No positive prediction in the eval set.")
    non_zero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum()
    auc *= 100
    return float(auc)
