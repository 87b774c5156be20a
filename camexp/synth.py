"""SynthLoc: the embedded weakly supervised localization benchmark, generated from a seed.

Each image holds one object: a textured body (the texture is shared by two classes) with a small
head of a class-specific colour and shape at one end, on a background cluttered with patches and
strokes in the same palette and textures. Classifying needs the head; localizing needs the body.
The set is written in the official CUB-200-2011 layout (with exact boxes and masks), so the
default experiment runs the real CUB loading code. See docs/synthloc.md for the design.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from camexp import cub_writer

SYNTHLOC_VERSION = 1
METADATA_FILE = "synthloc.json"
MAX_CLASSES = 20

# Body textures; classes 2k and 2k+1 share TEXTURES[k], so texture alone narrows a class to a pair.
TEXTURES = (
    "Hstripe",
    "Vstripe",
    "Checker",
    "Dotted",
    "Dstripe",
    "Ringed",
    "Grid",
    "Astripe",
    "Zigzag",
    "Hatched",
)
# Head colours (RGB, saturated; never used by bodies or patches) and shapes. Class c gets colour c % 10
# and shape c % 3, so (colour, shape) is unique for up to 30 classes and the head identifies the class.
HEAD_COLOURS = {
    "Red": (225, 30, 30),
    "Blue": (35, 65, 235),
    "Yellow": (245, 225, 25),
    "Purple": (135, 40, 200),
    "Green": (30, 190, 45),
    "Magenta": (235, 40, 195),
    "Orange": (250, 135, 0),
    "Cyan": (0, 215, 225),
    "White": (248, 248, 248),
    "Black": (12, 12, 12),
}
HEAD_SHAPES = ("Round", "Beak", "Square")
# Muted palette shared by bodies, clutter patches and the background (luma roughly 60..200).
BODY_PALETTE = np.array(
    [
        (120, 90, 60), (190, 160, 120), (90, 100, 115), (150, 150, 140), (110, 120, 70),
        (170, 120, 100), (70, 72, 92), (205, 192, 168), (130, 85, 95), (80, 112, 100),
        (160, 140, 80), (100, 130, 150),
    ],
    dtype=np.float32,
)  # fmt: skip

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ClassSpec(NamedTuple):
    """What defines a class: its body texture (shared with one other class) and its unique head."""

    name: str
    texture: str
    head_colour: str
    head_shape: str


class SynthSample(NamedTuple):
    """One rendered image. `mask` = body | head exactly as drawn; `box` is its tight box (x, y, w, h)."""

    image: np.ndarray  # size x size x 3, uint8, RGB
    mask: np.ndarray  # size x size, bool
    head_mask: np.ndarray  # size x size, bool (subset of mask)
    clutter_mask: np.ndarray  # size x size, bool: background pixels painted by clutter
    box: tuple[float, float, float, float]


def _check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"SynthLoc supports 2..{MAX_CLASSES} classes, got num_classes={num_classes}")


def class_spec(class_id: int, num_classes: int = 10) -> ClassSpec:
    """The definition of 0-based `class_id` among `num_classes` classes."""
    _check_num_classes(num_classes)
    if not 0 <= class_id < num_classes:
        raise ValueError(f"class_id {class_id} is outside 0..{num_classes - 1}")
    texture = TEXTURES[class_id // 2]
    colour = list(HEAD_COLOURS)[class_id % len(HEAD_COLOURS)]
    shape = HEAD_SHAPES[class_id % len(HEAD_SHAPES)]
    return ClassSpec(f"{texture}_{colour}_{shape}", texture, colour, shape)


def class_names(num_classes: int = 10) -> tuple[str, ...]:
    """Class names (without the CUB 'NNN.' prefix), index = 0-based class id."""
    return tuple(class_spec(c, num_classes).name for c in range(num_classes))


CLASS_NAMES: tuple[str, ...] = class_names(10)


# ---------------------------------------------------------------------------------------------------------
# Textures: values in [0, 1] on a pixel grid, anti-aliased over about one pixel.


def _tri(u: np.ndarray) -> np.ndarray:
    """Distance (in periods, 0..0.5) from u to the nearest half-integer."""
    return np.abs(u - np.floor(u) - 0.5)


def _texture(kind: str, xs: np.ndarray, ys: np.ndarray, period: float, rng: np.random.Generator) -> np.ndarray:
    """Texture `kind` evaluated at pixel coordinates (xs, ys) relative to the texture's centre."""
    jitter = math.radians(rng.uniform(-10.0, 10.0))
    phase_u, phase_v = rng.uniform(0.0, 1.0, size=2)

    def rotated(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
        a = math.radians(angle_deg) + jitter
        u = (xs * math.cos(a) + ys * math.sin(a)) / period + phase_u
        v = (-xs * math.sin(a) + ys * math.cos(a)) / period + phase_v
        return u, v

    def stripes(u: np.ndarray) -> np.ndarray:  # half the period on; signed pixel distance to an edge
        return (0.25 - _tri(u + 0.25)) * period

    if kind in ("Hstripe", "Vstripe", "Dstripe", "Astripe"):
        angle = {"Hstripe": 90.0, "Vstripe": 0.0, "Dstripe": 45.0, "Astripe": 135.0}[kind]
        s = stripes(rotated(angle)[0])
    elif kind == "Checker":
        u, v = rotated(0.0)
        su, sv = stripes(u), stripes(v)
        s = np.sign(su * sv) * np.minimum(np.abs(su), np.abs(sv))
    elif kind == "Dotted":
        u, v = rotated(0.0)
        s = 0.32 * period - np.hypot(_tri(u + 0.5), _tri(v + 0.5)) * period
    elif kind in ("Grid", "Hatched"):
        u, v = rotated(0.0 if kind == "Grid" else 45.0)
        s = 0.14 * period - np.minimum(_tri(u + 0.5), _tri(v + 0.5)) * period
    elif kind == "Ringed":
        s = stripes(np.hypot(xs, ys) / period + phase_u)
    elif kind == "Zigzag":
        u, v = rotated(0.0)
        s = stripes(v + 0.8 * _tri(u / 1.5))
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.clip(0.5 + s, 0.0, 1.0).astype(np.float32)


def _palette_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two jittered palette colours with enough contrast for the texture to show."""
    first = int(rng.integers(len(BODY_PALETTE)))
    luma = BODY_PALETTE @ _LUMA
    candidates = np.flatnonzero(np.abs(luma - luma[first]) >= 35.0)
    second = int(rng.choice(candidates))
    jitter = rng.uniform(-12.0, 12.0, size=(2, 3)).astype(np.float32)
    return BODY_PALETTE[first] + jitter[0], BODY_PALETTE[second] + jitter[1]


def _paint_texture(
    canvas: np.ndarray, region: np.ndarray, kind: str, centre: tuple[float, float], rng: np.random.Generator
) -> None:
    """Fill canvas pixels where `region` is set with texture `kind` in two palette colours."""
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        return
    size = canvas.shape[0]
    period = rng.uniform(5.0, 9.0) * size / 128.0
    t = _texture(kind, cols - centre[0], rows - centre[1], period, rng)[:, None]
    c0, c1 = _palette_pair(rng)
    canvas[rows, cols] = c0 * (1.0 - t) + c1 * t


# ---------------------------------------------------------------------------------------------------------
# Geometry: an object is a star-shaped body polygon plus a head polygon, in a local frame, then rotated,
# scaled to a sampled box and placed.


def _body_polygon(rng: np.random.Generator) -> np.ndarray:
    """Body outline (K x 2) around the origin, long axis along x with semi-axis 1."""
    minor = 1.0 / rng.uniform(1.0, 2.0)
    kind = rng.integers(3)
    if kind == 2:  # irregular polygon, 5-8 vertices, edges densified so the outline is star-shaped and dense
        n = int(rng.integers(5, 9))
        angles = np.sort((np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi))
        radius = rng.uniform(0.85, 1.1, n)
        corners = np.stack([radius * np.cos(angles), minor * radius * np.sin(angles)], axis=1)
        t = np.linspace(0.0, 1.0, 12, endpoint=False)[:, None, None]
        return (corners[None] * (1 - t) + np.roll(corners, -1, axis=0)[None] * t).transpose(1, 0, 2).reshape(-1, 2)
    phi = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    radius = np.ones_like(phi)
    if kind == 1:  # smooth blob: ellipse with low-frequency radial wobble
        for harmonic in (2, 3, 4):
            radius += rng.uniform(0.0, 0.12) * np.cos(harmonic * phi + rng.uniform(0, 2 * np.pi))
    return np.stack([radius * np.cos(phi), minor * radius * np.sin(phi)], axis=1)


def _head_polygon(body: np.ndarray, shape: str, rng: np.random.Generator) -> np.ndarray:
    """Head outline at one end of the body's long axis, half sticking out of the body."""
    end = 0.0 if rng.random() < 0.5 else np.pi
    direction = end + rng.uniform(-0.5, 0.5)
    polar = np.arctan2(body[:, 1], body[:, 0])
    anchor = body[np.argmin(np.abs(np.angle(np.exp(1j * (polar - direction)))))]
    area = 0.5 * abs(np.dot(body[:, 0], np.roll(body[:, 1], -1)) - np.dot(body[:, 1], np.roll(body[:, 0], -1)))
    r = rng.uniform(0.17, 0.23) * math.sqrt(area)
    out = np.array([math.cos(direction), math.sin(direction)])
    centre = anchor + 0.45 * r * out
    if shape == "Round":
        phi = np.linspace(0.0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([np.cos(phi), np.sin(phi)], axis=1) * r
    elif shape == "Beak":  # triangle pointing away from the body
        phi = direction + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
        pts = np.stack([np.cos(phi), np.sin(phi)], axis=1) * (1.35 * r)
    elif shape == "Square":
        phi = direction + np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(phi), np.sin(phi)], axis=1) * (1.25 * r)
    else:
        raise ValueError(f"unknown head shape {shape!r}")
    return centre + pts


_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def _fill(size: int, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Binary raster of polygons given in pixel coordinates (pixel centres at integers)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    pts = [np.round(p * (1 << _SHIFT)).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def _place_object(rng: np.random.Generator, shape: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Body and head polygons in pixel coordinates; box sides 11-80% of the image, aspect 0.5-2."""
    body = _body_polygon(rng)
    head = _head_polygon(body, shape, rng)
    angle = rng.uniform(0.0, 2 * np.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    body, head = body @ rot.T, head @ rot.T
    both = np.concatenate([body, head])
    lo, hi = both.min(axis=0), both.max(axis=0)
    raw_w, raw_h = hi - lo
    # Scale = geometric mean of the box sides as a fraction of the image; the aspect follows the shape
    # (with mild stretching), so bodies are not distorted much.
    scale = rng.uniform(0.16, 0.72)
    aspect = float(np.clip(raw_w / raw_h * math.exp(rng.uniform(-0.2, 0.2)), 0.5, 2.0))
    box_w = float(np.clip(scale * math.sqrt(aspect), 0.11, 0.8)) * size - 1
    box_h = float(np.clip(scale / math.sqrt(aspect), 0.11, 0.8)) * size - 1
    x0 = rng.uniform(0.0, size - 1 - box_w)
    y0 = rng.uniform(0.0, size - 1 - box_h)
    k = np.array([box_w / raw_w, box_h / raw_h])
    offset = np.array([x0, y0])
    return (body - lo) * k + offset, (head - lo) * k + offset


# ---------------------------------------------------------------------------------------------------------
# Rendering


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Palette-coloured background with a smooth, low-frequency colour variation."""
    base = BODY_PALETTE[rng.integers(len(BODY_PALETTE))] + rng.uniform(-12, 12, 3)
    coarse = rng.uniform(-22.0, 22.0, size=(4, 4, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return (base[None, None, :] + smooth).astype(np.float32)


def _clutter(
    canvas: np.ndarray, obj_box: tuple[int, int, int, int], num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Paint textured patches and strokes (palette colours, textures of any class, no heads) outside the
    object's box (x0, y0, x1, y1), but for at most 5% of its area in all; return the painted pixels."""
    size = canvas.shape[0]
    x0, y0, x1, y1 = obj_box
    box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
    inside_total = 0
    painted = np.zeros((size, size), dtype=bool)
    textures = TEXTURES[: (num_classes + 1) // 2]
    n_patches, n_strokes = int(rng.integers(2, 6)), int(rng.integers(1, 5))
    for item in range(n_patches + n_strokes):
        for _ in range(8):  # a few tries to find a spot that leaves the object's box (almost) free
            centre = rng.uniform(0, size, 2)
            if item < n_patches:  # a rotated rectangle or a random convex polygon, textured
                half = rng.uniform(0.04, 0.15, 2) * size
                if rng.random() < 0.5:
                    a = rng.uniform(0, np.pi)
                    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
                    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                    pts = corners @ rot.T
                else:
                    pts = cv2.convexHull(rng.uniform(-1, 1, (6, 2)).astype(np.float32))[:, 0] * half
                region = _fill(size, [centre + pts])
            else:  # a stroke: short polyline, palette colour, sometimes a head colour (then thin)
                head_coloured = rng.random() < 0.2
                steps = rng.normal(0, 0.08 * size, (int(rng.integers(2, 5)), 2))
                pts = centre + np.concatenate([[[0.0, 0.0]], np.cumsum(steps, axis=0)])
                region = np.zeros((size, size), dtype=np.uint8)
                thickness = max(1, round(rng.uniform(1.0, 2.0 if head_coloured else 3.5) * size / 128))
                cv2.polylines(region, [np.round(pts).astype(np.int32)], False, 1, thickness, cv2.LINE_8)
                region = region.astype(bool)
            inside = int(region[y0 : y1 + 1, x0 : x1 + 1].sum())
            if region.any() and inside_total + inside <= 0.05 * box_area:
                inside_total += inside
                break
        else:
            continue
        if item < n_patches:
            _paint_texture(canvas, region, str(rng.choice(textures)), (float(centre[0]), float(centre[1])), rng)
        else:
            if head_coloured:
                colour = np.array(list(HEAD_COLOURS.values())[rng.integers(len(HEAD_COLOURS))], np.float32)
            else:
                colour = BODY_PALETTE[rng.integers(len(BODY_PALETTE))]
            canvas[region] = colour
        painted |= region
    return painted


def render_sample(rng: np.random.Generator, class_id: int, size: int = 128, num_classes: int = 10) -> SynthSample:
    """Render one image of 0-based `class_id`. Pure function of the generator state and arguments."""
    spec = class_spec(class_id, num_classes)
    body_poly, head_poly = _place_object(rng, spec.head_shape, size)
    head = _fill(size, [head_poly])
    mask = _fill(size, [body_poly]) | head
    rows, cols = np.nonzero(mask)
    obj_box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))

    canvas = _background(rng, size)
    clutter = _clutter(canvas, obj_box, num_classes, rng)
    centre = body_poly.mean(axis=0)
    _paint_texture(canvas, mask & ~head, spec.texture, (float(centre[0]), float(centre[1])), rng)
    canvas[head] = np.array(HEAD_COLOURS[spec.head_colour], np.float32) + rng.uniform(-12, 12, 3)

    # Photometric jitter and sensor noise, so the JPEG is not trivially clean.
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, 3)
    canvas = canvas * gain + rng.uniform(-10, 10) + rng.normal(0.0, rng.uniform(2.0, 6.0), canvas.shape)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    box = (
        float(obj_box[0]),
        float(obj_box[1]),
        float(obj_box[2] - obj_box[0] + 1),
        float(obj_box[3] - obj_box[1] + 1),
    )
    return SynthSample(image, mask, head, clutter & ~mask, box)


# ---------------------------------------------------------------------------------------------------------
# Writing the CUB-200-2011 layout


def _metadata(seed: int, n_train: int, n_val: int, size: int, num_classes: int) -> dict:
    return {
        "name": "SynthLoc",
        "version": SYNTHLOC_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "num_classes": num_classes,
        "num_images": n_train + n_val,
        "class_names": list(class_names(num_classes)),
    }


def read_metadata(root: str | Path) -> dict | None:
    """The generation parameters of a complete SynthLoc set at `root`, or None if there is none."""
    return cub_writer.read_metadata(root, METADATA_FILE, "SynthLoc")


def _plan(seed: int, n_train: int, n_val: int, num_classes: int) -> list[tuple[int, int, bool]]:
    """(class_id, sample_index, is_train) per image, grouped by class as in CUB; classes balanced."""
    rng = np.random.default_rng([seed, 0])
    train = rng.permutation(np.arange(n_train) % num_classes)
    val = rng.permutation(np.arange(n_val) % num_classes)
    samples = [(int(c), i, True) for i, c in enumerate(train)]
    samples += [(int(c), n_train + i, False) for i, c in enumerate(val)]
    return sorted(samples)


def generate_synthloc(
    out: str | Path,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 500,
    size: int = 128,
    num_classes: int = 10,
    progress: bool = True,
) -> Path:
    """Write SynthLoc to `out` in the CUB-200-2011 layout and return `out`.

    Same arguments give byte-identical files. The set is built in a sibling temporary folder and
    renamed into place, with synthloc.json written last, so an interrupted run never looks complete.
    If `out` already holds a complete set with the same parameters it is reused as is.
    """
    out = Path(out)
    _check_num_classes(num_classes)
    if n_train < num_classes or n_val < num_classes:
        raise ValueError(
            f"n_train={n_train} and n_val={n_val} must each be at least num_classes={num_classes}, "
            "so every class appears in both splits."
        )
    if seed < 0:
        raise ValueError(f"seed={seed} must be a non-negative integer.")
    if size < 32:
        raise ValueError(f"size={size} is too small to draw objects with heads; use at least 32.")
    wanted = _metadata(seed, n_train, n_val, size, num_classes)
    describe = f"seed={seed}, n_train={n_train}, n_val={n_val}, size={size}, num_classes={num_classes}"
    return cub_writer.generate_atomically(
        out, wanted, METADATA_FILE, "SynthLoc", lambda root: _write_layout(root, wanted, progress), describe
    )


def _write_layout(root: Path, meta: dict, progress: bool) -> None:
    seed, size, num_classes = meta["seed"], meta["size"], meta["num_classes"]
    folders = [f"{c + 1:03d}.{name}" for c, name in enumerate(meta["class_names"])]
    plan = _plan(seed, meta["n_train"], meta["n_val"], num_classes)
    width = max(4, len(str(len(plan))))
    writer = cub_writer.CUBWriter(root, folders)
    for image_id, (class_id, index, is_train) in enumerate(tqdm(plan, desc="SynthLoc", disable=not progress), 1):
        sample = render_sample(np.random.default_rng([seed, 1, index]), class_id, size, num_classes)
        stem = f"{folders[class_id]}/{meta['class_names'][class_id]}_{image_id:0{width}d}"
        writer.add(stem, class_id, is_train, sample.image, sample.mask, sample.box)
    writer.write_tables()  # synthloc.json, which marks the set complete, is written after this returns
