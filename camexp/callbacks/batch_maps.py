"""BatchMaps: the GT-class maps of one evaluation batch, computed once and shared by the callbacks of that batch.

CAMCallback and ScoreMapCallback both need each image's GT-class map (gradient saliency costs a backward
pass), its upsampled, normalized form and the paper-rule boxes from it. Lightning hands the same `outputs`
dict of a step to every callback's ``on_*_batch_end`` and drops it after the batch, so a `BatchMaps` kept in
that dict under the one key ``BATCH_MAPS_KEY`` lives exactly one batch: ``BatchMaps.of`` returns the one
the first callback made, or makes it. No cache outlives its batch and no callback needs to know the others.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from camexp.cam import class_activation_maps, gradient_saliency, normalize_cams, upsample_cams
from camexp.localization import best_iou_per_image, boxes_from_cams

BATCH_MAPS_KEY = "batch_maps"  # the one key callbacks add to a step's outputs dict


class BatchMaps:
    """Maps of one batch, each computed on first use. method: "cam" (from the step's features and the
    classifier weights) or "backprop" (gradient saliency, already at input size)."""

    def __init__(self, pl_module: pl.LightningModule, outputs: dict[str, Any], batch: dict[str, Any], method: str):
        self.pl_module, self.outputs, self.batch, self.method = pl_module, outputs, batch, method
        self._paper_boxes: dict[float, tuple[Tensor, Tensor]] = {}

    @classmethod
    def of(
        cls, pl_module: pl.LightningModule, outputs: dict[str, Any], batch: dict[str, Any], method: str
    ) -> BatchMaps:
        """The batch's BatchMaps: the one an earlier callback left in `outputs`, else a new one, kept there."""
        maps = outputs.get(BATCH_MAPS_KEY)
        if maps is None:
            maps = outputs[BATCH_MAPS_KEY] = cls(pl_module, outputs, batch, method)
        elif maps.method != method:
            raise ValueError(f"callbacks of one batch disagree on the map method: {maps.method!r} and {method!r}")
        return maps

    @cached_property
    def raw(self) -> Tensor:
        """N x h x w unnormalized maps of each image's GT class (saliency: at input size)."""
        labels = self.batch["label"]
        if self.method == "backprop":
            return gradient_saliency(self.pl_module, self.batch["image"], labels)
        return class_activation_maps(self.outputs["features"], self.pl_module.class_weights, labels)

    @cached_property
    def cams(self) -> Tensor:
        """N x H x W GT-class maps at input size, min-max normalized (the paper rule's input)."""
        maps = self.raw.detach().float()
        if self.method != "backprop":  # gradient saliency is at input size already
            maps = upsample_cams(maps, self.batch["image"].shape[-2:])
        return normalize_cams(maps)

    def paper_boxes(self, threshold: float) -> tuple[Tensor, Tensor]:
        """(``boxes_from_cams(cams, threshold)``, their ``best_iou_per_image``): computed here unless a callback
        that had them already (CAMCallback, from its sweep) left them with ``keep_paper_boxes``."""
        if threshold not in self._paper_boxes:
            boxes = boxes_from_cams(self.cams, threshold)
            ious = best_iou_per_image(boxes, self.batch["boxes"], self.batch["box_count"])
            self.keep_paper_boxes(threshold, boxes, ious)
        return self._paper_boxes[threshold]

    def keep_paper_boxes(self, threshold: float, boxes: Tensor, ious: Tensor) -> None:
        """Leave this batch's paper boxes and their IoUs at `threshold` for the other callbacks."""
        self._paper_boxes[threshold] = boxes, ious
