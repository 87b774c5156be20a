"""Class-specific units (the paper's section 4, "Visualizing class-specific units"): which last-conv units a
class relies on, what they fire on, and how much of the class's CAM they carry.

For a class c the units are ranked by their weight w_k^c: the classifier's (a `camexp train` checkpoint or a
registered network), or, with an SVM (`--svm`), the raw-space weights of a linear SVM fitted on the train
split's pooled features. For each top unit: the evaluation images where it fires most (highest pooled
activation), its activation map on each, and the fixed-size patch under the map's peak. The "combination"
view rebuilds each image's CAM from the top-k units of its class only,

    M_c^k(x, y) = sum_{k' in top-k(w^c)} w_k'^c f_k'(x, y),

and compares it with the full CAM: how often its paper-rule box hits a GT box, the IoU of its box with the
full CAM's box, and the correlation of the two maps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.data.collate import collate_samples
from camexp.errors import CamexpError
from camexp.explainer import Explainer
from camexp.features.extract import SplitFeatures, cached_features, evaluation_split, load_backbone, probe_data
from camexp.localization import best_iou_per_image, boxes_from_cams, paired_iou

IOU_HIT = 0.5
DEFAULT_KS = (1, 3, 10, 30, 100)
MAX_DEFAULT_CLASSES = 20  # more classes than this: the 10 most often predicted unless --classes names them


# -- pure functions -------------------------------------------------------------------------------------------


def unit_ranking(weights: np.ndarray, class_id: int, top: int | None = None) -> np.ndarray:
    """Units of class `class_id` by descending weight w_k^c (ties: the lower unit first); the first `top`."""
    order = np.argsort(-np.asarray(weights)[class_id], kind="stable")
    return order if top is None else order[:top]


def top_k_weights(weights: Tensor, k: int, ranking: Tensor | None = None) -> Tensor:
    """C x K: each class's weights with all but its k top units set to zero; top by `ranking` (C x K, default
    the weights themselves), in unit_ranking's order."""
    if k >= weights.shape[1]:
        return weights
    keep = torch.argsort(-(weights if ranking is None else ranking), dim=1, stable=True)[:, :k]
    return torch.zeros_like(weights).scatter_(1, keep, weights.gather(1, keep))


def top_images(activations: np.ndarray, count: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `count` images with the highest pooled activation (N) of a unit, among `candidates`
    (bool N; None: all). Ties: the earlier image first."""
    order = np.argsort(-activations, kind="stable")
    if candidates is not None:
        order = order[candidates[order]]
    return order[:count]


def peak_patch(unit_map: np.ndarray, patch: int) -> tuple[int, int, int, int]:
    """The patch x patch window (x0, y0, x1, y1; exclusive ends) centred on the map's argmax (H x W), shifted
    to lie inside the map (the whole map when it is smaller)."""
    height, width = unit_map.shape
    y, x = np.unravel_index(int(np.argmax(unit_map)), unit_map.shape)
    pw, ph = min(patch, width), min(patch, height)
    x0 = int(min(max(x - pw // 2, 0), width - pw))
    y0 = int(min(max(y - ph // 2, 0), height - ph))
    return x0, y0, x0 + pw, y0 + ph


def map_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of corresponding maps (N x h x w); NaN where either map is constant."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denominator > 0, (a * b).sum(1) / denominator.clamp_min(1e-300), float("nan"))


# -- weights --------------------------------------------------------------------------------------------------


@dataclass
class UnitWeights:
    """The w_k^c of the CAMs: C x K weights, C biases, the class names of the rows, where they come from
    ("classifier" or "svm"), and what the units are ranked by (C x K; the weights unless said otherwise)."""

    weights: np.ndarray
    bias: np.ndarray
    class_names: list[str]
    source: str
    labels: np.ndarray  # the dataset label of each row (SVM), or -1 (a classifier over other classes)
    ranking: np.ndarray | None = None  # None: rank by `weights`
    ranked_by: str = "weight w_k^c"

    @property
    def rank_values(self) -> np.ndarray:
        return self.weights if self.ranking is None else self.ranking

    def scores(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weights.T + self.bias


def classifier_weights(backbone: Explainer, data_classes: Sequence[str]) -> UnitWeights:
    """The network's own linear layer after pooling (its rows are the dataset's labels when the class names agree)."""
    layer = backbone.net.classifier
    bias = layer.bias.detach().float().cpu().numpy() if layer.bias is not None else np.zeros(layer.out_features)
    same = list(backbone.class_names) == list(data_classes)
    labels = np.arange(len(bias)) if same else np.full(len(bias), -1)
    return UnitWeights(
        layer.weight.detach().float().cpu().numpy(),
        bias.astype(np.float32),
        list(backbone.class_names),
        "classifier",
        labels,
    )


def svm_weights(train: SplitFeatures, data_classes: Sequence[str], seed: int = 0, rank: str = "raw") -> UnitWeights:
    """A linear SVM on the train split's pooled features; rows = the classes it saw (binary: -w, w). The CAMs use
    its raw-space weights; rank="raw" ranks units by them too, rank="standardized" by the SVM's own coefficients
    on standardized features (w_k x std_k): raw-space weights are largest on units that hardly vary, often
    units that almost never fire."""
    from camexp.features.finegrained import svm_class_weights
    from camexp.features.svm import fit_linear_svm, raw_space_weights

    probe = fit_linear_svm(train.features, train.labels, seed=seed)
    weights = svm_class_weights(probe)
    _, bias = raw_space_weights(probe)
    bias = np.concatenate([-bias, bias]) if len(bias) == 1 and len(weights) == 2 else bias
    names = [data_classes[int(c)] for c in probe.classes]
    result = UnitWeights(weights, bias.astype(np.float32), names, "svm", probe.classes.astype(np.int64))
    if rank == "standardized":
        scale = probe.pipeline[0].scale_
        result.ranking = (weights * np.where(scale == 0, 1.0, scale)).astype(np.float32)
        result.ranked_by = "standardized SVM coefficient w_k^c x std_k"
    elif rank != "raw":
        raise CamexpError(f"--svm-rank {rank}: unknown; use raw or standardized.")
    return result


def choose_classes(unit_weights: UnitWeights, requested: Sequence[int] | None, features: np.ndarray) -> list[int]:
    """Rows to show: the requested ones (each checked), else all when few, else the 10 most often predicted."""
    count = len(unit_weights.class_names)
    if requested:
        bad = [c for c in requested if not 0 <= c < count]
        if bad:
            what = "SVM (fitted on the train split)" if unit_weights.source == "svm" else "classifier"
            raise CamexpError(
                f"--classes {' '.join(map(str, bad))}: out of range; the {what} has classes 0..{count - 1} "
                f"({unit_weights.class_names[0]} .. {unit_weights.class_names[-1]}). Give ids in that range."
            )
        return list(dict.fromkeys(int(c) for c in requested))
    if count <= MAX_DEFAULT_CLASSES:
        return list(range(count))
    predicted = np.bincount(unit_weights.scores(features).argmax(1), minlength=count)
    return np.argsort(-predicted, kind="stable")[:10].tolist()


def image_classes(unit_weights: UnitWeights, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, str]:
    """The row whose CAM each image gets: its GT class when the weights cover every label, else the predicted."""
    rows = np.searchsorted(unit_weights.labels, labels) if (unit_weights.labels >= 0).all() else None
    if rows is not None and np.isin(labels, unit_weights.labels).all():
        return rows, "ground-truth class"
    return unit_weights.scores(features).argmax(1), "predicted class"


# -- the combination view -------------------------------------------------------------------------------------


@dataclass
class Combination:
    ks: list[int]
    images: int
    class_source: str  # "ground-truth class" or "predicted class"
    hit: dict[int, float] | None  # k -> share of images whose top-k CAM box has IoU >= 0.5 with a GT box
    box_iou: dict[int, float]  # k -> mean IoU of the top-k CAM's box with the full CAM's box
    correlation: dict[int, float]  # k -> mean Pearson r of the top-k CAM and the full CAM (CAM resolution)
    constant_maps: dict[int, int]  # k -> maps left out of the correlation (constant: r undefined)


@torch.no_grad()
def combination(
    backbone: Explainer,
    dataset: Dataset,
    weights: np.ndarray,
    rows: np.ndarray,
    ks: Sequence[int],
    class_source: str,
    threshold: float = 0.2,
    batch_size: int = 32,
    num_workers: int = 0,
    ranking: np.ndarray | None = None,
) -> Combination:
    """Top-k-unit CAMs against the full CAM over `dataset`, image i using row rows[i] of `weights` (units
    ranked by `ranking`, default the weights)."""
    from tqdm import tqdm

    w = torch.as_tensor(weights, device=backbone.device).float()
    order = None if ranking is None else torch.as_tensor(ranking, device=backbone.device).float()
    masked = {k: top_k_weights(w, k, order) for k in ks}
    hits: dict[int, list[Tensor]] = {k: [] for k in ks}
    ious: dict[int, list[Tensor]] = {k: [] for k in ks}
    corrs: dict[int, list[Tensor]] = {k: [] for k in ks}
    has_boxes = True
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
    for batch in tqdm(loader, desc="top-k unit CAMs", unit="batch", leave=False, dynamic_ncols=True):
        maps = backbone.net.forward_features(batch["image"].to(backbone.device)).float()
        ids = torch.as_tensor(rows[batch["index"].numpy()], device=maps.device)
        full = class_activation_maps(maps, w, ids)
        full_boxes = boxes_from_cams(upsample_cams(full, backbone.input_size), threshold)
        has_boxes = has_boxes and "boxes" in batch
        for k in ks:
            cams = class_activation_maps(maps, masked[k], ids)
            boxes = boxes_from_cams(upsample_cams(cams, backbone.input_size), threshold)
            ious[k].append(paired_iou(boxes, full_boxes).nan_to_num(1.0))  # both empty: the same (no) box
            corrs[k].append(map_correlation(cams, full).cpu())
            if has_boxes:
                hits[k].append(best_iou_per_image(boxes, batch["boxes"], batch["box_count"]) >= IOU_HIT)
    correlation = {k: torch.cat(corrs[k]) for k in ks}
    return Combination(
        list(ks),
        len(dataset),
        class_source,
        {k: float(torch.cat(hits[k]).float().mean()) for k in ks} if has_boxes else None,
        {k: float(torch.cat(ious[k]).mean()) for k in ks},
        {k: float(np.nanmean(c.numpy())) if (~c.isnan()).any() else float("nan") for k, c in correlation.items()},
        {k: int(c.isnan().sum()) for k, c in correlation.items()},
    )


# -- per-class unit grids -------------------------------------------------------------------------------------


@dataclass
class UnitView:
    """One top unit of one class: its weight and the images where it fires most, with their peaks."""

    class_id: int
    rank: int
    unit: int
    weight: float
    images: list[int]  # dataset indices, highest pooled activation first
    activations: list[float]  # their pooled activations
    patches: list[tuple[int, int, int, int]]  # per image: the peak patch in input pixels
    tiles: list[np.ndarray] = field(default_factory=list, repr=False)  # overlays, then patches (RGB)


@torch.no_grad()
def unit_views(
    backbone: Explainer,
    dataset: Dataset,
    data_class_names: Sequence[str],
    features: np.ndarray,
    unit_weights: UnitWeights,
    class_id: int,
    top: int,
    count: int,
    patch: int,
    within_class: bool = False,
) -> list[UnitView]:
    """The `top` units of `class_id`, each with its `count` top images: map overlays and peak patches."""
    from camexp import viz
    from camexp.data.transforms import normalization

    units = unit_ranking(unit_weights.rank_values, class_id, top)
    candidates = None
    if within_class and unit_weights.labels[class_id] >= 0:
        candidates = dataset.images.labels == unit_weights.labels[class_id]
    views = [
        UnitView(
            class_id,
            rank,
            int(u),
            float(unit_weights.weights[class_id, u]),
            top_images(features[:, u], count, candidates).tolist(),
            [],
            [],
        )
        for rank, u in enumerate(units, start=1)
    ]
    needed = sorted({i for v in views for i in v.images})
    if not needed:
        return views
    batch = collate_samples([dataset[i] for i in needed])
    maps = backbone.net.forward_features(batch["image"].to(backbone.device)).float()
    pixels = viz.denormalize(batch["image"], *normalization(backbone.normalize))
    position = {i: p for p, i in enumerate(needed)}
    size, labels = backbone.input_size, dataset.images.labels
    for view in views:
        overlays, patches = [], []
        for i in view.images:
            unit_map = upsample_cams(maps[position[i], view.unit], size).cpu()
            box = peak_patch(unit_map.numpy(), patch)
            view.activations.append(float(features[i, view.unit]))
            view.patches.append(box)
            caption = [f"#{i} {data_class_names[labels[i]]}", f"act {features[i, view.unit]:.2f}"]
            heat = normalize_cams(unit_map[None])[0].numpy()
            overlays.append(
                viz.overlay_panel(
                    pixels[position[i]], heat, extra_boxes=np.array(box), caption=caption, min_width=160, max_width=224
                )
            )
            x0, y0, x1, y1 = box
            patches.append(np.ascontiguousarray(pixels[position[i]][y0:y1, x0:x1]))
        width = overlays[0].shape[1] if overlays else 160
        view.tiles = overlays + [_patch_tile(p, width, f"#{i} peak") for p, i in zip(patches, view.images, strict=True)]
    return views


def _patch_tile(patch: np.ndarray, width: int, caption: str) -> np.ndarray:
    """The patch enlarged by a whole factor (crisp pixels) to about `width`, captioned."""
    import cv2

    from camexp import viz

    scale = max(1, width // max(patch.shape[:2]))
    big = cv2.resize(patch, (patch.shape[1] * scale, patch.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    return viz.stack([big, viz.text_strip(max(big.shape[1], 60), caption)])


def class_grid(views: Sequence[UnitView], class_name: str, ranked_by: str) -> np.ndarray:
    """One PNG per class: a row per top unit (a heading cell, the top images with the unit's map and its peak
    patch box in magenta, then the patches)."""
    from camexp import viz

    columns = 1 + max(len(v.tiles) for v in views)
    width = max(t.shape[1] for v in views for t in v.tiles) if any(v.tiles for v in views) else 160
    tiles = []
    for view in views:
        heading = viz.text_strip(width, [f"rank {view.rank}: unit {view.unit}", f"w = {view.weight:.4g}"])
        row = [heading, *view.tiles]
        tiles += row + [np.full((1, 1, 3), 255, np.uint8)] * (columns - len(row))
    note = (
        f"Class {class_name}: its last-conv units ranked by {ranked_by} (rows), each unit's map on "
        "the evaluation images where it fires most (highest pooled activation), then the patches under its peaks."
    )
    legend = viz.legend_strip(
        viz.grid_width(tiles, columns),
        [("peak patch", viz.HEURISTIC_COLOR)],
        note,
        heat_label="unit activation: low to high",
    )
    return viz.grid(tiles, columns=columns, legend=legend)


# -- W&B ----------------------------------------------------------------------------------------------------

TABLE_COLUMNS = ["class_id", "class", "rank", "unit", "weight", "top_images", "activations", "maps", "patches"]


def log_wandb(
    out: Path,
    views: dict[int, list[UnitView]],
    class_names: list[str],
    combination_rows: list[list[Any]],
    config: dict[str, Any],
    project: str,
    grids: dict[int, Path],
) -> str:
    """One W&B run (offline with WANDB_MODE=offline) under out/wandb: the `units/top_units` table (a row per
    class and unit, its maps and patches as images), `units/combination` and each class's grid."""
    import wandb

    from camexp import viz

    run = wandb.init(project=project, dir=str(out), config=config, job_type="units", name=f"units/{out.name}")
    table = wandb.Table(columns=TABLE_COLUMNS)
    for class_id, class_views in views.items():
        for v in class_views:
            count = len(v.images)
            maps, patches = (
                wandb.Image(viz.grid(t, columns=len(t))) if t else None for t in (v.tiles[:count], v.tiles[count:])
            )
            table.add_data(
                class_id, class_names[class_id], v.rank, v.unit, v.weight, v.images, v.activations, maps, patches
            )
    media: dict[str, Any] = {"units/top_units": table}
    media["units/combination"] = wandb.Table(columns=COMBINATION_COLUMNS, data=combination_rows)
    for class_id, path in grids.items():
        media[f"units/grid/{class_id:03d}"] = wandb.Image(str(path), caption=class_names[class_id])
    run.log(media)
    folder = Path(run.dir).parent
    offline = bool(getattr(run, "offline", False))
    run.finish()
    return f"{folder} (offline; upload with: wandb sync {folder})" if offline else str(folder)


# -- the command ----------------------------------------------------------------------------------------------

COMBINATION_COLUMNS = ["units_kept", "cam_box_hit", "box_iou_vs_full", "map_correlation"]


def combination_rows(result: Combination, total_units: int) -> list[list[Any]]:
    return [
        [
            k if k < total_units else total_units,
            None if result.hit is None else result.hit[k],
            result.box_iou[k],
            result.correlation[k],
        ]
        for k in result.ks
    ]


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None or value != value:
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def combination_table(result: Combination, total_units: int) -> str:
    hit_label = "GT-known loc. %" if result.class_source == "ground-truth class" else "CAM box hit %"
    lines = [
        f"| units kept (k) | {hit_label} (IoU >= {IOU_HIT:g}) | IoU of box with full CAM's box | map correlation r |",
        "|---:|---:|---:|---:|",
    ]
    for k, hit, iou, corr in combination_rows(result, total_units):
        name = f"{k} (all)" if k == total_units else str(k)
        lines.append(f"| {name} | {_cell(hit, True)} | {_cell(iou)} | {_cell(corr)} |")
    return "\n".join(lines)


def units_command(
    spec: str,
    files: Sequence[str],
    overrides: Sequence[str],
    out: str | Path,
    classes: Sequence[int] | None = None,
    top: int = 3,
    images: int = 4,
    patch: int | None = None,
    use_svm: bool = False,
    svm_rank: str = "raw",
    split: str = "val",
    ks: Sequence[int] | None = None,
    within_class: bool = False,
    cache_dir: str | Path | None = None,
    input_size: int | None = None,
    threshold: float = 0.2,
    batch_size: int = 32,
    device: str = "auto",
    wandb: bool = False,
    wandb_project: str = "camexp-units",
) -> tuple[str, Path]:
    """`camexp units`: units_<class>.png per class, report.md and results.json in `out` (and a W&B run)."""
    from camexp import viz

    if not files:
        raise CamexpError(
            "camexp units needs --data EXPERIMENT.yaml (the images to look at), e.g. "
            "--data experiments/synthloc_gap.yaml."
        )
    if top < 1 or images < 1:
        raise CamexpError(f"--top ({top}) and --images ({images}) must be at least 1.")
    start = time.perf_counter()
    backbone = load_backbone(spec, device)
    if input_size:
        backbone = replace(backbone, input_size=int(input_size))
    cfg, datamodule = probe_data(files, overrides, backbone)
    workers = int(cfg.data.num_workers)
    evaluation = evaluation_split(datamodule, split)
    feats = cached_features(backbone, evaluation, cache_dir, batch_size, workers, f"{split} features")
    if use_svm:
        train = cached_features(
            backbone, evaluation_split(datamodule, "train"), cache_dir, batch_size, workers, "train features"
        )
        unit_weights = svm_weights(train, datamodule.class_names, int(cfg.seed), svm_rank)
    else:
        unit_weights = classifier_weights(backbone, datamodule.class_names)
    chosen = choose_classes(unit_weights, classes, feats.features)
    total = unit_weights.weights.shape[1]
    ks = sorted({min(int(k), total) for k in (ks or DEFAULT_KS) if int(k) >= 1} | {min(top, total), total})
    rows, class_source = image_classes(unit_weights, feats.features, feats.labels)
    combo = combination(
        backbone,
        evaluation,
        unit_weights.weights,
        rows,
        ks,
        class_source,
        threshold,
        batch_size,
        workers,
        unit_weights.ranking,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    patch = patch or max(8, backbone.input_size // 4)
    views: dict[int, list[UnitView]] = {}
    grids: dict[int, Path] = {}
    for class_id in chosen:
        views[class_id] = unit_views(
            backbone,
            evaluation,
            datamodule.class_names,
            feats.features,
            unit_weights,
            class_id,
            top,
            images,
            patch,
            within_class,
        )
        name = unit_weights.class_names[class_id]
        grids[class_id] = viz.save_png(
            class_grid(views[class_id], name, unit_weights.ranked_by), out / f"units_{class_id:03d}.png"
        )
    config = {
        "backbone": backbone.name,
        "data": list(map(str, files)),
        "overrides": list(overrides),
        "weights": unit_weights.source,
        "ranked_by": unit_weights.ranked_by,
        "split": split,
        "top": top,
        "images": images,
        "patch": patch,
        "input_size": backbone.input_size,
        "within_class": within_class,
    }
    wandb_location = None
    if wandb:
        wandb_location = log_wandb(
            out, views, unit_weights.class_names, combination_rows(combo, total), config, wandb_project, grids
        )
    wall = time.perf_counter() - start
    units_md = _units_table(views, unit_weights.class_names)
    combo_md = combination_table(combo, total)
    results = {
        **config,
        "classes": [
            {
                "class_id": c,
                "class": unit_weights.class_names[c],
                "grid": grids[c].name,
                "units": [
                    {
                        "rank": v.rank,
                        "unit": v.unit,
                        "weight": v.weight,
                        "images": v.images,
                        "activations": v.activations,
                        "patches": [list(p) for p in v.patches],
                    }
                    for v in views[c]
                ],
            }
            for c in chosen
        ],
        "combination": {
            "class_source": combo.class_source,
            "images": combo.images,
            "total_units": total,
            "columns": COMBINATION_COLUMNS,
            "rows": combination_rows(combo, total),
            "constant_maps": {str(k): n for k, n in combo.constant_maps.items()},
        },
        "wandb": wandb_location,
        "wall_s": wall,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "report.md").write_text(
        _report(backbone, unit_weights, split, combo, units_md, combo_md, grids, wandb_location, total, wall)
    )
    notes = [] if combo.hit is not None else ["The dataset has no ground-truth boxes: box hit rates are skipped."]
    return "\n\n".join([units_md, combo_md, *notes]), out / "report.md"


def _units_table(views: dict[int, list[UnitView]], class_names: list[str]) -> str:
    lines = ["| class | rank | unit | w_k^c | top images (pooled activation) |", "|---|---:|---:|---:|---|"]
    for class_id, class_views in views.items():
        for v in class_views:
            shown = ", ".join(f"#{i} ({a:.2f})" for i, a in zip(v.images, v.activations, strict=True))
            lines.append(f"| {class_id} {class_names[class_id]} | {v.rank} | {v.unit} | {v.weight:.4g} | {shown} |")
    return "\n".join(lines)


def _report(
    backbone: Explainer,
    unit_weights: UnitWeights,
    split: str,
    combo: Combination,
    units_md: str,
    combo_md: str,
    grids: dict[int, Path],
    wandb_location: str | None,
    total: int,
    wall: float,
) -> str:
    source = (
        "the classifier's weights w_k^c"
        if unit_weights.source == "classifier"
        else "a linear SVM fitted on the train split's pooled features (CAMs: its raw-space weights; units ranked "
        f"by its {'raw-space weight w_k^c' if unit_weights.ranking is None else unit_weights.ranked_by})"
    )
    lines = [
        "# Class-specific units",
        "",
        f"Backbone `{backbone.name}` ({total} last-conv units, input {backbone.input_size} px); units ranked by "
        f"{source}; top images from the `{split}` split.",
        "",
        "## Top units per class",
        "",
        units_md,
        "",
        "## How much of the CAM the top units carry",
        "",
        f"Each of the {combo.images} `{split}` images gets the CAM of its {combo.class_source}, rebuilt from that "
        "class's k highest-weighted units only; its paper-rule box (>= 0.2 x max, largest component) is compared "
        "with a GT box and with the full CAM's box, and the map with the full CAM (Pearson r at the CAM's "
        "resolution, constant maps left out).",
        "",
        combo_md,
    ]
    if combo.hit is None:
        lines += ["", "The dataset has no ground-truth boxes: box hit rates are skipped."]
    lines += ["", "## Grids", ""] + [f"- class {c}: ![{p.name}]({p.name})" for c, p in grids.items()]
    if wandb_location:
        lines += ["", f"W&B run: {wandb_location}"]
    lines += ["", f"Wall time {wall:.0f} s."]
    return "\n".join(lines) + "\n"
