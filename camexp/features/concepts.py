"""Concept detectors: one linear SVM on pooled features (images with the concept vs without), trained with
hard-negative mining, and the CAM of its weights localizing the concept (paper section 4: concept localization
in weakly labelled images, the weakly supervised text detector).

`camexp probe --features X --positives DIR --negatives DIR [--boxes FILE]`: the features of every image are
extracted once (cached, camexp.features.extract); a quarter of each folder is held out; the detector starts from a
random subset of the training negatives and, each round, adds the negatives it scores highest (the ones it
mistakes most for the concept) and is fitted again. Its CAM, M(x, y) = sum_k w_k f_k(x, y) with w the SVM's
raw-space weights, is boxed by the paper's rule on the held-out positives; with --boxes the boxes are scored
(IoU >= 0.5, MaxBoxAcc) beside the centre-Gaussian baseline. `camexp text-demo` runs it on generated text
images (camexp.data.text).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from camexp.errors import CamexpError, DatasetError
from camexp.explainer import IMAGE_SUFFIXES, Explainer
from camexp.features.extract import FEATURE_CACHE, cached_features
from camexp.features.probes import ProbeResult, feature_note, probe_backbone
from camexp.features.svm import LinearProbe, fit_linear_svm, raw_space_weights, svm_cams

BOXES_HELP = (
    "A boxes file has one line per box: '<file under --positives> x0 y0 x1 y1' in pixels of that image "
    "(x1, y1 = last column, row + 1; several lines for several boxes; '#' starts a comment), as `camexp text-demo` "
    "writes it in boxes.txt."
)
HELD_OUT = 0.25  # fraction of each folder kept out of training, for accuracy, AP and the localization scores
OVERLAY_COLUMNS = 6


# -- input ------------------------------------------------------------------------------------------------------


def concept_files(folder: str | Path | None, flag: str) -> list[Path]:
    """The image files under `folder` (recursively, sorted); a missing, empty or one-image folder is a
    one-paragraph error naming the flag (checked before any network is loaded)."""
    role = "showing the concept" if flag == "--positives" else "without the concept"
    if not folder:
        raise CamexpError(
            f"camexp probe needs both --positives and --negatives for a concept detector; {flag} is missing. Give "
            f"{flag} DIR, a folder of images {role}."
        )
    path = Path(folder)
    if not path.is_dir():
        raise CamexpError(f"{flag} {path} is not a folder. Give {flag} DIR, a folder of images {role}.")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        found = "holds no image files" if not files else f"holds only one image ({files[0].name})"
        raise CamexpError(
            f"{flag} {path} {found} ({', '.join(IMAGE_SUFFIXES)}). A concept detector learns from images {role} "
            f"(at least 2, of which a quarter are held out to score it): put images into {path} or point {flag} "
            f"at another folder."
        )
    return files


def read_concept_boxes(path: str | Path, positives: Path, files: Sequence[Path]) -> list[np.ndarray]:
    """Per positive file (in `files` order) its K x 4 xyxy boxes in original pixels, from a boxes file. A line
    naming no positive, a malformed line or a positive without any box is a DatasetError naming the line / file."""
    from camexp.textfiles import line_error, read_lines

    path = Path(path)
    boxes: dict[str, list[list[float]]] = {f.relative_to(positives).as_posix(): [] for f in files}
    for line_no, line in read_lines(path, BOXES_HELP, what="boxes file"):
        if line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 fields, found {len(parts)}")
            box = [float(v) for v in parts[1:]]
        except ValueError as err:
            raise line_error(path, line_no, line, str(err), BOXES_HELP) from err
        if parts[0] not in boxes:
            raise line_error(path, line_no, line, f"no image {parts[0]} under --positives {positives}", BOXES_HELP)
        if not (box[2] > box[0] and box[3] > box[1]):
            raise line_error(path, line_no, line, "the box has no area (need x1 > x0 and y1 > y0)", BOXES_HELP)
        boxes[parts[0]].append(box)
    missing = [name for name, found in boxes.items() if not found]
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(
            f"{path} gives no box for {len(missing)} positive image(s): {listed}. Every positive needs its box for "
            f"the localization scores; add the lines, or leave out --boxes to see the CAMs unscored. {BOXES_HELP}"
        )
    return [np.asarray(boxes[f.relative_to(positives).as_posix()], dtype=np.float64) for f in files]


# -- hard-negative mining: pure functions -----------------------------------------------------------------------


def top_scored(scores: np.ndarray, available: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` highest `scores` among the `available` ones (bool mask), highest first; equal
    scores in index order."""
    candidates = np.flatnonzero(available)
    order = np.lexsort((candidates, -scores[candidates]))  # last key first: score descending, then index
    return candidates[order[:count]]


@dataclass
class MiningRound:
    negatives: np.ndarray  # indices (into the negatives) this round's detector was fitted on, sorted
    detector: LinearProbe
    added: np.ndarray  # the unused negatives it scored highest, added for the next round (empty after the last)


@dataclass
class MinedDetector:
    rounds: list[MiningRound]

    @property
    def detector(self) -> LinearProbe:
        return self.rounds[-1].detector

    @property
    def negatives(self) -> np.ndarray:
        return self.rounds[-1].negatives


def mining_sizes(num_negatives: int) -> tuple[int, int]:
    """(first random subset, negatives added per round): a quarter, then 15% of the negatives (at least 1)."""
    return max(1, round(0.25 * num_negatives)), max(1, round(0.15 * num_negatives))


def mine_hard_negatives(
    positives: np.ndarray,
    negatives: np.ndarray,
    rounds: int = 3,
    initial: int | None = None,
    per_round: int | None = None,
    seed: int = 0,
    fit: Callable[[np.ndarray, np.ndarray], LinearProbe] | None = None,
) -> MinedDetector:
    """A linear detector (label 1: positives, 0: negatives; features N x K) from a random `initial` subset of
    the negatives, then `rounds` times: score every negative, add the `per_round` highest-scored ones not yet
    used (top_scored), fit again. Stops early when no negative is left. fit: (features, labels) -> LinearProbe
    (default: fit_linear_svm with balanced class weights, as the negatives outnumber the positives more and more)."""
    if rounds < 0:
        raise CamexpError(f"--rounds {rounds} must be 0 (no mining) or more.")
    default_initial, default_per_round = mining_sizes(len(negatives))
    initial, per_round = initial or default_initial, per_round or default_per_round
    fit = fit or partial(fit_linear_svm, seed=seed, class_weight="balanced")
    used = np.zeros(len(negatives), dtype=bool)
    used[np.random.default_rng(seed).choice(len(negatives), min(initial, len(negatives)), replace=False)] = True
    history: list[MiningRound] = []
    for round_index in range(rounds + 1):
        chosen = np.flatnonzero(used)
        labels = np.concatenate([np.ones(len(positives), np.int64), np.zeros(len(chosen), np.int64)])
        detector = fit(np.concatenate([positives, negatives[chosen]]), labels)
        added = np.empty(0, dtype=np.int64)
        if round_index < rounds:
            added = top_scored(detector.scores(negatives)[:, 0], ~used, per_round)
        history.append(MiningRound(chosen, detector, added))
        if len(added) == 0:
            break
        used[added] = True
    return MinedDetector(history)


def detection_scores(detector: LinearProbe, features: np.ndarray) -> np.ndarray:
    """The detector's decision value per image (N,): > 0 means 'the concept is there'."""
    return detector.scores(features)[:, 0]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


# -- the second pass: the detector's CAM on held-out images -----------------------------------------------------


def image_set(root: Path, files: Sequence[Path], labels: Sequence[int], size: int, transform,
              boxes: Sequence[np.ndarray] | None = None) -> Dataset:  # fmt: skip
    """Files under `root` as an image-list split (what camexp.features.extract caches), seen through `transform`;
    with `boxes` (original pixels), evaluation samples carrying them scaled to the size x size input."""
    from camexp.data.image_list import ImageList, ImageListDataset

    paths = [os.path.relpath(f, root) for f in files]
    sources = [f"boxes of {p}" for p in paths] if boxes is not None else None
    images = ImageList.build(root, paths, list(labels), boxes=None if boxes is None else list(boxes),
                             box_sources=sources)  # fmt: skip
    return ImageListDataset(images, transform, boxes is not None, size, min_side=size)


def peak_in_box(cams: torch.Tensor, gt_boxes: torch.Tensor, gt_counts: torch.Tensor) -> torch.Tensor:
    """Per map (N x H x W): does its highest pixel (the first in raster order) lie in one of its GT boxes
    (N x B x 4 xyxy, the first gt_counts[i] valid)? The pointing game: a localization score that needs no box rule,
    so a coarse map that points at a thin object still counts."""
    n, _, width = cams.shape
    flat = cams.reshape(n, -1).argmax(1)
    x, y = (flat % width).float() + 0.5, (flat // width).float() + 0.5  # the pixel's centre
    return _centre_in_box(x, y, gt_boxes, gt_counts)


def _centre_in_box(x: torch.Tensor, y: torch.Tensor, gt_boxes: torch.Tensor, gt_counts: torch.Tensor) -> torch.Tensor:
    boxes = gt_boxes.float().cpu()
    inside = (boxes[..., 0] <= x[:, None]) & (x[:, None] <= boxes[..., 2])
    inside &= (boxes[..., 1] <= y[:, None]) & (y[:, None] <= boxes[..., 3])
    valid = torch.arange(boxes.shape[1])[None, :] < gt_counts.cpu()[:, None]
    return (inside & valid).any(1)


@dataclass
class ConceptLocalization:
    metrics: dict[str, float]  # fractions: loc_gt_known (box hit), loc_top1 (detected and hit), maxboxacc ...
    baseline: dict[str, float]  # the centre-Gaussian map's, on the same images
    records: list[dict[str, Any]]  # per image: path, score, box (input pixels), iou, baseline_iou
    panels: list[np.ndarray]


@torch.inference_mode()
def localize_concept(
    backbone: Explainer,
    dataset: Dataset,
    weight: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.2,
    iou_threshold: float = 0.5,
    num_overlays: int = 12,
    batch_size: int = 32,
    wsoleval_size: int = 224,
) -> ConceptLocalization:
    """The CAM of the detector's raw-space weights (K,) on every image of `dataset` (scores: its decision values,
    in dataset order): the paper-rule box, and where the samples carry boxes, the metrics of `camexp train`
    (metrics.CAMLocalizationMetrics with the detector's 'is it there' as the class decision, MaxBoxAcc) for the
    CAM and the centre-Gaussian baseline. Panels: the first `num_overlays` images with CAM and boxes."""
    from camexp import viz
    from camexp.cam import normalize_cams, upsample_cams
    from camexp.data.collate import collate_samples
    from camexp.data.transforms import normalization
    from camexp.localization import (
        baseline_best_ious,
        baseline_boxes,
        best_iou_per_image,
        boxes_from_cams,
        center_gaussian_map,
    )
    from camexp.metrics import CAMLocalizationMetrics
    from camexp.wsol.accumulator import WSOLAccumulator, wsoleval_gt_boxes, wsoleval_scoremaps

    size = backbone.input_size
    cam_metric, base_metric = CAMLocalizationMetrics(iou_threshold), CAMLocalizationMetrics(iou_threshold)
    cam_boxes, base_boxes = WSOLAccumulator(), WSOLAccumulator()
    gaussian = wsoleval_scoremaps(center_gaussian_map(wsoleval_size, wsoleval_size)[None], wsoleval_size)
    base_box = baseline_boxes(size, size, threshold)["center_gaussian"].numpy()
    weights = torch.as_tensor(weight, dtype=torch.float32).reshape(1, -1)
    mean, std = normalization(backbone.normalize)
    records, panels, any_boxes = [], [], False
    pointed = {"cam": [], "baseline": []}
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    for batch in loader:
        maps = backbone.net.forward_features(batch["image"].to(backbone.device)).float().cpu()  # N x K x h x w
        raw = svm_cams(maps, weights, torch.zeros(len(maps), dtype=torch.long))  # N x h x w
        cams = normalize_cams(upsample_cams(raw, size))
        boxes = boxes_from_cams(cams, threshold)
        score = torch.as_tensor(scores[batch["index"].numpy()], dtype=torch.float32)
        logits, labels = torch.stack([-score, score], 1), torch.ones(len(score), dtype=torch.long)
        ious = base_ious = None
        if "boxes" in batch:
            any_boxes = True
            pointed["cam"] += peak_in_box(cams, batch["boxes"], batch["box_count"]).tolist()
            centre = torch.full((len(cams),), size / 2)  # the centre-Gaussian map's peak
            pointed["baseline"] += _centre_in_box(centre, centre, batch["boxes"], batch["box_count"]).tolist()
            ious = best_iou_per_image(boxes, batch["boxes"], batch["box_count"])
            base_ious = baseline_best_ious(size, size, threshold, batch["boxes"], batch["box_count"])["center_gaussian"]
            gt = wsoleval_gt_boxes(batch["orig_boxes"], batch["box_count"], batch["orig_size"], wsoleval_size)
            cam_boxes.update(wsoleval_scoremaps(raw, wsoleval_size), gt)
            base_boxes.update(np.broadcast_to(gaussian, (len(gt), *gaussian.shape[1:])), gt)
        cam_metric.update(logits, labels, ious)
        base_metric.update(logits, labels, base_ious)
        pictures = viz.denormalize(batch["image"][: max(0, num_overlays - len(panels))], mean, std)
        for i, position in enumerate(batch["index"].tolist()):
            record = {
                "path": dataset.images.relpath(position),
                "score": round(float(score[i]), 4),
                "box": [round(float(v), 1) for v in boxes[i]],
            }
            if ious is not None:
                record.update(iou=round(float(ious[i]), 4), baseline_iou=round(float(base_ious[i]), 4))
            records.append(record)
            if i < len(pictures):
                gt_boxes = batch["boxes"][i, : int(batch["box_count"][i])].numpy() if ious is not None else None
                panels.append(
                    viz.overlay_panel(
                        pictures[i], cams[i].numpy(), pred_boxes=boxes[i].numpy(), gt_boxes=gt_boxes,
                        extra_boxes=base_box if ious is not None else None, caption=_caption(record, iou_threshold),
                    )
                )  # fmt: skip
    metrics = {k: float(v) for k, v in cam_metric.compute().items() if k in ("acc_top1", "loc_top1", "loc_gt_known")}
    baseline = {k: float(v) for k, v in base_metric.compute().items() if k in ("loc_top1", "loc_gt_known")}
    if any_boxes:
        for target, metric in ((metrics, cam_boxes), (baseline, base_boxes)):
            values = metric.compute().metrics()
            target.update({k: float(values[k]) for k in ("maxboxacc", "maxboxacc_threshold", "maxboxacc_v2")})
        metrics["pointing"], baseline["pointing"] = float(np.mean(pointed["cam"])), float(np.mean(pointed["baseline"]))
        metrics["mean_iou"] = float(np.mean([r["iou"] for r in records]))
        baseline["mean_iou"] = float(np.mean([r["baseline_iou"] for r in records]))
    metrics["detected"] = metrics.pop("acc_top1")  # all images are positives: the fraction scored > 0
    return ConceptLocalization(metrics, baseline, records, panels)


def _caption(record: dict[str, Any], iou_threshold: float) -> list[str]:
    """File name; score (detected or missed); IoU, hit or miss, and the centre-Gaussian box's IoU."""
    detected = "detected" if record["score"] > 0 else "missed"
    lines = [Path(record["path"]).name, f"score {record['score']:+.2f} ({detected})"]
    if "iou" in record:
        verdict = "hit" if record["iou"] >= iou_threshold else "miss"
        shown = np.floor(record["iou"] * 100 + 1e-9) / 100  # truncated, as viz.cam_caption
        lines.append(f"IoU {shown:.2f} {verdict} (centre {record['baseline_iou']:.2f})")
    return lines


def concept_picture(panels: Sequence[np.ndarray], concept: str, boxes: bool, threshold: float, note: str) -> np.ndarray:
    """The overlay grid with its legend."""
    from camexp import viz

    entries = [(f"CAM box (paper rule, CAM >= {threshold:g} x max)", viz.PRED_COLOR)]
    if boxes:
        entries += [(f"{concept} box (ground truth)", viz.GT_COLOR)]
        entries += [("centre-Gaussian baseline box", viz.HEURISTIC_COLOR)]
    legend = viz.legend_strip(viz.grid_width(panels, OVERLAY_COLUMNS), entries, note, heat_label="CAM: low to high")
    return viz.grid(panels, columns=OVERLAY_COLUMNS, legend=legend)


# -- the command ------------------------------------------------------------------------------------------------


def held_out_split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) positions of `count` items: round(fraction * count) held out (at least 1), seeded."""
    held = max(1, min(count - 1, round(fraction * count)))
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


@dataclass
class ConceptData:
    """The two folders, their features (positives first) and the held-out split, positions per folder."""

    positives: list[Path]
    negatives: list[Path]
    features: np.ndarray  # (P + N) x K
    pos_train: np.ndarray
    pos_test: np.ndarray
    neg_train: np.ndarray
    neg_test: np.ndarray

    @property
    def pos_features(self) -> np.ndarray:
        return self.features[: len(self.positives)]

    @property
    def neg_features(self) -> np.ndarray:
        return self.features[len(self.positives) :]

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels (1 / 0) of the held-out positives and negatives."""
        features = np.concatenate([self.pos_features[self.pos_test], self.neg_features[self.neg_test]])
        labels = np.r_[np.ones(len(self.pos_test), np.int64), np.zeros(len(self.neg_test), np.int64)]
        return features, labels


def mining_history(mined: MinedDetector, data: ConceptData) -> list[dict[str, Any]]:
    """Per round: training negatives, the files added next, C, held-out accuracy and average precision."""
    features, labels = data.held_out()
    history = []
    for r, step in enumerate(mined.rounds):
        scores = detection_scores(step.detector, features)
        history.append(
            {
                "round": r,
                "negatives": len(step.negatives),
                "added": [data.negatives[data.neg_train[i]].name for i in step.added],
                "C": step.detector.C,
                "held_out_accuracy": float(((scores > 0) == labels.astype(bool)).mean()),
                "held_out_ap": average_precision(labels, scores),
            }
        )
    return history


def run_concept_probe(
    spec: str,
    positives: str | Path | None,
    negatives: str | Path | None,
    out: str | Path,
    boxes: str | Path | None = None,
    rounds: int = 3,
    cache_dir: str | Path | None = FEATURE_CACHE,
    input_size: int | None = None,
    batch_size: int = 32,
    device: str = "auto",
    seed: int = 0,
    held_out: float = HELD_OUT,
    threshold: float = 0.2,
    iou_threshold: float = 0.5,
    num_overlays: int = 12,
    concept: str = "concept",
    log=print,
) -> ProbeResult:
    """`camexp probe --features SPEC --positives DIR --negatives DIR`: report.md, results.json,
    concept_overlays.png (held-out positives) and hard_negatives.png (the held-out negatives it scores highest)."""
    from camexp import viz

    started = time.perf_counter()
    pos_files, neg_files = concept_files(positives, "--positives"), concept_files(negatives, "--negatives")
    pos_boxes = read_concept_boxes(boxes, Path(positives), pos_files) if boxes else None
    if rounds < 0:
        raise CamexpError(f"--rounds {rounds} must be 0 (no mining) or more.")
    backbone = probe_backbone(spec, device, input_size)
    size, transform = backbone.input_size, backbone.transform
    files = [p.resolve() for p in (*pos_files, *neg_files)]
    root = Path(os.path.commonpath([p.parent for p in files]))
    labels = np.r_[np.ones(len(pos_files), np.int64), np.zeros(len(neg_files), np.int64)]
    tic = time.perf_counter()
    every = cached_features(
        backbone, image_set(root, files, labels, size, transform), cache_dir, batch_size, desc="concept features"
    )
    note = feature_note("positives + negatives", every, time.perf_counter() - tic)
    log(note)
    data = ConceptData(
        pos_files, neg_files, every.features, *held_out_split(len(pos_files), held_out, seed),
        *held_out_split(len(neg_files), held_out, seed + 1),
    )  # fmt: skip
    tic = time.perf_counter()
    mined = mine_hard_negatives(data.pos_features[data.pos_train], data.neg_features[data.neg_train], rounds, seed=seed)
    log(f"{concept} detector fitted in {len(mined.rounds)} round(s), {time.perf_counter() - tic:.1f} s")
    detector = mined.detector
    weight = raw_space_weights(detector)[0][0]  # K: the concept's w_k

    test = data.pos_test
    test_boxes = None if pos_boxes is None else [pos_boxes[i] for i in test]
    pos_root, neg_root = Path(positives).resolve(), Path(negatives).resolve()
    test_set = image_set(pos_root, [files[i] for i in test], [1] * len(test), size, transform, test_boxes)
    test_scores = detection_scores(detector, data.pos_features[test])
    found = localize_concept(
        backbone, test_set, weight, test_scores, threshold, iou_threshold, num_overlays, batch_size
    )
    neg_scores = detection_scores(detector, data.neg_features[data.neg_test])
    hardest = np.argsort(-neg_scores, kind="stable")[:OVERLAY_COLUMNS]
    hard_files = [neg_files[data.neg_test[i]].resolve() for i in hardest]
    hard_set = image_set(neg_root, hard_files, [0] * len(hardest), size, transform)
    fooled = localize_concept(backbone, hard_set, weight, neg_scores[hardest], threshold, iou_threshold, len(hardest))

    out = Path(out)
    pictures = {
        "concept_overlays.png": concept_picture(
            found.panels, concept, pos_boxes is not None, threshold,
            f"Heat: the CAM of the {concept} detector's weights on held-out positives; score: its decision value "
            f"(> 0: detected); centre: the centre-Gaussian baseline box's IoU.",
        ),
        "hard_negatives.png": concept_picture(
            fooled.panels, concept, False, threshold,
            f"The held-out negatives the final {concept} detector scores highest, with its CAM: what it mistakes "
            f"for the {concept}.",
        ),
    }  # fmt: skip
    for name, picture in pictures.items():
        viz.save_png(picture, out / name)
    results = {
        "backbone": backbone.name,
        "input_size": size,
        "concept": concept,
        "positives": str(positives),
        "negatives": str(negatives),
        "boxes": str(boxes) if boxes else None,
        "threshold": threshold,
        "images": {
            "positives": len(pos_files),
            "negatives": len(neg_files),
            "held_out_positives": len(data.pos_test),
            "held_out_negatives": len(data.neg_test),
        },
        "features_from_cache": every.from_cache,
        "features_note": note,
        "rounds": mining_history(mined, data),
        "localization": found.metrics,
        "baseline_center_gaussian": found.baseline,
        "held_out_positives": found.records,
        "held_out_negatives": [neg_files[i].relative_to(negatives).as_posix() for i in data.neg_test],
        "hardest_negatives": fooled.records,
        "overlays": list(pictures),
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = concept_tables(results, iou_threshold)
    report = write_concept_report(out, results, table, note)
    return ProbeResult(out, report, results, table)


LOCALIZATION_ROWS = (
    ("loc_gt_known", "box hit (paper rule at {threshold:g}, IoU >= {iou:g}): GT-known localization"),
    ("loc_top1", "detected (score > 0) and box hit: top-1 localization"),
    ("mean_iou", "mean IoU of the paper-rule box (x 100)"),
    ("maxboxacc", "MaxBoxAcc: box hit at the best CAM threshold ({best:.2f}), IoU 0.5"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
    ("pointing", "peak of the map inside the box (pointing game)"),
)


def concept_tables(results: dict[str, Any], iou_threshold: float = 0.5) -> str:
    """The mining rounds' held-out scores, then the localization of the held-out positives (CAM vs baseline)."""
    concept, images = results["concept"], results["images"]
    lines = [
        f"| {concept} detector round | negatives in training | hardest negatives added next | held-out accuracy % | "
        "held-out AP % |",
        "|---|---:|---:|---:|---:|",
    ]
    for step in results["rounds"]:
        name = "0 (random negatives)" if step["round"] == 0 else str(step["round"])
        lines.append(
            f"| {name} | {step['negatives']} | {len(step['added']) or '-'} | {100 * step['held_out_accuracy']:.2f} | "
            f"{100 * step['held_out_ap']:.2f} |"
        )
    cam, base = results["localization"], results["baseline_center_gaussian"]
    lines += [
        "",
        f"| held-out positives ({images['held_out_positives']}) | CAM of the detector % | centre-Gaussian % |",
        "|---|---:|---:|",
        f"| detected (score > 0) | {100 * cam['detected']:.2f} | - |",
    ]
    best = cam.get("maxboxacc_threshold", float("nan"))
    for key, label in LOCALIZATION_ROWS:
        if key in cam:
            shown = f"{100 * base[key]:.2f}" if key in base else "-"
            label = label.format(iou=iou_threshold, threshold=results["threshold"], best=best)
            lines.append(f"| {label} | {100 * cam[key]:.2f} | {shown} |")
    if "loc_gt_known" not in cam:
        lines += ["", f"No --boxes given: the {concept} CAMs and their boxes are shown, not scored."]
    return "\n".join(lines)


def write_concept_report(out: Path, results: dict[str, Any], table: str, note: str) -> Path:
    concept, images = results["concept"], results["images"]
    lines = [
        f"# {concept.capitalize()} detector: `{results['backbone']}` features",
        "",
        f"One linear SVM (scikit-learn LinearSVC on standardized pooled last-conv features, input "
        f"{results['input_size']} px) separates {images['positives']} images with the {concept} "
        f"({results['positives']}) from {images['negatives']} without ({results['negatives']}); a quarter of each is "
        f"held out. Hard-negative mining: the detector starts from a random quarter of the training negatives and "
        f"each round adds the unused negatives it scores highest (15% of them), then is fitted again. Its CAM (the "
        f"SVM's raw-space weights over the last conv maps) is boxed by the paper's rule (20% of the max).",
        "",
        f"- {note}",
        "",
        table,
        "",
        f"![{concept} CAMs on held-out positives](concept_overlays.png)",
        "",
        "![the held-out negatives the detector scores highest](hard_negatives.png)",
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return report


def run_text_demo(
    out: str | Path,
    features: str = "efficientnet_lite0",
    n: int = 100,
    size: int = 224,
    seed: int = 0,
    rounds: int = 3,
    cache_dir: str | Path | None = FEATURE_CACHE,
    input_size: int | None = None,
    device: str = "auto",
    log=print,
) -> ProbeResult:
    """`camexp text-demo`: the text set under out/data (camexp.data.text, kept when already there), then the
    concept detector on it with its text boxes."""
    from camexp.data.text import generate_text_set

    data = generate_text_set(Path(out) / "data", n, size, seed)
    log(f"text set: {n} positives, {n} negatives, {size} px, in {data}")
    result = run_concept_probe(
        features, data / "positives", data / "negatives", out, boxes=data / "boxes.txt", rounds=rounds,
        cache_dir=cache_dir, input_size=input_size, device=device, seed=seed, concept="text", log=log,
    )  # fmt: skip
    mined, paired, expected = paired_hard_negatives(result.results, n)
    result.results["mined_paired"] = {"mined": mined, "paired": paired, "expected_at_random": expected}
    share = f"{100 * paired / mined:.0f}%" if mined else "-"
    line = (
        f"Hard negatives mined: {mined}, of which {paired} ({share}) are the background of a training positive "
        f"(the same photo crop without its text); {100 * expected:.0f}% of all training negatives are."
    )
    result.table += "\n\n" + line
    write_concept_report(result.out, result.results, result.table, result.results["features_note"])
    return result


def paired_hard_negatives(results: dict[str, Any], n: int) -> tuple[int, int, float]:
    """(hard negatives mined, how many of them are plain_i with text_i a training positive, the fraction of all
    training negatives that are): the text set pairs positive text_i with negative plain_i, the same crop."""
    held_pos = {Path(r["path"]).stem.split("_")[1] for r in results["held_out_positives"]}
    held_neg = {Path(name).stem.split("_")[1] for name in results["held_out_negatives"]}
    train_neg = [f"{i:04d}" for i in range(n) if f"{i:04d}" not in held_neg]
    mined = [Path(name).stem.split("_")[1] for r in results["rounds"] for name in r["added"]]
    paired = sum(index not in held_pos for index in mined)
    expected = sum(index not in held_pos for index in train_neg) / max(1, len(train_neg))
    return len(mined), paired, expected
