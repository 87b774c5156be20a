"""Pictures: CAM heatmap overlays with predicted (red) and ground-truth (green) boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

PRED_COLOR = (230, 40, 40)  # RGB
GT_COLOR = (40, 220, 40)


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


def draw_boxes(image: np.ndarray, boxes: np.ndarray, color: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    out = np.ascontiguousarray(image).copy()
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x1)) - 1, int(round(y1)) - 1), color, thickness)
    return out


def overlay_tile(
    image: np.ndarray, cam: np.ndarray, pred_box: np.ndarray | None, gt_boxes: np.ndarray | None, caption: str = ""
) -> np.ndarray:
    """One panel: heatmap, GT boxes (green), predicted box (red), caption strip below."""
    tile = heatmap_overlay(image, cam)
    if gt_boxes is not None:
        tile = draw_boxes(tile, gt_boxes, GT_COLOR)
    if pred_box is not None:
        tile = draw_boxes(tile, pred_box, PRED_COLOR)
    strip = np.full((14, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, caption[:40], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([tile, strip], axis=0)


def grid(tiles: Sequence[np.ndarray], columns: int = 8, pad: int = 2) -> np.ndarray:
    """Arrange equally sized RGB tiles in a white-padded grid."""
    if not tiles:
        return np.full((8, 8, 3), 255, np.uint8)
    h, w = tiles[0].shape[:2]
    columns = min(columns, len(tiles))
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    return canvas


def save_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
