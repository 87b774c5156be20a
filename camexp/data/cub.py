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

from camexp.data.boxes import BoxReport
from camexp.data.image_list import ImageList, ImageListDataset
from camexp.data.images import load_mask
from camexp.data.transforms import resize_mask
from camexp.errors import DatasetError

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

    def split_indices(self, split: str) -> np.ndarray:
        """'train' -> official train images; 'val' / 'test' -> official test images."""
        if split == "train":
            return np.flatnonzero(self.is_train)
        if split in ("val", "test"):
            return np.flatnonzero(~self.is_train)
        raise DatasetError(f"Unknown CUB split {split!r}; use train, val or test (val and test are CUB's test set).")


def _read_table(path: Path, columns: int, parse, numbered: bool = False) -> list[tuple]:
    """Rows parsed by `parse`; with numbered=True each row is (line number, parsed row)."""
    if not path.is_file():
        raise DatasetError(f"Missing {path}. {LAYOUT_HELP}")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=columns - 1)
        try:
            if len(parts) != columns:
                raise ValueError(f"expected {columns} fields, found {len(parts)}")
            row = parse(parts)
        except ValueError as err:
            raise DatasetError(f"Malformed line {line_no} in {path}: {line!r} ({err}). {LAYOUT_HELP}") from err
        rows.append((line_no, row) if numbered else row)
    return rows


def _parse_box(parts: list[str]) -> tuple[int, float, float, float, float]:
    image_id, x, y, w, h = int(parts[0]), *map(float, parts[1:])
    if not all(np.isfinite([x, y, w, h])):
        raise ValueError("box coordinates must be finite numbers")
    return image_id, x, y, w, h


def read_cub(root: str | Path) -> CUBRecords:
    """Parse the index files; every failure names the file and line."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}. {LAYOUT_HELP}")
    images = dict(_read_table(root / "images.txt", 2, lambda p: (int(p[0]), p[1].strip())))
    labels = dict(_read_table(root / "image_class_labels.txt", 2, lambda p: (int(p[0]), int(p[1]))))
    split = dict(_read_table(root / "train_test_split.txt", 2, lambda p: (int(p[0]), int(p[1]))))
    box_file = root / "bounding_boxes.txt"
    box_rows = _read_table(box_file, 5, _parse_box, numbered=True)
    classes = _read_table(root / "classes.txt", 2, lambda p: (int(p[0]), p[1].strip()))

    # Zero / negative width or height: dropped with one warning naming the lines (data/boxes.py policy).
    report = BoxReport(str(box_file))
    boxes: dict[int, list[list[float]]] = {}
    box_line: dict[int, int] = {}
    for line_no, (image_id, x, y, w, h) in box_rows:
        box_line.setdefault(image_id, line_no)
        if report.keep([x, y, x + w, y + h], f"line {line_no}"):
            boxes.setdefault(image_id, []).append([x, y, x + w, y + h])
    report.warn()
    class_ids = [c for c, _ in classes]
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise DatasetError(f"{root / 'classes.txt'}: class ids must be 1..{len(class_ids)} in order. {LAYOUT_HELP}")

    ids = sorted(images)
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        missing = [i for i in ids if i not in table]
        if missing:
            raise DatasetError(f"{root / name} has no entry for image ids {missing[:5]} listed in images.txt.")
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
        box_sources=[f"{box_file}:{box_line[i]}" if i in box_line else str(box_file) for i in ids],
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
