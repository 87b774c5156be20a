"""GT box hygiene shared by every dataset: what real annotations throw at a localization metric.

Policy (the same for CUB, ILSVRC XML / csv and wsolevaluation metadata):

- a box with a non-numeric field is a malformed line: DatasetError naming the file and line;
- a box partly outside the image is clipped to it, in original pixels, before scaling;
- a degenerate box (non-finite, or zero / negative width or height, before or after clipping) is
  dropped with a `DegenerateBoxWarning` naming the file and line (or the image) and the box;
- an evaluation image left without any valid box is a DatasetError: scoring it as a localization
  miss (or skipping it) would silently change the metric. It is raised when the split is set up;
  a box that lies wholly outside an image whose size the annotations do not give (CUB, LOC csv)
  can only be seen when that image is decoded, so that case fails at loading time.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from camexp.errors import DatasetError


class DegenerateBoxWarning(UserWarning):
    """A GT box with no area was dropped (the message names where it came from)."""


def is_degenerate(boxes: np.ndarray) -> np.ndarray:
    """Per row of an xyxy array: non-finite, or zero / negative width or height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        return ~finite | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])


class BoxReport:
    """Collects the degenerate boxes met while parsing one annotation source; warns once for all."""

    MAX_LISTED = 5

    def __init__(self, source: str) -> None:
        self.source = source
        self.dropped: list[str] = []

    def keep(self, box: Sequence[float], where: str, as_written: str | None = None) -> bool:
        """True when the xyxy box has an area; otherwise remember it and return False. The warning shows
        `where` (the line) and `as_written`, the box as the file gives it (e.g. "x 10 y 20 width -5 height 8"
        for CUB's x y w h), or else the xyxy numbers."""
        if not is_degenerate(np.asarray(box, dtype=np.float64))[0]:
            return True
        self.dropped.append(f"{where}: box {as_written or _fmt(box)}")
        return False

    def warn(self) -> None:
        if not self.dropped:
            return
        listed = "; ".join(self.dropped[: self.MAX_LISTED])
        more = f" (and {len(self.dropped) - self.MAX_LISTED} more)" if len(self.dropped) > self.MAX_LISTED else ""
        warnings.warn(
            DegenerateBoxWarning(
                f"Dropped {len(self.dropped)} degenerate GT box(es) (zero or negative width/height) from "
                f"{self.source}: {listed}{more}. Fix the annotation to keep them."
            ),
            stacklevel=2,
        )


def _fmt(box: Sequence[float]) -> str:
    return "[" + " ".join(f"{float(v):g}" for v in box) + "]"


def clean_boxes(boxes: np.ndarray, image_size: tuple[int, int], image: str, source: str) -> np.ndarray:
    """xyxy boxes in original pixels, clipped to the image (image_size = original (width, height)),
    float64. Boxes with no area left (outside the image) are dropped with a warning naming `image` and
    `source`; if none is left, a DatasetError."""
    width, height = image_size
    clipped = np.minimum(np.maximum(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 0), (width, height) * 2)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])  # NaN compares False: dropped
    if keep.all():
        return clipped
    outside = ", ".join(_fmt(b) for b in np.asarray(boxes).reshape(-1, 4)[~keep])
    if not keep.any():
        raise DatasetError(
            f"Every GT box of {image} lies outside the image ({width} x {height}) after clipping: {outside} "
            f"(x0 y0 x1 y1 in original pixels, from {source}). The annotation does not match the image; fix or "
            f"remove it."
        )
    warnings.warn(
        DegenerateBoxWarning(
            f"Dropped GT box(es) {outside} (x0 y0 x1 y1 in original pixels) of {image} (from {source}): outside "
            f"the image ({width} x {height}) after clipping."
        ),
        stacklevel=2,
    )
    return clipped[keep]


def to_input_pixels(clean: np.ndarray, image_size: tuple[int, int], input_size: int) -> np.ndarray:
    """Clean xyxy boxes in original pixels -> float32 pixels of the S x S input (x * S/W, y * S/H)."""
    width, height = image_size
    return (clean * (input_size / width, input_size / height, input_size / width, input_size / height)).astype(
        np.float32
    )


def require_boxes(counts: Sequence[int] | np.ndarray, names: Sequence[str], source: str, split: str) -> None:
    """Every image of an evaluation split needs at least one valid GT box (see module docstring)."""
    empty = [names[i] for i, n in enumerate(counts) if n == 0]
    if empty:
        raise DatasetError(
            f"{len(empty)} image(s) of the {split} split have no valid GT box in {source}, e.g. {empty[:3]}. "
            f"Localization metrics need one per image: add the boxes, or remove the images from the split."
        )
