"""viz: the cached JET table gives what OpenCV's applyColorMap gives, pixel for pixel."""

import cv2
import numpy as np

from camexp.viz import heatmap_overlay, jet_rgb


def test_cached_jet_table_equals_apply_color_map():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    noise = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    for gray in (levels, noise, np.ascontiguousarray(noise[::2, 1:])):
        want = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        assert np.array_equal(jet_rgb(gray), want)
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cam = np.random.default_rng(2).random((37, 53)).astype(np.float32)
    heat = cv2.cvtColor(cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert np.array_equal(heatmap_overlay(image, cam), cv2.addWeighted(image, 0.5, heat, 0.5, 0))
