"""Streaming wsoleval scoring of raw score maps: MaxBoxAcc, MaxBoxAccV2, PxAP, and the held-out protocol.

One `WSOLScorer` serves both commands: `camexp evaluate-maps` feeds it maps read from disk, `camexp evaluate`
feeds it the maps the network just produced. Same function, same inputs, hence the same digits. The state
is fixed-size (hit counts per threshold, two pixel histograms), so memory does not grow with the split.
Each raw map goes through the reference preprocessing (``normalize_scoremap``: bicubic to 224 x 224 in
float64, min-max), then camexp.wsol.protocol's fast, exact hit counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from camexp.wsol import protocol as W

V1_IOU = 50  # MaxBoxAcc (V1): IoU 0.5, largest contour


@dataclass
class WSOLResult:
    """Summed counts of a split and the metrics (percent, like the reference) derived from them."""

    thresholds: np.ndarray  # (T,) CAM thresholds
    iou_thresholds: tuple[int, ...]  # the V2 rows
    multi_contour: bool  # V2 rows use all contours (the definition) or the largest one
    num_images: int  # images with boxes
    hits_v1: np.ndarray  # (T,) largest-contour hits at IoU 50
    hits_v2: np.ndarray  # (n_iou, T)
    num_mask_images: int = 0
    fg_hist: np.ndarray | None = None
    bg_hist: np.ndarray | None = None

    @property
    def v1(self) -> dict[str, Any] | None:
        if not self.num_images:
            return None
        return W.maxboxacc_from_hits(self.hits_v1[None, :], self.num_images, (V1_IOU,), self.thresholds)

    @property
    def v2(self) -> dict[str, Any] | None:
        if not self.num_images:
            return None
        return W.maxboxacc_from_hits(self.hits_v2, self.num_images, self.iou_thresholds, self.thresholds)

    @property
    def pxap(self) -> float | None:
        if not self.num_mask_images or self.fg_hist is None or self.bg_hist is None:
            return None
        try:
            return W.pxap_from_histograms(self.fg_hist, self.bg_hist)
        except RuntimeError:  # no foreground pixel / no positive prediction: undefined, as upstream
            return None

    def metrics(self) -> dict[str, Any]:
        """The numbers (percent) a user reads: MaxBoxAcc, its threshold, MaxBoxAccV2 per IoU, PxAP."""
        out: dict[str, Any] = {"num_images": self.num_images, "num_mask_images": self.num_mask_images}
        v1, v2 = self.v1, self.v2
        if v1 is not None and v2 is not None:
            out["maxboxacc"] = v1["accuracy"][V1_IOU]
            out["maxboxacc_threshold"] = v1["best_threshold"][V1_IOU]
            out["maxboxacc_v2"] = v2["mean"]
            out["maxboxacc_v2_per_iou"] = {str(k): v for k, v in v2["accuracy"].items()}
            out["maxboxacc_v2_thresholds"] = {str(k): v for k, v in v2["best_threshold"].items()}
        out["pxap"] = self.pxap
        return out

    def to_json(self) -> dict[str, Any]:
        """Metrics plus the settings and raw counts (so a held-out selection can be redone from the file)."""
        counts: dict[str, Any] = {
            "hits_v1": self.hits_v1.astype(int).tolist(),
            "hits_v2": self.hits_v2.astype(int).tolist(),
        }
        if self.fg_hist is not None and self.bg_hist is not None:
            counts.update(fg_hist=self.fg_hist.astype(int).tolist(), bg_hist=self.bg_hist.astype(int).tolist())
        return {
            "protocol": "wsoleval",
            **self.metrics(),
            "iou_thresholds": list(self.iou_thresholds),
            "multi_contour": self.multi_contour,
            "num_thresholds": int(self.thresholds.size),
            "cam_curve_interval": float(self.thresholds[1] - self.thresholds[0]) if self.thresholds.size > 1 else 1.0,
            "counts": counts,
        }


class WSOLScorer:
    """Accumulates one split, one raw map at a time (`add`), then `result()`."""

    def __init__(
        self,
        cam_curve_interval: float = W.CAM_CURVE_INTERVAL,
        iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
        multi_contour: bool = True,
    ) -> None:
        if not 0 < cam_curve_interval < 1:
            raise ValueError(f"cam_curve_interval must lie in (0, 1); got {cam_curve_interval}.")
        self.thresholds = W.default_thresholds(cam_curve_interval)
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        if not self.iou_thresholds or any(not 0 < t <= 100 for t in self.iou_thresholds):
            raise ValueError(f"IoU thresholds are percentages in (0, 100]; got {list(iou_thresholds)}.")
        self.multi_contour = multi_contour
        size = self.thresholds.size
        self.num_images = 0
        self.hits_v1 = np.zeros(size, dtype=np.int64)
        self.hits_v2 = np.zeros((len(self.iou_thresholds), size), dtype=np.int64)
        self.num_mask_images = 0
        self.fg_hist = np.zeros(size + 2, dtype=np.int64)
        self.bg_hist = np.zeros(size + 2, dtype=np.int64)

    def add(self, raw_map: np.ndarray, gt_boxes: np.ndarray | None = None, gt_mask: np.ndarray | None = None) -> None:
        """Score one image. raw_map: any (H, W) map (normalized here, as upstream's CAMComputer does);
        gt_boxes: (K, 4) in the 224 frame (``resize_gt_boxes``); gt_mask: 224 x 224 {0, 1, 255}."""
        scoremap = W.normalize_scoremap(raw_map)
        if gt_boxes is not None:
            v1_hits, v2_hits = self._box_hits(scoremap, np.asarray(gt_boxes))
            self.hits_v1 += v1_hits
            self.hits_v2 += v2_hits
            self.num_images += 1
        if gt_mask is not None:
            fg, bg = W.pixel_histograms(scoremap, gt_mask, self.thresholds)
            self.fg_hist += fg
            self.bg_hist += bg
            self.num_mask_images += 1

    def add_box(self, box: np.ndarray, gt_boxes: np.ndarray) -> None:
        """Score one image whose prediction is the same box at every threshold (the whole-image baseline:
        ``wsoleval.whole_frame_box()``); box and gt_boxes in the 224 frame, inclusive pixels. No PxAP."""
        v1, v2 = W.fixed_box_hits(box, np.asarray(gt_boxes), (V1_IOU,), self.iou_thresholds, self.thresholds)
        self.hits_v1 += v1[0]
        self.hits_v2 += v2
        self.num_images += 1

    def _box_hits(self, scoremap: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T,) V1 hits and (n_iou, T) V2-row hits from one contour pass."""
        if self.multi_contour:
            v1, v2 = W.box_hits_v1_v2(scoremap, gt_boxes, (V1_IOU,), self.iou_thresholds, self.thresholds)
            return v1[0], v2
        rows, _ = W.box_hits_v1_v2(scoremap, gt_boxes, (*self.iou_thresholds, V1_IOU), (), self.thresholds)
        return rows[-1], rows[:-1]

    def result(self) -> WSOLResult:
        masks = self.num_mask_images > 0
        return WSOLResult(
            thresholds=self.thresholds,
            iou_thresholds=self.iou_thresholds,
            multi_contour=self.multi_contour,
            num_images=self.num_images,
            hits_v1=self.hits_v1.copy(),
            hits_v2=self.hits_v2.copy(),
            num_mask_images=self.num_mask_images,
            fg_hist=self.fg_hist.copy() if masks else None,
            bg_hist=self.bg_hist.copy() if masks else None,
        )


def heldout_metrics(selection: WSOLResult, heldout: WSOLResult) -> dict[str, Any]:
    """The held-out protocol: CAM thresholds chosen on `selection` (e.g. val / train-fullsup), box accuracy
    of `heldout` (e.g. test) at those thresholds, in percent.

    MaxBoxAcc (V1) uses the threshold that maximizes the selection split's V1 hits; the V2 rows share one
    threshold, the one maximizing their summed hits (= their mean accuracy); ties go to the lowest threshold.
    PxAP has no threshold to choose, so it is reported as is on the held-out split.
    """
    if (
        not np.array_equal(selection.thresholds, heldout.thresholds)
        or selection.iou_thresholds != heldout.iou_thresholds
    ):
        raise ValueError("Held-out scoring needs the same threshold grid and IoU thresholds on both splits.")
    if not selection.num_images or not heldout.num_images:
        raise ValueError("Held-out scoring needs boxes on both splits.")
    thresholds = selection.thresholds
    i1 = W.select_threshold_index(selection.hits_v1[None, :])
    i2 = W.select_threshold_index(selection.hits_v2)
    v1 = W.accuracy_at_threshold_index(heldout.hits_v1[None, :], heldout.num_images, i1, (V1_IOU,))
    v2 = W.accuracy_at_threshold_index(heldout.hits_v2, heldout.num_images, i2, heldout.iou_thresholds)
    return {
        "maxboxacc": v1["mean"],
        "maxboxacc_threshold": float(thresholds[i1]),
        "maxboxacc_v2": v2["mean"],
        "maxboxacc_v2_per_iou": {str(k): v for k, v in v2["accuracy"].items()},
        "maxboxacc_v2_threshold": float(thresholds[i2]),
        "pxap": heldout.pxap,
        "num_images": heldout.num_images,
        "selection_num_images": selection.num_images,
    }


def format_metrics(metrics: dict[str, Any], iou_thresholds: Sequence[int], multi_contour: bool) -> list[str]:
    """Human-readable lines of a `WSOLResult.metrics()` dict (or a `heldout_metrics` dict)."""
    lines = []
    if "maxboxacc" in metrics:
        at = metrics.get("maxboxacc_threshold")
        lines.append(
            f"  MaxBoxAcc   (IoU 50, largest contour) : {metrics['maxboxacc']:7.3f} %  (CAM threshold {at:.3f})"
        )
        rule = "all contours" if multi_contour else "largest contour"
        ious = "/".join(map(str, iou_thresholds))
        lines.append(f"  MaxBoxAccV2 (IoU {ious}, {rule}) : {metrics['maxboxacc_v2']:7.3f} %")
        chosen = metrics.get("maxboxacc_v2_thresholds", {})
        shared = metrics.get("maxboxacc_v2_threshold")
        for iou, value in metrics["maxboxacc_v2_per_iou"].items():
            threshold = chosen.get(iou, shared)
            lines.append(f"      IoU {iou:>3}: {value:7.3f} %  (CAM threshold {threshold:.3f})")
    if metrics.get("pxap") is not None:
        lines.append(f"  PxAP                                  : {metrics['pxap']:7.3f} %")
    return lines
