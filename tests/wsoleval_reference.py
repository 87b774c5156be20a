"""The oracle: a straight port of clovaai/wsolevaluation (MIT licence, (c) 2020-present NAVER Corp.).

evaluation.py calculate_multiple_iou, resize_bbox, compute_bboxes_from_scoremaps, BoxEvaluator.accumulate/compute,
MaskEvaluator.accumulate/compute; inference.py normalize_scoremap. Kept per-threshold and loop-for-loop like upstream
on purpose: the tests hold camexp.wsol to it digit for digit, and benchmarks/bench_wsoleval.py times camexp against it.
Only the file/metadata plumbing is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from camexp.wsol.protocol import CAM_CURVE_INTERVAL, IOU_THRESHOLDS_V2, RESIZE_LENGTH

# A straight port of clovaai/wsolevaluation (MIT licence, (c) 2020-present NAVER Corp.):
# evaluation.py calculate_multiple_iou, resize_bbox, compute_bboxes_from_scoremaps,
# BoxEvaluator.accumulate/compute, MaskEvaluator.accumulate/compute; inference.py
# normalize_scoremap. Kept per-threshold and loop-for-loop like upstream on purpose: it is the
# correctness oracle and the speed baseline. Only the file/metadata plumbing is left out.


def reference_normalize_scoremap(cam: np.ndarray, size: int = RESIZE_LENGTH) -> np.ndarray:
    """Upstream ``CAMComputer`` resize (float64, INTER_CUBIC) + ``normalize_scoremap``."""
    cam = np.asarray(cam).astype(np.float64)
    cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def reference_resize_bbox(box, image_size, resize_size) -> tuple[int, int, int, int]:
    """Upstream ``resize_bbox``: sizes are (width, height)."""
    box_x0, box_y0, box_x1, box_y1 = map(float, box)
    image_w, image_h = map(float, image_size)
    new_image_w, new_image_h = map(float, resize_size)
    return (
        int(box_x0 * new_image_w / image_w),
        int(box_y0 * new_image_h / image_h),
        int(box_x1 * new_image_w / image_w),
        int(box_y1 * new_image_h / image_h),
    )


def reference_calculate_multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Upstream ``calculate_multiple_iou``: (num_a, num_b) IoUs with inclusive coordinates."""
    num_a = box_a.shape[0]
    num_b = box_b.shape[0]
    box_a = np.tile(box_a, num_b)
    box_a = np.expand_dims(box_a, axis=1).reshape((num_a, num_b, -1))
    box_b = np.tile(box_b, num_a)
    box_b = np.expand_dims(box_b, axis=1).reshape((num_b, num_a, -1))
    box_b = np.transpose(box_b, (1, 0, 2))
    min_x = np.maximum(box_a[:, :, 0], box_b[:, :, 0])
    min_y = np.maximum(box_a[:, :, 1], box_b[:, :, 1])
    max_x = np.minimum(box_a[:, :, 2], box_b[:, :, 2])
    max_y = np.minimum(box_a[:, :, 3], box_b[:, :, 3])
    area_intersect = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (box_a[:, :, 2] - box_a[:, :, 0] + 1) * (box_a[:, :, 3] - box_a[:, :, 1] + 1)
    area_b = (box_b[:, :, 2] - box_b[:, :, 0] + 1) * (box_b[:, :, 3] - box_b[:, :, 1] + 1)
    denominator = area_a + area_b - area_intersect
    degenerate_indices = np.where(denominator <= 0)
    denominator[degenerate_indices] = 1
    ious = area_intersect / denominator
    ious[degenerate_indices] = 0
    return ious


def reference_compute_bboxes_from_scoremaps(
    scoremap: np.ndarray, scoremap_threshold_list, multi_contour_eval: bool = False
) -> tuple[list[np.ndarray], list[int]]:
    """Upstream ``compute_bboxes_from_scoremaps``: boxes and box counts at each threshold."""
    height, width = scoremap.shape
    scoremap_image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)

    def scoremap2bbox(threshold):
        _, thr_gray_heatmap = cv2.threshold(
            src=scoremap_image,
            thresh=int(threshold * np.max(scoremap_image)),
            maxval=255,
            type=cv2.THRESH_BINARY,
        )
        contours = cv2.findContours(image=thr_gray_heatmap, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            return np.asarray([[0, 0, 0, 0]]), 1
        if not multi_contour_eval:
            contours = [max(contours, key=cv2.contourArea)]
        estimated_boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            x0, y0, x1, y1 = x, y, x + w, y + h
            x1 = min(x1, width - 1)
            y1 = min(y1, height - 1)
            estimated_boxes.append([x0, y0, x1, y1])
        return np.asarray(estimated_boxes), len(contours)

    estimated_boxes_at_each_thr = []
    number_of_box_list = []
    for threshold in scoremap_threshold_list:
        boxes, number_of_box = scoremap2bbox(threshold)
        estimated_boxes_at_each_thr.append(boxes)
        number_of_box_list.append(number_of_box)
    return estimated_boxes_at_each_thr, number_of_box_list


def reference_best_iou_per_threshold(
    scoremap: np.ndarray, gt_boxes, multi_contour_eval: bool, cam_threshold_list=None
) -> np.ndarray:
    """Upstream ``BoxEvaluator.accumulate`` up to ``sliced_multiple_iou`` (best IoU per threshold)."""
    if cam_threshold_list is None:
        cam_threshold_list = list(np.arange(0, 1, CAM_CURVE_INTERVAL))
    boxes_at_thresholds, number_of_box_list = reference_compute_bboxes_from_scoremaps(
        scoremap=scoremap, scoremap_threshold_list=cam_threshold_list, multi_contour_eval=multi_contour_eval
    )
    boxes_at_thresholds = np.concatenate(boxes_at_thresholds, axis=0)
    multiple_iou = reference_calculate_multiple_iou(np.array(boxes_at_thresholds), np.array(gt_boxes))
    idx = 0
    sliced_multiple_iou = []
    for nr_box in number_of_box_list:
        sliced_multiple_iou.append(max(multiple_iou.max(1)[idx : idx + nr_box]))
        idx += nr_box
    return np.asarray(sliced_multiple_iou)


def reference_box_hits(
    scoremap: np.ndarray,
    gt_boxes,
    iou_threshold_list: Sequence[int] = IOU_THRESHOLDS_V2,
    multi_contour_eval: bool = True,
    cam_threshold_list=None,
) -> np.ndarray:
    """Upstream ``BoxEvaluator.accumulate`` for one image: its ``num_correct`` increments (n_iou, T)."""
    if cam_threshold_list is None:
        cam_threshold_list = list(np.arange(0, 1, CAM_CURVE_INTERVAL))
    sliced_multiple_iou = reference_best_iou_per_threshold(scoremap, gt_boxes, multi_contour_eval, cam_threshold_list)
    return reference_count_hits(sliced_multiple_iou, iou_threshold_list)


def reference_count_hits(sliced_multiple_iou, iou_threshold_list: Sequence[int]) -> np.ndarray:
    """The counting tail of upstream ``BoxEvaluator.accumulate``: (n_iou, T) increments of one image."""
    num_correct = np.zeros((len(iou_threshold_list), len(sliced_multiple_iou)))
    for row, _threshold in enumerate(iou_threshold_list):
        correct_threshold_indices = np.where(np.asarray(sliced_multiple_iou) >= (_threshold / 100))[0]
        num_correct[row][correct_threshold_indices] += 1
    return num_correct


def reference_maxboxacc(num_correct: np.ndarray, cnt: int) -> list[float]:
    """Upstream ``BoxEvaluator.compute``: max accuracy (percent) per IoU row."""
    max_box_acc = []
    for row in np.asarray(num_correct, dtype=np.float64):
        localization_accuracies = row * 100.0 / float(cnt)
        max_box_acc.append(localization_accuracies.max())
    return max_box_acc


def reference_pixel_histograms(scoremap: np.ndarray, gt_mask: np.ndarray, cam_threshold_list=None):
    """Upstream ``MaskEvaluator.accumulate`` for one image: float64 fg / bg score histograms."""
    if cam_threshold_list is None:
        cam_threshold_list = list(np.arange(0, 1, CAM_CURVE_INTERVAL))
    threshold_list_right_edge = np.append(cam_threshold_list, [1.0, 2.0, 3.0])
    gt_true_scores = scoremap[gt_mask == 1]
    gt_false_scores = scoremap[gt_mask == 0]
    gt_true_hist, _ = np.histogram(gt_true_scores, bins=threshold_list_right_edge)
    gt_false_hist, _ = np.histogram(gt_false_scores, bins=threshold_list_right_edge)
    return gt_true_hist.astype(np.float64), gt_false_hist.astype(np.float64)


def reference_pxap(gt_true_score_hist: np.ndarray, gt_false_score_hist: np.ndarray) -> float:
    """Upstream ``MaskEvaluator.compute``: PxAP in percent."""
    num_gt_true = gt_true_score_hist.sum()
    tp = gt_true_score_hist[::-1].cumsum()
    fn = num_gt_true - tp
    fp = gt_false_score_hist[::-1].cumsum()  # upstream also sums it into an unused num_gt_false
    if ((tp + fn) <= 0).all():
        raise RuntimeError("No positive ground truth in the eval set.")
    if ((tp + fp) <= 0).all():
        raise RuntimeError("No positive prediction in the eval set.")
    non_zero_indices = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[non_zero_indices[1:]].sum()
    auc *= 100
    return auc
