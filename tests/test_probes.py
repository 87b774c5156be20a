"""`camexp probe`: linear SVMs on a backbone's cached pooled features, CAMs from their weights, concept detectors
with hard-negative mining. Backbones are real CAMNet checkpoints (tiny SynthNet-GAP, an FC AlexNet) in files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from camexp import cli
from camexp.features.concepts import mine_hard_negatives, top_scored
from camexp.features.extract import cached_features, evaluation_split, load_backbone, probe_data
from camexp.features.probes import NO_BOXES_NOTE, class_scores, class_weight_matrix
from camexp.features.svm import fit_linear_svm, svm_cams
from tests.conftest import REPO, TINY_SYNTH, tiny_overrides
from tests.datasets_fixtures import write_image, write_indoor67
from tests.probe_fixtures import save_checkpoint

SYNTH_YAML = str(REPO / "experiments" / "synthloc_gap.yaml")


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_synthloc, tmp_path_factory) -> Path:
    """last.ckpt of `camexp train` (SynthNet-GAP, width 8, 64 px, one epoch) on the tiny SynthLoc set."""
    from camexp import config
    from camexp.train import train

    logs = tmp_path_factory.mktemp("probe_logs")
    cfg = config.load(SYNTH_YAML, tiny_overrides(tiny_synthloc, logs))
    train(cfg)
    return logs / cfg.name / "version_0" / "checkpoints" / "last.ckpt"


def data_words(root: Path) -> list[str]:
    """The tiny SynthLoc set as `camexp probe --data` words (no workers: the tests stay in one process)."""
    synth = {f"data.synth.{k}": v for k, v in TINY_SYNTH.items() if k != "seed"}
    return [SYNTH_YAML, f"data.root={root}", "data.num_workers=0", *(f"{k}={v}" for k, v in synth.items())]


# -- the SVM as a CAM head ------------------------------------------------------------------------------------------


def test_svm_cam_is_the_einsum_of_the_raw_space_weights_and_the_maps():
    """By hand: w^c = coef / scale of the standardizing pipeline; the CAM is sum_k w_k^c f_k(x, y); its mean over
    the map plus the raw-space bias is the SVM's decision value on the GAP features."""
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.gamma(1.0, 1.0, (60, 12, 3, 4)).astype(np.float32))
    labels = np.arange(60) % 3
    maps[np.arange(60), labels] += 1.5  # class c fires unit c: separable, but not trivially
    pooled = maps.mean((2, 3)).numpy()
    probe = fit_linear_svm(pooled, labels)
    scaler, svm = probe.pipeline[0], probe.pipeline[-1]
    by_hand = svm.coef_ / scaler.scale_  # 3 x 12 raw-space weights
    bias = svm.intercept_ - by_hand @ scaler.mean_

    weights, biases = class_weight_matrix(probe, num_classes=3)
    np.testing.assert_allclose(weights, by_hand, rtol=1e-5)
    np.testing.assert_allclose(biases, bias, rtol=1e-4, atol=1e-5)
    cams = svm_cams(maps, weights, torch.from_numpy(labels))
    expected = np.einsum("nkhw,nk->nhw", maps.double().numpy(), by_hand[labels])
    np.testing.assert_allclose(cams.numpy(), expected, rtol=1e-4, atol=1e-5)
    all_cams = svm_cams(maps, weights)  # N x C x h x w
    decision = all_cams.mean((2, 3)).numpy() + bias
    np.testing.assert_allclose(decision, probe.pipeline.decision_function(pooled), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(class_scores(probe, pooled, 3).argmax(1), probe.predict(pooled))


def test_two_class_svm_gives_opposite_rows_and_absent_classes_are_never_predicted():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    labels = np.where(features[:, 0] > 0, 3, 1)  # dataset classes 1 and 3 of 0..3; 0 and 2 never seen
    probe = fit_linear_svm(features, labels)
    weights, biases = class_weight_matrix(probe, num_classes=4)
    np.testing.assert_allclose(weights[1], -weights[3])
    assert not weights[[0, 2]].any() and np.isneginf(biases[[0, 2]]).all()
    scores = class_scores(probe, features, 4)
    np.testing.assert_array_equal(scores.argmax(1), probe.predict(features))
    np.testing.assert_allclose(scores[:, 3], probe.pipeline.decision_function(features), rtol=1e-6)


# -- hard-negative mining -------------------------------------------------------------------------------------------


def test_top_scored_takes_the_highest_unused_scores_ties_in_index_order():
    scores = np.array([0.5, 2.0, 2.0, -1.0, 3.0, 2.0])
    available = np.array([True, True, True, True, False, True])
    np.testing.assert_array_equal(top_scored(scores, available, 3), [1, 2, 5])
    np.testing.assert_array_equal(top_scored(scores, available, 10), [1, 2, 5, 0, 3])


def test_hard_negative_mining_adds_exactly_the_top_scored_negatives():
    rng = np.random.default_rng(0)
    positives = rng.normal(1.0, 1.0, (30, 8))
    negatives = rng.normal(-1.0, 1.0, (80, 8))
    negatives[:10] += 1.8  # hard ones: close to the positives
    mined = mine_hard_negatives(positives, negatives, rounds=3, initial=12, per_round=5, seed=3)
    assert [len(r.negatives) for r in mined.rounds] == [12, 17, 22, 27]
    assert [len(r.added) for r in mined.rounds] == [5, 5, 5, 0]
    for current, following in zip(mined.rounds, mined.rounds[1:], strict=False):
        scores = current.detector.scores(negatives)[:, 0]
        unused = np.setdiff1d(np.arange(len(negatives)), current.negatives)
        # exactly the 5 highest scores among the unused, and nothing else joins the next round
        expected = unused[np.argsort(-scores[unused], kind="stable")[:5]]
        np.testing.assert_array_equal(np.sort(current.added), np.sort(expected))
        assert scores[current.added].min() >= np.delete(scores, np.r_[current.negatives, current.added]).max()
        np.testing.assert_array_equal(following.negatives, np.union1d(current.negatives, current.added))
    assert np.isin(np.arange(10), mined.negatives).sum() >= 8  # the planted hard negatives were found
    again = mine_hard_negatives(positives, negatives, rounds=3, initial=12, per_round=5, seed=3)
    np.testing.assert_array_equal(again.rounds[0].negatives, mined.rounds[0].negatives)  # seeded random start


def test_mining_stops_when_no_negative_is_left():
    rng = np.random.default_rng(0)
    mined = mine_hard_negatives(rng.normal(1, 1, (8, 4)), rng.normal(-1, 1, (6, 4)), rounds=5, initial=2, per_round=3)
    assert [len(r.negatives) for r in mined.rounds] == [2, 5, 6]


# -- feature cache ------------------------------------------------------------------------------------------------


def test_features_of_another_backbone_are_extracted_not_read_from_its_cache(tiny_synthloc, tmp_path):
    cache = tmp_path / "cache"
    first = load_backbone(save_checkpoint(tmp_path / "a.ckpt", seed=0), device="cpu")
    second = load_backbone(save_checkpoint(tmp_path / "b.ckpt", seed=1), device="cpu")
    _, datamodule = probe_data([SYNTH_YAML], data_words(tiny_synthloc)[1:], first)
    split = evaluation_split(datamodule, "val")
    a = cached_features(first, split, cache)
    b = cached_features(second, split, cache)
    assert not a.from_cache and not b.from_cache  # same images, same file layout: still two extractions
    assert a.cache_path != b.cache_path and len(list(cache.glob("features_*.npz"))) == 2
    assert not np.allclose(a.features, b.features)
    again = cached_features(first, split, cache)
    assert again.from_cache and again.cache_path == a.cache_path
    np.testing.assert_array_equal(again.features, a.features)
    np.testing.assert_array_equal(cached_features(second, split, cache).features, b.features)


# -- the command ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_probe_cli_reports_the_svm_accuracy_on_the_cached_features(trained_checkpoint, tiny_synthloc, tmp_path,
                                                                   capsys):  # fmt: skip
    out, cache = tmp_path / "probe", tmp_path / "cache"
    words = ["probe", "--features", str(trained_checkpoint), "--data", *data_words(tiny_synthloc)]
    assert cli.main([*words, "--out", str(out), "--cache", str(cache), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert "features extracted" in printed.out and "from cache" not in printed.out
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert "![SVM CAMs of the val split](overlays.png)" in report and (out / "overlays.png").stat().st_size > 1000

    backbone = load_backbone(trained_checkpoint, device="cpu")
    cfg, datamodule = probe_data([SYNTH_YAML], data_words(tiny_synthloc)[1:], backbone)
    train = cached_features(backbone, evaluation_split(datamodule, "train"), cache)
    val = cached_features(backbone, evaluation_split(datamodule, "val"), cache)
    assert train.from_cache and val.from_cache and len(val.labels) == TINY_SYNTH["n_val"]
    accuracy = fit_linear_svm(train.features, train.labels, seed=cfg.seed).accuracy(val.features, val.labels)
    assert results["metrics"]["val/acc_top1"] == pytest.approx(accuracy, abs=1e-6)  # float32 in the callback
    assert results["svm"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert f"| classification top-1 | {100 * accuracy:.2f} |" in report
    metrics = results["metrics"]
    for key in ("val/loc_top1", "val/loc_gt_known", "val/maxboxacc_v2", "val/baseline_center_gaussian/loc_gt_known",
                "val/baseline_center_gaussian/maxboxacc_v2"):  # fmt: skip
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val/loc_top1"] <= min(metrics["val/loc_gt_known"], metrics["val/acc_top1"])
    assert results["box_metrics"] and NO_BOXES_NOTE not in report

    assert cli.main([*words, "--out", str(tmp_path / "again"), "--cache", str(cache), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("features read from cache") == 2 and "extracted" not in printed
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["metrics"] == results["metrics"]  # the same SVM, the same CAMs


@pytest.mark.slow
def test_probe_on_a_dataset_without_boxes_skips_box_metrics_and_says_so(tmp_path, capsys):
    root = write_indoor67(tmp_path / "indoor67", per_class=4)
    ckpt = save_checkpoint(tmp_path / "gap.ckpt")
    words = [SYNTH_YAML, "data.name=indoor67", f"data.root={root}", "data.num_workers=0"]
    out = tmp_path / "probe"
    assert cli.main(["probe", "--features", str(ckpt), "--data", *words, "--out", str(out), "--no-cache"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert not results["box_metrics"] and "val/acc_top1" in results["metrics"]
    assert not any("loc_" in key or "maxboxacc" in key for key in results["metrics"])
    report = (out / "report.md").read_text()
    assert NO_BOXES_NOTE in report and "(overlays.png)" in report


def test_fc_network_checkpoint_is_refused_naming_the_flag(tiny_synthloc, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "alexnet_fc.ckpt", network="alexnet_small")
    args = ["probe", "--features", str(ckpt), "--data", *data_words(tiny_synthloc), "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    message = capsys.readouterr().err
    assert f"--features {ckpt}" in message and "has no CAM" in message and "FC baseline" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("empty", ["positives", "negatives"])
def test_empty_concept_folder_is_refused_before_any_work(tmp_path, capsys, empty):
    folders = {name: tmp_path / name for name in ("positives", "negatives")}
    for name, folder in folders.items():
        folder.mkdir()
        if name != empty:
            for i in range(3):
                write_image(folder / f"{name}_{i}.jpg", (32, 32))
    (folders[empty] / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    # a backbone that does not exist: loading it would fail differently, so the folders are checked first
    args = ["probe", "--features", "no_such_network", "--positives", str(folders["positives"]),
            "--negatives", str(folders["negatives"]), "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 2
    message = capsys.readouterr().err
    assert f"--{empty} {folders[empty]} holds no image files" in message and "no_such_network" not in message
    assert message.count("\n") == 1 and not out.exists()  # one paragraph, nothing written


def test_concept_folder_with_one_image_or_a_missing_flag_is_refused(tmp_path, capsys):
    positives, negatives = tmp_path / "p", tmp_path / "n"
    write_image(positives / "only.jpg", (32, 32))
    for i in range(2):
        write_image(negatives / f"n{i}.jpg", (32, 32))
    assert cli.main(["probe", "--features", "x", "--positives", str(positives), "--negatives", str(negatives)]) == 2
    assert "holds only one image (only.jpg)" in capsys.readouterr().err
    assert cli.main(["probe", "--features", "x", "--positives", str(negatives)]) == 2
    assert "--negatives is missing" in capsys.readouterr().err
