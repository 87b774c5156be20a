"""Streaming wsoleval metrics: Metric class == functional form == reference port; streaming and merging
(two ranks) give the counts of one pass; the callback logs them from the same features."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import wsoleval_reference as R
from PIL import Image

from camexp.cam import class_activation_maps
from camexp.data.cub import read_cub
from camexp.metrics import (
    MaxBoxAcc,
    PxAP,
    maxboxacc_compute,
    maxboxacc_update,
    pxap_update,
    wsoleval_gt_boxes,
    wsoleval_scoremaps,
    wsoleval_thresholds,
)
from camexp.wsol import protocol as W
from tests.conftest import validate_with_cam_callback

SIZE = 48  # a small eval frame keeps the reference port fast; the arithmetic is the same as at 224
GRID = 50  # thresholds np.arange(0, 1, 0.02)


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
    thresholds = list(wsoleval_thresholds(grid))
    v1 = np.zeros((1, grid))
    v2 = np.zeros((3, grid))
    for i in range(len(raw)):
        scoremap = R.reference_normalize_scoremap(raw[i].double().numpy(), SIZE)
        size = tuple(sizes[i].tolist())
        gt = [R.reference_resize_bbox(b, size, (SIZE, SIZE)) for b in boxes[i, : counts[i]].tolist()]
        v1 += R.reference_box_hits(scoremap, gt, (50,), False, thresholds)
        v2 += R.reference_box_hits(scoremap, gt, (30, 50, 70), True, thresholds)
    return v1, v2


def test_maxboxacc_class_equals_functional_and_reference():
    rng = np.random.default_rng(0)
    raw, boxes, counts, sizes = random_batch(rng, 24)
    metric = MaxBoxAcc(GRID, size=SIZE)
    metric.update_raw(raw, boxes, counts, sizes)
    ref_v1, ref_v2 = reference_counts(raw, boxes, counts, sizes, GRID)
    # The states are the reference's num_correct, exactly.
    assert metric.hits_v1.tolist() == ref_v1[0].tolist()
    assert metric.hits_v2.tolist() == ref_v2.tolist()
    assert int(metric.num_images) == 24
    # Functional form on the same inputs.
    maps = wsoleval_scoremaps(raw, SIZE)
    gts = wsoleval_gt_boxes(boxes, counts, sizes, SIZE)
    f_v1, f_v2 = maxboxacc_update(maps, gts, wsoleval_thresholds(GRID))
    assert np.array_equal(f_v1, ref_v1[0]) and np.array_equal(f_v2, ref_v2)
    # Values: fractions here, percent upstream; same maxima and the same (first) best thresholds.
    out = metric.compute()
    ref_v1_acc = R.reference_maxboxacc(ref_v1, 24)
    ref_v2_acc = R.reference_maxboxacc(ref_v2, 24)
    assert out["maxboxacc"].item() * 100 == pytest.approx(ref_v1_acc[0], abs=1e-12)
    assert out["maxboxacc_v2"].item() * 100 == pytest.approx(np.average(ref_v2_acc), abs=1e-12)
    grid = wsoleval_thresholds(GRID)
    assert out["maxboxacc_threshold"].item() == grid[int(np.argmax(ref_v1[0]))]
    for row, iou in enumerate((30, 50, 70)):
        assert out[f"maxboxacc_v2_iou{iou}"].item() * 100 == pytest.approx(ref_v2_acc[row], abs=1e-12)
        assert out[f"maxboxacc_v2_iou{iou}_threshold"].item() == grid[int(np.argmax(ref_v2[row]))]
    functional = maxboxacc_compute(metric.hits_v1, metric.hits_v2, metric.num_images, grid, (30, 50, 70))
    assert {k: v.item() for k, v in functional.items()} == {k: v.item() for k, v in out.items()}
    # Curves for plots: V1 then one row per V2 IoU, fractions at every threshold.
    curves = metric.curves()
    assert curves.shape == (4, GRID) and metric.thresholds.shape == (GRID,)
    assert torch.equal(curves[0], metric.hits_v1.double() / 24)
    assert curves[1:].amax(1).mean().item() == out["maxboxacc_v2"].item()


def test_maxboxacc_streams_and_merges_like_one_pass():
    rng = np.random.default_rng(1)
    raw, boxes, counts, sizes = random_batch(rng, 18)
    whole = MaxBoxAcc(GRID, size=SIZE)
    whole.update_raw(raw, boxes, counts, sizes)
    streamed = MaxBoxAcc(GRID, size=SIZE)
    for part in (slice(0, 5), slice(5, 6), slice(6, 18)):
        streamed.update_raw(raw[part], boxes[part], counts[part], sizes[part])
    # Two "ranks" with disjoint halves, merged as a DDP sum reduction would.
    rank0, rank1 = MaxBoxAcc(GRID, size=SIZE), MaxBoxAcc(GRID, size=SIZE)
    rank0.update_raw(raw[:7], boxes[:7], counts[:7], sizes[:7])
    rank1.update_raw(raw[7:], boxes[7:], counts[7:], sizes[7:])
    rank0.merge_state(rank1)
    for other in (streamed, rank0):
        for state in ("hits_v1", "hits_v2", "num_images"):
            assert torch.equal(getattr(other, state), getattr(whole, state))
        assert {k: v.item() for k, v in other.compute().items()} == {k: v.item() for k, v in whole.compute().items()}


def test_pxap_class_equals_functional_and_reference_and_merges():
    rng = np.random.default_rng(2)
    raw, _, _, _ = random_batch(rng, 12)
    maps = wsoleval_scoremaps(raw, SIZE)
    masks = (rng.random(maps.shape) < 0.3).astype(np.uint8)
    masks[rng.random(maps.shape) < 0.05] = 255  # ignored pixels
    ref_fg, ref_bg = np.zeros(GRID + 2), np.zeros(GRID + 2)
    for m, mask in zip(maps, masks, strict=True):
        fg, bg = R.reference_pixel_histograms(m, mask, list(wsoleval_thresholds(GRID)))
        ref_fg += fg
        ref_bg += bg
    whole = PxAP(GRID)
    whole.update(maps, masks)
    assert whole.fg_hist.tolist() == ref_fg.tolist() and whole.bg_hist.tolist() == ref_bg.tolist()
    fg, bg = pxap_update(maps, masks, wsoleval_thresholds(GRID))
    assert np.array_equal(fg, ref_fg) and np.array_equal(bg, ref_bg)
    assert whole.compute().item() * 100 == pytest.approx(R.reference_pxap(ref_fg, ref_bg), abs=1e-12)
    rank0, rank1 = PxAP(GRID), PxAP(GRID)
    rank0.update(torch.from_numpy(maps[:4]), torch.from_numpy(masks[:4]))
    rank1.update(maps[4:], masks[4:])
    rank0.merge_state(rank1)
    assert rank0.compute().item() == whole.compute().item()
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert torch.isnan(PxAP(GRID).compute())  # nothing seen: undefined, not 0
        assert all(torch.isnan(v) for v in MaxBoxAcc(GRID).compute().values())


def test_thresholds_are_the_reference_grids():
    assert np.array_equal(wsoleval_thresholds(1000), np.arange(0, 1, 0.001))
    assert np.array_equal(wsoleval_thresholds(100), np.arange(0, 1, 0.01))
    with pytest.raises(ValueError):
        wsoleval_thresholds(0)


@pytest.mark.slow
def test_callback_logs_wsoleval_metrics_from_the_evaluation_features(tiny_synthloc, tmp_path):
    """protocol=wsoleval: val/maxboxacc, val/maxboxacc_v2, val/pxap equal the functional protocol run on the
    same raw CAMs with the boxes read from the dataset's own files (original pixels)."""
    wsoleval = {"eval.protocol": "wsoleval"}
    cfg, datamodule, model, callback = validate_with_cam_callback(tiny_synthloc, tmp_path, **wsoleval)
    logged = callback.last_results

    records = read_cub(tiny_synthloc)
    val = records.split_indices("val")
    expected_boxes, expected_pixels = MaxBoxAcc(1000), PxAP(1000)
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
            expected_boxes.update(maps, gts)
            # The callback's masks are the batch's S x S ones, brought to the eval frame by nearest neighbour.
            masks = np.stack([cv2.resize(m, (224, 224), interpolation=cv2.INTER_NEAREST) for m in
                              batch["mask"].numpy().astype(np.uint8)])
            expected_pixels.update(maps, masks)
    want = expected_boxes.compute()
    assert logged["val/maxboxacc"] == pytest.approx(want["maxboxacc"].item(), abs=1e-6)
    assert logged["val/maxboxacc_v2"] == pytest.approx(want["maxboxacc_v2"].item(), abs=1e-6)
    assert logged["val/pxap"] == pytest.approx(expected_pixels.compute().item(), abs=1e-6)
    assert callback.last_box_curves["val"]["curves"].shape == (4, 1000)
