"""torchmetrics Metrics for classification and CAM localization.

States are scalar sums (`dist_reduce_fx="sum"`), so DDP reduction is a sum and memory does not
grow with the dataset. With an unpadded evaluation sampler the result on N processes equals one.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

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
