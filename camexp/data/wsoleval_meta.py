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
exactly as the reference's get_mask(); they carry no `boxes`. The files are parsed by camexp.wsol.metadata,
the layout's one parser (shared with `camexp evaluate-maps`); this module clips the boxes, requires ground
truth for every evaluation image and builds the datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from camexp.data.boxes import BoxReport
from camexp.data.datamodule import check_extra_options
from camexp.data.image_list import ImageList, ImageListDataModule, ImageListDataset, decode_min_side
from camexp.data.transforms import clip_boxes
from camexp.errors import ConfigError, DatasetError
from camexp.wsol.metadata import (
    SplitMetadata,
    mask_layers,
    read_class_labels,
    read_image_ids,
    read_image_sizes,
    read_localization,
    read_mask_images,
    require,
)

DATASET_DIRS = {"cub": "CUB", "ilsvrc": "ILSVRC", "openimages": "OpenImages"}
SPLIT_ALIASES = {"train": "train", "train-weaksup": "train", "val": "val", "train-fullsup": "val", "test": "test"}
OPTIONS = ("dataset", "image_root", "metadata_root", "mask_root")
HELP = (
    "Expected wsolevaluation's layout: <data.root>/metadata/<CUB|ILSVRC|OpenImages>/<split>/{image_ids,class_labels,"
    "image_sizes,localization}.txt and the images under <data.root>/dataset/<CUB|ILSVRC|OpenImages>/ "
    "(or set data.extra.metadata_root / data.extra.image_root); see docs/datasets.md."
)
EVALUATION_NEEDS = "Every evaluation image needs one (use the metadata from github.com/clovaai/wsolevaluation)."


def read_labels(split_dir: Path) -> SplitMetadata:
    """image_ids.txt order and its class labels (every id must have one), parsed by camexp.wsol.metadata."""
    meta = read_image_ids(split_dir, HELP)
    read_class_labels(split_dir, meta, HELP)
    require(split_dir / "class_labels.txt", meta, meta.labels, "label", "Every image needs its class.", HELP)
    return meta


def read_split(
    split_dir: Path, image_root: Path, localization: str | None, labeled: SplitMetadata | None = None
) -> tuple[ImageList, SplitMetadata]:
    """One split: the image list the datasets read (boxes clipped with image_sizes.txt, boxes left without area
    dropped) and its metadata as parsed (OpenImages' mask paths live there). localization: None (training),
    "boxes" (CUB, ILSVRC) or "masks" (OpenImages); `labeled`: read_labels(split_dir) when the caller already has
    it (ILSVRC train has 1.28M lines)."""
    labeled = labeled if labeled is not None else read_labels(split_dir)
    ids = labeled.image_ids
    labels = np.array([labeled.labels[i] for i in ids], dtype=np.int64)
    if localization is None:
        return ImageList.build(image_root, ids, labels), labeled
    meta = SplitMetadata(ids, labels=labeled.labels, line_of=labeled.line_of)  # fresh ground-truth tables
    path = split_dir / "localization.txt"
    if localization == "masks":
        read_localization(split_dir, meta, HELP, kind="masks")
        require(path, meta, meta.masks, "mask", EVALUATION_NEEDS, HELP)
        return ImageList.build(image_root, ids, labels), meta
    read_image_sizes(split_dir, meta, HELP)
    require(split_dir / "image_sizes.txt", meta, meta.sizes, "size", EVALUATION_NEEDS, HELP)
    read_localization(split_dir, meta, HELP, kind="boxes", strict_boxes=False)
    report = BoxReport(str(path))
    boxes: dict[str, list[np.ndarray]] = {}
    for image_id, rows in meta.boxes.items():  # clipped with image_sizes.txt; boxes left with no area dropped
        clipped = clip_boxes(np.asarray(rows, dtype=np.float32), meta.sizes[image_id])
        for box, row, line_no in zip(clipped, rows, meta.box_lines[image_id], strict=True):
            written = "x0 {} y0 {} x1 {} y1 {}".format(*row)
            if box.tolist() != list(row):  # the file's numbers, then what clipping made of them
                written += f" (clipped to the {meta.sizes[image_id][0]} x {meta.sizes[image_id][1]} image)"
            if report.keep(box, f"line {line_no} ({image_id})", written):
                boxes.setdefault(image_id, []).append(box)
    report.warn()
    require(path, meta, boxes, "valid box", EVALUATION_NEEDS, HELP)
    images = ImageList.build(
        image_root,
        ids,
        labels,
        boxes=[np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) for i in ids],
        box_sources=[f"{path}:{meta.box_lines[i][0]}" for i in ids],
        sizes=np.array([meta.sizes[i] for i in ids], dtype=np.int64).reshape(-1, 2),
    )
    return images, meta


class WSOLMaskDataset(ImageListDataset):
    """OpenImages30k evaluation: `mask` (foreground) and `mask_ignore` (ignore box minus foreground)."""

    def __init__(self, images: ImageList, meta: SplitMetadata, mask_root: Path, *args, **kwargs) -> None:
        super().__init__(images, *args, **kwargs)
        self.meta, self.mask_root = meta, mask_root  # meta.masks / meta.ignores: mask paths per image id

    def targets(self, position: int, path: Path, size: tuple[int, int]) -> dict[str, Any]:
        fix = f"Restore it (wsolevaluation's OpenImages masks). {HELP}"
        image_id = self.images.relpath(position)
        masks, ignore = self.meta.masks[image_id], self.meta.ignores[image_id]
        foreground, ignored = mask_layers(*read_mask_images(self.mask_root, masks, ignore, fix), self.input_size)
        return {"mask": torch.from_numpy(foreground), "mask_ignore": torch.from_numpy(ignored)}


class WSOLEvalDataModule(ImageListDataModule):
    """CUB / ILSVRC / OpenImages30k through wsolevaluation's metadata (data.extra.dataset picks which)."""

    def __init__(self, root: str | Path, extra: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        extra = check_extra_options("wsoleval", extra, OPTIONS)
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
        self._splits: dict[tuple[str, bool], tuple[ImageList, SplitMetadata]] = {}
        self._labels: dict[str, SplitMetadata] = {}  # ids and labels, read once by load_index

    def _split_dir(self, split: str) -> Path:
        if split not in SPLIT_ALIASES:
            raise DatasetError(f"Unknown wsolevaluation split {split!r}: use {', '.join(SPLIT_ALIASES)}.")
        return self.metadata_dir / SPLIT_ALIASES[split]

    def read(self, split: str, evaluation: bool) -> tuple[ImageList, SplitMetadata]:
        key = (SPLIT_ALIASES.get(split, split), evaluation)
        if key not in self._splits:
            localization = None if not evaluation else ("boxes" if self.has_boxes else "masks")
            labeled = self._labels.get(SPLIT_ALIASES.get(split, split))
            self._splits[key] = read_split(self._split_dir(split), self.image_root, localization, labeled)
        return self._splits[key]

    def load_index(self) -> None:
        """Classes: 1 + the largest label of any split on disk; names from the train image folders."""
        if not self.metadata_dir.is_dir():
            raise DatasetError(f"wsolevaluation metadata folder not found: {self.metadata_dir}. {HELP}")
        found = [s for s in ("train", "val", "test") if (self.metadata_dir / s / "class_labels.txt").is_file()]
        if not found:
            raise DatasetError(f"No <split>/class_labels.txt under {self.metadata_dir}. {HELP}")
        splits = self._labels = {s: read_labels(self.metadata_dir / s) for s in found}
        num_classes = 1 + max(max(meta.labels.values()) for meta in splits.values() if meta.labels)
        names = [str(c) for c in range(num_classes)]
        named: set[int] = set()
        for meta in splits.values():  # train first: its folders are class names (wnids, CUB names)
            for image_id in meta.image_ids:
                label = meta.labels[image_id]
                if label not in named and "/" in image_id:
                    names[label] = image_id.rsplit("/", 2)[-2]
                    named.add(label)
        self.class_names = names

    def split_images(self, split: str, evaluation: bool) -> ImageList:
        images, _ = self.read(split, evaluation)
        if not len(images):
            raise DatasetError(f"{self._split_dir(split) / 'image_ids.txt'} lists no images. {HELP}")
        return images

    def build_dataset(self, split: str, transform, evaluation: bool) -> Dataset:
        if not (evaluation and self.dataset_name == "openimages"):
            return super().build_dataset(split, transform, evaluation)
        images = self.split_images(split, evaluation)
        min_side = decode_min_side(evaluation, self.input_size, self.train_resize)
        _, meta = self.read(split, evaluation)
        return WSOLMaskDataset(
            images, meta, self.mask_root, transform, evaluation, self.input_size, min_side, self.skip_corrupt
        )
