"""SynthLoc: the embedded weakly supervised localization benchmark, generated from a seed.

Each image holds one object, a textured body with a small coloured head at one end, on a background
cluttered with patches and strokes in the same palettes and textures.

Version 2 (the default) spreads the class evidence over the whole object: a class is the conjunction
of its body texture (shared by three classes), its body colour family (shared by about a third of the
classes) and its head. The head is the single most discriminative cue but never sufficient alone: it
shows the class's own signature or that of one partner class with another texture. The dial
`part_dominance` (0..1) moves the evidence from the body (0: the head is random) to the head (1: the
head identifies the class and the colour family is random).

Version 1 (`version=1`, kept byte-identical for the "most discriminative part" experiment): the
texture is shared by two classes and the head alone identifies the class, so CAMs fire on the head.

The set is written in the official CUB-200-2011 layout (with exact boxes and masks), so the default
experiment runs the real CUB loading code. See docs/synthloc.md for the design.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from camexp.data import cub_writer
from camexp.errors import ConfigError  # a ValueError too

SYNTHLOC_VERSION = 2  # the default; 1 is kept byte-identical for the "most discriminative part" experiment
SUPPORTED_VERSIONS = (1, 2)
DEFAULT_PART_DOMINANCE = 0.5
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

# Version 2. Body textures that look the same after a horizontal flip (training flips images, so
# mirror-image textures such as Dstripe/Astripe would be one texture to the network); classes 3k..3k+2
# share CLASS_TEXTURES[k]. Dstripe and Astripe still appear in clutter.
CLASS_TEXTURES = ("Hstripe", "Vstripe", "Checker", "Dotted", "Ringed", "Grid", "Zigzag", "Hatched")
# Body colour families (four lumas each, dark to light): class c's body is drawn in family c % 3. The
# background and clutter use all twelve colours, so a colour family alone says nothing outside the body.
COLOUR_FAMILIES = {
    "Warm": ((112, 72, 46), (162, 108, 72), (204, 152, 112), (232, 198, 164)),
    "Cool": ((56, 70, 112), (86, 106, 156), (126, 150, 196), (176, 196, 232)),
    "Green": ((60, 96, 56), (96, 136, 80), (142, 176, 112), (192, 216, 162)),
}
V2_PALETTE = np.array([rgb for family in COLOUR_FAMILIES.values() for rgb in family], dtype=np.float32)
TEXTURE_GROUP = 3  # classes per body texture (version 2)


class ClassSpec(NamedTuple):
    """What defines a class: body texture, head signature (colour + shape) and, in version 2, the body
    colour family. Version 1: texture shared with one other class, the head unique. Version 2: texture
    shared by three classes, colour family by about N/3, the head signature shown only part of the time."""

    name: str
    texture: str
    head_colour: str
    head_shape: str
    colour_family: str = ""  # version 2 only


class SynthSample(NamedTuple):
    """One rendered image. `mask` = body | head exactly as drawn; `box` is its tight box (x, y, w, h)."""

    image: np.ndarray  # size x size x 3, uint8, RGB
    mask: np.ndarray  # size x size, bool
    head_mask: np.ndarray  # size x size, bool (subset of mask)
    clutter_mask: np.ndarray  # size x size, bool: background pixels painted by clutter
    box: tuple[float, float, float, float]
    head_class: int = -1  # version 2: the class whose head signature is drawn (v1: the class itself)
    colour_family: int = -1  # version 2: index of the body's colour family as drawn (v1: -1)


def _check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"SynthLoc supports 2..{MAX_CLASSES} classes, got num_classes={num_classes}")


def _check_version(version: int) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(f"SynthLoc version must be one of {SUPPORTED_VERSIONS}, got version={version}")


def class_spec(class_id: int, num_classes: int = 10, version: int = SYNTHLOC_VERSION) -> ClassSpec:
    """The definition of 0-based `class_id` among `num_classes` classes."""
    _check_num_classes(num_classes)
    _check_version(version)
    if not 0 <= class_id < num_classes:
        raise ValueError(f"class_id {class_id} is outside 0..{num_classes - 1}")
    colour = list(HEAD_COLOURS)[class_id % len(HEAD_COLOURS)]
    if version == 1:
        texture = TEXTURES[class_id // 2]
        shape = HEAD_SHAPES[class_id % len(HEAD_SHAPES)]
        return ClassSpec(f"{texture}_{colour}_{shape}", texture, colour, shape)
    texture = CLASS_TEXTURES[class_id // TEXTURE_GROUP]
    family = list(COLOUR_FAMILIES)[class_id % len(COLOUR_FAMILIES)]
    shape = HEAD_SHAPES[(class_id + class_id // len(HEAD_COLOURS)) % len(HEAD_SHAPES)]  # (colour, shape) unique
    return ClassSpec(f"{texture}_{family}_{colour}{shape}", texture, colour, shape, family)


def class_names(num_classes: int = 10, version: int = SYNTHLOC_VERSION) -> tuple[str, ...]:
    """Class names (without the CUB 'NNN.' prefix), index = 0-based class id."""
    return tuple(class_spec(c, num_classes, version).name for c in range(num_classes))


def head_partner(class_id: int, num_classes: int) -> int:
    """Version 2: the class whose head signature class `class_id` shares (drawn in another texture group
    for num_classes >= 6), so the head narrows the class to two and the texture decides between them."""
    return (class_id + TEXTURE_GROUP) % num_classes


def _dial(part_dominance: float) -> tuple[float, float, float]:
    """(m, q, r) of the dial: with probability m the head shows a pair signature (the class's own with
    probability q, else its partner's), otherwise a uniformly random one; with probability r the body's
    colour family is uniformly random instead of the class's."""
    d = float(part_dominance)
    return min(1.0, 2.0 * d), max(0.5, d), max(0.0, 2.0 * d - 1.0)


def _check_part_dominance(part_dominance: float) -> None:
    if not 0.0 <= float(part_dominance) <= 1.0:
        raise ConfigError(f"part_dominance must be in [0, 1], got {part_dominance}")


def draw_cues(rng: np.random.Generator, class_id: int, num_classes: int, part_dominance: float) -> tuple[int, int]:
    """Version 2: (head_class, colour_family) drawn for one image of `class_id`. The same five draws are
    made at every dial setting, so moving the dial changes the cues of few images, not the whole set."""
    m, q, r = _dial(part_dominance)
    u_pair, u_own, u_family = rng.random(3)
    random_head, random_family = rng.integers(num_classes), rng.integers(len(COLOUR_FAMILIES))
    if u_pair < m:
        head_class = class_id if u_own < q else head_partner(class_id, num_classes)
    else:
        head_class = int(random_head)
    family = int(random_family) if u_family < r else class_id % len(COLOUR_FAMILIES)
    return head_class, family


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


def _palette_pair(rng: np.random.Generator, palette: np.ndarray = BODY_PALETTE) -> tuple[np.ndarray, np.ndarray]:
    """Two jittered palette colours with enough contrast for the texture to show."""
    first = int(rng.integers(len(palette)))
    luma = palette @ _LUMA
    candidates = np.flatnonzero(np.abs(luma - luma[first]) >= 35.0)
    second = int(rng.choice(candidates))
    jitter = rng.uniform(-12.0, 12.0, size=(2, 3)).astype(np.float32)
    return palette[first] + jitter[0], palette[second] + jitter[1]


def _paint_texture(
    canvas: np.ndarray,
    region: np.ndarray,
    kind: str,
    centre: tuple[float, float],
    rng: np.random.Generator,
    palette: np.ndarray = BODY_PALETTE,
) -> None:
    """Fill canvas pixels where `region` is set with texture `kind` in two colours of `palette`."""
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        return
    size = canvas.shape[0]
    period = rng.uniform(5.0, 9.0) * size / 128.0
    t = _texture(kind, cols - centre[0], rows - centre[1], period, rng)[:, None]
    c0, c1 = _palette_pair(rng, palette)
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


def _place_object(
    rng: np.random.Generator,
    shape: str,
    size: int,
    scale_range: tuple[float, float] = (0.16, 0.72),
    side_range: tuple[float, float] = (0.11, 0.8),
) -> tuple[np.ndarray, np.ndarray]:
    """Body and head polygons in pixel coordinates; box sides in `side_range` of the image (v1: 11-80%),
    aspect 0.5-2."""
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
    scale = rng.uniform(*scale_range)
    aspect = float(np.clip(raw_w / raw_h * math.exp(rng.uniform(-0.2, 0.2)), 0.5, 2.0))
    box_w = float(np.clip(scale * math.sqrt(aspect), *side_range)) * size - 1
    box_h = float(np.clip(scale / math.sqrt(aspect), *side_range)) * size - 1
    x0 = rng.uniform(0.0, size - 1 - box_w)
    y0 = rng.uniform(0.0, size - 1 - box_h)
    k = np.array([box_w / raw_w, box_h / raw_h])
    offset = np.array([x0, y0])
    return (body - lo) * k + offset, (head - lo) * k + offset


# ---------------------------------------------------------------------------------------------------------
# Rendering


def _background(rng: np.random.Generator, size: int, palette: np.ndarray = BODY_PALETTE) -> np.ndarray:
    """Palette-coloured background with a smooth, low-frequency colour variation."""
    base = palette[rng.integers(len(palette))] + rng.uniform(-12, 12, 3)
    coarse = rng.uniform(-22.0, 22.0, size=(4, 4, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return (base[None, None, :] + smooth).astype(np.float32)


def _clutter(
    canvas: np.ndarray,
    obj_box: tuple[int, int, int, int],
    num_classes: int,
    rng: np.random.Generator,
    version: int = 1,
) -> np.ndarray:
    """Paint textured patches and strokes (palette colours, textures of any class, no heads) outside the
    object's box (x0, y0, x1, y1), but for at most 5% of its area in all; return the painted pixels.
    Version 2: any texture, and half of the patches in one (random) body colour family, so a patch can
    look like a piece of any class's body."""
    size = canvas.shape[0]
    x0, y0, x1, y1 = obj_box
    box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
    inside_total = 0
    painted = np.zeros((size, size), dtype=bool)
    textures = TEXTURES[: (num_classes + 1) // 2] if version == 1 else TEXTURES
    palette = BODY_PALETTE if version == 1 else V2_PALETTE
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
            kind = str(rng.choice(textures))
            patch_palette = palette
            if version != 1 and rng.random() < 0.5:
                patch_palette = np.array(list(COLOUR_FAMILIES.values())[rng.integers(len(COLOUR_FAMILIES))], np.float32)
            _paint_texture(canvas, region, kind, (float(centre[0]), float(centre[1])), rng, patch_palette)
        else:
            if head_coloured:
                colour = np.array(list(HEAD_COLOURS.values())[rng.integers(len(HEAD_COLOURS))], np.float32)
            else:
                colour = palette[rng.integers(len(palette))]
            canvas[region] = colour
        painted |= region
    return painted


def render_sample(
    rng: np.random.Generator,
    class_id: int,
    size: int = 128,
    num_classes: int = 10,
    version: int = SYNTHLOC_VERSION,
    part_dominance: float = DEFAULT_PART_DOMINANCE,
) -> SynthSample:
    """Render one image of 0-based `class_id`. Pure function of the generator state and arguments
    (`part_dominance` only matters for version 2)."""
    _check_version(version)
    if version == 1:
        return _render_v1(rng, class_id, size, num_classes)
    _check_part_dominance(part_dominance)
    return _render_v2(rng, class_id, size, num_classes, part_dominance)


# Version 2 objects are larger (box sides 20-85% of the image): a 16x16 CAM cannot box a 15 px object.
V2_SCALE_RANGE = (0.3, 0.75)
V2_SIDE_RANGE = (0.2, 0.85)


def _render_v2(
    rng: np.random.Generator, class_id: int, size: int, num_classes: int, part_dominance: float
) -> SynthSample:
    """Version 2: the class's texture in its (drawn) colour family on the body, the drawn head signature."""
    spec = class_spec(class_id, num_classes, 2)
    head_class, family = draw_cues(rng, class_id, num_classes, part_dominance)
    head_spec = class_spec(head_class, num_classes, 2)
    body_poly, head_poly = _place_object(rng, head_spec.head_shape, size, V2_SCALE_RANGE, V2_SIDE_RANGE)
    head = _fill(size, [head_poly])
    mask = _fill(size, [body_poly]) | head
    rows, cols = np.nonzero(mask)
    obj_box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))

    canvas = _background(rng, size, V2_PALETTE)
    clutter = _clutter(canvas, obj_box, num_classes, rng, version=2)
    centre = body_poly.mean(axis=0)
    body_palette = np.array(list(COLOUR_FAMILIES.values())[family], np.float32)
    _paint_texture(canvas, mask & ~head, spec.texture, (float(centre[0]), float(centre[1])), rng, body_palette)
    canvas[head] = np.array(HEAD_COLOURS[head_spec.head_colour], np.float32) + rng.uniform(-12, 12, 3)
    return _finish(rng, canvas, mask, head, clutter, obj_box, head_class, family)


def _finish(
    rng: np.random.Generator,
    canvas: np.ndarray,
    mask: np.ndarray,
    head: np.ndarray,
    clutter: np.ndarray,
    obj_box: tuple[int, int, int, int],
    head_class: int,
    family: int,
) -> SynthSample:
    """Photometric jitter and sensor noise (so the JPEG is not trivially clean), then the sample."""
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, 3)
    canvas = canvas * gain + rng.uniform(-10, 10) + rng.normal(0.0, rng.uniform(2.0, 6.0), canvas.shape)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    box = (
        float(obj_box[0]),
        float(obj_box[1]),
        float(obj_box[2] - obj_box[0] + 1),
        float(obj_box[3] - obj_box[1] + 1),
    )
    return SynthSample(image, mask, head, clutter & ~mask, box, head_class, family)


def _render_v1(rng: np.random.Generator, class_id: int, size: int, num_classes: int) -> SynthSample:
    spec = class_spec(class_id, num_classes, 1)
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
    return _finish(rng, canvas, mask, head, clutter, obj_box, class_id, -1)


# ---------------------------------------------------------------------------------------------------------
# Writing the CUB-200-2011 layout


def expected_metadata(
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 500,
    size: int = 128,
    num_classes: int = 10,
    version: int = SYNTHLOC_VERSION,
    part_dominance: float = DEFAULT_PART_DOMINANCE,
) -> dict:
    """The synthloc.json content of a complete set made with these arguments. A folder whose
    synthloc.json differs in any field (another version, dial or size) is regenerated, never read."""
    _check_version(version)
    meta = {
        "name": "SynthLoc",
        "version": version,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "num_classes": num_classes,
        "num_images": n_train + n_val,
        "class_names": list(class_names(num_classes, version)),
    }
    if version >= 2:
        meta["part_dominance"] = float(part_dominance)
    return meta


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
    version: int = SYNTHLOC_VERSION,
    part_dominance: float = DEFAULT_PART_DOMINANCE,
) -> Path:
    """Write SynthLoc to `out` in the CUB-200-2011 layout and return `out`.

    Same arguments give byte-identical files. The set is built in a sibling temporary folder and
    renamed into place, with synthloc.json written last, so an interrupted run never looks complete.
    If `out` already holds a complete set with the same parameters (synthloc.json, version included) it
    is reused as is; a complete set made by another version or with other parameters is replaced by a
    fresh one. A folder with files but no synthloc.json is never touched (OutputExistsError, a FileExistsError).
    Arguments out of range are a ConfigError (a ValueError) before anything is written.
    """
    out = Path(out)
    _check_num_classes(num_classes)
    if n_train < num_classes or n_val < num_classes:
        raise ConfigError(
            f"n_train={n_train} and n_val={n_val} must each be at least num_classes={num_classes}, "
            "so every class appears in both splits."
        )
    if seed < 0:
        raise ConfigError(f"seed={seed} must be a non-negative integer.")
    if size < 32:
        raise ConfigError(f"size={size} is too small to draw objects with heads; use at least 32.")
    _check_version(version)
    _check_part_dominance(part_dominance)
    wanted = expected_metadata(seed, n_train, n_val, size, num_classes, version, part_dominance)
    describe = (
        f"version={version}, seed={seed}, n_train={n_train}, n_val={n_val}, size={size}, num_classes={num_classes}"
    )
    # A complete set made by another version or with other parameters is replaced (after the new one is complete).
    return cub_writer.generate_atomically(
        out, wanted, METADATA_FILE, "SynthLoc", lambda root: _write_layout(root, wanted, progress), describe,
        replace_stale=True,
    )  # fmt: skip


def _write_layout(root: Path, meta: dict, progress: bool) -> None:
    seed, size, num_classes = meta["seed"], meta["size"], meta["num_classes"]
    version, dial = meta["version"], meta.get("part_dominance", DEFAULT_PART_DOMINANCE)
    folders = [f"{c + 1:03d}.{name}" for c, name in enumerate(meta["class_names"])]
    plan = _plan(seed, meta["n_train"], meta["n_val"], num_classes)
    width = max(4, len(str(len(plan))))
    writer = cub_writer.CUBWriter(root, folders)
    for image_id, (class_id, index, is_train) in enumerate(tqdm(plan, desc="SynthLoc", disable=not progress), 1):
        sample = render_sample(np.random.default_rng([seed, 1, index]), class_id, size, num_classes, version, dial)
        stem = f"{folders[class_id]}/{meta['class_names'][class_id]}_{image_id:0{width}d}"
        writer.add(stem, class_id, is_train, sample.image, sample.mask, sample.box)
    writer.write_tables()  # synthloc.json, which marks the set complete, is written after this returns
