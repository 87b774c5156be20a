"""Sanity baselines (centre-Gaussian map, whole-image box): their numbers on hand-built cases, through the
same code as CAM's, and their columns in every table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from camexp import config
from camexp.localization import (
    baseline_best_ious,
    baseline_boxes,
    best_iou_per_image,
    center_gaussian_map,
)
from camexp.metrics import CAMLocalizationMetrics
from camexp.reports import results_table, wsoleval_table
from camexp.train import train
from camexp.wsol import protocol as W
from camexp.wsol.accumulator import WSOLAccumulator, wsoleval_gt_boxes, wsoleval_scoremaps
from tests.conftest import REPO, tiny_overrides, validate_with_cam_callback


def gt_known(ious: torch.Tensor) -> float:
    """loc_gt_known of a batch through the metric class CAM uses (one logit column per image: class 0)."""
    n = len(ious)
    metric = CAMLocalizationMetrics(0.5)
    metric.update(torch.zeros(n, 2), torch.zeros(n, dtype=torch.long), ious)
    return metric.compute()["loc_gt_known"].item()


def one_box(box: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[box]], dtype=torch.float32), torch.tensor([1])


# -- the whole-image box ----------------------------------------------------------------------------


def test_whole_image_box_hits_a_gt_box_that_is_the_whole_image():
    boxes, counts = one_box([0, 0, 80, 48])
    ious = baseline_best_ious(48, 80, 0.2, boxes, counts)
    assert torch.equal(baseline_boxes(48, 80)["whole_image"], torch.tensor([0.0, 0.0, 80.0, 48.0]))
    assert ious["whole_image"].tolist() == [1.0]
    assert gt_known(ious["whole_image"]) == 1.0


def test_whole_image_box_misses_a_small_corner_box():
    boxes, counts = one_box([0, 0, 16, 16])
    iou = baseline_best_ious(64, 64, 0.2, boxes, counts)["whole_image"]
    assert iou.item() == pytest.approx(16 * 16 / (64 * 64))  # the corner box lies inside: |g| / |image|
    assert gt_known(iou) == 0.0


def test_images_without_boxes_are_not_counted():
    boxes = torch.tensor([[[0, 0, 64, 64]], [[0, 0, 0, 0]]], dtype=torch.float32)
    ious = baseline_best_ious(64, 64, 0.2, boxes, torch.tensor([1, 0]))
    assert ious["whole_image"].tolist() == [1.0, -1.0]
    assert gt_known(ious["whole_image"]) == 1.0  # 1 of the 1 boxed image


# -- the centre Gaussian's paper-rule box: closed form ---------------------------------------------


def kept_extent(side: int, other_side: int, threshold: float) -> int:
    """Closed form of the paper rule on the centre Gaussian, along one axis of `side` pixels: the pixel
    (dx, dy) from the centre is kept iff dx^2 / sx^2 + dy^2 / sy^2 <= r^2 with r^2 = -2 ln(cut),
    cut = low + t (high - low), low the corner value, high the centre pixel's (below 1 on even sides);
    the widest row is the one nearest the centre (dy = 0.5 on an even other side, else 0)."""
    sx, sy = side / 4, other_side / 4
    half_x, half_y = (side - 1) / 2, (other_side - 1) / 2
    near_x, near_y = (0.5 if side % 2 == 0 else 0.0), (0.5 if other_side % 2 == 0 else 0.0)
    low = math.exp(-0.5 * ((half_x / sx) ** 2 + (half_y / sy) ** 2))
    high = math.exp(-0.5 * ((near_x / sx) ** 2 + (near_y / sy) ** 2))
    r2 = -2 * math.log(low + threshold * (high - low))
    reach = sx * math.sqrt(r2 - (near_y / sy) ** 2)  # the largest kept |dx|
    if side % 2 == 0:  # dx = 0.5, 1.5, ...: floor(reach + 0.5) per side
        return 2 * math.floor(reach + 0.5)
    return 2 * math.floor(reach) + 1  # dx = 0, 1, 2, ...


@pytest.mark.parametrize(("height", "width", "threshold"), [(64, 64, 0.2), (48, 80, 0.2), (63, 63, 0.5), (64, 96, 0.4)])
def test_center_gaussian_paper_box_has_the_closed_form_size(height, width, threshold):
    box = baseline_boxes(height, width, threshold)["center_gaussian"]
    box_w, box_h = kept_extent(width, height, threshold), kept_extent(height, width, threshold)
    expected = torch.tensor([(width - box_w) / 2, (height - box_h) / 2, (width + box_w) / 2, (height + box_h) / 2])
    assert torch.equal(box, expected), (box, expected)
    assert box_w < width and box_h < height  # 20% of the max is inside the frame: not the whole image


def test_centred_gt_box_of_the_gaussian_box_size_is_a_hit_an_off_centre_one_a_miss():
    box = baseline_boxes(64, 64, 0.2)["center_gaussian"]  # (4, 4, 60, 60): 56 px, from the closed form
    assert box.tolist() == [4.0, 4.0, 60.0, 60.0]
    gt = torch.stack([box, torch.tensor([0.0, 0.0, 20.0, 20.0])])[:, None, :]
    ious = baseline_best_ious(64, 64, 0.2, gt, torch.tensor([1, 1]))["center_gaussian"]
    assert ious[0].item() == 1.0 and ious[1].item() < 0.5
    assert gt_known(ious) == 0.5


def test_center_gaussian_map_ignores_nothing_but_its_size():
    m = center_gaussian_map(48, 80)
    assert m.shape == (48, 80) and m.dtype == torch.float32
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.flip(1))  # centred
    # sigma = a quarter of each side (81 px: 20.25), from the centre pixel (40)
    assert center_gaussian_map(1, 81)[0, 40 + 20].item() == pytest.approx(math.exp(-0.5 * (20 / 20.25) ** 2))


# -- wsoleval: MaxBoxAcc / V2 / PxAP through the real accumulator ----------------------------------

# Three images in the 224 frame (inclusive pixels): the whole frame, a 160 px corner box, a small centred box.
FRAME = [np.array([[0, 0, 223, 223]]), np.array([[0, 0, 159, 159]]), np.array([[62, 62, 161, 161]])]
CORNER = np.array([[0, 0, 30, 30]])


def test_whole_image_maxboxacc_v2_equals_a_hand_count():
    # IoU of (0, 0, 223, 223) with each: 1, 160^2 / 224^2 = 0.51, 100^2 / 224^2 = 0.20.
    # Hits at IoU 30 / 50 / 70: 2 / 2 / 1 of 3; MaxBoxAcc (IoU 50): 2 of 3; V2 = (2 + 2 + 1) / 9.
    metric = WSOLAccumulator()
    metric.update_fixed_box(W.whole_frame_box(), FRAME[:1])
    metric.update_fixed_box(W.whole_frame_box(), FRAME[1:])  # evaluate feeds one image at a time
    result = metric.compute()
    values = result.metrics()
    assert values["maxboxacc"] == pytest.approx(2 / 3)
    assert values["maxboxacc_v2"] == pytest.approx(5 / 9)
    assert list(values["maxboxacc_v2_per_iou"].values()) == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert result.hits_v2.tolist() == [[2] * 1000, [2] * 1000, [1] * 1000]  # the same box at every threshold
    percent = result.metrics(percent=True)
    assert percent["maxboxacc"] == pytest.approx(200 / 3) and percent["maxboxacc_v2"] == pytest.approx(500 / 9)
    assert values["pxap"] is None  # a box, not a map


def test_whole_image_counts_merge_like_ddp_ranks():
    whole, rank0, rank1 = WSOLAccumulator(), WSOLAccumulator(), WSOLAccumulator()
    whole.update_fixed_box(W.whole_frame_box(), FRAME)
    rank0.update_fixed_box(W.whole_frame_box(), FRAME[:1])
    rank1.update_fixed_box(W.whole_frame_box(), FRAME[1:])
    rank0.merge_state(rank1)
    assert rank0.compute().metrics() == whole.compute().metrics()


def test_center_gaussian_maxboxacc_v2_equals_a_hand_count():
    # Each level set of the centre Gaussian is a disc clipped to the frame, so its box is a centred square
    # whose side s runs from 224 (the lowest level: the disc reaches past every edge) down through every
    # size as the threshold rises. One threshold serves all images (that is what MaxBoxAcc maximizes over):
    #   whole-frame GT:   IoU = s^2 / 224^2 >= t  <=>  s >= 224 sqrt(t)   (123, 158, 187 px at t = .3/.5/.7)
    #   centred 100 px:   IoU = 100^2 / s^2 >= t  <=>  s <= 100 / sqrt(t) (183, 141, 120 px; s >= 100)
    #   corner 31 px:     never (the best box, the whole frame, has IoU 31^2 / 224^2).
    # Both boxed images share a threshold only at IoU 0.3 (123 <= s <= 183): hits 2 / 1 / 1 of 3, so
    # MaxBoxAcc (IoU 0.5) = 1/3 and MaxBoxAccV2 = (2 + 1 + 1) / 9.
    gts = [FRAME[0], FRAME[2], CORNER]
    raw = center_gaussian_map(W.RESIZE_LENGTH, W.RESIZE_LENGTH)
    metric = WSOLAccumulator()
    metric.update(np.repeat(wsoleval_scoremaps(raw[None]), len(gts), axis=0), gts)
    values = metric.compute().metrics()
    assert values["maxboxacc"] == pytest.approx(1 / 3)
    assert list(values["maxboxacc_v2_per_iou"].values()) == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert values["maxboxacc_v2"] == pytest.approx(4 / 9)
    assert metric.compute().metrics(percent=True)["maxboxacc_v2"] == pytest.approx(400 / 9)


def test_center_gaussian_pxap_is_perfect_on_a_mask_that_is_one_of_its_level_sets():
    scoremap = wsoleval_scoremaps(center_gaussian_map(224, 224)[None])
    mask = (scoremap >= 0.5).astype(np.uint8)  # 0.5 is a bin edge: every fg value above every bg value
    metric = WSOLAccumulator()
    metric.update(scoremap, masks=mask)
    assert metric.compute().metrics()["pxap"] == pytest.approx(1.0)


def test_wsoleval_table_has_a_column_per_baseline():
    cam, gaussian, whole = WSOLAccumulator(), WSOLAccumulator(), WSOLAccumulator()
    scoremaps = np.repeat(wsoleval_scoremaps(center_gaussian_map(224, 224)[None]), len(FRAME), axis=0)
    cam.update(scoremaps, FRAME)
    gaussian.update(scoremaps, FRAME)
    whole.update_fixed_box(W.whole_frame_box(), FRAME)
    table = wsoleval_table(cam.compute(), {"center_gaussian": gaussian.compute(), "whole_image": whole.compute()})
    header, _, v1, v2 = table.splitlines()[:4]
    assert header.endswith("| centre-Gaussian % | whole image % |")
    assert v1.endswith("| 66.67 |") and v2.endswith("| 55.56 |")
    assert "centre-Gaussian" not in wsoleval_table(cam.compute())  # no baselines given: the old table


# -- results tables ---------------------------------------------------------------------------------


def test_results_table_shows_baseline_columns_only_when_the_run_has_them():
    old = {"val/acc_top1": 0.5, "val/loc_top1": 0.25, "val/loc_gt_known": 0.4}
    plain = results_table(old, "val", "googlenet_gap")
    assert plain.splitlines()[0] == "| metric | accuracy % | error % | paper GoogLeNet-GAP error % (ILSVRC) |"
    new = {**old, "val/baseline_center_gaussian/loc_gt_known": 0.3, "val/baseline_whole_image/loc_gt_known": 0.1,
           "val/baseline_center_gaussian/loc_top1": 0.2}
    lines = results_table(new, "val", "googlenet_gap").splitlines()
    assert lines[0] == (
        "| metric | CAM accuracy % | error % | centre-Gaussian % | whole image % "
        "| paper GoogLeNet-GAP error % (ILSVRC) |"
    )
    rows = {line.split(" | ")[0][2:]: line for line in lines[2:] if line.startswith("|")}
    assert rows["classification top-1"] == "| classification top-1 | 50.00 | 50.00 | - | - | 35.00 |"
    assert rows["localization GT-known"] == "| localization GT-known | 40.00 | 60.00 | 30.00 | 10.00 | - |"
    assert rows["localization top-1"] == "| localization top-1 | 25.00 | 75.00 | 20.00 | - | 56.40 |"
    assert "network's own class predictions" in lines[-1]
    only_one = {**old, "val/baseline_whole_image/loc_gt_known": 0.1}
    assert "centre-Gaussian %" not in results_table(only_one).splitlines()[0]


# -- in the callback and in a real run --------------------------------------------------------------


@pytest.mark.slow
def test_callback_scores_the_baselines_on_the_validation_images(tiny_synthloc, tmp_path):
    """protocol=wsoleval: the logged baseline numbers equal the baselines scored by hand on the batches' boxes."""
    wsoleval = {"eval.protocol": "wsoleval"}
    cfg, datamodule, model, callback = validate_with_cam_callback(tiny_synthloc, tmp_path, **wsoleval)
    logged = callback.last_results

    gaussian, whole = WSOLAccumulator(), WSOLAccumulator()
    ious = {"center_gaussian": [], "whole_image": []}
    scoremap = wsoleval_scoremaps(center_gaussian_map(224, 224)[None])[0]
    for batch in datamodule.val_dataloader():
        gts = wsoleval_gt_boxes(batch["orig_boxes"], batch["box_count"], batch["orig_size"])
        gaussian.update(np.stack([scoremap] * len(gts)), gts)
        whole.update_fixed_box(W.whole_frame_box(), gts)
        size = batch["image"].shape[-2:]
        for name, box in baseline_boxes(*size, cfg.eval.cam_threshold).items():
            ious[name].append(best_iou_per_image(box.expand(len(gts), 4), batch["boxes"], batch["box_count"]))
    for name, metric in (("center_gaussian", gaussian), ("whole_image", whole)):
        want = metric.compute().metrics()
        for key in ("maxboxacc", "maxboxacc_v2"):
            assert logged[f"val/baseline_{name}/{key}"] == np.float32(want[key]), (name, key)
        assert logged[f"val/baseline_{name}/loc_gt_known"] == pytest.approx(gt_known(torch.cat(ious[name])), abs=1e-6)
    assert "val/baseline_center_gaussian/pxap" in logged and "val/baseline_whole_image/pxap" not in logged
    assert "val/baseline_whole_image/maxboxacc_threshold" not in logged  # one box: no threshold to choose
    assert not any(key.startswith("val/baseline_") and "/acc_" in key for key in logged)  # the CAM's own


@pytest.mark.slow
def test_short_run_writes_baseline_keys_and_table_columns(tiny_synthloc, tmp_path):
    cfg = config.load(REPO / "experiments" / "synthloc_gap.yaml", tiny_overrides(tiny_synthloc, tmp_path / "logs"))
    train(cfg)
    run_dir = tmp_path / "logs" / "synthloc_gap" / "version_0"
    saved = json.loads((run_dir / "results.json").read_text())
    for name in ("center_gaussian", "whole_image"):
        for key in ("loc_top1", "loc_top5", "loc_gt_known"):
            assert 0.0 <= saved[f"val/baseline_{name}/{key}"] <= 1.0
        # top-1 localization needs the network's top-1 class right as well as the baseline's box
        assert saved[f"val/baseline_{name}/loc_top1"] <= saved[f"val/baseline_{name}/loc_gt_known"]
    report = (run_dir / "report.md").read_text()
    assert "| metric | CAM accuracy % | error % | centre-Gaussian % | whole image % |" in report
