"""CAMCallback: CAMs, boxes, localization metrics and overlay pictures from what the evaluation step returned.

It asks nothing of the model but the `{"logits", "features"}` dict that `validation_step` /
`test_step` return and the classifier weights: no second forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only
from torchmetrics.aggregation import SumMetric

from camexp import viz
from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.localization import best_iou_per_image, boxes_from_cams, heuristic_top5_hits
from camexp.metrics import CAMLocalizationMetrics
from camexp.saliency import gradient_saliency

try:  # Lightning >= 2.1 marks hook overrides; fall back to a no-op decorator
    from typing_extensions import override
except ImportError:  # pragma: no cover
    def override(fn):  # type: ignore[no-redef]
        return fn


class CAMCallback(Callback):
    def __init__(
        self,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        cam_threshold: float = 0.2,
        iou_threshold: float = 0.5,
        num_overlays: int = 16,
        method: str = "cam",
        heuristic_top5: bool = True,
    ) -> None:
        """method: "cam" (CAMs from the step's features) or "backprop" (the paper's gradient-saliency
        baseline; needs Trainer(inference_mode=False)). heuristic_top5: also score Table 3's five boxes."""
        if method not in ("cam", "backprop"):
            raise ValueError(f"method must be 'cam' or 'backprop', got {method!r}")
        self.method = method
        self.heuristic_top5 = heuristic_top5 and method == "cam"
        self.class_names = list(class_names)
        self.mean, self.std = tuple(mean), tuple(std)
        self.cam_threshold = cam_threshold
        self.num_overlays = num_overlays
        self.iou_threshold = iou_threshold
        self.metrics = {split: CAMLocalizationMetrics(iou_threshold, self.heuristic_top5) for split in ("val", "test")}
        self.skipped = {split: SumMetric() for split in ("val", "test")}
        self._tiles: list[np.ndarray] = []
        self._overlay_stride = 1
        self.last_overlay_path: Path | None = None
        self.last_results: dict[str, float] = {}

    # -- per batch -----------------------------------------------------------------------------
    def _update(self, split: str, pl_module: pl.LightningModule, outputs: Any, batch: dict[str, Any]) -> None:
        metric = self.metrics[split].to(pl_module.device)
        self.skipped[split].to(pl_module.device).update(batch.get("skipped", torch.tensor(0)).float())
        if "label" not in batch:  # every sample of this batch was a skipped corrupt image
            return
        logits, features, labels = outputs["logits"], outputs["features"], batch["label"]
        size = batch["image"].shape[-2:]
        gt_class_iou = heuristic_hits = None
        cams = pred_boxes = None
        if self.method == "backprop":
            cams = normalize_cams(gradient_saliency(pl_module, batch["image"], labels))
        elif getattr(pl_module, "cam_capable", False):
            cams = normalize_cams(upsample_cams(class_activation_maps(features, pl_module.class_weights, labels), size))
        if cams is not None and "boxes" in batch:
            pred_boxes = boxes_from_cams(cams, self.cam_threshold)
            gt_class_iou = best_iou_per_image(pred_boxes, batch["boxes"], batch["box_count"])
            if self.heuristic_top5 and getattr(pl_module, "cam_capable", False):
                top3 = logits.topk(min(3, logits.shape[1]), dim=1).indices
                if top3.shape[1] == 3:
                    maps = class_activation_maps(features, pl_module.class_weights, top3)
                    heuristic_hits = heuristic_top5_hits(
                        normalize_cams(upsample_cams(maps, size)),
                        top3,
                        labels,
                        batch["boxes"],
                        batch["box_count"],
                        self.iou_threshold,
                    )
        metric.update(logits, labels, gt_class_iou, heuristic_hits)
        if cams is not None and len(self._tiles) < self.num_overlays and pl_module.global_rank == 0:
            self._collect_tiles(batch, logits, cams, pred_boxes)

    def _collect_tiles(self, batch, logits, cams, pred_boxes) -> None:
        """Overlays of every `_overlay_stride`-th image, so the grid spans the (class-sorted) split."""
        chosen = (batch["index"] % self._overlay_stride == 0).nonzero().flatten().tolist()
        chosen = chosen[: self.num_overlays - len(self._tiles)]
        if not chosen:
            return
        images = viz.denormalize(batch["image"][chosen].float(), self.mean, self.std)
        predicted = logits.argmax(1).tolist()
        for j, i in enumerate(chosen):
            label = int(batch["label"][i])
            gt = batch["boxes"][i, : int(batch["box_count"][i])].cpu().numpy() if "boxes" in batch else None
            box = pred_boxes[i].numpy() if pred_boxes is not None else None
            mark = "ok" if predicted[i] == label else f"pred {self._name(predicted[i])}"
            caption = f"{self._name(label)} ({mark})"
            self._tiles.append(viz.overlay_tile(images[j], cams[i].cpu().numpy(), box, gt, caption))

    def _name(self, class_index: int) -> str:
        """Class name without CUB's 'NNN.' prefix."""
        name = self.class_names[class_index] if class_index < len(self.class_names) else str(class_index)
        return name.split(".", 1)[1] if name[:3].isdigit() and "." in name else name

    @override
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._update("val", pl_module, outputs, batch)

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update("test", pl_module, outputs, batch)

    # -- per epoch -----------------------------------------------------------------------------
    def _start(self, loaders) -> None:
        self._tiles = []
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        size = len(loader.dataset) if loader is not None and hasattr(loader, "dataset") else 0
        self._overlay_stride = max(1, size // max(1, self.num_overlays))

    @override
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer.val_dataloaders)

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer.test_dataloaders)

    def _finish(self, split: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metric = self.metrics[split]
        if metric.update_count == 0 and trainer.world_size == 1:
            return
        values = {f"{split}/{k}": v.float() for k, v in metric.compute().items()}  # synced across ranks
        skipped = self.skipped[split].compute()
        values[f"{split}/skipped_images"] = skipped.float()
        for key, value in values.items():  # already synced: no second reduction
            pl_module.log(key, value, prog_bar=key.endswith(("/acc_top1", "/loc_top1")), sync_dist=False)
        self.last_results = {k: float(v) for k, v in values.items()}
        metric.reset()
        self.skipped[split].reset()
        self._write_overlays(split, trainer)

    @rank_zero_only
    def _write_overlays(self, split: str, trainer: pl.Trainer) -> None:
        if not self._tiles:
            return
        picture = viz.grid(self._tiles, columns=8)
        out_dir = Path(trainer.log_dir or trainer.default_root_dir) / "overlays"
        self.last_overlay_path = viz.save_png(picture, out_dir / f"{split}_epoch{trainer.current_epoch:03d}.png")
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image(f"{split}/cam_overlays", picture, trainer.global_step, dataformats="HWC")

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._finish("val", trainer, pl_module)

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish("test", trainer, pl_module)
