"""One split as an image list (path, label, optional GT boxes) and the Dataset / DataModule glue that
every list-indexed family (ILSVRC, scenes, wsolevaluation metadata, CUB) shares.

Samples follow the batch contract of every DataModule: training {image, label, index}; evaluation adds
`boxes` (xyxy, pixels of the S x S input, clipped in original pixels first) when the split has
boxes, with `orig_boxes` (the same boxes in original pixels) and `orig_size` (width, height) for the
wsoleval protocol, and whatever `targets()` of a subclass adds (masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from camexp.data.boxes import clean_boxes, require_boxes, to_input_pixels
from camexp.data.datamodule import CAMDataModule
from camexp.data.images import CorruptImageError, load_rgb_sized


@dataclass(frozen=True)
class ImageList:
    """A split as columns. Paths live in one numpy bytes array rather than a list of str: DataLoader
    workers forked from the main process then share the index instead of copying it page by page
    (Python refcount writes), which matters on the 1.28M-image ILSVRC train split."""

    root: Path
    paths: np.ndarray  # bytes (utf-8), relative to root
    labels: np.ndarray  # int64, 0-based class index
    boxes: list[np.ndarray] | None = None  # per image K x 4 xyxy in original pixels; None: no boxes
    box_sources: list[str] | None = None  # per image: the annotation it came from ("file" / "file:line")
    sizes: np.ndarray | None = None  # per image annotated (width, height); None: use the decoded size

    @classmethod
    def build(cls, root: str | Path, paths: list[str], labels, **columns) -> ImageList:
        encoded = np.array([p.encode("utf-8") for p in paths], dtype=np.bytes_) if paths else np.array([], "S1")
        return cls(Path(root), encoded, np.asarray(labels, dtype=np.int64), **columns)

    def __len__(self) -> int:
        return len(self.paths)

    def relpath(self, i: int) -> str:
        return self.paths[i].decode("utf-8")

    def path(self, i: int) -> Path:
        return self.root / self.relpath(i)

    def require_boxes(self, split: str) -> None:
        """Fail before evaluation starts if an image has no valid GT box."""
        if self.boxes is None:
            return
        sources = sorted({s.split(":")[0] for s in self.box_sources or []}) or ["the annotations"]
        names = [f"{self.relpath(i)}" for i in range(len(self))]
        require_boxes([len(b) for b in self.boxes], names, ", ".join(sources[:3]), split)


def decode_min_side(evaluation: bool, input_size: int, train_resize: int) -> int:
    """The smallest side the transform needs, so JPEGs can be decoded at reduced scale above it:
    evaluation resizes to S x S (both sides >= S), training resizes the short side to R then crops S."""
    return input_size if evaluation else max(train_resize, input_size)


class ImageListDataset(Dataset):
    """Decode, transform, and (evaluation) attach the GT boxes scaled to the S x S input."""

    def __init__(
        self,
        images: ImageList,
        transform,
        evaluation: bool,
        input_size: int,
        min_side: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        self.images = images
        self.transform = transform
        self.evaluation = evaluation
        self.input_size = input_size
        self.min_side = min_side
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, position: int) -> dict[str, Any] | None:
        path = self.images.path(position)
        try:
            image, size = load_rgb_sized(path, self.min_side)
        except CorruptImageError:
            if self.skip_corrupt:
                return None  # dropped by collate_samples and counted in the batch's `skipped`
            raise
        sample: dict[str, Any] = {
            "image": self.transform(image),
            "label": int(self.images.labels[position]),
            "index": position,
        }
        if self.evaluation:
            sample.update(self.targets(position, path, size))
        return sample

    def targets(self, position: int, path: Path, size: tuple[int, int]) -> dict[str, Any]:
        """Evaluation targets of one image; subclasses add masks."""
        images = self.images
        if images.boxes is None:
            return {}
        annotated = tuple(int(v) for v in images.sizes[position]) if images.sizes is not None else size
        source = images.box_sources[position] if images.box_sources else "the annotations"
        original = clean_boxes(images.boxes[position], annotated, str(path), source)
        # The same boxes in original pixels, with the image size: the wsoleval protocol scales them
        # itself (int(x * 224 / W)), which the float boxes of the S x S input cannot replay exactly.
        return {
            "boxes": torch.from_numpy(to_input_pixels(original, annotated, self.input_size)),
            "orig_boxes": torch.from_numpy(original),
            "orig_size": torch.tensor(annotated),
        }


class ImageListDataModule(CAMDataModule):
    """A DataModule whose splits are ImageLists: subclasses implement `load_index` and `split_images`."""

    def split_images(self, split: str, evaluation: bool) -> ImageList:
        raise NotImplementedError

    def make_dataset(self, images: ImageList, transform, evaluation: bool) -> Dataset:
        return ImageListDataset(
            images,
            transform,
            evaluation,
            self.input_size,
            decode_min_side(evaluation, self.input_size, self.train_resize),
            self.skip_corrupt,
        )

    def build_dataset(self, split: str, transform, evaluation: bool) -> Dataset:
        images = self.split_images(split, evaluation)
        if evaluation:
            images.require_boxes(split)
        return self.make_dataset(images, transform, evaluation)
