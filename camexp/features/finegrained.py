"""Fine-grained recognition with CAM crops (the paper's section 4, CUB-200-2011 table): does boxing the object
with a CAM first help a linear classifier on GAP features?

Three linear SVMs (camexp.features.svm, C chosen on held-out train), each fitted on the train split and tested on the
evaluation split, on the backbone's pooled features of

1. the full images;
2. crops by the CAM box: the CAM of the class the full-image SVM PREDICTS (its raw-space weights over the
   backbone's last conv maps, boxed by the paper's rule), for train and evaluation images alike, so no label
   places a crop (on train images the prediction is that of an SVM fitted on them, so mostly the label);
3. crops by the ground-truth box, the upper bound (skipped, and said so, when the dataset has no boxes);

and the share of evaluation images whose CAM box has IoU >= 0.5 with a GT box. A crop is cut from the ORIGINAL
image and resized to the backbone's input, in memory. Full-image features, CAM boxes and crop features are
cached on disk, keyed by the backbone's weights, the split's images and (crops) the boxes themselves, so
another backbone or box source is never reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from camexp.cam import normalize_cams, upsample_cams
from camexp.data.collate import collate_samples
from camexp.data.image_list import ImageList
from camexp.data.images import load_rgb
from camexp.errors import CamexpError
from camexp.explainer import Explainer
from camexp.features.extract import (
    SplitFeatures,
    backbone_fingerprint,
    cached_features,
    evaluation_split,
    load_backbone,
    probe_data,
    split_fingerprint,
)
from camexp.features.svm import LinearProbe, class_row_weights, fit_linear_svm, svm_cams
from camexp.localization import best_iou_per_image, boxes_from_cams
from camexp.paper_numbers import FINEGRAINED_CUB

IOU_HIT = 0.5  # a CAM box "hits" at IoU >= 0.5 with some GT box (camexp's rule everywhere; the paper says > 0.5)
_SNAP = 1e-3  # box fractions x image size within this of an integer are that integer (float round trips)


# -- CAMs from an SVM --------------------------------------------------------------------------------------


def svm_class_weights(probe: LinearProbe) -> np.ndarray:
    """C x K raw-space weights, row i for class probe.classes[i] (svm.class_row_weights without the biases)."""
    return class_row_weights(probe)[0]


def predicted_rows(probe: LinearProbe, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, their rows in svm_class_weights) of the SVM on pooled features."""
    predicted = probe.predict(features)
    return predicted, np.searchsorted(probe.classes, predicted)


# -- boxes -------------------------------------------------------------------------------------------------


@dataclass
class SplitBoxes:
    """One split's boxes, in dataset order."""

    cam: np.ndarray  # N x 4 xyxy in input pixels (S x S): paper-rule box of the predicted class's SVM CAM
    cam_fraction: np.ndarray  # N x 4: the same box as fractions of width / height (NaN: empty map)
    gt_fraction: np.ndarray | None  # N x 4: hull of the image's GT boxes as fractions; None: no boxes
    best_iou: np.ndarray | None  # N: the CAM box's best IoU with a GT box (input pixels); None: no boxes
    from_cache: bool = False

    @property
    def empty(self) -> int:
        """CAM boxes that are empty (a constant map): those images are used whole."""
        return int(np.isnan(self.cam_fraction).any(1).sum())


def gt_hull_fractions(orig_boxes: Tensor, counts: Tensor, orig_size: Tensor) -> np.ndarray:
    """N x 4: the hull of each image's valid GT boxes (N x B x 4, original pixels) over its (width, height)."""
    boxes = orig_boxes.double().cpu().numpy()
    valid = np.arange(boxes.shape[1])[None, :] < counts.cpu().numpy()[:, None]
    low = np.where(valid[..., None], boxes[..., :2], np.inf).min(1)
    high = np.where(valid[..., None], boxes[..., 2:], -np.inf).max(1)
    size = orig_size.double().cpu().numpy()
    hull = np.concatenate([low / size, high / size], axis=1)
    return np.where(np.isfinite(hull), hull, np.nan)


@torch.no_grad()
def cam_boxes(
    backbone: Explainer,
    dataset: Dataset,
    weights: np.ndarray,
    rows: np.ndarray,
    threshold: float = 0.2,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "CAM boxes",
) -> SplitBoxes:
    """The paper-rule box (pixels >= threshold x max of the map upsampled to the input, largest component) of
    the CAM of row `rows[i]` of the SVM weights for every image i of `dataset`, and its GT boxes if any."""
    from tqdm import tqdm

    n, size = len(dataset), backbone.input_size
    boxes = np.zeros((n, 4), np.float32)
    gt_fraction, best_iou = np.full((n, 4), np.nan), np.full(n, -1.0)
    has_boxes = True
    net = backbone.net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        index = batch["index"].numpy()
        maps = net.forward_features(batch["image"].to(backbone.device))
        cams = upsample_cams(svm_cams(maps, weights, torch.as_tensor(rows[index])), size)
        found = boxes_from_cams(cams, threshold)
        boxes[index] = found.numpy()
        has_boxes = has_boxes and "boxes" in batch
        if has_boxes:
            best_iou[index] = best_iou_per_image(found, batch["boxes"], batch["box_count"]).numpy()
            gt_fraction[index] = gt_hull_fractions(batch["orig_boxes"], batch["box_count"], batch["orig_size"])
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    fraction = np.where(empty[:, None], np.nan, boxes / size)
    return SplitBoxes(boxes, fraction, gt_fraction if has_boxes else None, best_iou if has_boxes else None)


def _digest(*arrays: np.ndarray | str | float) -> str:
    digest = hashlib.sha1()
    for item in arrays:
        digest.update(np.ascontiguousarray(item).tobytes() if isinstance(item, np.ndarray) else repr(item).encode())
    return digest.hexdigest()[:16]


def cached_cam_boxes(
    backbone: Explainer,
    dataset: Dataset,
    weights: np.ndarray,
    rows: np.ndarray,
    cache_dir: str | Path | None,
    threshold: float = 0.2,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "CAM boxes",
) -> SplitBoxes:
    """`cam_boxes`, read from `cache_dir` when computed before for this backbone, split, SVM and classes."""
    compute = lambda: cam_boxes(backbone, dataset, weights, rows, threshold, batch_size, num_workers, desc)  # noqa: E731
    if cache_dir is None:
        return compute()
    key = "_".join(
        (
            backbone_fingerprint(backbone.net),
            split_fingerprint(dataset, backbone.input_size, backbone.normalize),
            _digest(weights.astype(np.float32), rows.astype(np.int64), float(threshold)),
        )
    )
    path = Path(cache_dir) / f"camboxes_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            gt = stored["gt_fraction"] if stored["has_boxes"] else None
            iou = stored["best_iou"] if stored["has_boxes"] else None
            return SplitBoxes(stored["cam"], stored["cam_fraction"], gt, iou, from_cache=True)
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    has = result.gt_fraction is not None
    np.savez(
        partial,
        cam=result.cam,
        cam_fraction=result.cam_fraction,
        has_boxes=has,
        gt_fraction=result.gt_fraction if has else np.zeros((0, 4)),
        best_iou=result.best_iou if has else np.zeros(0),
    )
    partial.replace(path)
    return result


# -- crops -------------------------------------------------------------------------------------------------


def crop_box(fraction: Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The integer pixel box (x0, y0, x1, y1; x1, y1 exclusive) covering the box given as fractions of
    `size` = (width, height): outward to whole pixels, at least one pixel, inside the image. A missing
    (NaN) or empty box gives the whole image."""
    width, height = size
    f = np.asarray(fraction, dtype=np.float64)
    if not np.isfinite(f).all() or f[2] <= f[0] or f[3] <= f[1]:
        return 0, 0, width, height
    x0 = min(max(int(np.floor(f[0] * width + _SNAP)), 0), width - 1)
    y0 = min(max(int(np.floor(f[1] * height + _SNAP)), 0), height - 1)
    x1 = min(max(int(np.ceil(f[2] * width - _SNAP)), x0 + 1), width)
    y1 = min(max(int(np.ceil(f[3] * height - _SNAP)), y0 + 1), height)
    return x0, y0, x1, y1


class CropDataset(Dataset):
    """The images of an ImageList, each cut to one box (fractions of its width / height; NaN: the whole
    image) from the original pixels, then `transform` (the backbone's: resize to its input, normalize)."""

    def __init__(self, images: ImageList, fractions: np.ndarray, transform) -> None:
        if len(fractions) != len(images):
            raise ValueError(f"{len(fractions)} boxes for {len(images)} images")
        self.images, self.fractions, self.transform = images, np.asarray(fractions, np.float64), transform

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, index: int) -> Image.Image:
        image = load_rgb(self.images.path(index))
        return image.crop(crop_box(self.fractions[index], image.size))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.transform(self.crop(index)), "label": int(self.images.labels[index]), "index": index}


def crop_features(
    backbone: Explainer,
    images: ImageList,
    fractions: np.ndarray,
    source: str,
    cache_dir: str | Path | None,
    batch_size: int = 32,
    num_workers: int = 0,
) -> SplitFeatures:
    """Pooled features of the crops, cached under a key of the backbone, the split and the boxes (`source`,
    e.g. "cam" or "gt", only names the file: equal boxes from two sources are the same crops)."""
    dataset = CropDataset(images, fractions, backbone.transform)
    variant = f"crops-{source}-{_digest(np.asarray(fractions, np.float64))}"
    return cached_features(backbone, dataset, cache_dir, batch_size, num_workers, f"{source} crops", variant=variant)


# -- the experiment ----------------------------------------------------------------------------------------


@dataclass
class Arm:
    """One row of the table: an SVM trained on one kind of image and its accuracy on the evaluation split."""

    name: str
    probe: LinearProbe
    train: SplitFeatures
    evaluation: SplitFeatures
    accuracy: float


@dataclass
class FineGrained:
    backbone: Explainer
    class_names: list[str]
    train_dataset: Dataset
    eval_dataset: Dataset
    split: str
    arms: dict[str, Arm]  # "full", "cam_crop", "gt_crop" (the last only with GT boxes)
    weights: np.ndarray  # C x K raw-space weights of the full-image SVM (the CAMs')
    predicted: dict[str, np.ndarray]  # "train" / "eval": the full-image SVM's predicted labels
    rows: dict[str, np.ndarray]  # the same as rows of `weights`
    boxes: dict[str, SplitBoxes]  # "train" / "eval"
    threshold: float
    notes: list[str] = field(default_factory=list)

    @property
    def has_boxes(self) -> bool:
        return self.boxes["train"].gt_fraction is not None and self.boxes["eval"].gt_fraction is not None

    @property
    def cam_iou_hit(self) -> float | None:
        iou = self.boxes["eval"].best_iou
        return None if iou is None or not self.has_boxes else float((iou >= IOU_HIT).mean())

    def prediction_accuracy(self, which: str) -> float:
        dataset = self.train_dataset if which == "train" else self.eval_dataset
        return float((self.predicted[which] == dataset.images.labels).mean())


def _fit(name: str, train: SplitFeatures, evaluation: SplitFeatures, seed: int) -> Arm:
    probe = fit_linear_svm(train.features, train.labels, seed=seed)
    return Arm(name, probe, train, evaluation, probe.accuracy(evaluation.features, evaluation.labels))


def run_finegrained(
    backbone: Explainer,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    class_names: list[str],
    split: str = "val",
    cache_dir: str | Path | None = None,
    threshold: float = 0.2,
    batch_size: int = 32,
    num_workers: int = 0,
    seed: int = 0,
) -> FineGrained:
    """Full image -> SVM -> predicted-class CAM boxes -> crops -> SVM; GT-box crops -> SVM (when boxes exist)."""
    for name, dataset in (("train", train_dataset), (split, eval_dataset)):
        if getattr(dataset, "images", None) is None:
            raise CamexpError(
                f"camexp finegrained needs an image-list split; the {name} split is a "
                f"{type(dataset).__name__}. Use a CUB-layout, ILSVRC, scene or wsoleval dataset."
            )
    kw = dict(batch_size=batch_size, num_workers=num_workers)
    full_train = cached_features(backbone, train_dataset, cache_dir, desc="train features", **kw)
    full_eval = cached_features(backbone, eval_dataset, cache_dir, desc=f"{split} features", **kw)
    arms = {"full": _fit("full", full_train, full_eval, seed)}
    weights = svm_class_weights(arms["full"].probe)
    predicted, rows, boxes = {}, {}, {}
    for which, dataset, feats in (("train", train_dataset, full_train), ("eval", eval_dataset, full_eval)):
        predicted[which], rows[which] = predicted_rows(arms["full"].probe, feats.features)
        boxes[which] = cached_cam_boxes(
            backbone, dataset, weights, rows[which], cache_dir, threshold, desc=f"{which} CAM boxes", **kw
        )
    crops = {
        which: crop_features(backbone, dataset.images, boxes[which].cam_fraction, "cam", cache_dir, **kw)
        for which, dataset in (("train", train_dataset), ("eval", eval_dataset))
    }
    arms["cam_crop"] = _fit("cam_crop", crops["train"], crops["eval"], seed)
    result = FineGrained(
        backbone,
        list(class_names),
        train_dataset,
        eval_dataset,
        split,
        arms,
        weights,
        predicted,
        rows,
        boxes,
        threshold,
    )
    if result.has_boxes:
        gt = {
            which: crop_features(backbone, dataset.images, boxes[which].gt_fraction, "gt", cache_dir, **kw)
            for which, dataset in (("train", train_dataset), ("eval", eval_dataset))
        }
        arms["gt_crop"] = _fit("gt_crop", gt["train"], gt["eval"], seed)
    else:
        result.notes.append(
            "The dataset has no ground-truth boxes: the GT-box crop row and the CAM boxes' IoU are skipped."
        )
    return result


# -- report ------------------------------------------------------------------------------------------------

COLUMNS = ("full image", "CAM crop", "GT-box crop", f"CAM boxes with IoU >= {IOU_HIT:g}")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table_rows(result: FineGrained, label: str) -> list[list[str]]:
    """The paper's row (CUB-200-2011, GoogLeNet-GAP) and ours, as table cells."""
    paper = FINEGRAINED_CUB
    gt = result.arms.get("gt_crop")
    return [
        ["paper: CUB-200-2011, GoogLeNet-GAP"]
        + [f"{paper[k]:.1f}" for k in ("full_image", "cam_crop", "gt_crop", "cam_box_iou50")],
        [
            f"ours: {label}",
            _percent(result.arms["full"].accuracy),
            _percent(result.arms["cam_crop"].accuracy),
            _percent(gt.accuracy if gt else None),
            _percent(result.cam_iou_hit),
        ],
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def summary(result: FineGrained, label: str) -> dict[str, Any]:
    """results.json: every number of the report."""
    arms = {
        name: {
            "accuracy": arm.accuracy,
            "C": arm.probe.C,
            "holdout_accuracy": arm.probe.holdout_accuracy,
            "train_images": len(arm.train.labels),
            "eval_images": len(arm.evaluation.labels),
        }
        for name, arm in result.arms.items()
    }
    return {
        "backbone": result.backbone.name,
        "label": label,
        "input_size": result.backbone.input_size,
        "split": result.split,
        "cam_threshold": result.threshold,
        "crop_class": "predicted by the full-image SVM (train and evaluation images)",
        "accuracy": {name: arm["accuracy"] for name, arm in arms.items()},
        "arms": arms,
        "cam_box_iou_hit": result.cam_iou_hit,
        "iou_threshold": IOU_HIT,
        "prediction_accuracy": {w: result.prediction_accuracy(w) for w in ("train", "eval")},
        "empty_cam_boxes": {w: result.boxes[w].empty for w in ("train", "eval")},
        "paper_cub": FINEGRAINED_CUB,
        "notes": result.notes,
    }


def report_markdown(result: FineGrained, label: str, overlay: str | None, wall_s: float) -> str:
    info = summary(result, label)
    full = result.arms["full"]
    lines = [
        "# Fine-grained recognition with CAM crops",
        "",
        f"Backbone `{result.backbone.name}` (input {result.backbone.input_size} px, {result.weights.shape[1]} "
        f"last-conv units); {len(full.train.labels)} train / {len(full.evaluation.labels)} evaluation "
        f"(`{result.split}`) images, {len(result.class_names)} classes.",
        "",
        "Accuracy % of a linear SVM (one-vs-rest, C chosen on 20% of train) trained on the train split and "
        "tested on the evaluation split; last column: evaluation images whose CAM box has IoU >= "
        f"{IOU_HIT:g} with a ground-truth box (the paper says > 0.5).",
        "",
        markdown_table(("", *COLUMNS), table_rows(result, label)),
        "",
        "How the crops were made:",
        "",
        f"- CAM crop: the CAM of the class the full-image SVM **predicts** (its raw-space weights over the "
        f"last conv maps), boxed by the paper's rule (>= {result.threshold:g} x max, largest component), cut "
        "from the original image and resized to the backbone input. No label is used: on evaluation images "
        f"the prediction is right on {100 * info['prediction_accuracy']['eval']:.1f}%; on train images it is "
        f"the prediction of the same SVM, which was fitted on them (right on "
        f"{100 * info['prediction_accuracy']['train']:.1f}%).",
        "- GT-box crop: the hull of the image's ground-truth boxes, cut the same way (the upper bound).",
        f"- Empty CAM boxes (a constant map; image used whole): {info['empty_cam_boxes']['train']} train, "
        f"{info['empty_cam_boxes']['eval']} evaluation.",
        "- SVM C per row: " + ", ".join(f"{n} {a.probe.C:g}" for n, a in result.arms.items()) + ".",
        "",
        "The paper's row: GoogLeNet-GAP fine-tuned on ILSVRC, CUB-200-2011 (5,994 train / 5,794 test, 200 "
        "species). Ours uses whatever backbone and dataset were given: compare the orderings (full < CAM crop "
        "< GT crop), not the values, unless both are CUB with a comparable network.",
    ]
    lines += [f"\n{note}" for note in result.notes]
    if overlay:
        lines += ["", f"![CAM crop boxes (red) and GT boxes (green)]({overlay})"]
    lines += ["", f"Wall time {wall_s:.0f} s."]
    return "\n".join(lines) + "\n"


def overlay_picture(result: FineGrained, count: int = 6) -> np.ndarray:
    """A few evaluation images (half CAM-box hits, half misses when boxes exist): the predicted class's SVM
    CAM with its box (red) and the GT boxes (green), then the CAM crop and the GT-box crop."""
    from camexp import viz
    from camexp.data.transforms import normalization

    dataset, boxes = result.eval_dataset, result.boxes["eval"]
    order = np.arange(len(dataset))
    if boxes.best_iou is not None:
        hits, misses = order[boxes.best_iou >= IOU_HIT], order[boxes.best_iou < IOU_HIT]
        half = min(len(hits), count // 2)
        order = np.concatenate([hits[:half], misses[: count - half], hits[half:]])
    chosen = order[:count].tolist()
    names, labels = result.class_names, dataset.images.labels
    cam_crops = CropDataset(dataset.images, boxes.cam_fraction, None)
    gt_crops = CropDataset(dataset.images, boxes.gt_fraction, None) if boxes.gt_fraction is not None else None
    size, mean_std = result.backbone.input_size, normalization(result.backbone.normalize)
    tiles = []
    with torch.no_grad():
        for i in chosen:
            sample = dataset[i]
            maps = result.backbone.net.forward_features(sample["image"][None].to(result.backbone.device))
            rows = torch.as_tensor(result.rows["eval"][[i]])
            cam = normalize_cams(upsample_cams(svm_cams(maps, result.weights, rows), size))[0].cpu().numpy()
            pixels = viz.denormalize(sample["image"][None], *mean_std)[0]
            caption = [f"pred {names[int(result.predicted['eval'][i])]}", f"GT {names[int(labels[i])]}"]
            if boxes.best_iou is not None:
                caption.append(f"IoU {boxes.best_iou[i]:.2f}")
            gt = sample["boxes"].numpy() if "boxes" in sample else None
            panel = viz.overlay_panel(pixels, cam, pred_boxes=boxes.cam[i], gt_boxes=gt, caption=caption)
            tiles.append(panel)
            width = panel.shape[1]
            for crops, title in ((cam_crops, "CAM crop"), (gt_crops, "GT-box crop")):
                if crops is not None:
                    picture = np.asarray(crops.crop(i).resize((width, width), Image.BILINEAR))
                    tiles.append(viz.stack([picture, viz.text_strip(width, title)]))
    columns = 2 + (gt_crops is not None)
    entries = [("CAM box (predicted class)", viz.PRED_COLOR)]
    if gt_crops is not None:
        entries.append(("ground-truth box", viz.GT_COLOR))
    note = (
        "Heat: the CAM of the class the full-image SVM predicts (its raw-space weights). Each row: the image, "
        "its CAM crop" + (", its GT-box crop" if gt_crops is not None else "") + " (as the second SVM sees them)."
    )
    legend = viz.legend_strip(viz.grid_width(tiles, columns), entries, note, heat_label="CAM: low to high")
    return viz.grid(tiles, columns=columns, legend=legend)


# -- the command ---------------------------------------------------------------------------------------------


def finegrained_command(
    spec: str,
    files: Sequence[str],
    overrides: Sequence[str],
    out: str | Path,
    split: str = "val",
    cache_dir: str | Path | None = None,
    input_size: int | None = None,
    threshold: float = 0.2,
    batch_size: int = 32,
    device: str = "auto",
    overlays: int = 6,
) -> tuple[str, Path]:
    """`camexp finegrained`: report.md, results.json and finegrained_overlays.png in `out`; returns the table
    and the report's path."""
    from camexp import viz

    if not files:
        raise CamexpError(
            "camexp finegrained needs --data EXPERIMENT.yaml (the dataset to use), e.g. "
            "--data experiments/synthloc_gap.yaml."
        )
    start = time.perf_counter()
    backbone = load_backbone(spec, device)
    if input_size:
        backbone = replace(backbone, input_size=int(input_size))
    cfg, datamodule = probe_data(files, overrides, backbone)
    train, evaluation = evaluation_split(datamodule, "train"), evaluation_split(datamodule, split)
    result = run_finegrained(
        backbone,
        train,
        evaluation,
        datamodule.class_names,
        split,
        cache_dir,
        threshold,
        batch_size,
        int(cfg.data.num_workers),
        int(cfg.seed),
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    label = f"{cfg.data.name}, {Path(spec).name if spec.endswith('.ckpt') else spec}"
    overlay = None
    if overlays > 0:
        overlay = viz.save_png(overlay_picture(result, overlays), out / "finegrained_overlays.png").name
    wall = time.perf_counter() - start
    (out / "report.md").write_text(report_markdown(result, label, overlay, wall))
    info = {**summary(result, label), "data": list(map(str, files)), "overrides": list(overrides), "wall_s": wall}
    (out / "results.json").write_text(json.dumps(info, indent=1) + "\n")
    table = markdown_table(("", *COLUMNS), table_rows(result, label))
    return "\n".join([table, *result.notes]), out / "report.md"
