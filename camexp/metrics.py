"""torchmetrics Metrics for classification and CAM localization, overall, per class and per CAM threshold.

States are scalar sums (`dist_reduce_fx="sum"`), so DDP reduction is a sum and memory does not
grow with the dataset. With an unpadded evaluation sampler the result on N processes equals one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from camexp.localization import box_hits_sweep

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


# -- breakdowns for the dashboards: per class, and as a function of the CAM threshold ----------------------

# The paper keeps pixels >= 20% of the CAM's max; the curve shows how much that choice matters.
# 0.1 .. 0.9: each threshold costs a component labelling per map, so the grid stays coarse.
DEFAULT_CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))

_PER_CLASS = ("images", "top1", "boxed", "loc_top1", "gt_known")


def per_class_counts(
    logits: Tensor, labels: Tensor, gt_class_iou: Tensor | None, iou_threshold: float, num_classes: int
) -> Tensor:
    """num_classes x 5 counts in `_PER_CLASS` order for one batch (rows indexed by the GT class)."""
    labels = labels.long()
    top1 = logits.argmax(1) == labels
    if gt_class_iou is None:
        boxed = hit = torch.zeros_like(top1)
    else:
        gt_class_iou = gt_class_iou.to(labels.device)
        boxed, hit = gt_class_iou >= 0, gt_class_iou >= iou_threshold
    columns = (torch.ones_like(top1), top1, boxed, top1 & hit, hit)
    counts = torch.zeros(num_classes, len(columns), dtype=torch.float64, device=labels.device)
    for j, column in enumerate(columns):
        counts[:, j].index_add_(0, labels, column.to(torch.float64))
    return counts


class PerClassLocalization(Metric):
    """Images, classification top-1 and localization (top-1, GT-known) counts for every class."""

    full_state_update = False

    def __init__(self, num_classes: int, iou_threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.iou_threshold = num_classes, iou_threshold
        self.add_state("counts", torch.zeros(num_classes, len(_PER_CLASS), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor, gt_class_iou: Tensor | None = None) -> None:
        self.counts += per_class_counts(logits, labels, gt_class_iou, self.iou_threshold, self.num_classes)

    def compute(self) -> dict[str, Tensor]:
        """Per-class vectors: `images` (count) and accuracies (NaN where a class has no image / no box)."""
        c = {name: self.counts[:, j] for j, name in enumerate(_PER_CLASS)}
        nan = torch.full_like(c["images"], float("nan"))
        images, boxed = c["images"], c["boxed"]
        return {
            "images": images.clone(),
            "acc_top1": torch.where(images > 0, c["top1"] / images.clamp_min(1), nan),
            "loc_top1": torch.where(boxed > 0, c["loc_top1"] / boxed.clamp_min(1), nan),
            "loc_gt_known": torch.where(boxed > 0, c["gt_known"] / boxed.clamp_min(1), nan),
        }


def threshold_hits(
    cams: Tensor, gt_boxes: Tensor, gt_counts: Tensor, thresholds: Sequence[float], iou_threshold: float
) -> tuple[Tensor, Tensor]:
    """(hits per threshold, images with boxes) for GT-class CAMs (N x H x W at input size): the paper's
    box rule (largest connected component above t * max) at every threshold t."""
    # Same hits as best_iou_per_image(boxes_from_cams(cams, t), ...) >= iou_threshold per t, one sweep.
    return hit_counts(box_hits_sweep(cams, gt_boxes, gt_counts, thresholds, iou_threshold), gt_counts)


def hit_counts(hits: Tensor, gt_counts: Tensor) -> tuple[Tensor, Tensor]:
    """(hits per threshold, images with boxes) from a T x N ``box_hits_sweep``."""
    return hits.sum(1).to(torch.float64), (gt_counts > 0).sum().to(torch.float64).cpu()


class ThresholdCurve(Metric):
    """GT-known localization accuracy as a function of the CAM threshold (one hit counter per threshold)."""

    full_state_update = False

    def __init__(
        self, thresholds: Sequence[float] = DEFAULT_CURVE_THRESHOLDS, iou_threshold: float = 0.5, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.iou_threshold = iou_threshold
        self.add_state("hits", torch.zeros(len(self.thresholds), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("boxed", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, cams: Tensor, gt_boxes: Tensor, gt_counts: Tensor, hits: Tensor | None = None) -> None:
        """hits: these maps' T x N ``box_hits_sweep`` over `thresholds` when the caller has it already
        (CAMCallback gets it with the paper boxes from ``paper_boxes_and_sweep``); swept here otherwise."""
        if hits is None:
            counts, boxed = threshold_hits(cams, gt_boxes, gt_counts, self.thresholds, self.iou_threshold)
        else:
            counts, boxed = hit_counts(hits, gt_counts)
        self.hits += counts.to(self.hits.device)
        self.boxed += boxed.to(self.boxed.device)

    def compute(self) -> dict[str, Tensor]:
        """`thresholds` and `loc_gt_known` (accuracy at each threshold; NaN when no image had a box)."""
        accuracy = self.hits / self.boxed if self.boxed > 0 else torch.full_like(self.hits, float("nan"))
        return {"thresholds": torch.tensor(self.thresholds, dtype=torch.float64), "loc_gt_known": accuracy}
