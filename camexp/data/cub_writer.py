"""Writing generated datasets in the CUB-200-2011 layout, atomically, with a metadata file written last.

Shared by the embedded generators (SynthLoc in camexp/data/synth.py, cluttered digits in camexp/data/digits.py).
It lives outside camexp/data on purpose: importing camexp.data loads torch and Lightning (seconds), and a
generator needs only numpy and OpenCV.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from camexp.errors import DatasetError, OutputExistsError


class UnreadableMetadataError(DatasetError, ValueError):
    """A generated set's metadata file exists but cannot be read (a ValueError, as callers have caught it)."""


def read_metadata(root: str | Path, filename: str, dataset: str) -> dict | None:
    """The generation parameters of a complete set at `root` (its `filename`), or None if there is none."""
    path = Path(root) / filename
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as err:
        raise UnreadableMetadataError(
            f"{path} is not a readable {dataset} metadata file ({err}); delete {root} and generate it again."
        ) from err


def write_image(path: Path, array: np.ndarray, params: list[int]) -> None:
    """cv2.imwrite into a new folder if needed; a failed write raises instead of returning False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array, params):
        raise OSError(f"could not write {path}; check that the disk is writable and not full.")


class CUBWriter:
    """Accumulates images (RGB JPEG, quality 95), masks (PNG, 255 = object) and the annotation tables of a
    CUB-200-2011 folder. Image ids are 1-based in the order of `add`."""

    def __init__(self, root: Path, class_folders: Sequence[str]) -> None:
        self.root = root
        self.class_folders = list(class_folders)
        self.images: list[str] = []
        self.labels: list[str] = []
        self.split: list[str] = []
        self.boxes: list[str] = []

    def add(
        self,
        stem: str,
        class_id: int,
        is_train: bool,
        image_rgb: np.ndarray,
        mask: np.ndarray,
        box: tuple[float, float, float, float],
    ) -> int:
        """Write images/<stem>.jpg and segmentations/<stem>.png; `class_id` is 0-based, `box` is x y w h.
        Returns the new image id."""
        image_id = len(self.images) + 1
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        write_image(self.root / "images" / f"{stem}.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        png = mask.astype(np.uint8) * 255
        write_image(self.root / "segmentations" / f"{stem}.png", png, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        self.images.append(f"{image_id} {stem}.jpg")
        self.labels.append(f"{image_id} {class_id + 1}")
        self.split.append(f"{image_id} {int(is_train)}")
        self.boxes.append(f"{image_id} " + " ".join(f"{v:.1f}" for v in box))
        return image_id

    def write_tables(self) -> None:
        """classes.txt, images.txt, image_class_labels.txt, train_test_split.txt, bounding_boxes.txt."""
        files = {
            "classes.txt": [f"{c + 1} {folder}" for c, folder in enumerate(self.class_folders)],
            "images.txt": self.images,
            "image_class_labels.txt": self.labels,
            "train_test_split.txt": self.split,
            "bounding_boxes.txt": self.boxes,
        }
        for name, lines in files.items():
            (self.root / name).write_text("\n".join(lines) + "\n")


def generate_atomically(
    out: str | Path,
    wanted: dict,
    metadata_file: str,
    dataset: str,
    write: Callable[[Path], None],
    describe: str,
    replace_stale: bool = False,
) -> Path:
    """Build a dataset with `write(folder)` in a temporary sibling of `out`, add `metadata_file` (= `wanted`)
    last, and rename it into place, so an interrupted run never looks complete.

    `out` holding a complete set whose metadata equals `wanted` is reused as is. One with other metadata
    raises OutputExistsError (a FileExistsError), or with `replace_stale` is replaced (only after the new set is
    complete); a non-empty folder without the metadata file always raises. `describe` ("seed=0, ...") goes into errors.
    """
    out = Path(out)
    stale = False
    if out.exists():
        found = read_metadata(out, metadata_file, dataset)
        if found == wanted:
            return out
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        elif found is not None and replace_stale and found.get("name") == wanted.get("name"):
            stale = True
        else:
            what = f"a {dataset} set with other parameters" if found else f"files but no complete {dataset} set"
            raise OutputExistsError(
                f"{out} {'already holds ' + what if out.is_dir() else 'is a file'}. Delete it or pass another "
                f"output folder to generate {dataset} ({describe})."
            )

    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        (tmp / metadata_file).write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")  # last: complete
        if stale:  # move the old set aside first: os.replace cannot replace a non-empty folder
            old = out.parent / f"{out.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:
            if read_metadata(out, metadata_file, dataset) != wanted:  # not another process finishing it first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
