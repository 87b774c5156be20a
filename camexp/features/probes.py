"""`camexp probe`: linear SVMs on a backbone's pooled features, and the CAMs of their weights (paper section 4).

The paper reuses a GAP network as a generic feature extractor: one-vs-rest linear SVMs on the pooled features
of another dataset's images classify it, and the CAM of class c from the SVM's weights w^c,

    M_c(x, y) = sum_k w_k^c f_k(x, y),

localizes it exactly as the network's own classifier weights would. Here the features of the train and
evaluation splits are extracted once (features.extract, cached on disk), the SVMs fitted (features.svm), and the
evaluation split is passed through the backbone a second time for its maps. That pass runs through the very
CAMCallback that `camexp train` validates with: the same paper box rule, top-1 / GT-known localization,
MaxBoxAcc / MaxBoxAccV2 / PxAP where the data has boxes and masks, the centre-Gaussian and whole-image
baselines, and the same overlay grid. The network's head is swapped for the SVM (`SVMHead`), nothing else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from camexp.errors import CamexpError
from camexp.explainer import Explainer
from camexp.features.extract import (
    FEATURE_CACHE,
    SplitFeatures,
    cached_features,
    evaluation_split,
    load_backbone,
    probe_data,
)
from camexp.features.svm import LinearProbe, class_row_weights, fit_linear_svm

OVERLAYS = "overlays.png"


# -- the SVM as a head: pure functions ------------------------------------------------------------------------


def class_weight_matrix(probe: LinearProbe, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The SVM's raw-space weights and biases with one row per dataset class (C x K, C), so row c is w^c of
    class id c: the rows the SVM fitted at their class ids, a two-class SVM's single row w as -w (classes[0])
    and +w (classes[1]), and for classes absent from train zero weights and a -inf bias (never predicted)."""
    weights, bias = class_row_weights(probe)
    classes = np.asarray(probe.classes, dtype=np.int64)
    full_w = np.zeros((num_classes, weights.shape[1]), dtype=np.float32)
    full_b = np.full(num_classes, -np.inf, dtype=np.float32)
    full_w[classes], full_b[classes] = weights, bias
    return full_w, full_b


def class_scores(probe: LinearProbe, features: np.ndarray, num_classes: int) -> np.ndarray:
    """N x C decision values per dataset class id (-inf for classes the SVM never saw). Their argmax is the
    SVM's own prediction (a two-class SVM's score s becomes (-s, s): classes[1] iff s > 0, as LinearSVC)."""
    scores = probe.scores(features)
    classes = np.asarray(probe.classes, dtype=np.int64)
    if len(classes) == 2 and scores.shape[1] == 1:
        scores = np.concatenate([-scores, scores], axis=1)
    full = np.full((len(features), num_classes), -np.inf, dtype=np.float32)
    full[:, classes] = scores
    return full


class SVMHead(pl.LightningModule):
    """A backbone whose head is the linear SVM: what CAMCallback asks of a CAMNet (`class_weights`,
    `cam_capable`, and an evaluation step returning {"logits", "features"}). The logits are the SVM's decision
    values on the cached pooled features of the same image (looked up by dataset index), so the accuracy the
    callback reports is the SVM's own, to the last image."""

    cam_capable = True

    def __init__(self, net: nn.Module, weights: np.ndarray, scores: np.ndarray) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self.register_buffer("scores", torch.as_tensor(scores, dtype=torch.float32))

    @property
    def class_weights(self) -> Tensor:
        return self.weights

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        features = self.net.forward_features(batch["image"])  # N x K x h x w
        return {"logits": self.scores[batch["index"]], "features": features}


# -- the second pass: maps, boxes, metrics and overlays through CAMCallback -------------------------------------


def localize_with_svm(
    backbone: Explainer,
    dataset: Dataset,
    weights: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    out: Path,
    cam_threshold: float = 0.2,
    iou_threshold: float = 0.5,
    num_overlays: int = 16,
    wsoleval_size: int = 224,
    heuristic_top5: bool = False,
    has_boxes: bool = True,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[dict[str, float], Path | None]:
    """The callback's validation metrics ("val/..." keys, fractions) of the SVM CAMs on `dataset`, and the
    overlay grid it drew (moved to out/overlays.png; None without images). has_boxes=False (scene datasets):
    the wsoleval metrics (MaxBoxAcc, PxAP) are not even set up."""
    from camexp.callbacks.cam_metrics import CAMCallback
    from camexp.config import EvalConfig
    from camexp.console import quiet_synced_metric_warnings
    from camexp.data.collate import collate_samples
    from camexp.data.transforms import normalization

    quiet_synced_metric_warnings()
    callback = CAMCallback(
        class_names,
        *normalization(backbone.normalize),
        cam_threshold=cam_threshold,
        iou_threshold=iou_threshold,
        num_overlays=num_overlays,
        method="cam",  # the SVM's weights on the backbone's maps
        protocol="wsoleval" if has_boxes else "paper",  # MaxBoxAcc, MaxBoxAccV2, PxAP from boxes / masks
        box_thresholds=EvalConfig.box_thresholds,  # unused: validate() sweeps the reference 1000 thresholds
        wsoleval_size=wsoleval_size,
        heuristic_top5=heuristic_top5,
    )
    with quiet_lightning():
        trainer = pl.Trainer(
            accelerator="gpu" if backbone.device.type == "cuda" else "cpu",
            devices=[backbone.device.index or 0] if backbone.device.type == "cuda" else 1,  # the backbone's own
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            callbacks=[callback],
            default_root_dir=str(out),
            use_distributed_sampler=False,
        )
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
        trainer.validate(SVMHead(backbone.net, weights, scores), dataloaders=loader, verbose=False)
    overlay = callback.last_overlay_path
    if overlay is not None:
        folder, overlay = overlay.parent, overlay.replace(out / OVERLAYS)
        with contextlib.suppress(OSError):  # the callback's overlays/ folder, now empty
            folder.rmdir()
    return dict(callback.last_results), overlay


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's start-up lines (accelerators found, tips) and deprecation chatter say nothing about a probe."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*is deprecated")
            yield
    finally:
        logger.setLevel(level)


# -- the command ----------------------------------------------------------------------------------------------


def probe_backbone(spec: str, device: str = "auto", input_size: int | None = None) -> Explainer:
    """`load_backbone`, named as the --features it came from when refused (an FC network has no GAP features),
    at `input_size` when given (else the backbone's own)."""
    try:
        backbone = load_backbone(spec, device)
    except CamexpError as err:
        raise CamexpError(f"--features {spec}: {err}") from err
    if input_size:
        if input_size < 32:
            raise CamexpError(f"--input-size {input_size} is too small: give at least 32 pixels.")
        backbone = replace(backbone, input_size=int(input_size))
    return backbone


def feature_note(name: str, features: SplitFeatures, seconds: float) -> str:
    """One line saying whether a split's features came from the cache."""
    if features.from_cache:
        return f"{name}: {len(features.labels)} images, features read from cache {features.cache_path}"
    where = f", cached at {features.cache_path}" if features.cache_path else ""
    return f"{name}: {len(features.labels)} images, features extracted in {seconds:.1f} s{where}"


@dataclass
class ProbeResult:
    out: Path
    report: Path
    results: dict[str, Any]
    table: str  # what the command prints


def run_probe(
    spec: str,
    files: Sequence[str],
    overrides: Sequence[str],
    out: str | Path,
    split: str = "val",
    cache_dir: str | Path | None = FEATURE_CACHE,
    input_size: int | None = None,
    batch_size: int = 32,
    device: str = "auto",
    num_overlays: int = 16,
    progress: bool = True,
    log=print,
) -> ProbeResult:
    """`camexp probe --features SPEC --data FILES`: report.md, results.json and overlays.png in `out`."""
    if not files:
        raise CamexpError(
            "camexp probe needs --data EXPERIMENT.yaml (the dataset to probe), e.g. --data "
            "experiments/synthloc_gap.yaml; or --positives DIR --negatives DIR for a concept detector."
        )
    started = time.perf_counter()
    out = Path(out)
    backbone = probe_backbone(spec, device, input_size)
    cfg, datamodule = probe_data(files, overrides, backbone)
    workers = int(cfg.data.num_workers)
    datasets = {"train": evaluation_split(datamodule, "train"), split: evaluation_split(datamodule, split)}
    features, notes = {}, []
    for name, dataset in datasets.items():
        tic = time.perf_counter()
        features[name] = cached_features(backbone, dataset, cache_dir, batch_size, workers, desc=f"{name} features")
        notes.append(feature_note(name, features[name], time.perf_counter() - tic))
        log(notes[-1])
    train, evaluation = features["train"], features[split]
    tic = time.perf_counter()
    probe = fit_linear_svm(train.features, train.labels, seed=int(cfg.seed))
    fit_seconds = time.perf_counter() - tic
    num_classes = len(datamodule.class_names)
    weights, _ = class_weight_matrix(probe, num_classes)
    scores = class_scores(probe, evaluation.features, num_classes)
    log(f"SVMs fitted in {fit_seconds:.1f} s (C={probe.C:g}); computing CAMs of the {split} split ...")
    out.mkdir(parents=True, exist_ok=True)
    metrics, overlay = localize_with_svm(
        backbone,
        datasets[split],
        weights,
        scores,
        datamodule.class_names,
        out,
        float(cfg.eval.cam_threshold),
        float(cfg.eval.iou_threshold),
        num_overlays,
        int(cfg.eval.wsoleval_size),
        bool(cfg.eval.heuristic_top5),
        datamodule.has_boxes,
        batch_size,
        workers,
        progress,
    )
    has_boxes = any(key.startswith("val/loc_") for key in metrics)
    results = {
        "backbone": backbone.name,
        "input_size": backbone.input_size,
        "feature_dim": int(train.features.shape[1]),
        "data": str(cfg.data.name),
        "data_root": str(getattr(datamodule, "root", "")),
        "split": split,
        "num_classes": num_classes,
        "images": {"train": len(train.labels), split: len(evaluation.labels)},
        "features_from_cache": {"train": train.from_cache, split: evaluation.from_cache},
        "svm": {
            "C": probe.C,
            "holdout_accuracy": probe.holdout_accuracy,
            "train_accuracy": probe.accuracy(train.features, train.labels),
            "accuracy": probe.accuracy(evaluation.features, evaluation.labels),
        },
        "box_metrics": has_boxes,
        "metrics": {key.replace("val/", f"{split}/", 1): value for key, value in sorted(metrics.items())},
        "overlays": overlay.name if overlay else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = probe_tables(results, metrics)
    report = write_probe_report(out, results, table, notes)
    return ProbeResult(out, report, results, table)


def probe_tables(results: dict[str, Any], metrics: dict[str, float]) -> str:
    """The classification table of the SVMs, then the callback's results table (CAM beside the baselines)."""
    from camexp.reports import results_table

    split, svm = results["split"], results["svm"]
    lines = [
        "| linear SVMs (one-vs-rest) | value |",
        "|---|---:|",
        f"| C (chosen on 20% of train held out) | {svm['C']:g} |",
        f"| held-out train accuracy % | {100 * svm['holdout_accuracy']:.2f} |",
        f"| train accuracy % | {100 * svm['train_accuracy']:.2f} |",
        f"| {split} accuracy % ({results['images'][split]} images) | {100 * svm['accuracy']:.2f} |",
        "",
        results_table(metrics, "val"),
    ]
    if not results["box_metrics"]:
        lines += ["", NO_BOXES_NOTE]
    return "\n".join(lines)


NO_BOXES_NOTE = (
    "This dataset has no ground-truth boxes: the box metrics (top-1 / GT-known localization, MaxBoxAcc, "
    "MaxBoxAccV2) are skipped; the overlays show the SVM CAMs and their paper-rule boxes alone."
)


def write_probe_report(out: Path, results: dict[str, Any], table: str, notes: Sequence[str]) -> Path:
    """report.md (tables + overlay picture) and results.json in `out`; returns report.md's path."""
    split = results["split"]
    lines = [
        f"# Linear probe: `{results['backbone']}` features on {results['data']}",
        "",
        f"One-vs-rest linear SVMs (scikit-learn LinearSVC on standardized features) on the backbone's pooled "
        f"last-conv features ({results['feature_dim']} per image, input {results['input_size']} px), fitted on the "
        f"train split ({results['images']['train']} images, {results['num_classes']} classes) and scored on the "
        f"{split} split. The CAM of class c uses the SVM's weights w^c (folded back to the raw feature space) over "
        f"the last conv maps; boxes, metrics and overlays are those of `camexp train`'s validation (the "
        f"ground-truth class's CAM, the paper's rule at 20% of the max).",
        "",
        *[f"- {note}" for note in notes],
        "",
        table,
        "",
    ]
    if results["overlays"]:
        lines += [f"![SVM CAMs of the {split} split]({results['overlays']})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return report
