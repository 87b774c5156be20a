"""Pictures: CAM heatmap overlays with ground-truth (green), predicted (red) and heuristic (magenta) boxes,
wrapped captions, legend strips and grids. Every overlay the project saves is built here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

PRED_COLOR = (230, 40, 40)  # RGB
GT_COLOR = (40, 220, 40)
HEURISTIC_COLOR = (255, 0, 255)  # magenta: in neither JET nor the red/green pair
OUTLINE_COLOR = (0, 0, 0)  # around every box stroke, so a box stays visible on any heat colour
TEXT_COLOR = (0, 0, 0)

# Caption text: FONT_HERSHEY_SIMPLEX's capitals are about 22 px high at scale 1, so 0.5 gives ~11 px.
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
FONT_THICKNESS = 1
TEXT_MARGIN = 4  # px around text in a strip
LINE_GAP = 5  # px between lines


def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """N x 3 x H x W normalized floats -> N x H x W x 3 uint8 RGB."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    rgb = ((images * s + m).clamp(0, 1) * 255).round().byte()
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


# applyColorMap(COLORMAP_JET) is a lookup table, but it rebuilds the table on every call: build it once, in RGB.
_JET_RGB = np.ascontiguousarray(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[..., ::-1])


def heatmap_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] map (H x W) as a JET heatmap onto an RGB uint8 image."""
    heat = jet_rgb((np.clip(cam, 0, 1) * 255).astype(np.uint8))
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)


def jet_rgb(gray: np.ndarray) -> np.ndarray:
    """H x W uint8 -> H x W x 3 RGB: ``applyColorMap(gray, COLORMAP_JET)`` in RGB order, from the cached table."""
    return cv2.LUT(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), _JET_RGB)


# -- boxes -----------------------------------------------------------------------------------------------


def _fill_frame(out: np.ndarray, x0: int, y0: int, x1: int, y1: int, color, width: int) -> None:
    """Paint the `width`-pixel frame just inside the inclusive rectangle [x0, x1] x [y0, y1], clipped to `out`."""
    h, w = out.shape[:2]
    if x1 < x0 or y1 < y0:
        return

    def fill(a: int, b: int, c: int, d: int) -> None:  # rows a..b, columns c..d, inclusive
        a, b, c, d = max(a, 0), min(b, h - 1), max(c, 0), min(d, w - 1)
        if a <= b and c <= d:
            out[a : b + 1, c : d + 1] = color

    fill(y0, min(y0 + width - 1, y1), x0, x1)  # top
    fill(max(y1 - width + 1, y0), y1, x0, x1)  # bottom
    fill(y0, y1, x0, min(x0 + width - 1, x1))  # left
    fill(y0, y1, max(x1 - width + 1, x0), x1)  # right


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    color: tuple[int, int, int],
    thickness: int = 1,
    *,
    outline: tuple[int, int, int] | None = None,
    inset: int = 0,
) -> np.ndarray:
    """Draw xyxy boxes (x1, y1 exclusive) as `thickness`-pixel strokes on the box's own border pixels.
    outline: a 1-pixel line of this colour on both sides of the stroke (visible on any background);
    inset: keep the whole drawing (outline included) this many pixels inside the image edge, so a box
    covering the whole image reads as a box, not as the picture's frame."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    pad = inset + (1 if outline is not None else 0)  # first pixel the stroke itself may use
    for bx0, by0, bx1, by1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        x0, y0 = max(int(round(bx0)), pad), max(int(round(by0)), pad)
        x1, y1 = min(int(round(bx1)) - 1, w - 1 - pad), min(int(round(by1)) - 1, h - 1 - pad)
        if x1 < x0 or y1 < y0:
            continue
        if outline is not None:
            _fill_frame(out, x0 - 1, y0 - 1, x1 + 1, y1 + 1, outline, thickness + 2)
        _fill_frame(out, x0, y0, x1, y1, color, thickness)
    return out


# -- text ------------------------------------------------------------------------------------------------


def text_width(text: str, scale: float = FONT_SCALE) -> int:
    """Width in pixels of `text` as the strips draw it."""
    return cv2.getTextSize(text, FONT, scale, FONT_THICKNESS)[0][0]


def _line_height(scale: float = FONT_SCALE) -> tuple[int, int]:
    """(ascent, descent) of a text line in pixels."""
    (_, ascent), descent = cv2.getTextSize("Hg", FONT, scale, FONT_THICKNESS)
    return ascent, descent


def _abbreviate(word: str, width: int, scale: float) -> str:
    """The longest prefix of `word` ending in '.' that fits in `width` (at least one letter)."""
    for end in range(len(word) - 1, 0, -1):
        if text_width(word[:end] + ".", scale) <= width:
            return word[:end] + "."
    return word[:1] + "."


def _split_word(word: str, width: int, scale: float) -> list[str]:
    """A word wider than `width` as pieces that fit: broken after '_', '-', '/' or '.', and a piece that is
    still too wide abbreviated. A word that fits comes back whole."""
    if text_width(word, scale) <= width:
        return [word]
    pieces: list[str] = []
    for part in re.findall(r"[^_\-/.]+[_\-/.]*|[_\-/.]+", word):
        if pieces and text_width(pieces[-1] + part, scale) <= width:
            pieces[-1] += part
        else:
            pieces.append(part if text_width(part, scale) <= width else _abbreviate(part, width, scale))
    return pieces


def wrap_text(text: str, width: int, scale: float = FONT_SCALE) -> list[str]:
    """Greedy word wrap of `text` into lines no wider than `width` pixels. Lines break between words only;
    a single word wider than `width` is broken at '_' / '-' or, failing that, abbreviated."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        pieces = _split_word(word, width, scale)
        if len(pieces) > 1:  # an over-wide word: its first piece may end this line, the rest get their own
            if line and text_width(f"{line} {pieces[0]}", scale) <= width:
                pieces[0] = f"{line} {pieces[0]}"
            elif line:
                lines.append(line)
            lines += pieces[:-1]
            line = pieces[-1]
            continue
        word = pieces[0]  # the word, or its abbreviation
        candidate = f"{line} {word}" if line else word
        if line and text_width(candidate, scale) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def text_strip(width: int, text: str | Sequence[str], scale: float = FONT_SCALE, bold: bool = False) -> np.ndarray:
    """A white strip `width` pixels wide with `text` in black: a string is wrapped to the width, a sequence
    starts a new line at each item (each wrapped too). bold: heavier strokes, for headings."""
    paragraphs = [text] if isinstance(text, str) else list(text)
    lines = [line for p in paragraphs for line in wrap_text(p, width - 2 * TEXT_MARGIN, scale)]
    ascent, descent = _line_height(scale)
    step = ascent + descent + LINE_GAP
    strip = np.full((max(1, len(lines)) * step + 2 * TEXT_MARGIN - LINE_GAP, width, 3), 255, np.uint8)
    thickness = FONT_THICKNESS + (1 if bold else 0)
    for k, line in enumerate(lines):
        baseline = TEXT_MARGIN + k * step + ascent
        cv2.putText(strip, line, (TEXT_MARGIN, baseline), FONT, scale, TEXT_COLOR, thickness, cv2.LINE_AA)
    return strip


# -- panels, legends, grids ------------------------------------------------------------------------------


def _panel_size(width: int, height: int, min_width: int, max_width: int) -> tuple[int, int, int]:
    """(new width, new height, interpolation) for an image to be shown `min_width`..`max_width` wide; a small
    image is enlarged by the smallest whole factor that fits the range (crisp pixels) when there is one."""
    if min_width <= width <= max_width:
        return width, height, cv2.INTER_NEAREST
    if width < min_width:
        factor = -(-min_width // width)
        if width * factor <= max_width:
            return width * factor, height * factor, cv2.INTER_NEAREST
        new_width, interpolation = min_width, cv2.INTER_LINEAR
    else:
        new_width, interpolation = max_width, cv2.INTER_AREA
    return new_width, max(1, round(height * new_width / width)), interpolation


def overlay_panel(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    pred_boxes: np.ndarray | None = None,
    gt_boxes: np.ndarray | None = None,
    extra_boxes: np.ndarray | None = None,
    caption: str | Sequence[str] = "",
    min_width: int = 224,
    max_width: int = 448,
    box_thickness: int = 2,
) -> np.ndarray:
    """One RGB uint8 panel: the image (H x W x 3 uint8 RGB) scaled to a width in [min_width, max_width]
    (aspect kept), the [0, 1] map `cam` (H x W) blended on it as JET heat, then the boxes (K x 4 xyxy in
    the image's pixels, x1/y1 exclusive): GT in GT_COLOR, extra (e.g. Table 3's heuristic boxes) in
    HEURISTIC_COLOR, predicted in PRED_COLOR on top, each with a dark outline and one pixel inside the
    panel edge; below it the caption, wrapped to the panel's width (a sequence: one line per item)."""
    h, w = image.shape[:2]
    if cam.shape[:2] != (h, w):
        raise ValueError(f"cam is {cam.shape[:2]} but the image is {(h, w)}: upsample the CAM to the image first")
    new_w, new_h, interpolation = _panel_size(w, h, min_width, max_width)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        cam = cv2.resize(np.asarray(cam, np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    scale = np.array([new_w / w, new_h / h, new_w / w, new_h / h])
    panel = heatmap_overlay(np.ascontiguousarray(image), cam)
    for boxes, color in ((gt_boxes, GT_COLOR), (extra_boxes, HEURISTIC_COLOR), (pred_boxes, PRED_COLOR)):
        if boxes is not None and np.size(boxes):
            scaled = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
            panel = draw_boxes(panel, scaled, color, box_thickness, outline=OUTLINE_COLOR, inset=1)
    lines = [caption] if isinstance(caption, str) else list(caption)
    if any(line.strip() for line in lines):
        panel = np.concatenate([panel, text_strip(new_w, lines)], axis=0)
    return panel


def _box_swatch(color: tuple[int, int, int], size: tuple[int, int]) -> np.ndarray:
    """A small box drawn as overlay_panel draws boxes, on a mid-grey ground."""
    w, h = size
    swatch = np.full((h, w, 3), 160, np.uint8)
    return draw_boxes(swatch, np.array([[0, 0, w, h]]), color, 2, outline=OUTLINE_COLOR, inset=0)


def _heat_swatch(size: tuple[int, int]) -> np.ndarray:
    """The JET colour bar, low (left) to high (right), with a dark outline."""
    w, h = size
    bar = jet_rgb(np.repeat(np.linspace(0, 255, w).astype(np.uint8)[None, :], h, axis=0))
    return draw_boxes(bar, np.array([[0, 0, w, h]]), OUTLINE_COLOR, 1)


def legend_strip(
    width: int,
    entries: Sequence[tuple[str, tuple[int, int, int]]],
    note: str = "",
    *,
    heat_label: str | None = None,
) -> np.ndarray:
    """A white strip `width` pixels wide: per entry a box swatch in its colour (outlined, as the panels draw
    boxes) and its label, flowing onto more lines when they do not fit; then `note`, wrapped. heat_label:
    also a JET colour bar with this label (e.g. "CAM: low -> high") as the first entry."""
    ascent, descent = _line_height()
    row_h = ascent + descent + LINE_GAP
    swatch_size = (28, ascent + descent)
    items = [(_heat_swatch((48, ascent + descent)), heat_label)] if heat_label else []
    items += [(_box_swatch(color, swatch_size), label) for label, color in entries]
    usable = width - 2 * TEXT_MARGIN
    placed: list[tuple[np.ndarray, list[str], int, int]] = []  # swatch, label lines, x, line index
    x, line = TEXT_MARGIN, 0
    for swatch, label in items:
        label_lines = wrap_text(label, max(1, usable - swatch.shape[1] - 6)) or [""]
        item_w = swatch.shape[1] + 6 + max(text_width(t) for t in label_lines)
        if x > TEXT_MARGIN and x + item_w > width - TEXT_MARGIN:
            x, line = TEXT_MARGIN, line + max(1, max(len(p[1]) for p in placed if p[3] == line))
        placed.append((swatch, label_lines, x, line))
        x += item_w + 18
    entry_lines = (max(p[3] + len(p[1]) for p in placed)) if placed else 0
    note_lines = wrap_text(note, usable) if note else []
    height = (entry_lines + len(note_lines)) * row_h + 2 * TEXT_MARGIN - LINE_GAP
    strip = np.full((max(height, 1), width, 3), 255, np.uint8)
    for swatch, label_lines, x0, k in placed:
        top = TEXT_MARGIN + k * row_h
        sw = swatch[:, : max(0, width - x0)]
        strip[top : top + sw.shape[0], x0 : x0 + sw.shape[1]] = sw
        for j, text in enumerate(label_lines):
            baseline = top + j * row_h + ascent
            cv2.putText(strip, text, (x0 + swatch.shape[1] + 6, baseline), FONT, FONT_SCALE, TEXT_COLOR,
                        FONT_THICKNESS, cv2.LINE_AA)  # fmt: skip
    for j, text in enumerate(note_lines):
        baseline = TEXT_MARGIN + (entry_lines + j) * row_h + ascent
        cv2.putText(strip, text, (TEXT_MARGIN, baseline), FONT, FONT_SCALE, TEXT_COLOR, FONT_THICKNESS, cv2.LINE_AA)
    return strip


def _pad_to(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """`picture` in the top-left corner of a white height x width canvas."""
    h, w = picture.shape[:2]
    return np.pad(picture, ((0, height - h), (0, width - w), (0, 0)), constant_values=255)


def stack(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """Pictures one above the other, each padded white on the right to the widest."""
    width = max(p.shape[1] for p in pictures)
    return np.concatenate([_pad_to(p, p.shape[0], width) for p in pictures], axis=0)


def grid_width(tiles: Sequence[np.ndarray], columns: int = 8, pad: int = 2) -> int:
    """The width of `grid(tiles, columns, pad)` without a legend: the width to build its legend at."""
    if not tiles:
        return 8
    return min(columns, len(tiles)) * (max(t.shape[1] for t in tiles) + pad) + pad


def grid(
    tiles: Sequence[np.ndarray], columns: int = 8, pad: int = 2, legend: np.ndarray | None = None
) -> np.ndarray:
    """Arrange RGB tiles in a white-padded grid, each in a cell as large as the largest tile (tiles differ
    when captions wrap to different line counts). legend: a strip put on top (e.g. `legend_strip`)."""
    if not tiles:
        return legend if legend is not None else np.full((8, 8, 3), 255, np.uint8)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return canvas if legend is None else stack([legend, canvas])


# -- what the CAM overlays say ------------------------------------------------------------------------------


def cam_caption(
    gt_name: str,
    predicted_name: str | None = None,
    iou: float | None = None,
    iou_threshold: float = 0.5,
) -> list[str]:
    """Caption lines of one GT-class CAM overlay: the class whose CAM is shown; the top-1 prediction when it
    differs; whether the class was right and the predicted box's IoU with the best GT box, hit or miss
    (IoU >= iou_threshold). E.g. ["GT Hstripe_Red_Round", "pred Checker_Blue_Tri", "cls wrong, IoU 0.31 miss"]."""
    lines = [f"GT {gt_name}"]
    verdict = []
    if predicted_name is not None:
        if predicted_name != gt_name:
            lines.append(f"pred {predicted_name}")
        verdict.append("cls ok" if predicted_name == gt_name else "cls wrong")
    if iou is not None:
        shown = np.floor(iou * 100 + 1e-9) / 100  # truncated, so 0.499 reads "0.49 miss", not "0.50 miss"
        verdict.append(f"IoU {shown:.2f} {'hit' if iou >= iou_threshold else 'miss'}")
    return lines + ([", ".join(verdict)] if verdict else [])


def cam_legend(
    width: int,
    iou_threshold: float = 0.5,
    cam_threshold: float | None = None,
    method: str = "cam",
    heuristic: bool = False,
) -> np.ndarray:
    """The legend strip of GT-class map overlays (colours, and what `cam_caption` says). method="backprop":
    the heat is the gradient saliency of the GT class (the paper's Backprop baseline), not its CAM.
    heuristic: also name HEURISTIC_COLOR (panels given `extra_boxes` from Table 3's heuristic)."""
    heat = "gradient saliency" if method == "backprop" else "CAM"
    rule = f"paper rule, {heat} >= {cam_threshold:g} x max" if cam_threshold is not None else "paper rule"
    entries = [("ground-truth box", GT_COLOR), (f"predicted box ({rule})", PRED_COLOR)]
    if heuristic:
        entries.append(("Table 3 heuristic boxes (top-3 classes)", HEURISTIC_COLOR))
    note = (
        f"Heat: the {heat} of the ground-truth (GT) class. 'cls ok' / 'cls wrong': the top-1 class ('pred', "
        f"shown when wrong); 'IoU 0.62 hit': the predicted box's IoU with the best GT box, hit if >= {iou_threshold:g}."
    )
    return legend_strip(width, entries, note, heat_label=f"{heat}: low to high")


def encode_png(image: np.ndarray) -> bytes:
    """An RGB uint8 picture as PNG bytes (OpenCV's fast default compression)."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a {image.shape} {image.dtype} picture as PNG")
    return buffer.tobytes()


def save_png(image: np.ndarray, path: str | Path, png: bytes | None = None) -> Path:
    """Write an RGB uint8 picture to `path` (folders made); png: its `encode_png` bytes, if made already."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_bytes(png if png is not None else encode_png(image))
    except OSError as err:
        raise OSError(f"could not write {path}: {err}") from err
    return path
