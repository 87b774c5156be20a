"""Folder-per-class image sets (ILSVRC train/, MIT Indoor67 Images/, ...), read as torchvision's
ImageFolder reads them: classes are the sorted subfolder names, files are walked in sorted order.

Same classes, same order, same sample order as ImageFolder, so class indices and checkpoints are
interchangeable with torchvision code. An empty class folder is an error before training starts
(ImageFolder raises too), because a class with no images silently shifts nothing but the metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from camexp.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(root: Path, help_text: str) -> list[str]:
    """Sorted names of the subfolders of `root` (one per class)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Image folder not found: {root}. {help_text}")
    names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not names:
        raise DatasetError(f"{root} has no class subfolders. {help_text}")
    return names


def images_under(folder: Path) -> list[str]:
    """Image files below `folder` (recursively, links followed), as paths relative to it, sorted as ImageFolder."""
    found = []
    for current, _, files in sorted(os.walk(folder, followlinks=True)):
        rel = os.path.relpath(current, folder)
        for name in sorted(files):
            if is_image_file(name):
                found.append(name if rel == "." else os.path.join(rel, name))
    return found


def scan_class_folders(root: Path, classes: list[str], help_text: str) -> tuple[list[str], np.ndarray]:
    """(paths relative to root, labels) of every image in root/<class>/ for the given class order."""
    root = Path(root)
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(classes):
        files = images_under(root / name)
        if not files:
            empty.append(name)
        paths.extend(f"{name}/{f}" for f in files)
        labels.extend([label] * len(files))
    if empty:
        raise DatasetError(
            f"{len(empty)} class folder(s) under {root} contain no images ({', '.join(empty[:5])}"
            f"{', ...' if len(empty) > 5 else ''}); accepted extensions: {' '.join(IMAGE_EXTENSIONS)}. "
            f"Restore the images or delete the empty folders. {help_text}"
        )
    return paths, np.asarray(labels, dtype=np.int64)


def check_class_folders_nonempty(root: Path, classes: list[str], help_text: str) -> None:
    """Cheap form of the empty-folder check for sets indexed by list files (one directory peek per class)."""
    empty = []
    for name in classes:
        folder = Path(root) / name.strip("/")
        if not folder.is_dir() or not any(is_image_file(e.name) or e.is_dir() for e in os.scandir(folder)):
            empty.append(name)
    if empty:
        raise DatasetError(
            f"{len(empty)} class folder(s) under {root} are missing or empty ({', '.join(empty[:5])}"
            f"{', ...' if len(empty) > 5 else ''}) although the split files list images there. "
            f"Restore the images. {help_text}"
        )
