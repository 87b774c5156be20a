"""The one wsoleval accumulator (camexp.wsol.accumulator): its summed states are the reference port's counts,
its metrics the reference's numbers (percent) or those as fractions; streaming and merging (two ranks, as a DDP
sum reduction) give the counts, hence the digits, of one pass; the callback logs them from the same features."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import wsoleval_reference as R
from PIL import Image

from camexp.cam import class_activation_maps
from camexp.data.cub import read_cub
from camexp.wsol import protocol as W
from camexp.wsol.accumulator import WSOLAccumulator, wsoleval_gt_boxes, wsoleval_scoremaps
from tests.conftest import validate_with_cam_callback

SIZE = 48  # a small eval frame keeps the reference port fast; the arithmetic is the same as at 224
GRID = 50  # thresholds np.arange(0, 1, 0.02)
INTERVAL = 1 / GRID


def random_batch(rng: np.random.Generator, n: int):
    """Raw CAMs (smooth blobs plus noise, any sign), original image sizes and 1-3 GT boxes in original pixels."""
    yy, xx = np.mgrid[0:7, 0:7]
    raw = np.zeros((n, 7, 7))
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, s = rng.uniform(0, 7), rng.uniform(0, 7), rng.uniform(0.7, 3)
            raw[i] += rng.uniform(-0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        raw[i] += 0.3 * rng.random((7, 7))
    sizes = rng.integers(40, 500, size=(n, 2))  # (width, height)
    boxes = np.zeros((n, 3, 4))
    counts = rng.integers(1, 4, size=n)
    for i in range(n):
        w, h = sizes[i]
        for k in range(counts[i]):
            x0, x1 = np.sort(rng.uniform(0, w, 2))
            y0, y1 = np.sort(rng.uniform(0, h, 2))
            boxes[i, k] = np.rint([x0, y0, x1, y1])  # integer pixels, as wsolevaluation metadata stores boxes
    return torch.from_numpy(raw).float(), torch.from_numpy(boxes), torch.from_numpy(counts), torch.from_numpy(sizes)


def reference_counts(raw, boxes, counts, sizes, grid):
    """The reference port, image by image: its num_correct rows for V1 (IoU 50) and V2 (30/50/70)."""
    thresholds = list(W.default_thresholds(1 / grid))
    v1 = np.zeros((1, grid))
    v2 = np.zeros((3, grid))
    for i in range(len(raw)):
        scoremap = R.reference_normalize_scoremap(raw[i].double().numpy(), SIZE)
        size = tuple(sizes[i].tolist())
        gt = [R.reference_resize_bbox(b, size, (SIZE, SIZE)) for b in boxes[i, : counts[i]].tolist()]
        v1 += R.reference_box_hits(scoremap, gt, (50,), False, thresholds)
        v2 += R.reference_box_hits(scoremap, gt, (30, 50, 70), True, thresholds)
    return v1, v2


def test_accumulator_counts_and_metrics_equal_the_reference_port():
    rng = np.random.default_rng(0)
    raw, boxes, counts, sizes = random_batch(rng, 24)
    metric = WSOLAccumulator(INTERVAL)
    metric.update(wsoleval_scoremaps(raw, SIZE), wsoleval_gt_boxes(boxes, counts, sizes, SIZE))
    ref_v1, ref_v2 = reference_counts(raw, boxes, counts, sizes, GRID)
    # The states are the reference's num_correct, exactly.
    assert metric.hits_v1.tolist() == ref_v1[0].tolist()
    assert metric.hits_v2.tolist() == ref_v2.tolist()
    assert int(metric.num_images) == 24
    # Values: percent as upstream, digit for digit; fractions = hits / images; the same (first) best thresholds.
    result = metric.compute()
    percent, fractions = result.metrics(percent=True), result.metrics()
    ref_v1_acc = R.reference_maxboxacc(ref_v1, 24)
    ref_v2_acc = R.reference_maxboxacc(ref_v2, 24)
    assert percent["maxboxacc"] == ref_v1_acc[0]
    assert percent["maxboxacc_v2"] == np.average(ref_v2_acc)
    assert fractions["maxboxacc"] * 100 == pytest.approx(ref_v1_acc[0], abs=1e-12)
    assert fractions["maxboxacc"] == ref_v1[0].max() / 24
    assert fractions["maxboxacc_v2"] * 100 == pytest.approx(np.average(ref_v2_acc), abs=1e-12)
    grid = W.default_thresholds(INTERVAL)
    assert percent["maxboxacc_threshold"] == fractions["maxboxacc_threshold"] == grid[int(np.argmax(ref_v1[0]))]
    for row, iou in enumerate(("30", "50", "70")):
        assert percent["maxboxacc_v2_per_iou"][iou] == ref_v2_acc[row]
        assert fractions["maxboxacc_v2_per_iou"][iou] * 100 == pytest.approx(ref_v2_acc[row], abs=1e-12)
        assert fractions["maxboxacc_v2_thresholds"][iou] == grid[int(np.argmax(ref_v2[row]))]
    assert fractions["pxap"] is None and result.fg_hist is None  # no masks seen: undefined, not 0
    # Curves for plots: V1 then one row per V2 IoU, fractions at every threshold.
    curves = result.curves()
    assert curves.shape == (4, GRID) and result.thresholds.shape == (GRID,)
    assert np.array_equal(curves[0], ref_v1[0] / 24)
    assert np.average(curves[1:].max(1)) == fractions["maxboxacc_v2"]


def test_largest_contour_rows_equal_the_reference_port():
    """multi_contour=False (`evaluate-maps --largest`): the V2 rows use the largest contour, as V1 does."""
    rng = np.random.default_rng(3)
    raw, boxes, counts, sizes = random_batch(rng, 10)
    metric = WSOLAccumulator(INTERVAL, (40, 50), multi_contour=False)
    metric.update(wsoleval_scoremaps(raw, SIZE), wsoleval_gt_boxes(boxes, counts, sizes, SIZE))
    want = np.zeros((2, GRID))
    for i in range(len(raw)):
        scoremap = R.reference_normalize_scoremap(raw[i].double().numpy(), SIZE)
        size = tuple(sizes[i].tolist())
        gt = [R.reference_resize_bbox(b, size, (SIZE, SIZE)) for b in boxes[i, : counts[i]].tolist()]
        want += R.reference_box_hits(scoremap, gt, (40, 50), False, list(W.default_thresholds(INTERVAL)))
    assert metric.hits_v2.tolist() == want.tolist() and metric.hits_v1.tolist() == want[1].tolist()


def test_accumulator_streams_and_merges_like_one_pass():
    rng = np.random.default_rng(1)
    raw, boxes, counts, sizes = random_batch(rng, 18)

    def update(metric, part):
        maps = wsoleval_scoremaps(raw[part], SIZE)
        metric.update(maps, wsoleval_gt_boxes(boxes[part], counts[part], sizes[part], SIZE))

    whole = WSOLAccumulator(INTERVAL)
    update(whole, slice(0, 18))
    streamed = WSOLAccumulator(INTERVAL)
    for part in (slice(0, 5), slice(5, 6), slice(6, 18)):
        update(streamed, part)
    # Two "ranks" with disjoint halves, merged as a DDP sum reduction would.
    rank0, rank1 = WSOLAccumulator(INTERVAL), WSOLAccumulator(INTERVAL)
    update(rank0, slice(0, 7))
    update(rank1, slice(7, 18))
    rank0.merge_state(rank1)
    for other in (streamed, rank0):
        for state in ("hits_v1", "hits_v2", "num_images"):
            assert torch.equal(getattr(other, state), getattr(whole, state))
        assert other.compute().metrics() == whole.compute().metrics()


def test_pxap_equals_the_reference_port_and_merges():
    rng = np.random.default_rng(2)
    raw, _, _, _ = random_batch(rng, 12)
    maps = wsoleval_scoremaps(raw, SIZE)
    masks = (rng.random(maps.shape) < 0.3).astype(np.uint8)
    masks[rng.random(maps.shape) < 0.05] = 255  # ignored pixels
    ref_fg, ref_bg = np.zeros(GRID + 2), np.zeros(GRID + 2)
    for m, mask in zip(maps, masks, strict=True):
        fg, bg = R.reference_pixel_histograms(m, mask, list(W.default_thresholds(INTERVAL)))
        ref_fg += fg
        ref_bg += bg
    whole = WSOLAccumulator(INTERVAL)
    whole.update(maps, masks=masks)
    assert whole.fg_hist.tolist() == ref_fg.tolist() and whole.bg_hist.tolist() == ref_bg.tolist()
    result = whole.compute()
    assert result.num_mask_images == 12 and result.num_images == 0 and "maxboxacc" not in result.metrics()
    assert result.metrics(percent=True)["pxap"] == R.reference_pxap(ref_fg, ref_bg)
    assert result.metrics()["pxap"] == R.reference_pxap(ref_fg, ref_bg) / 100
    rank0, rank1 = WSOLAccumulator(INTERVAL), WSOLAccumulator(INTERVAL)
    rank0.update(torch.from_numpy(maps[:4]), masks=torch.from_numpy(masks[:4]))
    rank1.update(maps[4:], masks=masks[4:])
    rank0.merge_state(rank1)
    assert rank0.compute().metrics() == result.metrics()
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        empty = WSOLAccumulator(INTERVAL).compute().metrics()
    assert empty == {"num_images": 0, "num_mask_images": 0, "pxap": None}  # nothing seen: undefined, not 0


def test_settings_are_checked_once_with_the_caller_s_words():
    assert np.array_equal(WSOLAccumulator().thresholds, np.arange(0, 1, 0.001))
    assert np.array_equal(WSOLAccumulator(1 / 100).thresholds, np.arange(0, 1, 0.01))
    with pytest.raises(ValueError, match=r"cam_curve_interval must lie in \(0, 1\)"):
        WSOLAccumulator(1.0)
    with pytest.raises(ValueError, match=r"iou_thresholds takes percentages"):
        WSOLAccumulator(0.01, (0, 50))
    with pytest.raises(ValueError, match=r"--iou takes percentages in \(0, 100\], e\.g\. 30 50 70; got \[\]"):
        W.check_settings(0.01, [], "--cam-curve-interval", "--iou")


@pytest.mark.slow
def test_callback_logs_wsoleval_metrics_from_the_evaluation_features(tiny_synthloc, tmp_path):
    """protocol=wsoleval: val/maxboxacc, val/maxboxacc_v2, val/pxap equal the functional protocol run on the
    same raw CAMs with the boxes read from the dataset's own files (original pixels)."""
    wsoleval = {"eval.protocol": "wsoleval"}
    cfg, datamodule, model, callback = validate_with_cam_callback(tiny_synthloc, tmp_path, **wsoleval)
    logged = callback.last_results

    records = read_cub(tiny_synthloc)
    val = records.split_indices("val")
    expected = WSOLAccumulator()
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            # Evaluation batches carry the boxes in original pixels too, with the images' sizes.
            scaled = batch["orig_boxes"] * 64 / batch["orig_size"].repeat(1, 2)[:, None, :].double()
            assert torch.allclose(scaled.float(), batch["boxes"], atol=1e-4)
            features = model.net.forward_features(batch["image"])
            raw = class_activation_maps(features, model.class_weights, batch["label"])
            maps = wsoleval_scoremaps(raw)
            gts = []
            for position in batch["index"].tolist():
                record = int(val[position])
                width, height = Image.open(tiny_synthloc / "images" / records.paths[record]).size
                gts.append(W.resize_gt_boxes(records.boxes[record], (width, height)))
            expected.update(maps, gts)
            # The callback's masks are the batch's S x S ones, brought to the eval frame by nearest neighbour.
            masks = np.stack([cv2.resize(m, (224, 224), interpolation=cv2.INTER_NEAREST) for m in
                              batch["mask"].numpy().astype(np.uint8)])
            expected.update(maps, masks=masks)
    want = expected.compute()
    assert np.array_equal(callback.last_wsoleval["val"].hits_v2, want.hits_v2)
    assert np.array_equal(callback.last_wsoleval["val"].fg_hist, want.fg_hist)
    metrics = want.metrics()
    for key in ("maxboxacc", "maxboxacc_threshold", "maxboxacc_v2", "pxap"):
        assert logged[f"val/{key}"] == np.float32(metrics[key])  # the float32 of the fraction, exactly
    assert logged["val/maxboxacc_v2_iou70"] == np.float32(metrics["maxboxacc_v2_per_iou"]["70"])
    assert callback.last_wsoleval["val"].curves().shape == (4, 1000)
