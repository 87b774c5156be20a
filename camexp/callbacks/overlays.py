"""The overlay pictures both callbacks draw: one captioned sample per chosen image, and the class names in them.

CAMCallback picks samples spread over the split (the overlay grid, also W&B's box layers); ScoreMapCallback
keeps the best and worst by IoU (the evaluate report's extremes). Both build them here, so the caption,
the boxes and the panel are drawn one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camexp import viz


def display_name(class_names: Sequence[str], class_index: int) -> str:
    """The class's name for pictures and tables: without CUB's 'NNN.' prefix (the index when unnamed)."""
    name = class_names[class_index] if class_index < len(class_names) else str(class_index)
    return name.split(".", 1)[1] if name[:3].isdigit() and "." in name else name


@dataclass
class OverlaySample:
    """One image picked for the overlays: what a logger needs to draw it its own way (e.g. W&B boxes)."""

    image: np.ndarray  # H x W x 3 uint8 RGB (network input, denormalized)
    cam: np.ndarray  # H x W in [0, 1], the GT class's map
    pred_box: np.ndarray | None  # xyxy from the GT class's CAM (the paper's rule)
    gt_boxes: np.ndarray | None  # B x 4 xyxy
    label: int
    predicted: int
    iou: float | None = None  # of pred_box with the best GT box (None without boxes)
    caption: list[str] = field(default_factory=list)  # the lines under the saved overlay (viz.cam_caption)

    def panel(self) -> np.ndarray:
        """The overlay panel (`viz.overlay_panel`): GT-class CAM, GT boxes, paper-rule box, caption."""
        return viz.overlay_panel(
            self.image, self.cam, pred_boxes=self.pred_box, gt_boxes=self.gt_boxes, caption=self.caption
        )


def image_gt_boxes(batch: dict[str, Any], i: int) -> np.ndarray | None:
    """The GT boxes (B x 4 xyxy, input pixels) of the batch's i-th image; None when the batch has no boxes."""
    return batch["boxes"][i, : int(batch["box_count"][i])].cpu().numpy() if "boxes" in batch else None


def overlay_samples(
    batch: dict[str, Any],
    chosen: list[int],
    cams: Any,
    pred_boxes: Any,
    ious: Sequence[float | None],
    predicted: Sequence[int],
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    iou_threshold: float,
) -> list[OverlaySample]:
    """A captioned sample for each `chosen` image of the batch: its denormalized picture, its GT-class CAM
    (`cams`, N x H x W in [0, 1]), paper-rule box (`pred_boxes`, N x 4, or None), GT boxes; ious and
    predicted are per image of the batch (an IoU of None: no boxes to score)."""
    images = viz.denormalize(batch["image"][chosen].float(), mean, std)
    samples = []
    for j, i in enumerate(chosen):
        label = int(batch["label"][i])
        caption = viz.cam_caption(
            display_name(class_names, label), display_name(class_names, predicted[i]), ious[i], iou_threshold
        )
        box = pred_boxes[i].numpy() if pred_boxes is not None else None
        gt = image_gt_boxes(batch, i)
        samples.append(OverlaySample(images[j], cams[i].cpu().numpy(), box, gt, label, predicted[i], ious[i], caption))
    return samples
