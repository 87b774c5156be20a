"""`camexp finegrained`: SVMs on full images, on crops by the predicted class's CAM box, on GT-box crops."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camexp import cli
from camexp.cam import upsample_cams
from camexp.data.images import load_rgb
from camexp.features.extract import evaluation_split, load_backbone, probe_data
from camexp.features.finegrained import (
    CropDataset,
    crop_box,
    crop_features,
    run_finegrained,
    svm_class_weights,
)
from camexp.features.svm import fit_linear_svm, raw_space_weights, svm_cams
from camexp.localization import boxes_from_cams
from tests.conftest import REPO, TINY_SYNTH, cub_table, tiny_overrides
from tests.datasets_fixtures import write_indoor67
from tests.tiny_backbones import fc_checkpoint

EXPERIMENT = str(REPO / "experiments" / "synthloc_gap.yaml")
SIZE = 96  # EfficientNet-Lite0 at 96 px: 3 x 3 last conv maps, seconds on a CPU for the tiny set


@pytest.fixture(scope="module")
def backbone():
    """The packaged ImageNet EfficientNet-Lite0 (real weights, offline), at a CPU-test input size."""
    return replace(load_backbone("efficientnet_lite0", device="cpu"), input_size=SIZE)


@pytest.fixture(scope="module")
def mislabelled(tiny_synthloc, tmp_path_factory) -> Path:
    """The tiny set with every evaluation image labelled as the NEXT class: an SVM trained on the (correct) train
    labels predicts what the image shows, so on most evaluation images the prediction is not the label."""
    root = tmp_path_factory.mktemp("mislabelled") / "synthloc"
    shutil.copytree(tiny_synthloc, root)
    split, labels = cub_table(root, "train_test_split.txt"), cub_table(root, "image_class_labels.txt")
    classes = TINY_SYNTH["num_classes"]
    rows = [
        f"{i} {int(labels[i][0]) if split[i][0] == '1' else int(labels[i][0]) % classes + 1}" for i in sorted(labels)
    ]
    (root / "image_class_labels.txt").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def mislabelled_run(mislabelled, backbone, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fg")
    cfg, datamodule = probe_data([EXPERIMENT], tiny_overrides(mislabelled, tmp / "logs"), backbone)
    train, evaluation = evaluation_split(datamodule, "train"), evaluation_split(datamodule, "val")
    result = run_finegrained(backbone, train, evaluation, datamodule.class_names, cache_dir=tmp / "cache")
    return result, tmp / "cache"


def test_crops_follow_the_predicted_class_not_the_label(mislabelled_run, backbone):
    result, _ = mislabelled_run
    dataset = result.eval_dataset
    labels = dataset.images.labels
    full = result.arms["full"]
    predicted = full.probe.predict(full.evaluation.features)
    assert np.array_equal(result.predicted["eval"], predicted)
    wrong = np.flatnonzero(predicted != labels)
    assert len(wrong) >= len(labels) // 2  # the relabelling made the SVM disagree with most labels

    # The CAM of each class, recomputed here: sum_k w_k^c f_k with the SVM's raw-space weights.
    weights, _ = raw_space_weights(full.probe)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    with torch.no_grad():
        maps = backbone.net.forward_features(images)
    all_cams = upsample_cams(torch.einsum("nkhw,ck->nchw", maps, torch.from_numpy(weights)), SIZE)
    rows = lambda classes: torch.as_tensor(np.searchsorted(full.probe.classes, classes))  # noqa: E731
    by_prediction = boxes_from_cams(all_cams[torch.arange(len(labels)), rows(predicted)])
    by_label = boxes_from_cams(all_cams[torch.arange(len(labels)), rows(labels)])
    torch.testing.assert_close(torch.from_numpy(result.boxes["eval"].cam), by_prediction, atol=1e-4, rtol=0)
    differs = (by_prediction[wrong] - by_label[wrong]).abs().amax(1) > 0.5
    assert differs.any(), "no mislabelled image whose label's CAM box differs from the prediction's"

    # ... and the crop the second SVM sees is cut from the original by that box (64 px images, 96 px input).
    crops = CropDataset(dataset.images, result.boxes["eval"].cam_fraction, backbone.transform)
    for i in wrong[differs.numpy()][:3]:
        x0, y0, x1, y1 = crop_box(by_prediction[i].numpy() / SIZE, (64, 64))
        original = np.asarray(load_rgb(dataset.images.path(i)))
        assert np.array_equal(np.asarray(crops.crop(i)), original[y0:y1, x0:x1])
        assert (x1 - x0, y1 - y0) != (64, 64)  # a real crop, not the whole image

    # Train crops follow the prediction too (of the SVM fitted on them), never the label.
    assert np.array_equal(result.predicted["train"], full.probe.predict(full.train.features))


def test_gt_box_crops_are_exactly_the_gt_box_region(mislabelled_run, mislabelled, backbone):
    result, _ = mislabelled_run
    images = result.eval_dataset.images
    records = cub_table(mislabelled, "images.txt")
    boxes = cub_table(mislabelled, "bounding_boxes.txt")
    box_of = {records[i][0]: [int(float(v)) for v in boxes[i]] for i in records}  # x y w h, whole pixels
    crops = CropDataset(images, result.boxes["eval"].gt_fraction, backbone.transform)
    for i in range(len(images)):
        x, y, w, h = box_of[images.relpath(i)]
        original = np.asarray(load_rgb(images.path(i)))
        crop = crops.crop(i)
        assert np.array_equal(np.asarray(crop), original[y : y + h, x : x + w])
        torch.testing.assert_close(crops[i]["image"], backbone.transform(crop), rtol=0, atol=0)
    assert "gt_crop" in result.arms and 0.0 <= result.cam_iou_hit <= 1.0


def test_crop_box_snaps_clips_and_falls_back_to_the_whole_image():
    assert crop_box([0.1, 0.25, 0.5, 0.75], (40, 20)) == (4, 5, 20, 15)
    assert crop_box([10 / 3 / 10, 0, 1.0000001, 1], (30, 10)) == (10, 0, 30, 10)  # 10.0000001 px snaps to 10
    assert crop_box([0.21, 0.0, 0.29, 0.05], (10, 10)) == (2, 0, 3, 1)  # outward, at least one pixel
    assert crop_box([-0.5, -1, 2, 3], (8, 6)) == (0, 0, 8, 6)
    assert crop_box([np.nan] * 4, (8, 6)) == (0, 0, 8, 6)  # empty CAM: the whole image
    assert crop_box([0.5, 0.5, 0.5, 0.9], (8, 6)) == (0, 0, 8, 6)


def test_crop_features_are_cached_per_backbone_and_boxes(mislabelled_run, backbone):
    result, cache = mislabelled_run
    images = result.eval_dataset.images
    cam, gt = result.boxes["eval"].cam_fraction, result.boxes["eval"].gt_fraction
    again = crop_features(backbone, images, cam, "cam", cache)
    assert again.from_cache and np.array_equal(again.features, result.arms["cam_crop"].evaluation.features)
    other_boxes = crop_features(backbone, images, gt, "cam", cache)  # other boxes, same name: not reused
    assert other_boxes.cache_path != again.cache_path
    np.testing.assert_array_equal(other_boxes.features, result.arms["gt_crop"].evaluation.features)
    other = replace(backbone, net=copy.deepcopy(backbone.net))
    with torch.no_grad():
        next(other.net.parameters()).add_(0.05)
    fresh = crop_features(other, images, cam, "cam", cache)
    assert not fresh.from_cache and fresh.cache_path != again.cache_path
    assert not np.allclose(fresh.features, again.features)
    names = sorted(p.name.split("_")[0] for p in cache.glob("*.npz"))
    assert names.count("camboxes") == 2 and names.count("features") == 8  # full, cam, gt crops x 2 splits + 2 above


def test_binary_svm_cams_are_opposite_maps():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (20, 6)), rng.normal(2, 1, (20, 6))]).astype(np.float32)
    probe = fit_linear_svm(features, np.repeat([3, 7], 20))
    weights = svm_class_weights(probe)
    raw, bias = raw_space_weights(probe)
    assert weights.shape == (2, 6) and np.array_equal(weights[1], raw[0]) and np.array_equal(weights[0], -raw[0])
    maps = torch.from_numpy(rng.normal(size=(3, 6, 2, 2)).astype(np.float32))
    cams = svm_cams(maps, weights, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(cams[0], -cams[0].new_tensor(np.einsum("khw,k->hw", maps[0].numpy(), raw[0])))
    # the pooled positive-class CAM plus the bias is the SVM's decision value
    decision = probe.scores(maps.mean((2, 3)).numpy())[:, 0]
    np.testing.assert_allclose(cams[1:].mean((1, 2)).numpy() + bias[0], decision[1:], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_finegrained_command_end_to_end(tiny_synthloc, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = [
        "finegrained",
        "efficientnet_lite0",
        "--data",
        EXPERIMENT,
        *tiny_overrides(tiny_synthloc, tmp_path / "l"),
        "--input-size",
        "64",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--overlays",
        "4",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| paper: CUB-200-2011, GoogLeNet-GAP | 63.0 | 67.8 | 70.5 | 41.0 |" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"full", "cam_crop", "gt_crop"}
    assert all(0 <= v <= 1 for v in results["accuracy"].values()) and 0 <= results["cam_box_iou_hit"] <= 1
    assert results["arms"]["full"]["eval_images"] == TINY_SYNTH["n_val"]
    ours = next(line for line in printed.splitlines() if line.startswith("| ours: synthloc, efficientnet_lite0"))
    assert ours.split("|")[2].strip() == f"{100 * results['accuracy']['full']:.1f}"
    report = (out / "report.md").read_text()
    assert "**predicts**" in report and "on train images it is the prediction" in report
    overlay = Image.open(out / "finegrained_overlays.png")
    assert overlay.width >= 3 * 224  # image, CAM crop, GT crop side by side
    files = sorted(p.name for p in cache.glob("*.npz"))
    assert cli.main(argv) == 0  # everything from the cache: no new file, the same table
    assert sorted(p.name for p in cache.glob("*.npz")) == files and ours in capsys.readouterr().out


def test_fc_checkpoint_and_box_free_dataset(tmp_path, capsys):
    fc = fc_checkpoint(tmp_path / "fc.ckpt")
    root = write_indoor67(tmp_path / "indoor67", per_class=3)
    data = tmp_path / "indoor.yaml"
    data.write_text(f"data: {{name: indoor67, root: {root}, num_workers: 0}}\n")
    out = tmp_path / "out"
    assert cli.main(["finegrained", str(fc), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{fc} has no CAM" in err and "FC" in err and not out.exists()

    argv = [
        "finegrained",
        "efficientnet_lite0",
        "--data",
        str(data),
        "--input-size",
        "64",
        "--out",
        str(out),
        "--no-cache",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "no ground-truth boxes" in printed
    ours = next(line for line in printed.splitlines() if line.startswith("| ours"))
    assert ours.rstrip(" |").endswith("| - | -")  # no GT-box crop, no IoU
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"full", "cam_crop"} and results["cam_box_iou_hit"] is None
    assert "no ground-truth boxes" in (out / "report.md").read_text()
