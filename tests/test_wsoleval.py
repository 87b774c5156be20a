"""The wsoleval protocol (Choe et al., CVPR 2020): hand-checked rules, and fast path == reference port."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import wsoleval_reference as R

from camexp.wsol import protocol as W

HALF = np.array([0.5])  # one CAM threshold: foreground = q > int(0.5 * 255) = 127
REAL_COST_MODEL = W._prefer_tracing  # before the fixture below replaces it in each test


@pytest.fixture(autouse=True, params=["tracing", "trees"])
def strategy(request, monkeypatch):
    """Every test runs with both exact strategies of the fast path forced in turn (the cost model only
    picks between them), so each one is held to the hand-checked values and to the reference."""
    monkeypatch.setattr(W, "_prefer_tracing", lambda levels, level_ids: request.param == "tracing")
    return request.param


def blocks(shape: tuple[int, int], *rects: tuple[int, int, int, int], value: float = 1.0) -> np.ndarray:
    """A normalized map with `value` on the given inclusive (x0, y0, x1, y1) pixel rectangles."""
    m = np.zeros(shape)
    for x0, y0, x1, y1 in rects:
        m[y0 : y1 + 1, x0 : x1 + 1] = value
    return m


def boxes_at(scoremap: np.ndarray, multi: bool, thresholds=HALF) -> list[list[int]]:
    """The reference port's boxes at a single threshold, as plain lists."""
    found, _ = R.reference_compute_bboxes_from_scoremaps(scoremap, list(thresholds), multi)
    return found[0].tolist()


# ---------------------------------------------------------------------------------------------
# Hand-checked rules
# ---------------------------------------------------------------------------------------------


def test_box_extends_one_past_the_blob_and_clips_at_the_image_border():
    # Blob x 6..9 (touches the right border of a 10-wide map), y 3..5.
    m = blocks((10, 10), (6, 3, 9, 5))
    # boundingRect is (6, 3, w=4, h=3): x + w = 10 -> min(10, W - 1) = 9; y + h = 6 stays.
    assert boxes_at(m, multi=False) == [[6, 3, 9, 6]]
    gt = np.array([[6, 3, 9, 6]])
    assert W.best_iou_per_threshold(m, gt, multi_contour=False, thresholds=HALF).tolist() == [1.0]
    # Against the blob's own extent the +1 convention costs a row: 12 / 16 pixels.
    best = W.best_iou_per_threshold(m, np.array([[6, 3, 9, 5]]), multi_contour=True, thresholds=HALF)
    assert best.tolist() == [12 / 16]


def test_ring_hole_border_is_an_extra_box_only_in_multi_contour_mode():
    # 6x6 ring (x, y 2..7) around a 2x2 hole (x, y 4..5).
    m = blocks((10, 10), (2, 2, 7, 7))
    m[4:6, 4:6] = 0
    outer = [2, 2, 8, 8]  # boundingRect (2, 2, 6, 6) -> x + w = 8
    hole = [3, 3, 7, 7]  # the hole border runs through x, y 3..6 -> boundingRect (3, 3, 4, 4)
    assert boxes_at(m, multi=False) == [outer]
    assert sorted(boxes_at(m, multi=True)) == sorted([outer, hole])
    gt = np.array([hole])
    v1 = W.box_hits_per_threshold(m, gt, (30, 50, 70), multi_contour=False, thresholds=HALF)
    v2 = W.box_hits_per_threshold(m, gt, (30, 50, 70), multi_contour=True, thresholds=HALF)
    # V1: IoU(outer, hole) = 25 / 49 -> hit at 30 and 50, miss at 70; V2 matches the hole exactly.
    assert v1[:, 0].tolist() == [True, True, False]
    assert v2[:, 0].tolist() == [True, True, True]


def test_equal_contour_areas_pick_the_first_contour_opencv_lists():
    m = blocks((12, 12), (7, 1, 9, 3), (1, 6, 3, 8))  # two 3x3 squares, contour area 4 each
    mask = ((m * 255).astype(np.uint8) > 127).astype(np.uint8) * 255
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    assert [cv2.contourArea(c) for c in contours] == [4.0, 4.0]
    x, y, w, h = cv2.boundingRect(contours[0])
    first = [x, y, x + w, y + h]
    assert first in ([7, 1, 10, 4], [1, 6, 4, 9])
    assert boxes_at(m, multi=False) == [first]
    # The fast path agrees: it hits the first square's box exactly and not the other one.
    other = [7, 1, 10, 4] if first == [1, 6, 4, 9] else [1, 6, 4, 9]
    assert W.best_iou_per_threshold(m, np.array([first]), False, HALF).tolist() == [1.0]
    assert W.best_iou_per_threshold(m, np.array([other]), False, HALF).tolist() == [0.0]
    assert W.best_iou_per_threshold(m, np.array([other]), True, HALF).tolist() == [1.0]


def test_trees_leave_only_levels_with_tied_largest_contours_to_opencv(monkeypatch):
    monkeypatch.setattr(W, "_prefer_tracing", lambda levels, level_ids: False)  # the tree strategy
    traced = []
    opencv_pick = W._largest_contour_ious_by_opencv

    def counting_pick(levels, ids, gt):
        traced.append(ids.size)
        return opencv_pick(levels, ids, gt)

    monkeypatch.setattr(W, "_largest_contour_ious_by_opencv", counting_pick)
    two_equal = blocks((12, 12), (7, 1, 9, 3), (1, 6, 3, 8))
    W.best_iou_per_threshold(two_equal, np.array([[7, 1, 10, 4]]), False, HALF)
    assert traced == [1]  # the tie decides the IoU: OpenCV's order picks
    W.best_iou_per_threshold(two_equal, np.array([[0, 0, 11, 11]]), False, HALF)
    assert traced == [1]  # both boxes score the same against this GT: nothing to decide
    W.best_iou_per_threshold(blocks((20, 20), (1, 1, 3, 3), (5, 8, 14, 17)), np.array([[5, 8, 15, 18]]), False, HALF)
    assert traced == [1]


def test_cost_model_traces_smooth_maps_on_coarse_grids_and_builds_trees_for_noise():
    rng = np.random.default_rng(0)
    smooth = W.normalize_scoremap(rng.random((7, 7)))
    noise = W.normalize_scoremap(rng.random((56, 56)))
    for scoremap, grid, tracing in ((smooth, 0.05, True), (noise, 0.001, False)):
        levels = W._Levels(W.quantize_scoremap(scoremap), W.default_thresholds(grid))
        ids = np.flatnonzero(~levels.empty)
        assert REAL_COST_MODEL(levels, ids) is tracing


def test_largest_contour_wins_over_an_earlier_smaller_one():
    m = blocks((20, 20), (1, 1, 3, 3), (5, 8, 14, 17))  # 3x3 square on top, 10x10 below
    assert boxes_at(m, multi=False) == [[5, 8, 15, 18]]
    assert W.best_iou_per_threshold(m, np.array([[5, 8, 15, 18]]), False, HALF).tolist() == [1.0]


@pytest.mark.parametrize("cam", [np.full((14, 14), 3.0), np.where(np.eye(14) > 0, np.nan, 1.0)])
def test_constant_or_nan_map_gives_zeros_and_the_empty_box(cam):
    m = W.normalize_scoremap(cam)
    assert m.shape == (224, 224) and m.dtype == np.float64 and not m.any()
    assert np.array_equal(m, R.reference_normalize_scoremap(cam))
    assert boxes_at(m, multi=True) == [[0, 0, 0, 0]]
    # Box (0, 0, 0, 0) is one pixel: IoU with (0, 0, 9, 9) is 1 / 100 at every threshold.
    best = W.best_iou_per_threshold(m, np.array([[0, 0, 9, 9]]), True)
    assert best.shape == (1000,) and np.all(best == 1 / 100)
    assert W.best_iou_per_threshold(m, np.array([[0, 0, 0, 0]]), False).min() == 1.0
    assert not W.box_hits_per_threshold(m, np.array([[0, 0, 9, 9]])).any()


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_value_gives_zeros_where_the_reference_is_undefined(value):
    """The reference's min-max of a map with +-inf leaves NaN pixels (then cast to arbitrary uint8 values);
    normalize_scoremap scores such a map (a network's overflow) as NaN maps are scored: all zeros, no box."""
    cam = smooth_map_14()
    cam[3, 4] = value
    assert np.isnan(R.reference_normalize_scoremap(cam)).any()  # what upstream would go on with
    m = W.normalize_scoremap(cam)
    assert m.shape == (224, 224) and np.isfinite(m).all() and not m.any()
    assert boxes_at(m, multi=True) == [[0, 0, 0, 0]]


def smooth_map_14() -> np.ndarray:
    yy, xx = np.mgrid[0:14, 0:14]
    return np.exp(-((yy - 6.0) ** 2 + (xx - 8.0) ** 2) / 8.0)


def test_cut_is_truncated_fraction_of_the_quantized_max():
    # q values 0, 100, 200; max 200. tau = 0.5 -> cut int(100.0) = 100 -> only 200 survives.
    m = blocks((10, 10), (1, 1, 2, 2), value=100 / 255 + 1e-9)
    m[6:8, 6:8] = 200 / 255 + 1e-9
    assert (m * 255).astype(np.uint8).max() == 200
    assert boxes_at(m, True, [0.5]) == [[6, 6, 8, 8]]  # q > 100: the 100-block is out
    both = sorted([[6, 6, 8, 8], [1, 1, 3, 3]])
    assert sorted(boxes_at(m, True, [0.499])) == both  # int(99.8) = 99: q > 99 keeps both
    gt = np.array([[1, 1, 3, 3]])
    best = W.best_iou_per_threshold(m, gt, True, [0.499, 0.5])
    assert best.tolist() == [1.0, 0.0]


def test_resize_gt_boxes_truncates_like_the_reference():
    boxes = np.array([[10, 20, 333, 199], [0, 0, 499, 374]])
    got = W.resize_gt_boxes(boxes, image_wh=(500, 375))
    want = [R.reference_resize_bbox(b, (500, 375), (224, 224)) for b in boxes]
    assert got.tolist() == [list(b) for b in want]
    assert got.tolist()[1] == [0, 0, int(499 * 224 / 500), int(374 * 224 / 375)] == [0, 0, 223, 223]


def test_normalize_scoremap_matches_reference_for_float32_and_nonsquare_input():
    rng = np.random.default_rng(1)
    for shape in [(14, 14), (7, 9), (28, 28)]:
        cam = rng.normal(size=shape).astype(np.float32)
        got = W.normalize_scoremap(cam)
        assert np.array_equal(got, R.reference_normalize_scoremap(cam))
        assert got.min() == 0.0 and got.max() == 1.0


def test_invalid_inputs_fail_with_a_clear_message():
    m = np.zeros((8, 8))
    with pytest.raises(ValueError, match="normalize"):
        W.box_hits_per_threshold(m + 2.0, np.array([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="x1 >= x0"):
        W.box_hits_per_threshold(m, np.array([[5, 0, 1, 1]]))
    with pytest.raises(ValueError, match="at least one GT box"):
        W.box_hits_per_threshold(m, np.zeros((0, 4)))


def test_maxboxacc_and_heldout_helpers_by_hand():
    # 4 images, 3 IoU rows, 5 thresholds.
    counts = np.array(
        [
            [1, 3, 4, 2, 0],
            [0, 2, 3, 3, 1],
            [0, 1, 1, 2, 0],
        ]
    )
    result = W.maxboxacc_from_hits(counts, 4, (30, 50, 70), thresholds=[0.0, 0.2, 0.4, 0.6, 0.8])
    assert result["accuracy"] == {30: 100.0, 50: 75.0, 70: 50.0}
    assert result["best_index"] == {30: 2, 50: 2, 70: 3}  # ties: first threshold
    assert result["best_threshold"] == {30: 0.4, 50: 0.4, 70: 0.6}
    assert result["mean"] == 75.0
    assert result["accuracy"][50] == R.reference_maxboxacc(counts, 4)[1]
    # Held out: pick on this split (sum over rows: [1, 6, 8, 7, 1] -> index 2), apply elsewhere.
    index = W.select_threshold_index(counts)
    assert index == 2
    other = np.array([[2, 2, 1, 0, 0], [1, 2, 1, 0, 0], [0, 1, 1, 0, 0]])
    at = W.accuracy_at_threshold_index(other, 2, index, (30, 50, 70))
    assert at["accuracy"] == {30: 50.0, 50: 50.0, 70: 50.0} and at["mean"] == 50.0


def test_pxap_perfect_and_by_hand():
    m = np.array([[0.9, 0.8], [0.2, 0.1]])
    mask = np.array([[1, 1], [0, 255]], dtype=np.uint8)  # 255 = ignored
    fg, bg = W.pixel_histograms(m, mask)
    assert fg.dtype == np.int64 and fg.shape == (1002,) and fg.sum() == 2 and bg.sum() == 1
    assert W.pxap_from_histograms(fg, bg) == 100.0
    # Swapped roles: going down the thresholds, 0.9 and 0.8 are false positives, then 0.2
    # (precision 1/3, recall 1/2) and 0.1 (precision 2/4, recall 1): AP = 1/3 * 1/2 + 2/4 * 1/2.
    fg2, bg2 = W.pixel_histograms(m, np.array([[0, 0], [1, 1]], dtype=np.uint8))
    ref = R.reference_pxap(*R.reference_pixel_histograms(m, np.array([[0, 0], [1, 1]])))
    assert W.pxap_from_histograms(fg2, bg2) == ref == pytest.approx(100 * (0.5 * 1 / 3 + 0.5 * 2 / 4))
    with pytest.raises(RuntimeError, match="No positive ground truth"):
        W.pxap_from_histograms(np.zeros(1002), bg)


# ---------------------------------------------------------------------------------------------
# Fast path == reference port, on many random smooth maps
# ---------------------------------------------------------------------------------------------


def random_cam(rng: np.random.Generator, kinds=(0, 1, 2), max_side: int = 30) -> np.ndarray:
    """A raw CAM: plain noise (0), a sum of gaussians (1), or gaussians plus noise (2), random size."""
    kind = rng.choice(kinds)
    h, w = int(rng.integers(3, max_side)), int(rng.integers(3, max_side))
    if kind == 0:
        return rng.random((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    cam = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.5, max(h, w) / 2)
        cam += rng.uniform(-0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    if kind == 2:
        cam += rng.uniform(0, 0.5) * rng.random((h, w))
    return cam


def random_gt(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    n = int(rng.integers(1, 4))
    xs = np.sort(rng.integers(0, width, size=(n, 2)), axis=1)
    ys = np.sort(rng.integers(0, height, size=(n, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def assert_same_as_reference(scoremap, gt, thresholds, multi):
    ref_best = R.reference_best_iou_per_threshold(scoremap, gt, multi, list(thresholds))
    assert np.array_equal(W.best_iou_per_threshold(scoremap, gt, multi, thresholds), ref_best)
    ref_hits = R.reference_count_hits(ref_best, (30, 50, 70))
    got = W.box_hits_per_threshold(scoremap, gt, (30, 50, 70), multi, thresholds)
    assert got.dtype == bool and np.array_equal(got, ref_hits.astype(bool))
    return ref_hits


def test_fast_path_equals_reference_on_300_small_random_maps():
    rng = np.random.default_rng(0)
    for i in range(300):
        size = (int(rng.integers(8, 72)), int(rng.integers(8, 72)))
        scoremap = W.normalize_scoremap(random_cam(rng), size=size)
        gt = random_gt(rng, *size)
        thresholds = np.sort(rng.random(40)) if i % 3 else W.default_thresholds(0.025)
        for multi in (False, True):
            assert_same_as_reference(scoremap, gt, thresholds, multi)
        v1, v2 = W.box_hits_v1_v2(scoremap, gt, (50,), (30, 50, 70), thresholds)
        assert np.array_equal(v1, W.box_hits_per_threshold(scoremap, gt, (50,), False, thresholds))
        assert np.array_equal(v2, W.box_hits_per_threshold(scoremap, gt, (30, 50, 70), True, thresholds))


def test_fast_path_equals_reference_on_full_grid_224():
    """The real protocol: 224 x 224 maps, the 1000-threshold grid, streamed into MaxBoxAcc."""
    rng = np.random.default_rng(7)
    thresholds = W.default_thresholds()
    sums = {False: np.zeros((3, 1000)), True: np.zeros((3, 1000))}
    ref_sums = {False: np.zeros((3, 1000)), True: np.zeros((3, 1000))}
    n = 22
    for i in range(n):
        # 20 CAM-like maps (7..14 px, as a 224 input gives) and 2 noisy ones with many contours.
        cam = random_cam(rng, kinds=(1, 2), max_side=15) if i < 20 else rng.random((20, 20))
        scoremap = W.normalize_scoremap(cam)
        gt = random_gt(rng, 224, 224)
        for multi in (False, True):
            ref_sums[multi] += assert_same_as_reference(scoremap, gt, thresholds, multi)
            sums[multi] += W.box_hits_per_threshold(scoremap, gt, multi_contour=multi)
    for multi in (False, True):
        got = W.maxboxacc_from_hits(sums[multi], n)
        want = R.reference_maxboxacc(ref_sums[multi], n)
        assert [got["accuracy"][t] for t in (30, 50, 70)] == want
        assert got["mean"] == np.average(want)


def test_pixel_histograms_and_pxap_equal_reference():
    rng = np.random.default_rng(3)
    fg_sum = np.zeros(1002, dtype=np.int64)
    bg_sum = np.zeros(1002, dtype=np.int64)
    ref_fg = np.zeros(1002)
    ref_bg = np.zeros(1002)
    for i in range(30):
        scoremap = W.normalize_scoremap(random_cam(rng), size=(64, 48))
        if i % 5 == 0:  # values sitting exactly on bin edges, including 1.0
            scoremap = W.default_thresholds()[rng.integers(0, 1000, size=scoremap.shape)]
            scoremap[0, 0] = 1.0
        mask = (rng.random(scoremap.shape) < 0.4).astype(np.uint8)
        mask[rng.random(scoremap.shape) < 0.1] = 255
        fg, bg = W.pixel_histograms(scoremap, mask)
        rfg, rbg = R.reference_pixel_histograms(scoremap, mask)
        assert np.array_equal(fg, rfg) and np.array_equal(bg, rbg)
        fg_sum += fg
        bg_sum += bg
        ref_fg += rfg
        ref_bg += rbg
    assert W.pxap_from_histograms(fg_sum, bg_sum) == R.reference_pxap(ref_fg, ref_bg)
    # A coarser, non-uniform threshold list goes through the exact fallback.
    thresholds = np.sort(rng.random(17))
    fg, bg = W.pixel_histograms(scoremap, mask, thresholds)
    rfg, rbg = R.reference_pixel_histograms(scoremap, mask, list(thresholds))
    assert np.array_equal(fg, rfg) and np.array_equal(bg, rbg)


def test_largest_contour_ties_follow_the_reference_on_random_copies():
    """Maps made of copies of one random blob: every level has equal-area contours to choose from."""
    rng = np.random.default_rng(11)
    thresholds = W.default_thresholds(0.05)
    for _ in range(40):
        h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
        blob = rng.random((h, w)) * (rng.random((h, w)) < 0.8)
        scoremap = np.zeros((48, 48))
        for _ in range(int(rng.integers(2, 6))):
            y, x = int(rng.integers(0, 48 - h)), int(rng.integers(0, 48 - w))
            scoremap[y : y + h, x : x + w] = np.maximum(scoremap[y : y + h, x : x + w], blob)
        scoremap /= scoremap.max()
        gt = random_gt(rng, 48, 48)
        for multi in (False, True):
            assert_same_as_reference(scoremap, gt, thresholds, multi)
