"""wsolevaluation metadata (Choe et al., CVPR 2020; github.com/clovaai/wsolevaluation, data_loaders.py):

    <metadata_root>/<CUB|ILSVRC|OpenImages>/<train|val|test>/
        image_ids.txt       <image_id>                       one per line, paths relative to the image root
        class_labels.txt    <image_id>,<class index>
        image_sizes.txt     <image_id>,<w>,<h>               (CUB, ILSVRC)
        localization.txt    <image_id>,<x0>,<y0>,<x1>,<y1>   one row per GT box (CUB, ILSVRC), or
                            <image_id>,<mask>,<ignore mask>  one row per instance mask (OpenImages; the
                                                             ignore mask is given on the image's first row only)

Splits: train (= train-weaksup), val (= train-fullsup: ImageNetV2, CUBV2, OpenImages val), test.
Boxes are clipped with image_sizes.txt and scaled with those sizes, as the reference does. OpenImages
evaluation samples carry `mask` (union of the instance masks, bool S x S) and `mask_ignore` (the
ignore region minus the foreground, bool S x S), both resized with cv2 nearest neighbour and `> 0.5`
exactly as the reference's get_mask(); they carry no `boxes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from camexp.data.boxes import BoxReport
from camexp.data.image_list import ImageList, ImageListDataModule, ImageListDataset, decode_min_side
from camexp.data.textfiles import line_error, read_lines
from camexp.data.transforms import clip_boxes
from camexp.errors import ConfigError, DatasetError

DATASET_DIRS = {"cub": "CUB", "ilsvrc": "ILSVRC", "openimages": "OpenImages"}
SPLIT_ALIASES = {"train": "train", "train-weaksup": "train", "val": "val", "train-fullsup": "val", "test": "test"}
OPTIONS = ("dataset", "image_root", "metadata_root", "mask_root")
HELP = (
    "Expected wsolevaluation's layout: <data.root>/metadata/<CUB|ILSVRC|OpenImages>/<split>/{image_ids,class_labels,"
    "image_sizes,localization}.txt and the images under <data.root>/dataset/<CUB|ILSVRC|OpenImages>/ "
    "(or set data.extra.metadata_root / data.extra.image_root); see docs/datasets.md."
)


@dataclass(frozen=True)
class WSOLSplit:
    """One split's metadata, in image_ids.txt order."""

    image_ids: list[str]
    labels: np.ndarray
    boxes: list[np.ndarray] | None = None  # CUB / ILSVRC evaluation: K x 4 xyxy original pixels
    box_sources: list[str] | None = None
    sizes: np.ndarray | None = None  # N x 2 (w, h) from image_sizes.txt
    masks: list[tuple[str, ...]] | None = None  # OpenImages: instance mask paths per image
    ignores: list[str] | None = None  # OpenImages: ignore mask path per image ("" = none)


def _rows(path: Path, fields: int, what: str) -> list[tuple[int, str, list[str]]]:
    """(line number, line, fields) of a comma-separated metadata file with exactly `fields` fields."""
    rows = []
    for line_no, line in read_lines(path, HELP, what):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != fields:
            raise line_error(path, line_no, line, f"expected {fields} comma-separated fields, found {len(parts)}", HELP)
        rows.append((line_no, line, parts))
    return rows


def _ints(path: Path, line_no: int, line: str, values: list[str]) -> list[int]:
    try:
        return [int(float(v)) for v in values]
    except ValueError as err:
        raise line_error(path, line_no, line, "expected integers", HELP) from err


def read_labels(split_dir: Path) -> tuple[list[str], np.ndarray]:
    """image_ids.txt order and its class labels (every id must have one)."""
    ids_path, labels_path = split_dir / "image_ids.txt", split_dir / "class_labels.txt"
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for line_no, line in read_lines(ids_path, HELP, "image list"):
        if line in first_line:
            raise line_error(ids_path, line_no, line, f"listed again (first on line {first_line[line]})", HELP)
        first_line[line] = line_no
        ids.append(line)
    labels: dict[str, int] = {}
    for line_no, line, (image_id, label) in _rows(labels_path, 2, "class label file"):
        value = _ints(labels_path, line_no, line, [label])[0]
        if value < 0:
            raise line_error(labels_path, line_no, line, "class labels are 0-based, >= 0", HELP)
        labels[image_id] = value
    missing = [i for i in ids if i not in labels]
    if missing:
        raise DatasetError(
            f"{labels_path} has no label for {len(missing)} image(s) of image_ids.txt, e.g. {missing[:3]}. {HELP}"
        )
    return ids, np.array([labels[i] for i in ids], dtype=np.int64)


def read_split(
    split_dir: Path, localization: str | None, labels: tuple[list[str], np.ndarray] | None = None
) -> WSOLSplit:
    """One split. localization: None (training), "boxes" (CUB, ILSVRC) or "masks" (OpenImages);
    `labels`: read_labels(split_dir) when the caller already has it (ILSVRC train has 1.28M lines)."""
    ids, labels = labels if labels is not None else read_labels(split_dir)
    if localization is None:
        return WSOLSplit(ids, labels)
    known = set(ids)
    path = split_dir / "localization.txt"
    if localization == "masks":
        masks: dict[str, list[str]] = {}
        ignores: dict[str, str] = {}
        for line_no, line, (image_id, mask, ignore) in _rows(path, 3, "localization file"):
            _check_known(path, line_no, line, image_id, known)
            if not mask:
                raise line_error(path, line_no, line, "empty mask path", HELP)
            masks.setdefault(image_id, []).append(mask)
            if ignore and not ignores.get(image_id):
                ignores[image_id] = ignore
        _require(path, ids, masks, "mask")
        return WSOLSplit(ids, labels, masks=[tuple(masks[i]) for i in ids], ignores=[ignores.get(i, "") for i in ids])
    sizes = _read_sizes(split_dir / "image_sizes.txt", ids)
    size_of = dict(zip(ids, sizes, strict=True))
    report = BoxReport(str(path))
    boxes: dict[str, list[list[float]]] = {}
    source: dict[str, str] = {}
    for line_no, line, (image_id, *coords) in _rows(path, 5, "localization file"):
        _check_known(path, line_no, line, image_id, known)
        box = clip_boxes(np.asarray(_ints(path, line_no, line, coords), np.float32), tuple(size_of[image_id]))[0]
        source.setdefault(image_id, f"{path}:{line_no}")
        if report.keep(box, f"line {line_no} ({image_id})"):
            boxes.setdefault(image_id, []).append(box.tolist())
    report.warn()
    _require(path, ids, boxes, "valid box")
    return WSOLSplit(
        ids,
        labels,
        boxes=[np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) for i in ids],
        box_sources=[source[i] for i in ids],
        sizes=sizes,
    )


def _read_sizes(path: Path, ids: list[str]) -> np.ndarray:
    sizes: dict[str, tuple[int, int]] = {}
    for line_no, line, (image_id, w, h) in _rows(path, 3, "image size file"):
        width, height = _ints(path, line_no, line, [w, h])
        if width <= 0 or height <= 0:
            raise line_error(path, line_no, line, "width and height must be positive", HELP)
        sizes[image_id] = (width, height)
    _require(path, ids, sizes, "size")
    return np.array([sizes[i] for i in ids], dtype=np.int64).reshape(-1, 2)


def _check_known(path: Path, line_no: int, line: str, image_id: str, known: set[str]) -> None:
    if image_id not in known:
        raise line_error(path, line_no, line, f"{image_id} is not listed in image_ids.txt", HELP)


def _require(path: Path, ids: list[str], table: dict, what: str) -> None:
    missing = [i for i in ids if i not in table]
    if missing:
        raise DatasetError(
            f"{path} gives no {what} for {len(missing)} image(s) of image_ids.txt, e.g. {missing[:3]}. "
            f"Every evaluation image needs one (use the metadata from github.com/clovaai/wsolevaluation)."
        )


def _load_binary_mask(path: Path, size: int) -> np.ndarray:
    """The reference's load_mask_image(...) > 0.5: grayscale, cv2 nearest-neighbour resize."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        what = "missing" if not path.is_file() else "not a readable image"
        raise DatasetError(f"Mask file {path} is {what}. Restore it (wsolevaluation's OpenImages masks). {HELP}")
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


class WSOLMaskDataset(ImageListDataset):
    """OpenImages30k evaluation: `mask` (foreground) and `mask_ignore` (ignore box minus foreground)."""

    def __init__(self, images: ImageList, split: WSOLSplit, mask_root: Path, *args, **kwargs) -> None:
        super().__init__(images, *args, **kwargs)
        self.split, self.mask_root = split, mask_root

    def targets(self, position: int, path: Path, size: tuple[int, int]) -> dict[str, Any]:
        assert self.split.masks is not None and self.split.ignores is not None
        s = self.input_size
        foreground = np.zeros((s, s), dtype=bool)
        for mask_path in self.split.masks[position]:
            foreground |= _load_binary_mask(self.mask_root / mask_path, s)
        ignore = np.zeros((s, s), dtype=bool)
        if self.split.ignores[position]:
            ignore = _load_binary_mask(self.mask_root / self.split.ignores[position], s) & ~foreground
        return {"mask": torch.from_numpy(foreground), "mask_ignore": torch.from_numpy(ignore)}


class WSOLEvalDataModule(ImageListDataModule):
    """CUB / ILSVRC / OpenImages30k through wsolevaluation's metadata (data.extra.dataset picks which)."""

    def __init__(self, root: str | Path, extra: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        extra = dict(extra or {})
        unknown = sorted(set(extra) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"Unknown data.extra option(s) for wsoleval: {unknown}. Known: {', '.join(OPTIONS)}.")
        dataset = str(extra.get("dataset", "")).lower()
        if dataset not in DATASET_DIRS:
            raise ConfigError(
                f"data.name=wsoleval needs data.extra.dataset = {' | '.join(DATASET_DIRS)} "
                f"(got {dataset or 'nothing'})."
            )
        root = Path(root)
        folder = DATASET_DIRS[dataset]
        self.dataset_name = dataset
        self.has_boxes = dataset != "openimages"
        self.metadata_dir = root / extra.get("metadata_root", "metadata") / folder
        self.image_root = root / extra["image_root"] if "image_root" in extra else root / "dataset" / folder
        self.mask_root = root / extra["mask_root"] if "mask_root" in extra else self.image_root
        self._splits: dict[tuple[str, bool], WSOLSplit] = {}
        self._labels: dict[str, tuple[list[str], np.ndarray]] = {}  # read once by load_index

    def _split_dir(self, split: str) -> Path:
        if split not in SPLIT_ALIASES:
            raise DatasetError(f"Unknown wsolevaluation split {split!r}: use {', '.join(SPLIT_ALIASES)}.")
        return self.metadata_dir / SPLIT_ALIASES[split]

    def read(self, split: str, evaluation: bool) -> WSOLSplit:
        key = (SPLIT_ALIASES.get(split, split), evaluation)
        if key not in self._splits:
            localization = None if not evaluation else ("boxes" if self.has_boxes else "masks")
            labels = self._labels.get(SPLIT_ALIASES.get(split, split))
            self._splits[key] = read_split(self._split_dir(split), localization, labels)
        return self._splits[key]

    def load_index(self) -> None:
        """Classes: 1 + the largest label of any split on disk; names from the train image folders."""
        if not self.metadata_dir.is_dir():
            raise DatasetError(f"wsolevaluation metadata folder not found: {self.metadata_dir}. {HELP}")
        found = [s for s in ("train", "val", "test") if (self.metadata_dir / s / "class_labels.txt").is_file()]
        if not found:
            raise DatasetError(f"No <split>/class_labels.txt under {self.metadata_dir}. {HELP}")
        splits = self._labels = {s: read_labels(self.metadata_dir / s) for s in found}
        num_classes = 1 + max(int(labels.max()) for _, labels in splits.values() if len(labels))
        names = [str(c) for c in range(num_classes)]
        named: set[int] = set()
        for ids, labels in splits.values():  # train first: its folders are class names (wnids, CUB names)
            for image_id, label in zip(ids, labels.tolist(), strict=True):
                if label not in named and "/" in image_id:
                    names[label] = image_id.rsplit("/", 2)[-2]
                    named.add(label)
        self.class_names = names

    def split_images(self, split: str, evaluation: bool) -> ImageList:
        data = self.read(split, evaluation)
        if not data.image_ids:
            raise DatasetError(f"{self._split_dir(split) / 'image_ids.txt'} lists no images. {HELP}")
        columns = dict(boxes=data.boxes, box_sources=data.box_sources, sizes=data.sizes)
        return ImageList.build(self.image_root, data.image_ids, data.labels, **columns)

    def build_dataset(self, split: str, transform, evaluation: bool) -> Dataset:
        if not (evaluation and self.dataset_name == "openimages"):
            return super().build_dataset(split, transform, evaluation)
        images = self.split_images(split, evaluation)
        min_side = decode_min_side(evaluation, self.input_size, self.train_resize)
        data = self.read(split, evaluation)
        return WSOLMaskDataset(
            images, data, self.mask_root, transform, evaluation, self.input_size, min_side, self.skip_corrupt
        )
