"""CUB-200-2011 in its official layout (SynthLoc is written in the same layout).

    root/images.txt              <image_id> <relative path under images/>
    root/image_class_labels.txt  <image_id> <class_id, 1-based>
    root/train_test_split.txt    <image_id> <1 = train, 0 = test>
    root/bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (pixels)
    root/classes.txt             <class_id> <class name>
    root/images/...              the images
    root/segmentations/...       optional masks, same relative paths with .png (segmentations.tgz
                                 extracts next to CUB_200_2011/: that sibling folder is found too)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from camexp.data.boxes import BoxReport
from camexp.data.image_list import ImageList, ImageListDataset
from camexp.data.images import load_mask
from camexp.data.transforms import resize_mask
from camexp.errors import DatasetError
from camexp.textfiles import read_table

CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt")
LAYOUT_HELP = (
    "Expected the official CUB-200-2011 layout: " + ", ".join(CUB_FILES) + " and images/<class>/<file>.jpg "
    "(optional segmentations/<class>/<file>.png)."
)


@dataclass(frozen=True)
class CUBRecords:
    """Everything the index files say, in dataset order (sorted by image id)."""

    root: Path
    image_ids: list[int]
    paths: list[str]  # relative to root/images
    labels: np.ndarray  # 0-based class index
    is_train: np.ndarray  # bool
    boxes: list[np.ndarray]  # per image, K x 4 xyxy in original pixels (degenerate boxes dropped)
    class_names: list[str]
    box_sources: list[str]  # per image: "bounding_boxes.txt:<line>" of its first box, for messages
    box_lines: list[list[int]] | None = None  # per image: the bounding_boxes.txt line of each kept box

    def split_indices(self, split: str) -> np.ndarray:
        """'train' -> official train images; 'val' / 'test' -> official test images."""
        if split == "train":
            return np.flatnonzero(self.is_train)
        if split in ("val", "test"):
            return np.flatnonzero(~self.is_train)
        raise DatasetError(f"Unknown CUB split {split!r}; use train, val or test (val and test are CUB's test set).")


def _read_table(path: Path, columns: int, parse) -> list[tuple[int, tuple]]:
    """(line number, parsed row) of a CUB index file; a missing file, non-UTF-8 bytes or a malformed line
    names the file and line (camexp.textfiles)."""
    return read_table(path, columns, parse, LAYOUT_HELP, what="CUB index file")


def _by_id(path: Path, rows: list[tuple[int, tuple]]) -> tuple[dict[int, Any], dict[int, int]]:
    """{id: value} and {id: line} of a one-row-per-id table; a repeated id is an error naming both lines."""
    values: dict[int, Any] = {}
    lines: dict[int, int] = {}
    for line_no, (key, value) in rows:
        if key in lines:
            raise DatasetError(
                f"{path} line {line_no} repeats id {key} (first at line {lines[key]}): every id must appear once, "
                f"otherwise one entry silently replaces the other. Remove or renumber the duplicate. {LAYOUT_HELP}"
            )
        values[key], lines[key] = value, line_no
    return values, lines


def _parse_split_flag(parts: list[str]) -> tuple[int, int]:
    flag = int(parts[1])
    if flag not in (0, 1):
        raise ValueError(f"the split flag must be 1 (train) or 0 (test), not {flag}")
    return int(parts[0]), flag


def _parse_box(parts: list[str]) -> tuple[int, float, float, float, float]:
    image_id, x, y, w, h = int(parts[0]), *map(float, parts[1:])
    if not all(np.isfinite([x, y, w, h])):
        raise ValueError("box coordinates must be finite numbers")
    return image_id, x, y, w, h


def _unknown_ids(path: Path, lines: dict[int, int], known: dict[int, Any]) -> None:
    """Fail when `path` lists image ids that images.txt does not (a shifted or truncated index file)."""
    extra = sorted((line, i) for i, line in lines.items() if i not in known)
    if extra:
        shown = ", ".join(f"id {i} (line {line})" for line, i in extra[:5])
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise DatasetError(
            f"{path} lists image ids that images.txt does not: {shown}{more}. The index files must describe "
            f"the same images; fix the ids or add the images to images.txt. {LAYOUT_HELP}"
        )


def read_cub(root: str | Path) -> CUBRecords:
    """Parse the index files; every failure names the file and line."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}. {LAYOUT_HELP}")
    images, _ = _by_id(root / "images.txt", _read_table(root / "images.txt", 2, lambda p: (int(p[0]), p[1].strip())))
    label_file, split_file = root / "image_class_labels.txt", root / "train_test_split.txt"
    labels, label_lines = _by_id(label_file, _read_table(label_file, 2, lambda p: (int(p[0]), int(p[1]))))
    split, split_lines = _by_id(split_file, _read_table(split_file, 2, _parse_split_flag))
    box_file = root / "bounding_boxes.txt"
    box_rows = _read_table(box_file, 5, _parse_box)
    classes = [row for _, row in _read_table(root / "classes.txt", 2, lambda p: (int(p[0]), p[1].strip()))]

    # Zero / negative width or height: dropped with one warning naming the lines (data/boxes.py policy).
    # Several different boxes for one image are kept (several objects); the same box twice is a duplicate.
    report = BoxReport(str(box_file))
    boxes: dict[int, list[list[float]]] = {}
    box_lines: dict[int, list[int]] = {}
    first_line: dict[int, int] = {}
    seen: dict[tuple, int] = {}
    for line_no, (image_id, x, y, w, h) in box_rows:
        if (image_id, x, y, w, h) in seen:
            raise DatasetError(
                f"{box_file} line {line_no} repeats line {seen[image_id, x, y, w, h]} (image id {image_id}, "
                f"same box): remove the duplicate line. {LAYOUT_HELP}"
            )
        seen[image_id, x, y, w, h] = line_no
        first_line.setdefault(image_id, line_no)
        if report.keep([x, y, x + w, y + h], f"line {line_no}", f"x {x:g} y {y:g} width {w:g} height {h:g}"):
            boxes.setdefault(image_id, []).append([x, y, x + w, y + h])
            box_lines.setdefault(image_id, []).append(line_no)
    report.warn()
    class_ids = [c for c, _ in classes]
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise DatasetError(f"{root / 'classes.txt'}: class ids must be 1..{len(class_ids)} in order. {LAYOUT_HELP}")

    ids = sorted(images)
    for path, table in ((label_file, labels), (split_file, split)):
        missing = [i for i in ids if i not in table]
        if missing:
            raise DatasetError(
                f"{path} has no entry for image ids {missing[:5]} listed in images.txt; add one line per image. "
                f"{LAYOUT_HELP}"
            )
    for path, lines in ((label_file, label_lines), (split_file, split_lines), (box_file, first_line)):
        _unknown_ids(path, lines, images)
    bad_labels = [i for i in ids if not 1 <= labels[i] <= len(class_ids)]
    if bad_labels:
        raise DatasetError(
            f"{root / 'image_class_labels.txt'}: image ids {bad_labels[:5]} have class ids outside 1..{len(class_ids)}."
        )
    return CUBRecords(
        root=root,
        image_ids=ids,
        paths=[images[i] for i in ids],
        labels=np.array([labels[i] - 1 for i in ids], dtype=np.int64),
        is_train=np.array([split[i] == 1 for i in ids]),
        boxes=[np.array(boxes.get(i, []), dtype=np.float32).reshape(-1, 4) for i in ids],
        class_names=[name for _, name in classes],
        box_sources=[f"{box_file}:{first_line[i]}" if i in first_line else str(box_file) for i in ids],
        box_lines=[box_lines.get(i, []) for i in ids],
    )


def check_evaluation_files(records: CUBRecords, indices: np.ndarray, split: str) -> None:
    """At setup, before any training: every evaluation image exists (a stat), and no box lies wholly outside
    its image (size from the image header, no decode; an unreadable header is left to the loader)."""
    images_dir = records.root / "images"
    box_file = records.root / "bounding_boxes.txt"
    for i in indices:
        i = int(i)
        path = images_dir / records.paths[i]
        if not path.is_file():
            raise DatasetError(
                f"Missing {split} image {path} (images.txt lists image id {records.image_ids[i]}). Restore the "
                f"file, or remove the image from images.txt and the other index files. {LAYOUT_HELP}"
            )
        boxes = records.boxes[i]
        if len(boxes) == 0:
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # corrupt header: the loader reports it (or skips it with data.skip_corrupt)
        outside = (boxes[:, 0] >= width) | (boxes[:, 1] >= height) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            x1, y1, x2, y2 = (float(v) for v in boxes[k])
            line = records.box_lines[i][k] if records.box_lines else None
            where = f"{box_file} line {line}" if line else str(box_file)
            raise DatasetError(
                f"{where}: the box of image id {records.image_ids[i]} (x {x1:g} y {y1:g} w {x2 - x1:g} "
                f"h {y2 - y1:g}) lies wholly outside its {width}x{height} image {path}. Fix the box (x y width "
                f"height, in pixels of that image) or the image. {LAYOUT_HELP}"
            )


def segmentation_dir(root: Path) -> Path | None:
    """root/segmentations, or the sibling folder that segmentations.tgz creates next to CUB_200_2011/."""
    for candidate in (root / "segmentations", root.parent / "segmentations"):
        if candidate.is_dir() and (candidate == root / "segmentations" or root.name == "CUB_200_2011"):
            return candidate
    return None


class CUBDataset(ImageListDataset):
    """One split of a CUB-layout dataset. Training samples: image, label, index. Evaluation samples
    add `boxes` (clipped, scaled to the S x S input) and, when segmentations exist, `mask`."""

    def __init__(
        self,
        records: CUBRecords,
        split: str,
        transform,
        evaluation: bool,
        input_size: int,
        skip_corrupt: bool = False,
        min_side: int = 0,
    ) -> None:
        indices = records.split_indices(split)
        if len(indices) == 0:
            raise DatasetError(f"The {split} split of {records.root} is empty (train_test_split.txt). {LAYOUT_HELP}")
        images = ImageList.build(
            records.root / "images",
            [records.paths[i] for i in indices],
            records.labels[indices],
            boxes=[records.boxes[i] for i in indices],
            box_sources=[records.box_sources[i] for i in indices],
        )
        if evaluation:
            images.require_boxes(split)
            check_evaluation_files(records, indices, split)
        super().__init__(images, transform, evaluation, input_size, min_side, skip_corrupt)
        self.records = records
        self.indices = indices
        self.segmentations = segmentation_dir(records.root)
        self.has_masks = evaluation and self.segmentations is not None

    def targets(self, position: int, path: Path, size: tuple[int, int]) -> dict[str, Any]:
        sample = super().targets(position, path, size)
        if self.has_masks:
            relative = self.records.paths[int(self.indices[position])]
            mask_path = (self.segmentations / relative).with_suffix(".png")
            if not mask_path.is_file():
                raise DatasetError(f"Missing mask {mask_path}: {self.segmentations} exists but lacks this image.")
            sample["mask"] = resize_mask(load_mask(mask_path), self.input_size)
        return sample
