"""torchmetrics Metrics for classification and CAM localization.

States are scalar sums (`dist_reduce_fx="sum"`), so DDP reduction is a sum and memory does not
grow with the dataset. With an unpadded evaluation sampler the result on N processes equals one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from camexp.wsol import protocol as W

_COUNTS = ("total", "top1", "top5", "boxed", "loc_top1", "loc_top5", "gt_known", "heuristic")


def localization_counts(
    logits: Tensor,
    labels: Tensor,
    gt_class_iou: Tensor | None,
    iou_threshold: float,
    heuristic_hits: Tensor | None = None,
) -> Tensor:
    """Per-batch counts in `_COUNTS` order.

    gt_class_iou: for each image, the best IoU between the box from the GT class's CAM and any GT box
    (-1 where the image has no box), or None for box-less data. Top-k localization (the paper) needs
    the class among the top k AND IoU >= threshold for that class's box: only the GT class's box can
    make a hit, so the GT-class box decides top-1, top-5 and GT-known alike. heuristic_hits: per image,
    whether Table 3's five heuristic guesses hit (see localization.heuristic_top5_hits).
    """
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1 = topk[:, 0] == labels
    top5 = (topk == labels[:, None]).any(1)
    if gt_class_iou is None:
        boxed = hit = torch.zeros_like(top1)
    else:
        gt_class_iou = gt_class_iou.to(logits.device)
        boxed = gt_class_iou >= 0
        hit = gt_class_iou >= iou_threshold
    heuristic = torch.zeros_like(top1) if heuristic_hits is None else heuristic_hits.to(top1.device)
    counts = [torch.ones_like(top1), top1, top5, boxed, top1 & hit, top5 & hit, hit, heuristic & boxed]
    return torch.stack([c.sum() for c in counts]).to(torch.float64)


class CAMLocalizationMetrics(Metric):
    """acc_top1, acc_top5 over all images; loc_top1, loc_top5, loc_gt_known (and Table 3's
    loc_top5_heuristic when enabled) over images with boxes."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, iou_threshold: float = 0.5, heuristic_top5: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iou_threshold = iou_threshold
        self.heuristic_top5 = heuristic_top5
        for name in _COUNTS:
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self, logits: Tensor, labels: Tensor, gt_class_iou: Tensor | None = None, heuristic_hits: Tensor | None = None
    ) -> None:
        counts = localization_counts(logits, labels, gt_class_iou, self.iou_threshold, heuristic_hits)
        for name, value in zip(_COUNTS, counts, strict=True):
            setattr(self, name, getattr(self, name) + value)

    def compute(self) -> dict[str, Tensor]:
        out = {
            "acc_top1": self.top1 / self.total.clamp_min(1),
            "acc_top5": self.top5 / self.total.clamp_min(1),
            "num_images": self.total.clone(),
        }
        if self.boxed > 0:
            out.update(
                loc_top1=self.loc_top1 / self.boxed,
                loc_top5=self.loc_top5 / self.boxed,
                loc_gt_known=self.gt_known / self.boxed,
            )
            if self.heuristic_top5:
                out["loc_top5_heuristic"] = self.heuristic / self.boxed
        return out


# -- the wsoleval protocol (Choe et al., CVPR 2020): MaxBoxAcc, MaxBoxAccV2, PxAP -------------------
# Pure `*_update` / `*_compute` functions under thin Metric classes (torchmetrics' pattern). The
# per-image work is camexp.wsol.protocol's exact fast path; the states are per-threshold hit counts and
# pixel histograms, summed over batches and ranks. Logged values are fractions in [0, 1]; the
# reference (and camexp.wsol.protocol.maxboxacc_from_hits) reports percent.

MAXBOXACC_IOU = 50  # MaxBoxAcc (V1): IoU 0.5 with the largest contour's box


def wsoleval_thresholds(num_thresholds: int = 1000) -> np.ndarray:
    """The reference grid ``np.arange(0, 1, 1 / n)``: 1000 -> its 0.001 grid, 100 -> 0.01."""
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be >= 1; got {num_thresholds}.")
    return W.default_thresholds(1.0 / num_thresholds)


def wsoleval_scoremaps(raw_maps: Tensor | np.ndarray, size: int = W.RESIZE_LENGTH) -> np.ndarray:
    """Raw maps (N x h x w, before any normalization of ours) -> the protocol's N x size x size maps:
    float64 bicubic resize, then per-map min-max (``wsoleval.normalize_scoremap``)."""
    maps = raw_maps.detach().cpu().double().numpy() if isinstance(raw_maps, Tensor) else np.asarray(raw_maps)
    return np.stack([W.normalize_scoremap(m, (size, size)) for m in maps.reshape(-1, *maps.shape[-2:])])


def wsoleval_gt_boxes(
    boxes: Tensor | np.ndarray,
    counts: Tensor | np.ndarray,
    image_sizes: Tensor | np.ndarray,
    size: int = W.RESIZE_LENGTH,
) -> list[np.ndarray]:
    """GT boxes in ORIGINAL pixels (N x B x 4 padded, the first counts[i] valid; image_sizes N x 2 as
    (width, height)) -> per image int64 K x 4 boxes in the size x size frame (``wsoleval.scored_gt_boxes``:
    clipped, integer, scaled, exactly as `camexp evaluate` and `evaluate-maps` score them)."""
    boxes = boxes.detach().cpu().double().numpy() if isinstance(boxes, Tensor) else np.asarray(boxes, np.float64)
    counts = np.asarray(counts.cpu() if isinstance(counts, Tensor) else counts).astype(int).tolist()
    sizes = np.asarray(image_sizes.cpu() if isinstance(image_sizes, Tensor) else image_sizes, dtype=np.float64)
    return [W.scored_gt_boxes(b[:k], tuple(s), (size, size)) for b, k, s in zip(boxes, counts, sizes, strict=True)]


def maxboxacc_update(
    scoremaps: np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    thresholds: np.ndarray,
    iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed hits of a batch: (T,) largest-contour hits at IoU 50 (MaxBoxAcc) and (n_iou, T)
    all-contour hits (MaxBoxAccV2). scoremaps: N x H x W in the eval frame (``wsoleval_scoremaps``);
    gt_boxes: per image K x 4 in that frame (``wsoleval_gt_boxes``). One contour pass per image."""
    hits_v1 = np.zeros(len(thresholds), dtype=np.int64)
    hits_v2 = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(scoremaps, gt_boxes, strict=True):
        v1, v2 = W.box_hits_v1_v2(scoremap, gt, (MAXBOXACC_IOU,), tuple(iou_thresholds), thresholds)
        hits_v1 += v1[0]
        hits_v2 += v2
    return hits_v1, hits_v2


def fixed_box_update(
    box: np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    thresholds: np.ndarray,
    iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
) -> tuple[np.ndarray, np.ndarray]:
    """``maxboxacc_update`` for one box predicted for every image at every threshold (the whole-image
    baseline: ``wsoleval.whole_frame_box``): summed (T,) and (n_iou, T) hits, each row constant."""
    hits_v1 = np.zeros(len(thresholds), dtype=np.int64)
    hits_v2 = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for gt in gt_boxes:
        v1, v2 = W.fixed_box_hits(box, gt, (MAXBOXACC_IOU,), tuple(iou_thresholds), thresholds)
        hits_v1 += v1[0]
        hits_v2 += v2
    return hits_v1, hits_v2


def maxboxacc_compute(
    hits_v1: Tensor, hits_v2: Tensor, num_images: Tensor, thresholds: np.ndarray, iou_thresholds: Sequence[int]
) -> dict[str, Tensor]:
    """Fractions: best accuracy over the CAM thresholds (first threshold on ties, as the reference),
    V2 = mean over the IoU rows each at its own best threshold, and those thresholds. NaN everywhere
    when no image was seen (undefined, not 0)."""
    n = num_images.double()
    curve_v1 = hits_v1.double() / n
    curves_v2 = hits_v2.double() / n
    best_v1 = int(hits_v1.argmax())  # argmax of the counts: the first best threshold, as np.argmax
    best_v2 = hits_v2.argmax(dim=1)
    grid = torch.as_tensor(thresholds, dtype=torch.float64)
    if n <= 0:
        grid = torch.full_like(grid, float("nan"))
        curve_v1, curves_v2 = curve_v1 * float("nan"), curves_v2 * float("nan")
    out = {
        "maxboxacc": curve_v1[best_v1],
        "maxboxacc_threshold": grid[best_v1],
        "maxboxacc_v2": curves_v2.amax(dim=1).mean(),
    }
    for row, iou in enumerate(iou_thresholds):
        out[f"maxboxacc_v2_iou{iou}"] = curves_v2[row, best_v2[row]]
        out[f"maxboxacc_v2_iou{iou}_threshold"] = grid[best_v2[row].cpu()]
    return out


class MaxBoxAcc(Metric):
    """MaxBoxAcc (V1: largest contour, IoU 50) and MaxBoxAccV2 (all contours, mean over IoU 30/50/70)
    over a CAM-threshold grid, exactly as wsolevaluation computes them.

    update(scoremaps, gt_boxes): maps already in the protocol frame and range (``wsoleval_scoremaps``),
    GT boxes per image in that frame (``wsoleval_gt_boxes``); or ``update_raw`` from raw CAMs and boxes
    in original pixels. States: hit counts per threshold (fixed size, summed across ranks).
    ``curves()`` gives accuracy versus threshold ((1 + n_iou) x T: V1, then each V2 row) for plots.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        num_thresholds: int = 1000,
        iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
        size: int = W.RESIZE_LENGTH,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.grid = wsoleval_thresholds(num_thresholds)
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        self.size = size
        t = self.grid.size
        self.add_state("hits_v1", torch.zeros(t, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("hits_v2", torch.zeros(len(self.iou_thresholds), t, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def thresholds(self) -> Tensor:
        """The CAM thresholds (T,) of the curves."""
        return torch.as_tensor(self.grid)

    def update(self, scoremaps: np.ndarray | Tensor, gt_boxes: Sequence[np.ndarray]) -> None:
        if isinstance(scoremaps, Tensor):
            scoremaps = scoremaps.detach().cpu().double().numpy()
        hits_v1, hits_v2 = maxboxacc_update(scoremaps, gt_boxes, self.grid, self.iou_thresholds)
        self._add_hits(hits_v1, hits_v2, len(gt_boxes))

    def _add_hits(self, hits_v1: np.ndarray, hits_v2: np.ndarray, num_images: int) -> None:
        self.hits_v1 += torch.from_numpy(hits_v1).to(self.hits_v1.device)
        self.hits_v2 += torch.from_numpy(hits_v2).to(self.hits_v2.device)
        self.num_images += num_images

    def update_raw(self, raw_maps: Tensor | np.ndarray, boxes: Tensor, counts: Tensor, image_sizes: Tensor) -> None:
        """The full protocol from raw maps (N x h x w) and GT boxes in original pixels (N x B x 4,
        counts (N,), image_sizes N x 2 as (width, height))."""
        self.update(wsoleval_scoremaps(raw_maps, self.size), wsoleval_gt_boxes(boxes, counts, image_sizes, self.size))

    def compute(self) -> dict[str, Tensor]:
        return maxboxacc_compute(self.hits_v1, self.hits_v2, self.num_images, self.grid, self.iou_thresholds)

    def curves(self) -> Tensor:
        """Box accuracy (fraction) versus CAM threshold: row 0 V1 (IoU 50, largest contour), then one
        row per V2 IoU threshold (all contours); columns follow ``thresholds``."""
        n = self.num_images.double().clamp_min(1)
        return torch.cat([self.hits_v1[None].double(), self.hits_v2.double()]) / n


class FixedBoxAcc(MaxBoxAcc):
    """``MaxBoxAcc`` of a prediction that is one box for every image at every threshold (the whole-image
    baseline): the same states, compute and DDP sum; ``update(box, gt_boxes)`` with the box in inclusive
    pixels of the eval frame (``wsoleval.whole_frame_box``) and GT boxes per image in that frame."""

    def update(self, box: np.ndarray, gt_boxes: Sequence[np.ndarray]) -> None:  # type: ignore[override]
        hits_v1, hits_v2 = fixed_box_update(box, gt_boxes, self.grid, self.iou_thresholds)
        self._add_hits(hits_v1, hits_v2, len(gt_boxes))


def pxap_update(scoremaps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed fg / bg score histograms of a batch (N x H x W maps in the eval frame; masks the same
    shape: 1 foreground, 0 background, other values ignored; bool: True foreground)."""
    return W.pixel_histograms(np.asarray(scoremaps), np.asarray(masks), thresholds)


class PxAP(Metric):
    """Pixel average precision (wsoleval's MaskEvaluator), as a fraction: states are the fg / bg
    histograms of the map values over the threshold bins (fixed size, summed across ranks)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_thresholds: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grid = wsoleval_thresholds(num_thresholds)
        bins = self.grid.size + 2
        self.add_state("fg_hist", torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bg_hist", torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps: np.ndarray | Tensor, masks: np.ndarray | Tensor) -> None:
        if isinstance(scoremaps, Tensor):
            scoremaps = scoremaps.detach().cpu().double().numpy()
        if isinstance(masks, Tensor):
            masks = masks.detach().cpu().numpy()
        fg, bg = pxap_update(scoremaps, masks, self.grid)
        self.fg_hist += torch.from_numpy(fg).to(self.fg_hist.device)
        self.bg_hist += torch.from_numpy(bg).to(self.bg_hist.device)

    def compute(self) -> Tensor:
        """PxAP in [0, 1]; NaN when no foreground pixel or no positive prediction was seen (undefined)."""
        try:
            percent = W.pxap_from_histograms(self.fg_hist.cpu().numpy(), self.bg_hist.cpu().numpy())
        except RuntimeError:
            percent = float("nan")
        return torch.tensor(percent / 100.0, dtype=torch.float64)
