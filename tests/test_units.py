"""`camexp units`: class-specific units ranked by w_k^c, their top images and patches, top-k-unit CAMs, W&B."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from camexp import cli
from camexp.cam import class_activation_maps
from camexp.features.extract import SplitFeatures, cached_features, evaluation_split, load_backbone, probe_data
from camexp.features.svm import fit_linear_svm, raw_space_weights
from camexp.features.units import (
    COMBINATION_COLUMNS,
    TABLE_COLUMNS,
    map_correlation,
    peak_patch,
    svm_weights,
    top_images,
    top_k_weights,
    unit_ranking,
)
from tests.conftest import REPO, TINY_SYNTH, tiny_overrides
from tests.datasets_fixtures import write_indoor67
from tests.tiny_backbones import tiny_gap_checkpoint

EXPERIMENT = str(REPO / "experiments" / "synthloc_gap.yaml")


@pytest.fixture(scope="module")
def ckpt(tiny_synthloc, tmp_path_factory):
    return tiny_gap_checkpoint(tiny_synthloc, tmp_path_factory.mktemp("units_logs"))


def top_unit_cams(maps, weights, class_ids, k, ranking=None):
    """CAMs of `class_ids` from each class's k top units only (the combination view's maps)."""
    return class_activation_maps(maps, top_k_weights(weights, k, ranking), class_ids)


def _checkpoint_weights(ckpt) -> np.ndarray:
    """The classifier weights as the checkpoint file stores them (C x K)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return state["net.classifier.weight"].numpy()


def test_unit_ranking_is_the_argsort_of_the_class_weights():
    weights = np.array([[0.1, -2.0, 0.5, 0.5, 3.0], [1.0, 0.0, -1.0, 2.0, 0.2]])
    assert unit_ranking(weights, 0).tolist() == [4, 2, 3, 0, 1]  # ties: the lower unit first
    assert unit_ranking(weights, 1, top=2).tolist() == [3, 0]
    rng = np.random.default_rng(1)
    big = rng.normal(size=(7, 300))
    for c in range(7):
        assert np.array_equal(unit_ranking(big, c), np.argsort(-big[c]))


def test_top_k_unit_cam_keeps_exactly_the_top_units_and_all_units_give_the_full_cam(ckpt, tiny_synthloc, tmp_path):
    backbone = load_backbone(ckpt, "cpu")
    _, datamodule = probe_data([EXPERIMENT], tiny_overrides(tiny_synthloc, tmp_path), backbone)
    dataset = evaluation_split(datamodule, "val")
    with torch.no_grad():
        maps = backbone.net.forward_features(torch.stack([dataset[i]["image"] for i in range(6)]))
    weights = backbone.net.classifier.weight.detach()
    classes = torch.tensor([0, 1, 2, 3, 0, 1])
    total = weights.shape[1]
    assert torch.equal(top_unit_cams(maps, weights, classes, total), class_activation_maps(maps, weights, classes))
    assert torch.equal(top_unit_cams(maps, weights, classes, total + 5), class_activation_maps(maps, weights, classes))
    for k in (1, 3):
        expected = torch.stack(
            [
                sum(weights[c, u] * maps[n, u] for u in unit_ranking(weights.numpy(), int(c), k))
                for n, c in enumerate(classes)
            ]
        )
        torch.testing.assert_close(top_unit_cams(maps, weights, classes, k), expected)
    kept = top_k_weights(weights, 3)
    assert ((kept != 0).sum(1) == 3).all() and torch.equal(kept.amax(1), weights.amax(1))


def test_svm_ranking_raw_or_standardized_and_top_k_by_ranking():
    rng = np.random.default_rng(2)
    scales = np.array([1.0, 0.01, 5.0, 1.0, 0.2])  # unit 1 hardly varies: a large raw-space weight, little effect
    features = (rng.normal(size=(60, 5)) * scales).astype(np.float32)
    labels = np.repeat([0, 1, 2], 20)
    features[labels == 1, 1] += 0.02
    features[labels == 2, 2] += 5.0
    train = SplitFeatures(features, labels)
    raw = svm_weights(train, ["a", "b", "c"])
    standardized = svm_weights(train, ["a", "b", "c"], rank="standardized")
    np.testing.assert_array_equal(raw.weights, standardized.weights)  # the CAMs' weights are the same
    probe = fit_linear_svm(features, labels)
    np.testing.assert_allclose(standardized.ranking, probe.pipeline[-1].coef_, rtol=1e-5, atol=1e-6)
    assert raw.ranking is None and raw.weights[1].argmax() == 1
    weights, ranking = torch.tensor([[1.0, 5.0, 3.0]]), torch.tensor([[3.0, 1.0, 2.0]])
    assert top_k_weights(weights, 2, ranking).tolist() == [[1.0, 0.0, 3.0]]
    assert top_k_weights(weights, 2).tolist() == [[0.0, 5.0, 3.0]]


def test_top_images_peak_patch_and_map_correlation():
    activations = np.array([0.5, 2.0, 0.1, 2.0, 1.0])
    assert top_images(activations, 3).tolist() == [1, 3, 4]
    assert top_images(activations, 2, np.array([True, False, True, False, True])).tolist() == [4, 0]
    unit_map = np.zeros((20, 30))
    unit_map[2, 28] = 1.0  # peak near the top-right corner: the window is shifted inside
    assert peak_patch(unit_map, 8) == (22, 0, 30, 8)
    unit_map[:] = 0
    unit_map[10, 10] = 1.0
    x0, y0, x1, y1 = peak_patch(unit_map, 7)
    assert (x1 - x0, y1 - y0) == (7, 7) and x0 <= 10 < x1 and y0 <= 10 < y1
    assert peak_patch(unit_map, 50) == (0, 0, 30, 20)
    a = torch.randn(3, 4, 4)
    r = map_correlation(a, torch.stack([2 * a[0] + 1, -a[1], torch.zeros(4, 4)]))
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and torch.isnan(r[2])


@pytest.mark.slow
def test_units_command_grids_combination_and_offline_wandb_table(ckpt, tiny_synthloc, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    argv = [
        "units",
        str(ckpt),
        "--data",
        EXPERIMENT,
        *tiny_overrides(tiny_synthloc, tmp_path / "l"),
        "--top",
        "2",
        "--images",
        "3",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        "--wandb",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    weights = _checkpoint_weights(ckpt)
    total = weights.shape[1]
    assert [c["class_id"] for c in results["classes"]] == list(range(TINY_SYNTH["num_classes"]))
    for entry in results["classes"]:
        c = entry["class_id"]
        assert [u["unit"] for u in entry["units"]] == np.argsort(-weights[c])[:2].tolist()
        assert [u["weight"] for u in entry["units"]] == pytest.approx(np.sort(weights[c])[::-1][:2].tolist())
        for unit in entry["units"]:
            assert len(unit["images"]) == 3 and unit["activations"] == sorted(unit["activations"], reverse=True)
        grid = Image.open(out / entry["grid"])
        assert grid.width > 7 * 100 and grid.height > 2 * 100  # heading + 3 maps + 3 patches per unit row

    # The top images are those where the unit's pooled activation is highest.
    backbone = load_backbone(ckpt, "cpu")
    _, datamodule = probe_data([EXPERIMENT], tiny_overrides(tiny_synthloc, tmp_path / "l"), backbone)
    features = cached_features(backbone, evaluation_split(datamodule, "val"), tmp_path / "cache").features
    unit = results["classes"][0]["units"][0]
    assert unit["images"] == np.argsort(-features[:, unit["unit"]], kind="stable")[:3].tolist()

    combination = results["combination"]
    assert combination["class_source"] == "ground-truth class" and combination["total_units"] == total
    rows = {row[0]: row for row in combination["rows"]}
    assert sorted(rows) == sorted({1, 2, 3, 10, 30, total})  # the defaults, --top and all units
    assert rows[total][2:] == [pytest.approx(1.0), pytest.approx(1.0)]  # all units: the full CAM's box and map
    assert all(0 <= row[1] <= 1 for row in rows.values())
    assert f"| {total} (all) |" in printed and "GT-known loc." in printed

    # W&B (offline): one run under out/wandb, the table readable back from the run files.
    (run,) = (out / "wandb").glob("offline-run-*")
    assert results["wandb"].startswith(str(run)) and "wandb sync" in results["wandb"]
    (table_file,) = (run / "files" / "media" / "table" / "units").glob("top_units_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == TABLE_COLUMNS
    expected = [[e["class_id"], e["class"], u["rank"], u["unit"]] for e in results["classes"] for u in e["units"]]
    assert [row[:4] for row in table["data"]] == expected
    assert [row[5] for row in table["data"]] == [u["images"] for e in results["classes"] for u in e["units"]]
    (combo_file,) = (run / "files" / "media" / "table" / "units").glob("combination_*.table.json")
    combo = json.loads(combo_file.read_text())
    assert combo["columns"] == COMBINATION_COLUMNS
    np.testing.assert_allclose(np.array(combo["data"], float), np.array(combination["rows"], float), rtol=1e-6)
    grids = sorted((run / "files" / "media" / "images" / "units" / "grid").glob("*.png"))
    assert len(grids) == TINY_SYNTH["num_classes"]
    assert Image.open(grids[0]).size == Image.open(out / results["classes"][0]["grid"]).size


@pytest.mark.slow
def test_units_with_svm_weights_rank_by_the_svm(ckpt, tiny_synthloc, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    overrides = tiny_overrides(tiny_synthloc, tmp_path / "l")
    argv = [
        "units",
        str(ckpt),
        "--data",
        EXPERIMENT,
        *overrides,
        "--svm",
        "--classes",
        "2",
        "0",
        "--top",
        "3",
        "--images",
        "2",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--ks",
        "1",
        "5",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["weights"] == "svm" and [c["class_id"] for c in results["classes"]] == [2, 0]
    backbone = load_backbone(ckpt, "cpu")
    _, datamodule = probe_data([EXPERIMENT], overrides, backbone)
    train = cached_features(backbone, evaluation_split(datamodule, "train"), cache)
    assert train.from_cache  # the command cached the train features it fitted the SVM on
    svm, _ = raw_space_weights(fit_linear_svm(train.features, train.labels, seed=0))
    for entry in results["classes"]:
        assert [u["unit"] for u in entry["units"]] == np.argsort(-svm[entry["class_id"]])[:3].tolist()
    assert [row[0] for row in results["combination"]["rows"]] == [1, 3, 5, svm.shape[1]]
    assert "units ranked by its raw-space weight w_k^c" in (out / "report.md").read_text()


def test_units_refuses_classes_out_of_range_and_skips_box_metrics_without_boxes(ckpt, tiny_synthloc, tmp_path, capsys):
    argv = [
        "units",
        str(ckpt),
        "--data",
        EXPERIMENT,
        *tiny_overrides(tiny_synthloc, tmp_path / "l"),
        "--classes",
        "1",
        "7",
        "-2",
        "--out",
        str(tmp_path / "out"),
        "--no-cache",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--classes 7 -2: out of range" in err and "classes 0..3" in err
    assert not (tmp_path / "out").exists()

    root = write_indoor67(tmp_path / "indoor67", per_class=3)
    data = tmp_path / "indoor.yaml"
    data.write_text(f"data: {{name: indoor67, root: {root}, num_workers: 0}}\n")
    out = tmp_path / "scenes"
    argv = [
        "units",
        "efficientnet_lite0",
        "--data",
        str(data),
        "--svm",
        "--input-size",
        "64",
        "--top",
        "1",
        "--images",
        "2",
        "--out",
        str(out),
        "--no-cache",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    assert "no ground-truth boxes" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert all(row[1] is None for row in results["combination"]["rows"])  # no hit rates
    assert len(results["classes"]) == 3 and len(list(out.glob("units_*.png"))) == 3
    assert "no ground-truth boxes" in (out / "report.md").read_text()
