import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from camexp.cam import normalize_cams
from camexp.localization import (
    best_iou_per_image,
    box_hits_sweep,
    boxes_from_cams,
    iou,
    paired_iou,
    paper_boxes_and_sweep,
)


def largest_component_box(mask: np.ndarray) -> np.ndarray:
    """The paper rule's box by its definition: bounding box (xyxy, float32) of the largest 8-connected
    component of a boolean mask, ties to the component met first in raster order, (0, 0, 0, 0) when empty."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(4, dtype=np.float32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    x, y, w, h = stats[best, :4]
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def test_two_blobs_the_larger_wins():
    cam = torch.zeros(1, 40, 50)
    cam[0, 2:6, 3:8] = 1.0  # 4 x 5 = 20 px, brightest
    cam[0, 20:35, 10:30] = 0.6  # 15 x 20 = 300 px
    box = boxes_from_cams(cam, threshold=0.2)[0]
    assert box.tolist() == [10, 20, 30, 35]


def test_pixel_exactly_at_threshold_is_kept():
    cam = torch.zeros(1, 10, 10)
    cam[0, 4, 4] = 1.0
    cam[0, 4, 5] = 0.2  # exactly 20% of the max (min is 0): kept, extends the component
    cam[0, 4, 6] = 0.19999  # just below: dropped
    assert boxes_from_cams(cam, 0.2)[0].tolist() == [4, 4, 6, 5]


def test_min_max_normalization_before_threshold():
    # a map with an offset: "20% of the max" is taken after min-max normalization (as the paper's release)
    cam = torch.full((1, 8, 8), 10.0)
    cam[0, 1:3, 1:3] = 20.0
    cam[0, 5, 5] = 11.0  # 10% of the way from min to max: below threshold
    assert boxes_from_cams(cam, 0.2)[0].tolist() == [1, 1, 3, 3]


def test_constant_map_gives_empty_box():
    assert boxes_from_cams(torch.ones(2, 5, 5), 0.2).tolist() == [[0, 0, 0, 0]] * 2


def test_map_with_a_nan_or_an_infinite_value_gives_empty_box():
    # as normalize_cams makes such a map all zeros: no foreground, whichever function sees it first
    cams = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    cams[0, 2, 3], cams[1, 5, 5], cams[2, 1, 1] = float("inf"), -float("inf"), float("nan")
    assert boxes_from_cams(cams, 0.2).tolist() == [[0, 0, 0, 0]] * 3
    assert boxes_from_cams(normalize_cams(cams), 0.2).tolist() == [[0, 0, 0, 0]] * 3


def test_equal_components_tie_to_first_in_raster_order():
    mask = np.zeros((10, 10), bool)
    mask[6:8, 1:3] = True
    mask[1:3, 6:8] = True  # same area, earlier in raster order
    assert largest_component_box(mask).tolist() == [6, 1, 8, 3]


def test_diagonal_pixels_are_connected():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True
    assert largest_component_box(mask).tolist() == [1, 1, 4, 4]


def test_iou_agrees_with_torchvision():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=gen) * 100
    wh = torch.rand(30, 2, generator=gen) * 50 + 1
    a = torch.cat([xy, xy + wh], 1)
    b = a.roll(3, 0) + 5
    torch.testing.assert_close(iou(a, b), box_iou(a, b))
    assert iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]])).item() == pytest.approx(50 / 150)


def test_best_iou_takes_any_gt_box_and_ignores_padding():
    pred = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    gt = torch.tensor(
        [
            [[50.0, 50, 60, 60], [0, 0, 10, 20], [0, 0, 10, 10]],  # third row is padding (count 2)
            [[0.0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 0, 0]],
        ]
    )
    best = best_iou_per_image(pred, gt, torch.tensor([2, 1]))
    assert best.tolist() == pytest.approx([0.5, 1.0])
    assert best_iou_per_image(pred, gt, torch.tensor([0, 1]))[0].item() == -1


def test_release_boxes_sorted_by_area_and_clamped_inside_border():
    from camexp.localization import release_boxes

    heat = np.zeros((64, 64), np.uint8)
    heat[10:40, 10:50] = 200  # big blob, above all three thresholds
    heat[50:64, 5:15] = 60  # small blob touching the bottom border: only above threshold 20
    boxes = release_boxes(heat)
    assert boxes[0].tolist() == [10, 10, 50, 40]
    # the small blob's box is clamped 5 px inside the image: y + h <= H - 5
    assert [5, 50, 15, 59] in boxes.tolist()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert (np.diff(areas) <= 0).all()


def test_release_thinning_splits_blobs_joined_by_a_thin_bridge():
    from camexp.localization import release_boxes

    # thinning drops pixels closer to the background than 10/255 of the largest distance (here 40 px):
    # the 1-px-from-background pixels of a 2-px bridge go, the 80 x 80 blobs stay
    heat = np.zeros((200, 200), np.uint8)
    heat[10:90, 5:85] = 255
    heat[10:90, 105:185] = 255
    heat[49:51, 85:105] = 255  # 2-px bridge: one component before thinning, two after
    boxes = release_boxes(heat).tolist()
    assert any(b[2] <= 85 for b in boxes) and any(b[0] >= 105 for b in boxes)  # one box per blob
    assert all(b[2] <= 85 or b[0] >= 105 for b in boxes)  # no box spans the bridge


def test_heuristic_top5_interleaves_loose_and_tight():
    from camexp.localization import heuristic_top5, heuristic_top5_hits

    big = np.zeros((64, 64))
    big[8:48, 8:48] = 0.35  # 89/255: above threshold 20 only -> the loose box
    big[20:30, 20:30] = 1.0  # above 100 and 110 -> the tight box
    other = np.zeros((64, 64))
    other[0:20, 40:60] = 1.0
    guesses = heuristic_top5(np.stack([big, other, other]))
    assert guesses.shape == (5, 4)
    assert guesses[0].tolist() == [8, 8, 48, 48]  # c1 loose
    assert guesses[1].tolist() == [20, 20, 30, 30]  # c1 tight
    assert guesses[2].tolist() == guesses[4].tolist()  # c2 loose and c3 loose: same map here

    cams = torch.from_numpy(np.stack([np.stack([big, other, other])] * 2)).float()
    top3 = torch.tensor([[3, 1, 2], [1, 2, 3]])
    labels = torch.tensor([3, 3])  # image 1: right class is only third -> its c3 box is `other`'s
    gt = torch.tensor([[[8.0, 8, 48, 48]], [[8.0, 8, 48, 48]]])
    hits = heuristic_top5_hits(cams, top3, labels, gt, torch.tensor([1, 1]))
    assert hits.tolist() == [True, False]


def _full_image_boxes(cams: torch.Tensor, threshold: float) -> torch.Tensor:
    """The paper rule by its definition: the whole mask labeled at once (no crop)."""
    low = cams.flatten(1).amin(1).view(-1, 1, 1)
    span = cams.flatten(1).amax(1).view(-1, 1, 1) - low
    masks = ((cams >= low + threshold * span) & (span > 0)).numpy()
    return torch.from_numpy(np.stack([largest_component_box(m) for m in masks]))


def test_cropped_labeling_and_threshold_sweep_equal_the_full_image_rule():
    """boxes_from_cams labels only the foreground crop, box_hits_sweep also prunes proven misses: both must
    give the full-image rule's boxes / hits, area ties included (blocky maps have many equal components)."""
    rng = np.random.default_rng(0)
    thresholds = [0.0, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0]
    for trial in range(24):
        n, h, w = 6, int(rng.integers(5, 40)), int(rng.integers(5, 40))
        if trial % 3 == 0:  # smooth, CAM-like
            cams = torch.nn.functional.interpolate(torch.rand(n, 1, 4, 4), size=(h, w), mode="bilinear")[:, 0]
        elif trial % 3 == 1:  # blocks of 2-3 px: equal-area components everywhere
            q = int(rng.integers(2, 4))
            cams = torch.from_numpy(rng.integers(0, 4, (n, h // q + 1, w // q + 1))).float()
            cams = cams.repeat_interleave(q, 1).repeat_interleave(q, 2)[:, :h, :w]
        else:  # sparse speckle
            cams = torch.from_numpy((rng.random((n, h, w)) < 0.3) * rng.integers(1, 3, (n, h, w))).float()
        cams[0] = 1.0  # constant map: empty box
        k = 2
        corners = np.sort(rng.uniform(0, max(h, w), (n, k, 2, 2)), axis=2)
        gt = torch.from_numpy(corners.transpose(0, 1, 3, 2).reshape(n, k, 4)[..., [0, 2, 1, 3]]).float()
        counts = torch.from_numpy(rng.integers(0, k + 1, n))
        for t in thresholds:
            assert torch.equal(boxes_from_cams(cams, t), _full_image_boxes(cams, t))
        for iou_threshold in (0.5, 0.3):
            want = torch.stack(
                [best_iou_per_image(_full_image_boxes(cams, t), gt, counts) >= iou_threshold for t in thresholds]
            )
            assert torch.equal(box_hits_sweep(cams, gt, counts, thresholds, iou_threshold), want)


def _random_boxes(gen: torch.Generator, *shape: int, grid: bool) -> torch.Tensor:
    """xyxy boxes, on a coarse grid (shared edges, touching and identical boxes, zero-size ones) or not
    (float rounding everywhere)."""
    if grid:
        corners = torch.randint(0, 12, (*shape, 2, 2), generator=gen).float() * 2.5
    else:
        corners = torch.rand(*shape, 2, 2, generator=gen) * 100 / 3
    low, high = corners.min(-2).values, corners.max(-2).values
    return torch.cat([low, high], -1)


def test_paired_and_best_iou_equal_torchvision_all_pairs_bit_for_bit():
    """best_iou_per_image pairs each image's box with its own GT boxes only; the values must be those of
    torchvision's all-pairs matrix (the straightforward way), and T x N x 4 boxes give T rows of that."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(100):
        n, b, t = (int(v) for v in torch.randint(1, 7, (3,), generator=gen))
        pred, gt = _random_boxes(gen, t, n, grid=trial % 2 == 0), _random_boxes(gen, n, b, grid=trial % 3 == 0)
        counts = torch.randint(0, b + 1, (n,), generator=gen)
        rows = []
        for boxes in pred:
            all_pairs = box_iou(boxes, gt.reshape(-1, 4)).view(n, n, b)[torch.arange(n), torch.arange(n)]
            assert torch.equal(paired_iou(boxes[:, None], gt).nan_to_num(-7.0), all_pairs.nan_to_num(-7.0))
            valid = torch.arange(b)[None, :] < counts[:, None]
            rows.append(torch.where(valid, all_pairs, -1.0).amax(1))
            assert torch.equal(best_iou_per_image(boxes, gt, counts).nan_to_num(-7.0), rows[-1].nan_to_num(-7.0))
        assert torch.equal(best_iou_per_image(pred, gt, counts).nan_to_num(-7.0), torch.stack(rows).nan_to_num(-7.0))
    assert best_iou_per_image(pred, gt[:, :0], counts * 0).tolist() == [[-1.0] * n] * t


def test_paper_boxes_and_sweep_equal_the_separate_calls():
    """The callback's one sweep (paper boxes + threshold curve) must give what boxes_from_cams,
    best_iou_per_image and box_hits_sweep give separately, box threshold in the grid or not."""
    rng = np.random.default_rng(1)
    grid = [0.1, 0.2, 0.3, 0.5, 0.7, 0.9]
    for trial in range(18):
        n, h, w = 8, int(rng.integers(6, 40)), int(rng.integers(6, 40))
        if trial % 2:
            cams = torch.nn.functional.interpolate(torch.rand(n, 1, 5, 5), size=(h, w), mode="bilinear")[:, 0]
        else:  # speckle: many components (both area paths of the labeling)
            cams = torch.from_numpy((rng.random((n, h, w)) < 0.4) * rng.random((n, h, w))).float()
        cams[0] = 0.5  # constant: empty box
        corners = np.sort(rng.uniform(0, max(h, w), (n, 2, 2, 2)), axis=2)
        gt = torch.from_numpy(corners.transpose(0, 1, 3, 2).reshape(n, 2, 4)[..., [0, 2, 1, 3]]).float()
        counts = torch.from_numpy(rng.integers(0, 3, n))
        for box_threshold in (0.2, 0.25):
            for iou_threshold in (0.5, 0.3):
                boxes, ious, hits = paper_boxes_and_sweep(cams, gt, counts, box_threshold, grid, iou_threshold)
                want = boxes_from_cams(cams, box_threshold)
                assert torch.equal(boxes, want)
                assert torch.equal(ious, best_iou_per_image(want, gt, counts))
                assert torch.equal(hits, box_hits_sweep(cams, gt, counts, grid, iou_threshold))


def _release_boxes_whole_image(heatmap):
    """The release's dt_box written plainly (whole-image distance transform, round and clip), for comparison."""
    import cv2

    from camexp.localization import RELEASE_THRESHOLDS, _big_overlap

    height, width = heatmap.shape
    rects = []
    for threshold in RELEASE_THRESHOLDS:
        binary = (heatmap > threshold).astype(np.uint8)
        if binary.any() and not binary.all():
            distance = cv2.distanceTransform(binary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
            binary = (np.clip(np.floor(distance * (255.0 / distance.max()) + 0.5), 0, 255) > 10).astype(np.uint8)
        for contour in cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0]:
            x, y, w, h = cv2.boundingRect(contour)
            rects.append(
                (min(max(x, 0), width - 5), min(max(y, 0), height - 5), min(w, width - x - 5), min(h, height - y - 5))
            )
    rects.sort(key=lambda r: r[2] * r[3], reverse=True)
    i = 0
    while i < len(rects):
        j = i + 1
        while j < len(rects):
            if _big_overlap(rects[i], rects[j]):
                del rects[j]
            j += 1
        i += 1
    return np.array([[x, y, x + w, y + h] for x, y, w, h in rects], dtype=np.float32).reshape(-1, 4)


def test_release_boxes_on_the_foreground_crop_equal_the_whole_image_transform():
    from camexp.cam import normalize_cams, upsample_cams
    from camexp.localization import release_boxes

    rng = np.random.default_rng(7)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(16, 120, size=2))
        if trial % 3 == 0:  # CAM-like: a coarse map upsampled
            cam = normalize_cams(upsample_cams(torch.from_numpy(rng.random((1, 7, 7), dtype=np.float32)), (h, w)))[0]
            heat = (cam.numpy() * 255).astype(np.uint8)
        elif trial % 3 == 1:  # blobs touching the image border
            heat = np.zeros((h, w), np.uint8)
            heat[int(rng.integers(0, h)) :, : int(rng.integers(1, w))] = int(rng.integers(0, 256))
        else:  # noise: many components and holes
            heat = rng.integers(0, 256, size=(min(h, 40), min(w, 40))).astype(np.uint8)
        np.testing.assert_array_equal(release_boxes(heat), _release_boxes_whole_image(heat))
