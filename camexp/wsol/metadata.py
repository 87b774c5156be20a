"""One split's ground truth in wsolevaluation's metadata layout (github.com/clovaai/wsolevaluation).

    <split dir>/image_ids.txt      <image_id>                        one per line (paths, may hold '/')
    <split dir>/class_labels.txt   <image_id>,<class index>          (optional here: scoring ignores it)
    <split dir>/image_sizes.txt    <image_id>,<w>,<h>                (needed with boxes)
    <split dir>/localization.txt   <image_id>,<x0>,<y0>,<x1>,<y1>    one row per GT box (CUB, ILSVRC), or
                                   <image_id>,<mask>,<ignore mask>   one row per instance mask (OpenImages;
                                                                     the ignore mask on the image's first row)
    <split dir>/masks.txt          camexp extension, mask rows as above, for splits that have boxes AND masks

This is the one parser of the layout. `read_metadata` reads a split for `camexp evaluate-maps` as
upstream's ``data_loaders.py`` does (no clipping, integer coordinates); the training DataModule
(camexp.data.wsoleval_meta) calls the `read_*` steps and clips and scales afterwards. Every malformed
line is a DatasetError naming the file, the line and the expected layout. Masks are read like
upstream's ``get_mask``: grayscale, nearest-neighbour resize to 224 x 224, ``> 0.5``; an empty ignore
path means no ignore region (upstream requires one). Pure numpy/OpenCV: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from camexp.errors import DatasetError
from camexp.textfiles import line_error, read_lines
from camexp.wsol.protocol import RESIZE_LENGTH, scored_gt_boxes

LAYOUT_HELP = (
    "Expected wsolevaluation metadata: image_ids.txt, class_labels.txt (image_id,class), image_sizes.txt "
    "(image_id,w,h) and localization.txt (image_id,x0,y0,x1,y1 per box, or image_id,mask,ignore per mask); "
    "see docs/evaluate.md."
)
Localization = Literal["auto", "boxes", "masks"]
BOX_ROW = "image_id,x0,y0,x1,y1"  # localization.txt rows, one per box
MASK_ROW = "image_id,mask,ignore mask"  # or one per instance mask


@dataclass
class SplitMetadata:
    """Ground truth of one split, in image_ids.txt order. Boxes are xyxy in original pixels."""

    image_ids: list[str]
    labels: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (w, h)
    boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    masks: dict[str, list[str]] = field(default_factory=dict)  # mask paths, relative to the mask root
    ignores: dict[str, str] = field(default_factory=dict)  # ignore-mask path ("" = none)
    line_of: dict[str, int] = field(default_factory=dict)  # image_ids.txt line, for messages
    box_lines: dict[str, list[int]] = field(default_factory=dict)  # localization.txt line of each box

    def scored_boxes(self, image_id: str) -> np.ndarray | None:
        """An image's GT boxes in the 224 frame as every command scores them (``protocol.scored_gt_boxes``:
        clipped to the image, then scaled as upstream's ``resize_bbox``), or None when it has none."""
        if not self.boxes.get(image_id):
            return None
        return scored_gt_boxes(self.boxes[image_id], self.sizes[image_id])

    def subset(self, image_ids: list[str]) -> SplitMetadata:
        """The metadata of these images only (e.g. the ones actually scored), in the given order."""
        keep = set(image_ids)
        return SplitMetadata(
            image_ids=image_ids,
            labels={k: v for k, v in self.labels.items() if k in keep},
            sizes={k: v for k, v in self.sizes.items() if k in keep},
            boxes={k: v for k, v in self.boxes.items() if k in keep},
            masks={k: v for k, v in self.masks.items() if k in keep},
            ignores={k: v for k, v in self.ignores.items() if k in keep},
        )

    @property
    def has_boxes(self) -> bool:
        return bool(self.boxes)

    @property
    def has_masks(self) -> bool:
        return bool(self.masks)


# -- reading the text files -----------------------------------------------------------------------


class _MetadataFile:
    """The non-blank lines of one metadata file, and errors that name the file, the line and `help_text`."""

    def __init__(self, path: Path, help_text: str, what: str) -> None:
        self.path, self.help_text = path, help_text
        self.lines = read_lines(path, help_text, what)

    def error(self, line_no: int, line: str, reason: str) -> DatasetError:
        return line_error(self.path, line_no, line, reason, self.help_text)

    def rows(self, layout: str, meta: SplitMetadata, why: str = "") -> Iterator[tuple[int, str, list[str]]]:
        """(line number, line, stripped fields) of rows with the comma-separated fields of `layout`
        ("image_id,w,h") whose first field is an image id listed in image_ids.txt; `why` follows a wrong count."""
        count = len(layout.split(","))
        for line_no, line in self.lines:
            fields = [part.strip() for part in line.split(",")]
            if len(fields) != count:
                reason = f"expected {count} comma-separated fields ({layout}), found {len(fields)}{why}"
                raise self.error(line_no, line, reason)
            if fields[0] not in meta.line_of:
                raise self.error(line_no, line, f"image {fields[0]!r} is not listed in image_ids.txt")
            yield line_no, line, fields

    def ints(self, line_no: int, line: str, values: Sequence[str]) -> list[int]:
        """Integers as upstream's int(); a float with an integral value ("60.0") is accepted too."""
        out = []
        for value in values:
            try:
                out.append(int(value))
                continue
            except ValueError:
                pass
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number != int(number):
                raise self.error(line_no, line, f"expected integers: {value!r} is not an integer")
            out.append(int(number))
        return out


def read_image_ids(split_dir: str | Path, help_text: str = LAYOUT_HELP) -> SplitMetadata:
    """image_ids.txt: the split's ids in order (each once), with their line numbers; no ground truth yet."""
    source = _MetadataFile(Path(split_dir) / "image_ids.txt", help_text, "image list")
    meta = SplitMetadata(image_ids=[])
    for line_no, image_id in source.lines:
        if image_id in meta.line_of:
            raise source.error(line_no, image_id, f"listed again (first on line {meta.line_of[image_id]})")
        meta.line_of[image_id] = line_no
        meta.image_ids.append(image_id)
    return meta


def read_class_labels(split_dir: str | Path, meta: SplitMetadata, help_text: str = LAYOUT_HELP) -> None:
    """class_labels.txt into meta.labels: 0-based class indices."""
    source = _MetadataFile(Path(split_dir) / "class_labels.txt", help_text, "class label file")
    for line_no, line, (image_id, label) in source.rows("image_id,class", meta):
        value = source.ints(line_no, line, [label])[0]
        if value < 0:
            raise source.error(line_no, line, "class labels are 0-based, >= 0")
        meta.labels[image_id] = value


def read_image_sizes(split_dir: str | Path, meta: SplitMetadata, help_text: str = LAYOUT_HELP) -> None:
    """image_sizes.txt into meta.sizes: the original (width, height), both positive."""
    source = _MetadataFile(Path(split_dir) / "image_sizes.txt", help_text, "image size file")
    for line_no, line, (image_id, *size) in source.rows("image_id,w,h", meta):
        width, height = source.ints(line_no, line, size)
        if width <= 0 or height <= 0:
            raise source.error(line_no, line, "width and height must be positive")
        meta.sizes[image_id] = (width, height)


def read_localization(
    split_dir: str | Path,
    meta: SplitMetadata,
    help_text: str = LAYOUT_HELP,
    kind: Localization = "auto",
    strict_boxes: bool = True,
) -> Localization:
    """localization.txt into meta.boxes (+ meta.box_lines) or meta.masks and meta.ignores; returns which.

    kind "auto": mask rows if most rows have 3 fields, box rows if most have 5 (a tie: the first row's kind).
    Boxes stay as written (integer original pixels, unclipped); strict_boxes rejects negative or inverted ones,
    as evaluate-maps needs. The DataModule passes strict_boxes=False: it clips with image_sizes.txt and drops
    what has no area.
    """
    source = _MetadataFile(Path(split_dir) / "localization.txt", help_text, "localization file")
    why = ""
    if kind == "auto":
        kind, why = _row_kind(source.lines)
    if kind == "masks":
        _read_masks(source, meta, why)
        return kind
    for line_no, line, (image_id, *coords) in source.rows(BOX_ROW, meta, why):
        x0, y0, x1, y1 = source.ints(line_no, line, coords)
        if strict_boxes and (min(x0, y0) < 0 or x1 < x0 or y1 < y0):
            raise source.error(line_no, line, "a box needs 0 <= x0 <= x1 and 0 <= y0 <= y1")
        meta.boxes.setdefault(image_id, []).append((x0, y0, x1, y1))
        meta.box_lines.setdefault(image_id, []).append(line_no)
    return kind


def read_extra_masks(split_dir: str | Path, meta: SplitMetadata, help_text: str = LAYOUT_HELP) -> None:
    """masks.txt (camexp's extension: mask rows beside box rows), when the split has one."""
    path = Path(split_dir) / "masks.txt"
    if path.is_file():
        _read_masks(_MetadataFile(path, help_text, "mask file"), meta)


def _row_kind(lines: Sequence[tuple[int, str]]) -> tuple[Localization, str]:
    """Box rows (5 fields) or mask rows (3 fields): what most rows are (the first row decides a tie), so one
    malformed row, the first included, is reported as itself. Also the note for a row of the other count."""
    counts = [len(line.split(",")) for _, line in lines]
    boxes, masks = counts.count(len(BOX_ROW.split(","))), counts.count(len(MASK_ROW.split(",")))
    kind: Localization = "masks" if masks > boxes or (masks == boxes and counts[:1] == [3]) else "boxes"
    majority = masks if kind == "masks" else boxes
    if majority == len(counts):
        return kind, ""
    row = "box" if kind == "boxes" else "mask"
    return kind, f"; {majority} of the file's {len(counts)} rows are {row} rows, so this one is read as one too"


def _read_masks(source: _MetadataFile, meta: SplitMetadata, why: str = "") -> None:
    """Mask rows; as upstream's get_mask_paths, the ignore mask is given on the image's first row only."""
    for line_no, line, (image_id, mask, ignore) in source.rows(MASK_ROW, meta, why):
        if not mask:
            raise source.error(line_no, line, "empty mask path")
        first = image_id not in meta.masks
        meta.masks.setdefault(image_id, []).append(mask)
        if first:
            meta.ignores[image_id] = ignore
        elif ignore:
            raise source.error(line_no, line, "the ignore mask belongs on the image's first row only")


def require(
    path: Path,
    meta: SplitMetadata,
    have: Collection[str],
    what: str,
    why: str,
    help_text: str = LAYOUT_HELP,
    among: Iterable[str] | None = None,
) -> None:
    """A DatasetError unless every image of `among` (default: all of image_ids.txt) is in `have`."""
    missing = [i for i in (meta.image_ids if among is None else among) if i not in have]
    if missing:
        first = missing[0]
        raise DatasetError(
            f"{path} gives no {what} for {len(missing)} image(s) of image_ids.txt, e.g. {first!r} "
            f"(image_ids.txt line {meta.line_of[first]}). {why} {help_text}"
        )


def read_metadata(split_dir: str | Path) -> SplitMetadata:
    """Parse a split folder as `camexp evaluate-maps` scores it; every image needs a box (with a size) or a mask."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetError(f"Metadata folder not found: {split_dir}. {LAYOUT_HELP}")
    meta = read_image_ids(split_dir)
    if not meta.image_ids:
        raise DatasetError(f"{split_dir / 'image_ids.txt'} lists no images. {LAYOUT_HELP}")
    if (split_dir / "class_labels.txt").is_file():
        read_class_labels(split_dir, meta)
    if read_localization(split_dir, meta) == "boxes":
        read_image_sizes(split_dir, meta)
        why = "Boxes are scaled by the original size."
        require(split_dir / "image_sizes.txt", meta, meta.sizes, "size", why, among=meta.boxes)
        read_extra_masks(split_dir, meta)
    why = "Every evaluated image needs ground truth."
    require(split_dir / "localization.txt", meta, meta.boxes.keys() | meta.masks.keys(), "box or mask", why)
    return meta


def write_metadata(split_dir: str | Path, meta: SplitMetadata) -> Path:
    """Write a split folder that `read_metadata` (and upstream's loaders, for boxes) read back unchanged."""
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    ids = meta.image_ids
    _write(split_dir / "image_ids.txt", ids)
    _write(split_dir / "class_labels.txt", [f"{i},{meta.labels[i]}" for i in ids if i in meta.labels])
    mask_rows = [
        f"{i},{path},{meta.ignores.get(i, '') if k == 0 else ''}"
        for i in ids
        for k, path in enumerate(meta.masks.get(i, []))
    ]
    if meta.has_boxes:
        _write(split_dir / "image_sizes.txt", [f"{i},{meta.sizes[i][0]},{meta.sizes[i][1]}" for i in ids])
        _write(
            split_dir / "localization.txt",
            [f"{i},{x0},{y0},{x1},{y1}" for i in ids for x0, y0, x1, y1 in meta.boxes.get(i, [])],
        )
        if mask_rows:
            _write(split_dir / "masks.txt", mask_rows)
    else:
        _write(split_dir / "localization.txt", mask_rows)
    return split_dir


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


# -- ground truth in the 224 x 224 evaluation frame ------------------------------------------------


def resize_mask_nearest(mask: np.ndarray, size: int = RESIZE_LENGTH) -> np.ndarray:
    """Upstream ``load_mask_image(...) > 0.5``: float32, nearest-neighbour resize to size x size."""
    resized = cv2.resize(np.float32(mask), (size, size), interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def mask_layers(
    instances: Sequence[np.ndarray], ignore: np.ndarray | None, size: int = RESIZE_LENGTH
) -> tuple[np.ndarray, np.ndarray]:
    """Upstream ``get_mask`` as two bool size x size layers: the foreground (any instance) and the ignore
    region minus the foreground. Inputs are grayscale images at any resolution (0 = background)."""
    foreground = np.zeros((size, size), dtype=bool)
    for instance in instances:
        foreground |= resize_mask_nearest(instance, size)
    ignored = np.zeros_like(foreground) if ignore is None else resize_mask_nearest(ignore, size) & ~foreground
    return foreground, ignored


def combine_masks(instances: Sequence[np.ndarray], ignore: np.ndarray | None, size: int = RESIZE_LENGTH) -> np.ndarray:
    """Upstream ``get_mask``: uint8 size x size, 1 = foreground (any instance), 255 = ignore, 0 = background."""
    foreground, ignored = mask_layers(instances, ignore, size)
    return foreground.astype(np.uint8) + 255 * ignored.astype(np.uint8)


def read_mask_images(
    mask_root: str | Path, masks: Sequence[str], ignore: str, fix: str
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The grayscale instance masks and ignore mask (None for "") of one image, paths relative to `mask_root`;
    a missing or unreadable file is a DatasetError naming it, followed by `fix`."""
    root = Path(mask_root)
    return [_read_gray(root / path, fix) for path in masks], _read_gray(root / ignore, fix) if ignore else None


def _read_gray(path: Path, fix: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        what = "missing" if not path.is_file() else "not a readable image"
        raise DatasetError(f"Mask file {path} is {what}. {fix}")
    return image


def load_gt_mask(meta: SplitMetadata, image_id: str, mask_root: str | Path, size: int = RESIZE_LENGTH) -> np.ndarray:
    """The 224 x 224 {0, 1, 255} GT mask of one image (see ``combine_masks``)."""
    fix = f"It is named in the mask rows of image {image_id!r}: restore it or pass the right --mask-root."
    instances, ignore = read_mask_images(mask_root, meta.masks[image_id], meta.ignores.get(image_id, ""), fix)
    return combine_masks(instances, ignore, size)
