"""CUB-200-2011 in its official layout (SynthLoc is written in the same layout).

    root/images.txt              <image_id> <relative path under images/>
    root/image_class_labels.txt  <image_id> <class_id, 1-based>
    root/train_test_split.txt    <image_id> <1 = train, 0 = test>
    root/bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (pixels)
    root/classes.txt             <class_id> <class name>
    root/images/...              the images
    root/segmentations/...       optional masks, same relative paths with .png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from camexp.data.images import CorruptImageError, load_mask, load_rgb
from camexp.data.transforms import resize_mask, scale_boxes
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
    boxes: list[np.ndarray]  # per image, K x 4 xyxy in original pixels
    class_names: list[str]

    def split_indices(self, split: str) -> np.ndarray:
        """'train' -> official train images; 'val' / 'test' -> official test images."""
        if split == "train":
            return np.flatnonzero(self.is_train)
        if split in ("val", "test"):
            return np.flatnonzero(~self.is_train)
        raise DatasetError(f"Unknown CUB split {split!r}; use train, val or test (val and test are CUB's test set).")


def _read_table(path: Path, columns: int, parse) -> list[tuple]:
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
            rows.append(parse(parts))
        except ValueError as err:
            raise DatasetError(f"Malformed line {line_no} in {path}: {line!r} ({err}). {LAYOUT_HELP}") from err
    return rows


def _check_box(row: tuple[int, float, float, float, float]) -> tuple[int, float, float, float, float]:
    _, x, y, w, h = row
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
        raise ValueError(f"box width and height must be positive finite numbers, got w={w} h={h}")
    return row


def read_cub(root: str | Path) -> CUBRecords:
    """Parse the index files; every failure names the file and line."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}. {LAYOUT_HELP}")
    images = dict(_read_table(root / "images.txt", 2, lambda p: (int(p[0]), p[1].strip())))
    labels = dict(_read_table(root / "image_class_labels.txt", 2, lambda p: (int(p[0]), int(p[1]))))
    split = dict(_read_table(root / "train_test_split.txt", 2, lambda p: (int(p[0]), int(p[1]))))
    box_rows = _read_table(root / "bounding_boxes.txt", 5, lambda p: _check_box((int(p[0]), *map(float, p[1:]))))
    classes = _read_table(root / "classes.txt", 2, lambda p: (int(p[0]), p[1].strip()))

    boxes: dict[int, list[list[float]]] = {}
    for image_id, x, y, w, h in box_rows:
        boxes.setdefault(image_id, []).append([x, y, x + w, y + h])
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
    )


class CUBDataset(Dataset):
    """One split of a CUB-layout dataset. Training samples: image, label, index. Evaluation samples
    add `boxes` (scaled to the S x S input) and, when segmentations exist, `mask`."""

    def __init__(
        self,
        records: CUBRecords,
        split: str,
        transform,
        evaluation: bool,
        input_size: int,
        skip_corrupt: bool = False,
    ) -> None:
        self.records = records
        self.indices = records.split_indices(split)
        if len(self.indices) == 0:
            raise DatasetError(f"The {split} split of {records.root} is empty (train_test_split.txt). {LAYOUT_HELP}")
        self.transform = transform
        self.evaluation = evaluation
        self.input_size = input_size
        self.skip_corrupt = skip_corrupt
        self.has_masks = evaluation and (records.root / "segmentations").is_dir()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any] | None:
        i = int(self.indices[position])
        path = self.records.root / "images" / self.records.paths[i]
        try:
            image = load_rgb(path)
        except CorruptImageError:
            if self.skip_corrupt:
                return None
            raise
        sample: dict[str, Any] = {
            "image": self.transform(image),
            "label": int(self.records.labels[i]),
            "index": position,
        }
        if self.evaluation:
            sample["boxes"] = torch.from_numpy(scale_boxes(self.records.boxes[i], image.size, self.input_size))
            if self.has_masks:
                mask_path = (self.records.root / "segmentations" / self.records.paths[i]).with_suffix(".png")
                if not mask_path.is_file():
                    raise DatasetError(f"Missing mask {mask_path}: segmentations/ exists but lacks this image.")
                sample["mask"] = resize_mask(load_mask(mask_path), self.input_size)
        return sample
