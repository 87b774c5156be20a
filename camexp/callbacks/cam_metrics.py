"""CAMCallback: CAMs, boxes, localization metrics and overlay pictures from what the evaluation step returned.

It asks nothing of the model but the `{"logits", "features"}` dict that `validation_step` /
`test_step` return and the classifier weights: no second forward pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor
from torchmetrics.aggregation import SumMetric
from typing_extensions import override  # a Lightning dependency

from camexp import viz
from camexp.callbacks.batch_maps import BatchMaps
from camexp.callbacks.overlays import OverlaySample, display_name, overlay_samples
from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.localization import (
    BASELINES,
    baseline_best_ious,
    baseline_prefix,
    center_gaussian_map,
    heuristic_top5_hits,
    paper_boxes_and_sweep,
)
from camexp.loggers import add_png_image
from camexp.metrics import DEFAULT_CURVE_THRESHOLDS, CAMLocalizationMetrics, PerClassLocalization, ThresholdCurve
from camexp.wsol import protocol as W
from camexp.wsol.accumulator import WSOLAccumulator, WSOLResult, wsoleval_gt_boxes, wsoleval_scoremaps

OVERLAY_COLUMNS = 8  # panels per row of overlays/<split>_epochNNN.png


@dataclass
class EvaluationSummary:
    """What one validation/test pass produced, synced over ranks; the dashboards callback publishes it."""

    split: str
    epoch: int
    step: int
    metrics: dict[str, float]
    class_names: list[str]
    per_class: dict[str, list[float]]  # images, acc_top1, loc_top1, loc_gt_known: one value per class
    curve: dict[str, list[float]]  # thresholds, loc_gt_known: localization accuracy vs CAM threshold
    samples: list[OverlaySample] = field(default_factory=list)  # rank 0 only


class CAMCallback(Callback):
    """Per evaluation batch: the GT class's map (shared with the other callbacks through `BatchMaps`), the
    paper-rule boxes, the metric updates and the overlay samples; per pass: the synced numbers, logged, kept
    in `last_results` and summarized in `last_summary` (for EvaluationDashboards), and the overlay grid."""

    def __init__(
        self,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        cam_threshold: float,
        iou_threshold: float,
        num_overlays: int,
        method: str,
        heuristic_top5: bool,
        protocol: str,
        box_thresholds: int,
        wsoleval_size: int,
    ) -> None:
        """Every setting is explicit: their defaults live in the config schema (`EvalConfig`).
        method: "cam" (CAMs from the step's features) or "backprop" (the paper's gradient-saliency baseline;
        needs Trainer(inference_mode=False)). heuristic_top5: also score Table 3's five boxes.
        protocol="wsoleval" adds MaxBoxAcc, MaxBoxAccV2 and PxAP (Choe et al. 2020) in a wsoleval_size
        frame: over box_thresholds thresholds while fitting, the reference 1000 in validate / test."""
        if method not in ("cam", "backprop"):
            raise ValueError(f"method must be 'cam' or 'backprop', got {method!r}")
        if protocol not in ("paper", "wsoleval"):
            raise ValueError(f"protocol must be 'paper' or 'wsoleval', got {protocol!r}")
        self.protocol, self.box_thresholds, self.wsoleval_size = protocol, box_thresholds, wsoleval_size
        self.wsoleval: dict[str, WSOLAccumulator] = {}  # per split, made at each epoch start
        # The sanity baselines' accumulators, per split and baseline (the whole-image box has no PxAP).
        self.baseline_wsoleval: dict[str, dict[str, WSOLAccumulator]] = {}
        self._gaussian_scoremap_cache: np.ndarray | None = None
        self.last_wsoleval: dict[str, WSOLResult] = {}  # per split, the synced counts (and curves) of the last pass
        self._warned_boxes = False
        self.method = method
        self.heuristic_top5 = heuristic_top5 and method == "cam"
        self.class_names = list(class_names)
        self.mean, self.std = tuple(mean), tuple(std)
        self.cam_threshold = cam_threshold
        self.num_overlays = num_overlays
        self.iou_threshold = iou_threshold
        self.metrics = {split: CAMLocalizationMetrics(iou_threshold, self.heuristic_top5) for split in ("val", "test")}
        # The sanity baselines (localization.BASELINES): their boxes with the network's class predictions.
        self.baseline_metrics = {
            split: {name: CAMLocalizationMetrics(iou_threshold) for name in BASELINES} for split in ("val", "test")
        }
        self.skipped = {split: SumMetric() for split in ("val", "test")}
        num_classes = len(self.class_names)
        self.per_class = {split: PerClassLocalization(num_classes, iou_threshold) for split in ("val", "test")}
        curve = sorted(set(DEFAULT_CURVE_THRESHOLDS) | {cam_threshold})
        self.curves = {split: ThresholdCurve(curve, iou_threshold) for split in ("val", "test")}
        self._samples: list[OverlaySample] = []  # this pass's overlays (rank 0), drawn at its end
        self.last_summary: dict[str, EvaluationSummary] = {}
        self._overlay_stride = 1
        self.last_overlay_path: Path | None = None
        self.last_results: dict[str, float] = {}

    # -- per batch -----------------------------------------------------------------------------
    def _update(self, split: str, pl_module: pl.LightningModule, outputs: Any, batch: dict[str, Any]) -> None:
        metric = self.metrics[split]  # on pl_module's device since the epoch start (_to_device)
        self.skipped[split].update(batch.get("skipped", torch.tensor(0)).float())
        if "label" not in batch:  # every sample of this batch was a skipped corrupt image
            return
        logits, features, labels = outputs["logits"], outputs["features"], batch["label"]
        size = batch["image"].shape[-2:]
        gt_class_iou = heuristic_hits = None
        cams = pred_boxes = raw = curve_hits = None
        maps = BatchMaps.of(pl_module, outputs, batch, self.method)
        if self.method == "backprop" or getattr(pl_module, "cam_capable", False):
            raw = maps.raw  # unnormalized; saliency at input size
            cams = maps.cams
        if raw is not None and split in self.wsoleval:
            self._update_wsoleval(split, raw, batch)
        if cams is not None and "boxes" in batch:
            # The paper box and the threshold curve (which includes cam_threshold) from one sweep.
            thresholds = self.curves[split].thresholds
            pred_boxes, gt_class_iou, curve_hits = paper_boxes_and_sweep(
                cams, batch["boxes"], batch["box_count"], self.cam_threshold, thresholds, self.iou_threshold
            )
            maps.keep_paper_boxes(self.cam_threshold, pred_boxes, gt_class_iou)
            if self.heuristic_top5 and getattr(pl_module, "cam_capable", False):
                top3 = logits.topk(min(3, logits.shape[1]), dim=1).indices
                if top3.shape[1] == 3:
                    top3_maps = class_activation_maps(features, pl_module.class_weights, top3)
                    heuristic_hits = heuristic_top5_hits(
                        normalize_cams(upsample_cams(top3_maps, size)),
                        top3,
                        labels,
                        batch["boxes"],
                        batch["box_count"],
                        self.iou_threshold,
                    )
        metric.update(logits, labels, gt_class_iou, heuristic_hits)
        baseline_ious = {}
        if "boxes" in batch:  # one box per baseline and input size, whatever the image: no map per image
            baseline_ious = baseline_best_ious(*size, self.cam_threshold, batch["boxes"], batch["box_count"])
        for name, baseline in self.baseline_metrics[split].items():
            baseline.update(logits, labels, baseline_ious.get(name))
        self.per_class[split].update(logits, labels, gt_class_iou)
        if pred_boxes is not None:
            self.curves[split].update(cams, batch["boxes"], batch["box_count"], hits=curve_hits)
        if cams is not None and len(self._samples) < self.num_overlays and pl_module.global_rank == 0:
            self._collect_samples(batch, logits, cams, pred_boxes, gt_class_iou)

    def _update_wsoleval(self, split: str, raw: Tensor, batch: dict[str, Any]) -> None:
        """wsoleval protocol from the raw maps (before our min-max): bicubic resize to the eval frame and
        min-max there (normalize_scoremap); GT boxes scaled from original pixels as the reference does."""
        accumulator = self.wsoleval[split]
        size = self.wsoleval_size
        scoremaps = wsoleval_scoremaps(raw, size)
        counts = batch.get("box_count")
        if counts is not None and bool((counts > 0).any()):
            if "orig_boxes" in batch:
                gt = wsoleval_gt_boxes(batch["orig_boxes"], counts, batch["orig_size"], size)
            else:  # boxes only in the input frame: int(x * size / S), close to but not the reference's numbers
                if not self._warned_boxes:
                    rank_zero_warn("Batches lack orig_boxes/orig_size: MaxBoxAcc scales the input-frame boxes.")
                    self._warned_boxes = True
                input_size = torch.tensor(batch["image"].shape[-1:-3:-1]).expand(len(counts), 2)
                gt = wsoleval_gt_boxes(batch["boxes"], counts, input_size, size)
            keep = (counts > 0).nonzero().flatten().tolist()
            accumulator.update(scoremaps[keep], [gt[i] for i in keep])
            self._update_baseline_boxes(split, [gt[i] for i in keep])
        if "mask" in batch:  # 1 foreground, 0 background, 255 ignored (wsoleval's MaskEvaluator)
            masks = batch["mask"].cpu().numpy().astype(np.uint8)
            if "mask_ignore" in batch:
                masks[batch["mask_ignore"].cpu().numpy().astype(bool)] = 255
            if masks.shape[-2:] != (size, size):
                masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in masks])
            accumulator.update(scoremaps, masks=masks)
            gaussian = np.broadcast_to(self._gaussian_scoremap(), masks.shape)
            self.baseline_wsoleval[split]["center_gaussian"].update(gaussian, masks=masks)

    def _gaussian_scoremap(self) -> np.ndarray:
        """The centre-Gaussian baseline's map in the eval frame, through the protocol's preprocessing (once)."""
        if self._gaussian_scoremap_cache is None:
            size = self.wsoleval_size
            self._gaussian_scoremap_cache = wsoleval_scoremaps(center_gaussian_map(size, size)[None], size)[0]
        return self._gaussian_scoremap_cache

    def _update_baseline_boxes(self, split: str, gt: list[np.ndarray]) -> None:
        """The baselines' MaxBoxAcc: the centre Gaussian as a score map (the CAM's sweep, image by image: the
        hits depend on the GT boxes), the whole-image box as the same box at every threshold."""
        if not gt:
            return
        metrics = self.baseline_wsoleval[split]
        scoremap = self._gaussian_scoremap()
        metrics["center_gaussian"].update(np.broadcast_to(scoremap, (len(gt), *scoremap.shape)), gt)
        metrics["whole_image"].update_fixed_box(W.whole_frame_box(*scoremap.shape), gt)

    def _start_wsoleval(self, split: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.protocol != "wsoleval":
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        interval = 1.0 / self.box_thresholds if fitting else W.CAM_CURVE_INTERVAL
        self.wsoleval[split] = WSOLAccumulator(interval).to(pl_module.device)
        self.baseline_wsoleval[split] = {name: WSOLAccumulator(interval).to(pl_module.device) for name in BASELINES}

    def _wsoleval_values(self, split: str) -> dict[str, Tensor]:
        """The synced wsoleval numbers of this epoch (fractions); the synced counts in `last_wsoleval`."""
        if split not in self.wsoleval:
            return {}
        result = self.wsoleval.pop(split).compute()  # synced across ranks (every rank takes part)
        self.last_wsoleval[split] = result
        values = self._wsoleval_log_values(result, split)
        for name, accumulator in self.baseline_wsoleval.pop(split, {}).items():
            result = accumulator.compute()  # synced, like the CAM's
            # The whole-image box is the same at every threshold: no best threshold to report.
            values.update(self._wsoleval_log_values(result, baseline_prefix(split, name), name != "whole_image"))
        return values

    @staticmethod
    def _wsoleval_log_values(result: WSOLResult, prefix: str, thresholds: bool = True) -> dict[str, Tensor]:
        """`<prefix>/maxboxacc`, its threshold, `maxboxacc_v2`, each V2 row `maxboxacc_v2_iouNN` and its threshold
        (fractions; thresholds=False leaves the thresholds out), `pxap`: what the callback logs. Nothing undefined."""
        metrics = result.metrics()
        values: dict[str, float] = {}
        if result.num_images:
            values.update(maxboxacc=metrics["maxboxacc"], maxboxacc_threshold=metrics["maxboxacc_threshold"])
            values["maxboxacc_v2"] = metrics["maxboxacc_v2"]
            for iou, value in metrics["maxboxacc_v2_per_iou"].items():
                values[f"maxboxacc_v2_iou{iou}"] = value
                values[f"maxboxacc_v2_iou{iou}_threshold"] = metrics["maxboxacc_v2_thresholds"][iou]
            if not thresholds:
                values = {k: v for k, v in values.items() if not k.endswith("threshold")}
        if metrics["pxap"] is not None:
            values["pxap"] = metrics["pxap"]
        return {f"{prefix}/{k}": torch.tensor(v, dtype=torch.float32) for k, v in values.items()}

    def _collect_samples(self, batch, logits, cams, pred_boxes, ious) -> None:
        """Overlays of every `_overlay_stride`-th image, so the grid spans the (class-sorted) split: the GT
        class's CAM, the paper-rule box from it and the GT boxes, captioned by `viz.cam_caption`."""
        chosen = (batch["index"] % self._overlay_stride == 0).nonzero().flatten().tolist()
        chosen = chosen[: self.num_overlays - len(self._samples)]
        if not chosen:
            return
        image_ious: list[float | None] = [None] * len(batch["label"])  # None: no GT box to score against
        if ious is not None and "boxes" in batch:
            for i in chosen:
                image_ious[i] = float(ious[i]) if int(batch["box_count"][i]) else None
        self._samples += overlay_samples(
            batch, chosen, cams, pred_boxes, image_ious, logits.argmax(1).tolist(), self.class_names, self.mean,
            self.std, self.iou_threshold,
        )

    def _name(self, class_index: int) -> str:
        return display_name(self.class_names, class_index)

    @override
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._update("val", pl_module, outputs, batch)

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update("test", pl_module, outputs, batch)

    # -- per epoch -----------------------------------------------------------------------------
    def _start(self, loaders) -> None:
        self._samples = []
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        size = len(loader.dataset) if loader is not None and hasattr(loader, "dataset") else 0
        self._overlay_stride = max(1, size // max(1, self.num_overlays))

    def _to_device(self, split: str, device: torch.device) -> None:
        """Metric states onto the module's device once per epoch, not per batch (a Module.to each time)."""
        for metric in (self.metrics[split], self.skipped[split], self.per_class[split], self.curves[split]):
            metric.to(device)
        for metric in self.baseline_metrics[split].values():
            metric.to(device)

    @override
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer.val_dataloaders)
        self._to_device("val", pl_module.device)
        if not trainer.sanity_checking:
            self._start_wsoleval("val", trainer, pl_module)

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer.test_dataloaders)
        self._to_device("test", pl_module.device)
        self._start_wsoleval("test", trainer, pl_module)

    def _finish(self, split: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metric = self.metrics[split]
        if metric.update_count == 0 and trainer.world_size == 1:
            return
        values = {f"{split}/{k}": v.float() for k, v in metric.compute().items()}  # synced across ranks
        skipped = self.skipped[split].compute()
        values[f"{split}/skipped_images"] = skipped.float()
        for name, baseline in self.baseline_metrics[split].items():  # synced; acc_* are the CAM's own
            prefix = baseline_prefix(split, name)
            values.update({f"{prefix}/{k}": v.float() for k, v in baseline.compute().items() if k.startswith("loc_")})
            baseline.reset()
        values.update(self._wsoleval_values(split))  # protocol=wsoleval: maxboxacc, maxboxacc_v2, pxap
        for key, value in values.items():  # already synced: no second reduction
            pl_module.log(key, value, prog_bar=key.endswith(("/acc_top1", "/loc_top1")), sync_dist=False)
        self.last_results = {k: float(v) for k, v in values.items()}
        with warnings.catch_warnings():  # box-less data never updates the curve; it still syncs (DDP) and is empty
            warnings.filterwarnings("ignore", message=r"The ``compute`` method of metric")
            per_class = {k: v.cpu().tolist() for k, v in self.per_class[split].compute().items()}
            curve = {k: v.cpu().tolist() for k, v in self.curves[split].compute().items()}
        names = [self._name(i) for i in range(len(self.class_names))]
        self.last_summary[split] = EvaluationSummary(
            split, trainer.current_epoch, trainer.global_step, dict(self.last_results), names, per_class, curve,
            list(self._samples),
        )
        for state in (metric, self.skipped[split], self.per_class[split], self.curves[split]):
            state.reset()
        out_dir = Path(trainer.log_dir or trainer.default_root_dir) / "overlays"  # every rank: log_dir broadcasts
        self._write_overlays(split, trainer, out_dir)

    @rank_zero_only
    def _write_overlays(self, split: str, trainer: pl.Trainer, out_dir: Path) -> None:
        if not self._samples:
            return
        tiles = [sample.panel() for sample in self._samples]
        width = viz.grid_width(tiles, OVERLAY_COLUMNS)
        legend = viz.cam_legend(width, self.iou_threshold, self.cam_threshold, self.method)
        picture = viz.grid(tiles, columns=OVERLAY_COLUMNS, legend=legend)
        png = viz.encode_png(picture)  # once, for the file and TensorBoard
        path = out_dir / f"{split}_epoch{trainer.current_epoch:03d}.png"
        self.last_overlay_path = viz.save_png(picture, path, png)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                add_png_image(experiment, f"{split}/cam_overlays", picture, png, trainer.global_step)

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._finish("val", trainer, pl_module)

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish("test", trainer, pl_module)
