"""`camexp evaluate-maps`: score saved maps against wsolevaluation metadata, optionally with the held-out protocol.

Reads one split's metadata (camexp.wsol.metadata) and its ``<image_id>.npy`` maps (camexp.wsol.score_maps),
and scores them with camexp.wsol.accumulator, the accumulator `camexp evaluate` and the CAM callback use too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from camexp.errors import DatasetError
from camexp.reports import format_metrics, format_result, wsoleval_json
from camexp.wsol import protocol as W
from camexp.wsol.accumulator import WSOLAccumulator, WSOLResult, heldout_metrics
from camexp.wsol.metadata import load_gt_mask, read_metadata
from camexp.wsol.score_maps import load_map, map_path, missing_maps


def score_split(
    metadata_dir: str | Path,
    maps_dir: str | Path,
    mask_root: str | Path | None = None,
    cam_curve_interval: float = W.CAM_CURVE_INTERVAL,
    iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
    multi_contour: bool = True,
    progress: bool = True,
) -> WSOLResult:
    """Score every image of one split; mask paths are relative to `mask_root` (default: the metadata folder)."""
    meta = read_metadata(metadata_dir)
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise DatasetError(f"Score map folder not found: {maps_dir}. Pass the folder holding <image_id>.npy files.")
    absent = missing_maps(maps_dir, meta.image_ids)
    if absent:
        first = absent[0]
        raise DatasetError(
            f"{len(absent)} of {len(meta.image_ids)} score maps are missing under {maps_dir}, e.g. "
            f"{map_path(maps_dir, first)} for {first!r} ({Path(metadata_dir) / 'image_ids.txt'} line "
            f"{meta.line_of[first]}). Save one <image_id>.npy per listed image (subfolders mirrored), or check "
            f"that --maps and --metadata are the same split."
        )
    mask_root = Path(metadata_dir) if mask_root is None else Path(mask_root)
    scorer = WSOLAccumulator(cam_curve_interval, iou_thresholds, multi_contour)
    for image_id in tqdm(meta.image_ids, desc=f"scoring {maps_dir.name}", unit="map", disable=not progress or None):
        scoremap = W.normalize_scoremap(load_map(maps_dir, image_id))[None]
        mask = load_gt_mask(meta, image_id, mask_root)[None] if image_id in meta.masks else None
        scorer.update(scoremap, [meta.scored_boxes(image_id)], mask)
    return scorer.compute()


def evaluate_maps(
    metadata_dir: str | Path,
    maps_dir: str | Path,
    mask_root: str | Path | None = None,
    cam_curve_interval: float = W.CAM_CURVE_INTERVAL,
    iou_thresholds: Sequence[int] = W.IOU_THRESHOLDS_V2,
    multi_contour: bool = True,
    heldout: tuple[str | Path, str | Path] | None = None,
    heldout_mask_root: str | Path | None = None,
    json_path: str | Path | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], str]:
    """Score a split (and a held-out split at thresholds chosen on the first); returns (JSON dict, printout)."""
    settings = dict(cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds, multi_contour=multi_contour)
    result = score_split(metadata_dir, maps_dir, mask_root, progress=progress, **settings)
    report = wsoleval_json(result)
    report.update(metadata=str(metadata_dir), maps=str(maps_dir))
    lines = [f"wsoleval on {_counted(result)} (metadata {metadata_dir}, maps {maps_dir}):"]
    lines += format_result(result)
    if heldout is not None:
        other = score_split(heldout[0], heldout[1], heldout_mask_root, progress=progress, **settings)
        if not result.num_images or not other.num_images:
            raise DatasetError(
                "The held-out protocol chooses box thresholds: both splits need boxes in localization.txt."
            )
        chosen = heldout_metrics(result, other)
        report["heldout"] = {
            **wsoleval_json(other),
            "metadata": str(heldout[0]),
            "maps": str(heldout[1]),
            "at_selected": chosen,
        }
        lines.append("")
        lines.append(f"held-out split {heldout[0]} ({_counted(other)}), its own best thresholds (optimistic):")
        lines += format_result(other)
        lines.append(f"held-out split at the thresholds chosen on {metadata_dir} (the held-out protocol):")
        lines += format_metrics(chosen, other.iou_thresholds, multi_contour)
    if json_path is not None:
        lines.append(f"numbers written to {write_json(json_path, report)}")
    return report, "\n".join(lines)


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Indented JSON with number lists kept on one line (the 1000-long count rows stay readable)."""
    text = json.dumps(data, indent=1)
    text = re.sub(r"\[\s*([-+0-9.eE,\s]*?)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def _counted(result: WSOLResult) -> str:
    parts = [f"{result.num_images} images with boxes"] if result.num_images else []
    if result.num_mask_images:
        parts.append(f"{result.num_mask_images} with masks")
    return ", ".join(parts) or "no images"
