"""Generated text images for the paper's weakly supervised text detector: text drawn onto real backgrounds.

Each background is a random crop of a packaged photo (camexp.data.photos). The positive is that background
with one word drawn on it by cv2.putText (one of several Hershey fonts, a random place, size, stroke, colour
and angle); the negative is the same background without it, so the only thing telling the two apart is the
text. The text box is exact: the bounding box of the pixels the drawing changed. Deterministic from the seed;
written as real files:

    out/positives/text_0000.jpg ...   the backgrounds with text
    out/negatives/plain_0000.jpg ...  the same backgrounds without
    out/boxes.txt                     '<file under positives/> x0 y0 x1 y1' (pixels, x1 = last column + 1)
    out/text.json                     the settings, so a second run with the same ones reuses the files
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camexp.data.photos import PHOTOS, photo
from camexp.errors import DatasetError

TEXT_VERSION = 2  # bump when what is drawn changes (2: letters sized by height)
FONTS = {
    "simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "plain": cv2.FONT_HERSHEY_PLAIN,
    "duplex": cv2.FONT_HERSHEY_DUPLEX,
    "complex": cv2.FONT_HERSHEY_COMPLEX,
    "triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "complex_small": cv2.FONT_HERSHEY_COMPLEX_SMALL,
    "script_simplex": cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    "italic_simplex": cv2.FONT_HERSHEY_SIMPLEX | cv2.FONT_ITALIC,
}
WORDS = (
    "OPEN", "EXIT", "SALE", "HOTEL", "CAFE", "STOP", "PARKING", "BAR", "PIZZA", "BANK", "TAXI", "SHOP", "BOOKS",
    "MARKET", "POLICE", "BAKERY", "Station", "Museum", "Pharmacy", "Tickets", "Welcome", "Theatre", "Garage",
)  # fmt: skip
COLOURS = np.array(
    [[255, 255, 255], [0, 0, 0], [230, 30, 30], [250, 220, 30], [30, 60, 220], [30, 170, 60], [250, 130, 0]],
    dtype=np.float64,
)
HEIGHT_RANGE = (0.12, 0.3)  # the letters' height, as a fraction of the image side (long words: less, to fit)
ANGLE_RANGE = (-30.0, 30.0)  # degrees
MARGIN = 0.03  # fraction of the side kept free of text at every edge


@dataclass
class TextSample:
    image: np.ndarray  # H x W x 3 uint8 RGB: the background with the text
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the changed pixels (x1 = last column + 1)
    mask: np.ndarray  # H x W bool: the pixels the drawing changed
    text: str
    font: str
    angle: float


def _word_layer(text: str, font: int, scale: float, thickness: int, angle: float) -> np.ndarray:
    """The word drawn in 255 on black (hard edges: every drawn pixel is a text pixel), rotated by `angle`
    degrees about its centre on a canvas large enough to hold it, cropped to the drawn pixels."""
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
    pad = thickness + 2
    layer = np.zeros((height + baseline + 2 * pad, width + 2 * pad), np.uint8)
    cv2.putText(layer, text, (pad, pad + height), font, scale, 255, thickness, cv2.LINE_8)
    h, w = layer.shape
    side = int(math.ceil(math.hypot(h, w))) + 2
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rotation[:, 2] += (side / 2 - w / 2, side / 2 - h / 2)  # centre the word on the square canvas
    rotated = cv2.warpAffine(layer, rotation, (side, side), flags=cv2.INTER_NEAREST)
    rows, cols = np.flatnonzero(rotated.any(1)), np.flatnonzero(rotated.any(0))
    return rotated[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] > 0


def _colour_order(rng: np.random.Generator, pixels: np.ndarray) -> list[np.ndarray]:
    """COLOURS to draw with, first choice first: one of the three farthest from the mean colour under the text
    (legible, still varied), then the rest by distance."""
    order = list(np.argsort(-np.linalg.norm(COLOURS - pixels.reshape(-1, 3).mean(0), axis=1)))
    first = order.pop(int(rng.integers(3)))
    return [COLOURS[i].astype(np.uint8) for i in (first, *order)]


def render_text(background: np.ndarray, rng: np.random.Generator, words: tuple[str, ...] = WORDS) -> TextSample:
    """`background` (H x W x 3 uint8 RGB, untouched) with one word drawn on it: a random word, font, stroke and
    colour, letters HEIGHT_RANGE of the image high (smaller where the word would not fit), turned by an angle in
    ANGLE_RANGE, placed at random inside a MARGIN border. The box is the bounding box of the pixels that changed."""
    height, width = background.shape[:2]
    text = str(words[rng.integers(len(words))])
    font_name = list(FONTS)[rng.integers(len(FONTS))]
    font = FONTS[font_name]
    angle = float(rng.uniform(*ANGLE_RANGE))
    target = rng.uniform(*HEIGHT_RANGE) * height
    margin = max(1, round(MARGIN * min(height, width)))
    for _ in range(30):  # shrink until the turned word fits inside the margins
        scale = target / cv2.getTextSize(text, font, 1.0, 1)[0][1]
        thickness = max(1, round(scale * rng.uniform(1.0, 2.5)))
        word = _word_layer(text, font, scale, thickness, angle)
        if word.shape[0] <= height - 2 * margin and word.shape[1] <= width - 2 * margin:
            break
        target *= 0.85
    else:
        raise ValueError(f"cannot fit a word into a {width} x {height} image")
    y0 = int(rng.integers(margin, height - margin - word.shape[0] + 1))
    x0 = int(rng.integers(margin, width - margin - word.shape[1] + 1))
    drawn = np.zeros((height, width), dtype=bool)
    drawn[y0 : y0 + word.shape[0], x0 : x0 + word.shape[1]] = word
    image = background.copy()
    for colour in _colour_order(rng, background[drawn]):  # the next one only if the word vanished in this one
        image[drawn] = colour
        changed = (image != background).any(axis=2)  # a drawn pixel already of the text colour did not change
        if changed.any():
            break
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return TextSample(image, box, changed, text, font_name, angle)


def packaged_photos() -> list[np.ndarray]:
    """The packaged photos as RGB arrays, in PHOTOS order."""
    from camexp.data.images import load_rgb

    return [np.asarray(load_rgb(photo(name))) for name in PHOTOS]


def photo_crop(rng: np.random.Generator, photos: list[np.ndarray], size: int) -> np.ndarray:
    """A random square crop (a third to all of the short side) of a random photo, maybe mirrored, size x size."""
    image = photos[rng.integers(len(photos))]
    h, w = image.shape[:2]
    side = int(rng.uniform(0.35, 1.0) * min(h, w))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = image[y0 : y0 + side, x0 : x0 + side]
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


def text_metadata(n: int, size: int, seed: int) -> dict:
    return {"name": "text", "version": TEXT_VERSION, "n": int(n), "size": int(size), "seed": int(seed)}


def generate_text_set(out: str | Path, n: int = 80, size: int = 224, seed: int = 0, progress: bool = True) -> Path:
    """Write n positives, n negatives (the same backgrounds) and boxes.txt under `out` (layout above); a set
    already there with the same settings is kept as it is. Image i depends on (seed, i) only."""
    from PIL import Image
    from tqdm import tqdm

    if n < 2 or size < 32:
        raise DatasetError(f"A text set needs n >= 2 backgrounds and size >= 32 pixels; got n={n}, size={size}.")
    out = Path(out)
    wanted = text_metadata(n, size, seed)
    meta = out / "text.json"
    if meta.is_file():
        try:
            found = json.loads(meta.read_text())
        except ValueError:
            found = None
        if found == wanted:
            return out
    elif out.exists() and any(out.iterdir()):
        raise DatasetError(
            f"{out} exists but holds no text set (no text.json): choose an empty or new folder for the text demo, "
            f"or delete {out}."
        )
    for folder in ("positives", "negatives"):
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir(parents=True)
    photos = packaged_photos()
    lines = ["# <file under positives/> x0 y0 x1 y1: the text's pixel box, x1 / y1 = last column / row + 1"]
    for i in tqdm(range(n), desc="text images", unit="img", disable=None if progress else True):
        rng = np.random.default_rng([seed, i])
        background = photo_crop(rng, photos, size)
        sample = render_text(background, rng)
        name = f"text_{i:04d}.jpg"
        Image.fromarray(sample.image).save(out / "positives" / name, quality=95)
        Image.fromarray(background).save(out / "negatives" / f"plain_{i:04d}.jpg", quality=95)
        lines.append(f"{name} {' '.join(map(str, sample.box))}")
    (out / "boxes.txt").write_text("\n".join(lines) + "\n")
    meta.write_text(json.dumps(wanted, indent=1) + "\n")  # last: a killed run leaves no text.json
    return out
