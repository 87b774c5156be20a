"""ScoreMapCallback: for `camexp evaluate`, each image's GT-class score map -> wsoleval accumulator, .npy, extremes.

The raw map is what upstream's CAMComputer saves and scores: the GT class's CAM at feature resolution
(``sum_k w_k^c f_k``), or for ``method="backprop"`` the gradient saliency at input resolution. It goes to
the same `WSOLAccumulator` that `camexp evaluate-maps` uses, so both commands give the same digits. Like
CAMCallback it reuses the step's features, and the maps and paper-rule boxes of a batch are computed once for
both (`BatchMaps`): no second forward pass for CAMs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override  # a Lightning dependency

from camexp.callbacks.batch_maps import BatchMaps
from camexp.callbacks.overlays import OverlaySample, overlay_samples
from camexp.localization import center_gaussian_map
from camexp.wsol import protocol as W
from camexp.wsol.accumulator import WSOLAccumulator
from camexp.wsol.metadata import SplitMetadata, combine_masks
from camexp.wsol.score_maps import map_path, save_map


@dataclass
class ExtremeSample:
    """One candidate for the best/worst grid: its dataset position and overlay, ranked by the IoU of the
    paper-rule box of its GT-class map."""

    position: int
    overlay: OverlaySample

    @property
    def iou(self) -> float:
        return self.overlay.iou


class ScoreMapCallback(Callback):
    """Feeds every evaluated image to `scorer` (in process: one device, no DDP sync); optionally saves maps (and
    masks) in the wsolevaluation layout."""

    def __init__(
        self,
        metadata: SplitMetadata,
        scorer: WSOLAccumulator,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        class_names: Sequence[str],
        method: str,
        cam_threshold: float,
        iou_threshold: float,
        maps_dir: str | Path | None = None,
        masks_dir: str | Path | None = None,
        num_extremes: int,
        baselines: dict[str, WSOLAccumulator] | None = None,
    ) -> None:
        """Settings are explicit (their defaults live in the config schema and the `evaluate` command).
        metadata: the split's ids in dataset order (position -> image id) and boxes; masks_dir: where mask
        PNGs go when the batches carry masks (their paths are recorded in `metadata`, relative to it);
        baselines: an accumulator per sanity baseline ("center_gaussian", "whole_image"), fed the same images."""
        self.metadata, self.scorer = metadata, scorer
        self.mean, self.std = tuple(mean), tuple(std)
        self.class_names = list(class_names)
        self.method, self.cam_threshold, self.iou_threshold = method, cam_threshold, iou_threshold
        self.maps_dir = Path(maps_dir) if maps_dir is not None else None
        self.masks_dir = Path(masks_dir) if masks_dir is not None else None
        self.num_extremes = num_extremes
        self.seen: list[int] = []  # dataset positions scored, in order
        self.best: list[ExtremeSample] = []
        self.worst: list[ExtremeSample] = []
        self.ious: dict[int, float] = {}
        self.baselines = dict(baselines or {})
        # The centre-Gaussian baseline's map in the scorer's frame (its resize is the identity), normalized once.
        self._gaussian = W.normalize_scoremap(center_gaussian_map(W.RESIZE_LENGTH, W.RESIZE_LENGTH).numpy())[None]

    # -- hooks ---------------------------------------------------------------------------------------
    @override
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._update(pl_module, outputs, batch)

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(pl_module, outputs, batch)

    # -- per batch -----------------------------------------------------------------------------------
    def raw_maps(self, pl_module: pl.LightningModule, outputs: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        """N x h x w GT-class maps, unnormalized (float32)."""
        return BatchMaps.of(pl_module, outputs, batch, self.method).raw.detach().float()

    def _update(self, pl_module: pl.LightningModule, outputs: dict[str, Any], batch: dict[str, Any]) -> None:
        if "label" not in batch:  # a batch of skipped corrupt images
            return
        raw = self.raw_maps(pl_module, outputs, batch).cpu().numpy()
        positions = batch["index"].tolist()
        fg = batch["mask"].cpu().numpy() if "mask" in batch else None
        ignore = batch["mask_ignore"].cpu().numpy() if "mask_ignore" in batch else None
        for i, position in enumerate(positions):
            image_id = self.metadata.image_ids[position]
            mask = None
            if fg is not None:
                instance = fg[i].astype(np.uint8) * 255
                ignored = ignore[i].astype(np.uint8) * 255 if ignore is not None else None
                mask = combine_masks([instance], ignored)
                self._record_mask(image_id, instance, ignored)
            gt = self.metadata.scored_boxes(image_id)
            mask = None if mask is None else mask[None]
            self.scorer.update(W.normalize_scoremap(raw[i])[None], [gt], mask)
            self._add_baselines(gt, mask)
            if self.maps_dir is not None:
                save_map(self.maps_dir, image_id, raw[i])
            self.seen.append(position)
        if "boxes" in batch and self.num_extremes > 0:
            maps = BatchMaps.of(pl_module, outputs, batch, self.method)
            cams = maps.cams
            pred, ious = maps.paper_boxes(self.cam_threshold)
            self._offer_extremes(cams, pred, ious.tolist(), batch, positions, outputs["logits"].argmax(1).tolist())

    def _add_baselines(self, gt: np.ndarray | None, mask: np.ndarray | None) -> None:
        """The same image for each sanity baseline: the centre Gaussian as its score map, the whole frame's box."""
        if "center_gaussian" in self.baselines:
            self.baselines["center_gaussian"].update(self._gaussian, [gt], mask)
        if "whole_image" in self.baselines and gt is not None:
            self.baselines["whole_image"].update_fixed_box(W.whole_frame_box(), [gt])

    def _record_mask(self, image_id: str, instance: np.ndarray, ignored: np.ndarray | None) -> None:
        """Save the mask PNGs (0/255, the batch's S x S masks) and list them in the metadata."""
        if self.masks_dir is None:
            return
        path = map_path(self.masks_dir / "masks", image_id).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), instance)
        self.metadata.masks[image_id] = [path.relative_to(self.masks_dir).as_posix()]
        self.metadata.ignores[image_id] = ""
        if ignored is not None and ignored.any():
            ignore_path = path.with_name(path.stem + "_ignore.png")
            cv2.imwrite(str(ignore_path), ignored)
            self.metadata.ignores[image_id] = ignore_path.relative_to(self.masks_dir).as_posix()

    def _offer_extremes(
        self,
        cams: torch.Tensor,
        pred: torch.Tensor,
        ious: list[float],
        batch: dict[str, Any],
        positions: list[int],
        predicted: list[int],
    ) -> None:
        """Keep the `num_extremes` best and worst images by IoU of their paper-rule box `pred` (ties: dataset order)."""
        self.ious.update(zip(positions, ious, strict=True))
        k = self.num_extremes
        best_cut = sorted((-s.iou, s.position) for s in self.best)[k - 1] if len(self.best) >= k else None
        worst_cut = sorted((s.iou, s.position) for s in self.worst)[k - 1] if len(self.worst) >= k else None
        chosen = [
            i
            for i, (p, v) in enumerate(zip(positions, ious, strict=True))
            if best_cut is None or (-v, p) < best_cut or worst_cut is None or (v, p) < worst_cut
        ]
        if not chosen:
            return
        overlays = overlay_samples(
            batch, chosen, cams, pred, ious, predicted, self.class_names, self.mean, self.std, self.iou_threshold
        )
        for i, overlay in zip(chosen, overlays, strict=True):
            sample = ExtremeSample(positions[i], overlay)
            self.best.append(sample)
            self.worst.append(sample)
        self.best = sorted(self.best, key=lambda s: (-s.iou, s.position))[:k]
        self.worst = sorted(self.worst, key=lambda s: (s.iou, s.position))[:k]

    def extreme_tiles(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(best, worst) overlay panels (`OverlaySample.panel`): GT-class CAM, GT boxes, paper-rule box, caption."""
        return [s.overlay.panel() for s in self.best], [s.overlay.panel() for s in self.worst]
