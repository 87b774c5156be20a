"""The one wsoleval accumulator (Choe et al., CVPR 2020): MaxBoxAcc, MaxBoxAccV2 and PxAP of a split.

`WSOLAccumulator` is a thin torchmetrics Metric over camexp.wsol.protocol's pure functions. The CAM
callback (`eval.protocol=wsoleval`), `camexp evaluate` (ScoreMapCallback) and `camexp evaluate-maps` feed it,
so the three give the same digits. What it sums, per CAM threshold of the grid ``np.arange(0, 1, interval)``:

- ``hits_v1`` (T,): images whose largest-contour box reaches IoU 50 with a GT box (MaxBoxAcc);
- ``hits_v2`` (n_iou, T): images whose best box (all contours; the largest with ``multi_contour=False``)
  reaches each IoU threshold (MaxBoxAccV2);
- ``num_images``: images with GT boxes; ``num_mask_images``: images with a GT mask;
- ``fg_hist``, ``bg_hist`` (T + 2,): the normalized map's values over GT-foreground and background pixels (PxAP).

Every state is an integer count of fixed size with ``dist_reduce_fx="sum"``: integer sums are exact and do not
depend on the order, so the states after a DDP reduction over N processes are the counts of one pass over the
whole split, and the metrics, computed once from those counts (``compute`` -> `WSOLResult`), carry the digits
of one process. Memory does not grow with the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from camexp.wsol import protocol as W


@dataclass
class WSOLResult:
    """The summed counts of a split, its settings, and the metrics derived from the counts.

    ``metrics()`` gives fractions in [0, 1] (logs, results.json): hits / images; ``metrics(percent=True)`` the
    reference's own numbers (hits * 100 / images, its arithmetic, so the digits are upstream's) for what is
    printed or written for people (wsoleval.json, report tables). Both come from the same counts through
    ``protocol.maxboxacc_from_hits``; PxAP is the reference's percent, / 100 as a fraction.
    """

    thresholds: np.ndarray  # (T,) CAM thresholds
    iou_thresholds: tuple[int, ...]  # the V2 rows
    multi_contour: bool  # V2 rows use all contours (the definition) or the largest one
    num_images: int  # images with boxes
    hits_v1: np.ndarray  # (T,) largest-contour hits at IoU 50
    hits_v2: np.ndarray  # (n_iou, T)
    num_mask_images: int = 0
    fg_hist: np.ndarray | None = None  # None when no image had a mask
    bg_hist: np.ndarray | None = None

    @property
    def cam_curve_interval(self) -> float:
        return float(self.thresholds[1] - self.thresholds[0]) if self.thresholds.size > 1 else 1.0

    def metrics(self, percent: bool = False) -> dict[str, Any]:
        """num_images, num_mask_images; with boxes maxboxacc, maxboxacc_threshold, maxboxacc_v2,
        maxboxacc_v2_per_iou {"30": .., ...}, maxboxacc_v2_thresholds; pxap (None when undefined)."""
        scale = 100.0 if percent else 1.0
        out: dict[str, Any] = {"num_images": self.num_images, "num_mask_images": self.num_mask_images}
        if self.num_images:
            n, grid = self.num_images, self.thresholds
            v1 = W.maxboxacc_from_hits(self.hits_v1[None, :], n, (W.V1_IOU,), grid, scale)
            v2 = W.maxboxacc_from_hits(self.hits_v2, n, self.iou_thresholds, grid, scale)
            out["maxboxacc"] = v1["accuracy"][W.V1_IOU]
            out["maxboxacc_threshold"] = v1["best_threshold"][W.V1_IOU]
            out["maxboxacc_v2"] = v2["mean"]
            out["maxboxacc_v2_per_iou"] = {str(k): v for k, v in v2["accuracy"].items()}
            out["maxboxacc_v2_thresholds"] = {str(k): v for k, v in v2["best_threshold"].items()}
        pxap = self._pxap_percent()
        out["pxap"] = pxap if pxap is None or percent else pxap / 100.0
        return out

    def _pxap_percent(self) -> float | None:
        if not self.num_mask_images or self.fg_hist is None or self.bg_hist is None:
            return None
        try:
            return W.pxap_from_histograms(self.fg_hist, self.bg_hist)
        except RuntimeError:  # no foreground pixel / no positive prediction: undefined, as upstream
            return None

    def curves(self) -> np.ndarray:
        """Box accuracy (fraction) versus CAM threshold, (1 + n_iou, T): row 0 MaxBoxAcc (IoU 50, largest
        contour), then one row per V2 IoU threshold; columns follow ``thresholds``. Zeros without images."""
        return np.concatenate([self.hits_v1[None], self.hits_v2]) / max(self.num_images, 1)


def heldout_metrics(selection: WSOLResult, heldout: WSOLResult) -> dict[str, Any]:
    """The held-out protocol: CAM thresholds chosen on `selection` (e.g. val / train-fullsup), box accuracy
    of `heldout` (e.g. test) at those thresholds, in percent (written for people: printed and in the JSON).

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
    v1 = W.accuracy_at_threshold_index(heldout.hits_v1[None, :], heldout.num_images, i1, (W.V1_IOU,))
    v2 = W.accuracy_at_threshold_index(heldout.hits_v2, heldout.num_images, i2, heldout.iou_thresholds)
    return {
        "maxboxacc": v1["mean"],
        "maxboxacc_threshold": float(thresholds[i1]),
        "maxboxacc_v2": v2["mean"],
        "maxboxacc_v2_per_iou": {str(k): v for k, v in v2["accuracy"].items()},
        "maxboxacc_v2_threshold": float(thresholds[i2]),
        "pxap": heldout.metrics(percent=True)["pxap"],
        "num_images": heldout.num_images,
        "selection_num_images": selection.num_images,
    }


def _numpy(values: Tensor | np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def wsoleval_scoremaps(raw_maps: Tensor | np.ndarray, size: int = W.RESIZE_LENGTH) -> np.ndarray:
    """Raw maps (N x h x w, before any normalization of ours) -> the protocol's N x size x size maps:
    float64 bicubic resize, then per-map min-max (``protocol.normalize_scoremap``)."""
    maps = _numpy(raw_maps)
    return np.stack([W.normalize_scoremap(m, (size, size)) for m in maps.reshape(-1, *maps.shape[-2:])])


def wsoleval_gt_boxes(
    boxes: Tensor | np.ndarray,
    counts: Tensor | np.ndarray,
    image_sizes: Tensor | np.ndarray,
    size: int = W.RESIZE_LENGTH,
) -> list[np.ndarray]:
    """GT boxes in ORIGINAL pixels (N x B x 4 padded, the first counts[i] valid; image_sizes N x 2 as
    (width, height)) -> per image int64 K x 4 boxes in the size x size frame (``protocol.scored_gt_boxes``:
    clipped, integer, scaled, exactly as `camexp evaluate` and `evaluate-maps` score them)."""
    boxes, sizes = _numpy(boxes), _numpy(image_sizes)
    counts = _numpy(counts, np.int64).tolist()
    return [W.scored_gt_boxes(b[:k], tuple(s), (size, size)) for b, k, s in zip(boxes, counts, sizes, strict=True)]


class WSOLAccumulator(Metric):
    """MaxBoxAcc (largest contour, IoU 50), MaxBoxAccV2 (all contours, mean over IoU 30/50/70) and PxAP over a
    CAM-threshold grid, exactly as wsolevaluation computes them; ``compute()`` gives a `WSOLResult`.

    ``update(scoremaps, gt_boxes, masks)`` takes maps already in the protocol's frame and range
    (``wsoleval_scoremaps``), per image its GT boxes in that frame (``wsoleval_gt_boxes``; None: not scored
    for boxes) and masks (1 foreground, 0 background, 255 ignored); ``update_fixed_box`` scores one box
    predicted for every image at every threshold (the whole-image baseline). `multi_contour=False` scores the
    V2 rows with the largest contour too (``evaluate-maps --largest``). See the module docstring for
    what is summed and why N processes give the digits of one.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        cam_curve_interval: float = W.CAM_CURVE_INTERVAL,
        iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
        multi_contour: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        W.check_settings(cam_curve_interval, iou_thresholds)
        self.thresholds = W.default_thresholds(cam_curve_interval)
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        self.multi_contour = multi_contour
        t = self.thresholds.size
        self.add_state("hits_v1", torch.zeros(t, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("hits_v2", torch.zeros(len(self.iou_thresholds), t, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("fg_hist", torch.zeros(t + 2, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bg_hist", torch.zeros(t + 2, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_mask_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        scoremaps: np.ndarray | Tensor | None,
        gt_boxes: Sequence[np.ndarray | None] | None = None,
        masks: np.ndarray | Tensor | None = None,
        fixed_box: np.ndarray | None = None,
    ) -> None:
        """A batch: N maps, per image its GT boxes (or None) and/or N masks; or, with `fixed_box` in place of
        the maps, images whose prediction is that box at every threshold (see ``update_fixed_box``)."""
        if gt_boxes is not None:
            hits_v1 = np.zeros(self.thresholds.size, dtype=np.int64)
            hits_v2 = np.zeros((len(self.iou_thresholds), self.thresholds.size), dtype=np.int64)
            scored = 0
            maps = [None] * len(gt_boxes) if scoremaps is None else _numpy(scoremaps)
            for scoremap, gt in zip(maps, gt_boxes, strict=True):
                if gt is None:
                    continue
                v1, v2 = self._box_hits(scoremap, np.asarray(gt), fixed_box)
                hits_v1 += v1
                hits_v2 += v2
                scored += 1
            self.hits_v1 += torch.from_numpy(hits_v1).to(self.hits_v1.device)
            self.hits_v2 += torch.from_numpy(hits_v2).to(self.hits_v2.device)
            self.num_images += scored
        if masks is not None:
            masks = _numpy(masks, None)
            fg, bg = W.pixel_histograms(_numpy(scoremaps), masks, self.thresholds)
            self.fg_hist += torch.from_numpy(fg).to(self.fg_hist.device)
            self.bg_hist += torch.from_numpy(bg).to(self.bg_hist.device)
            self.num_mask_images += len(masks)

    def update_fixed_box(self, box: np.ndarray, gt_boxes: Sequence[np.ndarray]) -> None:
        """Images whose prediction is `box` at every threshold (inclusive pixels of the eval frame, e.g.
        ``protocol.whole_frame_box``); gt_boxes per image in that frame. No PxAP: there is no map."""
        self.update(None, gt_boxes, fixed_box=box)  # the wrapped update: counted, and synced like any other

    def _box_hits(
        self, scoremap: np.ndarray | None, gt_boxes: np.ndarray, fixed_box: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(T,) V1 hits and (n_iou, T) V2-row hits of one image, from one contour pass (or of `fixed_box`)."""
        if fixed_box is not None:
            v1, v2 = W.fixed_box_hits(fixed_box, gt_boxes, (W.V1_IOU,), self.iou_thresholds, self.thresholds)
            return v1[0], v2
        if self.multi_contour:
            v1, v2 = W.box_hits_v1_v2(scoremap, gt_boxes, (W.V1_IOU,), self.iou_thresholds, self.thresholds)
            return v1[0], v2
        rows, _ = W.box_hits_v1_v2(scoremap, gt_boxes, (*self.iou_thresholds, W.V1_IOU), (), self.thresholds)
        return rows[-1], rows[:-1]

    def compute(self) -> WSOLResult:
        masks = int(self.num_mask_images) > 0
        return WSOLResult(
            thresholds=self.thresholds,
            iou_thresholds=self.iou_thresholds,
            multi_contour=self.multi_contour,
            num_images=int(self.num_images),
            hits_v1=self.hits_v1.cpu().numpy().copy(),
            hits_v2=self.hits_v2.cpu().numpy().copy(),
            num_mask_images=int(self.num_mask_images),
            fg_hist=self.fg_hist.cpu().numpy().copy() if masks else None,
            bg_hist=self.bg_hist.cpu().numpy().copy() if masks else None,
        )
