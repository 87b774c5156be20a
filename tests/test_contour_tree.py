"""contour_tree: every contour of every level, checked against cv2.findContours level by level."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camexp.wsol.contour_tree import level_contours, level_largest, level_max


def opencv_contours(q: np.ndarray, level: int) -> list[tuple[int, int, int, int, int]]:
    """(x0, y0, x1, y1, 2 * area) of every contour of q >= level, as OpenCV traces them, sorted."""
    mask = (q >= level).astype(np.uint8) * 255
    found = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    rows = []
    for contour in found:
        x, y, w, h = cv2.boundingRect(contour)
        rows.append((x, y, x + w - 1, y + h - 1, round(2 * cv2.contourArea(contour))))
    return sorted(rows)


def tree_contours(q: np.ndarray, levels: np.ndarray) -> list[list[tuple[int, int, int, int, int]]]:
    found = level_contours(q, levels)
    per_level = []
    for k in range(levels.size):
        alive = (found.k0 <= k) & (k < found.k1)
        rows = zip(found.boxes[alive], found.area2[alive], strict=True)
        per_level.append(sorted((*map(int, b), int(a)) for b, a in rows))
    return per_level


def assert_same_as_opencv(q: np.ndarray) -> None:
    levels = np.unique(q)
    levels = levels[levels > 0].astype(np.int64)
    if levels.size == 0:
        return
    for level, ours in zip(levels, tree_contours(q, levels), strict=True):
        assert ours == opencv_contours(q, int(level)), f"level {level} of\n{(q >= level).astype(int)}"


def test_single_pixel_hole_is_a_diamond_of_area_two_inside_a_square_of_area_four():
    q = np.full((3, 3), 255, np.uint8)
    q[1, 1] = 0
    (contours,) = tree_contours(q, np.array([255]))
    # outer border: the 3x3 square through pixel centres (area 4); hole border: the diamond
    # through the four 4-neighbours (area 2), whose box spans the same 3x3 pixels.
    assert contours == [(0, 0, 2, 2, 4), (0, 0, 2, 2, 8)]
    assert_same_as_opencv(q)


def test_island_inside_a_hole_adds_its_area_to_the_outer_border_only():
    q = np.zeros((9, 9), np.uint8)
    q[1:8, 1:8] = 100  # ring ...
    q[2:7, 2:7] = 0  # ... with a 5x5 hole ...
    q[4, 4] = 200  # ... holding a one-pixel island
    assert_same_as_opencv(q)
    (at_100, at_200) = tree_contours(q, np.array([100, 200]))
    assert len(at_100) == 3 and len(at_200) == 1  # outer + hole + island, then the island alone
    assert at_200 == [(4, 4, 4, 4, 0)]


def test_diagonal_touching_is_one_component_for_the_foreground_but_splits_the_background():
    q = np.zeros((6, 6), np.uint8)
    q[1:5, 1:5] = 9
    q[2, 2] = q[3, 3] = 0  # two hole pixels touching at a corner: two 4-connected holes
    (contours,) = tree_contours(q, np.array([9]))
    assert len(contours) == 3
    assert_same_as_opencv(q)
    q = np.zeros((4, 4), np.uint8)
    q[1, 1] = q[2, 2] = 9  # two foreground pixels touching at a corner: one 8-connected blob
    (contours,) = tree_contours(q, np.array([9]))
    assert contours == [(1, 1, 2, 2, 0)]
    assert_same_as_opencv(q)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2)])
def test_tiny_and_one_pixel_wide_maps(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        assert_same_as_opencv((rng.integers(0, 3, size=shape) * 100).astype(np.uint8))


def test_blobs_touching_every_image_border():
    q = np.zeros((8, 10), np.uint8)
    q[0, :] = 50
    q[:, 0] = 60
    q[-1, 3:7] = 70
    q[2:5, -1] = 80
    q[3:6, 3:6] = 90
    q[4, 4] = 10  # a hole in the middle blob
    assert_same_as_opencv(q)


def test_equals_opencv_on_hundreds_of_random_maps_at_every_level():
    rng = np.random.default_rng(0)
    for trial in range(240):
        h, w = (int(v) for v in rng.integers(2, 24, size=2))
        kind = trial % 3
        if kind == 0:  # few levels, big flat zones, many holes
            q = rng.integers(0, 4, size=(h, w)).astype(np.uint8) * 60
        elif kind == 1:  # every pixel its own value
            q = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
        else:  # smooth, like an upsampled CAM
            small = rng.random((max(1, h // 4), max(1, w // 4)))
            q = (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
        assert_same_as_opencv(q)


def test_a_full_size_map_at_every_level():
    rng = np.random.default_rng(3)
    small = rng.random((28, 28))
    q = (cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
    assert_same_as_opencv(q)


def test_level_reductions():
    k0, k1 = np.array([0, 1, 0]), np.array([2, 3, 1])  # contour 0 at levels 0-1, 1 at 1-2, 2 at level 0
    scores = np.array([0.2, 0.7, 0.9])
    assert level_max(k0, k1, scores, 4)[:3].tolist() == [0.9, 0.7, 0.7]
    assert np.isnan(level_max(k0, k1, scores, 4)[3])
    best, ambiguous = level_largest(k0, k1, np.array([4, 4, 1]), scores, 3)
    assert best[0] == 0.2 and not ambiguous[0]  # largest area wins, not the best score
    assert ambiguous[1] and not ambiguous[2]  # a tie with different scores at level 1
    best, ambiguous = level_largest(k0, k1, np.array([4, 4, 1]), np.array([0.5, 0.5, 0.1]), 3)
    assert not ambiguous[1]  # tied areas, same score: nothing to decide


def test_bad_levels_are_refused():
    q = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="ascending"):
        level_contours(q, np.array([3, 2]))
    with pytest.raises(ValueError, match="2-D"):
        level_contours(np.zeros((2, 2, 2), np.uint8), np.array([1]))
