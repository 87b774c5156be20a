"""`camexp evaluate-maps` and `camexp evaluate`: exact wsoleval numbers from saved maps, held-out protocol,
and a checkpoint evaluation whose saved maps re-score to its own report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import wsoleval_reference as R
from omegaconf import OmegaConf

from camexp.wsol import protocol as W
from camexp.wsol.accumulator import WSOLResult, heldout_metrics
from tests.conftest import REPO, tiny_overrides

IOUS = (30, 50, 70)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "camexp", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def smooth_map(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A few gaussian blobs plus noise: several contours at many thresholds, like a real CAM."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    cam = 0.3 * rng.random(shape)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, s = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(1, 3)
        cam += rng.uniform(0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return cam.astype(np.float32)


# (image id, (w, h), boxes): ids with subfolders and extensions, several boxes per image, odd sizes.
BOX_SET = [
    ("001.Albatross/a_0001.jpg", (300, 200), [(30, 20, 180, 150)]),
    ("001.Albatross/a_0002.jpg", (500, 375), [(0, 0, 240, 200), (260, 150, 499, 374)]),
    ("002.Ani/n_0003.jpg", (220, 330), [(60, 100, 200, 320)]),
    ("002.Ani/sub/n_0004.jpg", (640, 480), [(100, 50, 400, 300), (420, 300, 600, 470), (5, 5, 60, 60)]),
    ("003.Auklet/k_0005.jpg", (224, 224), [(50, 60, 170, 200)]),
    ("003.Auklet/k_0006.jpg", (333, 250), [(10, 10, 320, 240)]),
]


def write_box_split(folder, maps_dir, rng, constant_last: bool = True) -> dict[str, np.ndarray]:
    """wsolevaluation box metadata + random smooth maps of assorted shapes; returns the raw maps."""
    folder.mkdir(parents=True)
    (folder / "image_ids.txt").write_text("".join(f"{i}\n" for i, _, _ in BOX_SET))
    (folder / "class_labels.txt").write_text("".join(f"{i},{n // 2}\n" for n, (i, _, _) in enumerate(BOX_SET)))
    (folder / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, (w, h), _ in BOX_SET))
    rows = [f"{i},{x0},{y0},{x1},{y1}\n" for i, _, boxes in BOX_SET for x0, y0, x1, y1 in boxes]
    (folder / "localization.txt").write_text("".join(rows))
    maps = {}
    for n, (image_id, _, _) in enumerate(BOX_SET):
        shape = [(14, 14), (7, 9), (224, 224), (28, 28), (13, 13), (14, 14)][n]
        cam = smooth_map(rng, shape)
        if constant_last and n == len(BOX_SET) - 1:
            cam = np.full(shape, 0.25, np.float32)  # constant: all zeros after normalization
        path = maps_dir / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, cam)
        maps[image_id] = cam
    return maps


def reference_box_counts(maps: dict[str, np.ndarray], interval: float = 0.001) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's num_correct for V1 (IoU 50, largest) and V2 (30/50/70, all contours), via the reference port."""
    grid = list(np.arange(0, 1, interval))
    v1 = np.zeros((1, len(grid)))
    v2 = np.zeros((3, len(grid)))
    for image_id, size, boxes in BOX_SET:
        scoremap = R.reference_normalize_scoremap(maps[image_id])
        gt = np.array([R.reference_resize_bbox(b, size, (224, 224)) for b in boxes])
        v1 += R.reference_box_hits(scoremap, gt, (50,), multi_contour_eval=False, cam_threshold_list=grid)
        v2 += R.reference_box_hits(scoremap, gt, IOUS, multi_contour_eval=True, cam_threshold_list=grid)
    return v1, v2


@pytest.fixture(scope="module")
def box_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("boxes")
    rng = np.random.default_rng(5)
    val_maps = write_box_split(root / "meta", root / "maps_val", rng)
    test_maps = write_box_split(root / "meta_test", root / "maps_test", rng, constant_last=False)
    return root, val_maps, test_maps


def test_evaluate_maps_equals_the_reference_port_digit_for_digit(box_split, tmp_path):
    root, maps, _ = box_split
    out = tmp_path / "numbers.json"
    done = run_cli("evaluate-maps", "--metadata", root / "meta", "--maps", root / "maps_val", "--json", out)
    assert done.returncode == 0, done.stderr
    got = json.loads(out.read_text())

    v1, v2 = reference_box_counts(maps)
    assert got["counts"]["hits_v1"] == v1[0].astype(int).tolist()
    assert got["counts"]["hits_v2"] == v2.astype(int).tolist()
    n = len(BOX_SET)
    assert got["maxboxacc"] == R.reference_maxboxacc(v1, n)[0]
    per_iou = R.reference_maxboxacc(v2, n)
    assert got["maxboxacc_v2"] == float(np.average(per_iou))
    assert [got["maxboxacc_v2_per_iou"][str(i)] for i in IOUS] == per_iou
    assert 0 < got["maxboxacc_v2"] < 100  # the set is neither trivially solved nor hopeless
    assert got["pxap"] is None and got["num_images"] == n
    assert f"MaxBoxAcc   (IoU 50, largest contour) : {got['maxboxacc']:7.3f} %" in done.stdout


def test_largest_contour_rule_and_other_ious(box_split, tmp_path):
    root, maps, _ = box_split
    out = tmp_path / "numbers.json"
    args = ["--metadata", root / "meta", "--maps", root / "maps_val", "--json", out, "--iou", "40", "60", "--largest"]
    done = run_cli("evaluate-maps", *args, "--cam-curve-interval", "0.01")
    assert done.returncode == 0, done.stderr
    got = json.loads(out.read_text())
    grid = list(np.arange(0, 1, 0.01))
    expected = np.zeros((2, 100))
    for image_id, size, boxes in BOX_SET:
        gt = np.array([R.reference_resize_bbox(b, size, (224, 224)) for b in boxes])
        scoremap = R.reference_normalize_scoremap(maps[image_id])
        expected += R.reference_box_hits(scoremap, gt, (40, 60), multi_contour_eval=False, cam_threshold_list=grid)
    assert got["counts"]["hits_v2"] == expected.astype(int).tolist()
    assert got["iou_thresholds"] == [40, 60] and got["multi_contour"] is False and got["num_thresholds"] == 100


def write_mask_split(folder, maps_dir, rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """OpenImages-style metadata: instance masks (one image has two), ignore masks on first rows only."""
    folder.mkdir(parents=True)
    ids = ["test/x/aa.jpg", "test/x/bb.jpg", "test/y/cc.jpg"]
    rows, truth = [], {}
    for n, image_id in enumerate(ids):
        h, w = (120, 90) if n != 1 else (200, 300)
        instances = []
        for k in range(2 if n == 1 else 1):
            m = np.zeros((h, w), np.uint8)
            y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            m[y0 : y0 + h // 3, x0 : x0 + w // 3] = 255
            name = f"masks/{image_id}_{k}.png"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / name), m)
            instances.append(m)
        ignore = np.zeros((h, w), np.uint8)
        ignore[: h // 4, :] = 255
        cv2.imwrite(str(folder / f"masks/{image_id}_ignore.png"), ignore)
        rows.append(f"{image_id},masks/{image_id}_0.png,masks/{image_id}_ignore.png\n")
        rows += [f"{image_id},masks/{image_id}_{k}.png,\n" for k in range(1, len(instances))]
        # upstream get_mask(): instances | , ignore minus foreground, at 224 x 224 by nearest neighbour
        resize = lambda a: cv2.resize(np.float32(a), (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5  # noqa: E731
        fg = np.stack([resize(m) for m in instances]).any(0)
        ign = resize(ignore) & ~fg
        cam = smooth_map(rng, (14, 14))
        path = maps_dir / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, cam)
        truth[image_id] = (cam, fg.astype(np.uint8) + 255 * ign.astype(np.uint8))
    (folder / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (folder / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (folder / "localization.txt").write_text("".join(rows))
    return truth


def test_pxap_from_mask_metadata_equals_the_reference_port(tmp_path):
    truth = write_mask_split(tmp_path / "meta", tmp_path / "maps", np.random.default_rng(2))
    out = tmp_path / "numbers.json"
    done = run_cli("evaluate-maps", "--metadata", tmp_path / "meta", "--maps", tmp_path / "maps", "--json", out)
    assert done.returncode == 0, done.stderr
    got = json.loads(out.read_text())
    fg_total, bg_total = np.zeros(1002), np.zeros(1002)
    for cam, mask in truth.values():
        fg, bg = R.reference_pixel_histograms(R.reference_normalize_scoremap(cam), mask)
        fg_total += fg
        bg_total += bg
    assert got["pxap"] == R.reference_pxap(fg_total, bg_total)
    assert got["num_mask_images"] == 3 and got["num_images"] == 0 and "maxboxacc" not in got
    assert got["counts"]["fg_hist"] == fg_total.astype(int).tolist()


def test_upstream_saved_maps_are_scored_unchanged():
    # upstream's inference.py saves maps already resized to 224 and normalized: re-normalizing is the identity
    cam = R.reference_normalize_scoremap(smooth_map(np.random.default_rng(0), (14, 14)))
    assert np.array_equal(W.normalize_scoremap(cam), cam)


def test_missing_map_names_the_file_and_the_metadata_line(box_split, tmp_path):
    root, _, _ = box_split
    maps = tmp_path / "maps"
    for image_id, _, _ in BOX_SET[:3]:
        (maps / f"{image_id}.npy").parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", np.ones((4, 4), np.float32))
    done = run_cli("evaluate-maps", "--metadata", root / "meta", "--maps", maps)
    assert done.returncode == 2
    assert "3 of 6 score maps are missing" in done.stderr
    assert str(maps / "002.Ani" / "sub" / "n_0004.jpg.npy") in done.stderr and "line 4" in done.stderr
    assert "Traceback" not in done.stderr


def metadata_copy(root: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The box split's metadata copied to tmp_path/meta but for localization.txt, whose rows are returned to edit."""
    meta = tmp_path / "meta"
    meta.mkdir()
    for name in ("image_ids.txt", "image_sizes.txt", "class_labels.txt"):
        (meta / name).write_text((root / "meta" / name).read_text())
    return meta, (root / "meta" / "localization.txt").read_text().splitlines()


def test_malformed_metadata_line_names_the_file_and_line(box_split, tmp_path):
    root, _, _ = box_split
    meta, rows = metadata_copy(root, tmp_path)
    rows[2] = rows[2].rsplit(",", 1)[0] + ",abc"
    (meta / "localization.txt").write_text("\n".join(rows) + "\n")
    done = run_cli("evaluate-maps", "--metadata", meta, "--maps", root / "maps_val")
    assert done.returncode == 2
    assert (
        f"Malformed line 3 in {meta / 'localization.txt'}" in done.stderr and "'abc' is not an integer" in done.stderr
    )


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_an_infinite_value_in_a_saved_map_is_refused_and_a_nan_map_scores_as_zeros(box_split, tmp_path, value):
    """+-inf used to end in a ValueError traceback (or a silently zeroed map): the saved file and its image id are
    named. NaN keeps upstream's documented rule: the map scores as all zeros, digit for digit."""
    import shutil

    root, maps, _ = box_split
    copied = tmp_path / "maps"
    shutil.copytree(root / "maps_val", copied)
    image_id = BOX_SET[1][0]
    broken = maps[image_id].copy()
    broken[2, 3] = value
    np.save(copied / f"{image_id}.npy", broken)
    out = tmp_path / "numbers.json"
    done = run_cli("evaluate-maps", "--metadata", root / "meta", "--maps", copied, "--json", out, "--no-progress")
    if np.isnan(value):
        assert done.returncode == 0, done.stderr
        v1, v2 = reference_box_counts({**maps, image_id: broken})
        got = json.loads(out.read_text())
        assert got["counts"]["hits_v1"] == v1[0].astype(int).tolist()
        assert got["counts"]["hits_v2"] == v2.astype(int).tolist()
        return
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert str(copied / f"{image_id}.npy") in done.stderr and repr(image_id) in done.stderr
    assert "infinite value" in done.stderr and "row 2, column 3" in done.stderr and not out.exists()


def test_a_first_localization_row_with_three_fields_is_reported_as_itself(box_split, tmp_path):
    """It used to switch the file to mask rows and blame line 2 for having 5 fields."""
    root, _, _ = box_split
    meta, rows = metadata_copy(root, tmp_path)
    rows[0] = rows[0].rsplit(",", 2)[0]  # image_id,x0,y0
    (meta / "localization.txt").write_text("\n".join(rows) + "\n")
    done = run_cli("evaluate-maps", "--metadata", meta, "--maps", root / "maps_val")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"Malformed line 1 in {meta / 'localization.txt'}" in done.stderr
    assert "expected 5 comma-separated fields (image_id,x0,y0,x1,y1), found 3" in done.stderr
    assert f"{len(rows) - 1} of the file's {len(rows)} rows are box rows" in done.stderr


# -- held-out protocol ------------------------------------------------------------------------------


def counts(hits_v1, hits_v2, n) -> WSOLResult:
    return WSOLResult(
        thresholds=np.array([0.0, 0.25, 0.5, 0.75]),
        iou_thresholds=IOUS,
        multi_contour=True,
        num_images=n,
        hits_v1=np.array(hits_v1),
        hits_v2=np.array(hits_v2),
    )


def test_heldout_threshold_is_chosen_on_one_split_and_applied_to_the_other():
    # selection split (4 images): V1 best at index 1 (3 hits; index 2 ties and loses to the first);
    # V2 rows sum to [3, 5, 6, 3] -> index 2, although IoU 30 alone would pick index 1.
    selection = counts([1, 3, 3, 2], [[2, 4, 3, 1], [1, 1, 2, 1], [0, 0, 1, 1]], 4)
    heldout = counts([4, 1, 5, 5], [[5, 5, 2, 0], [4, 1, 1, 1], [1, 0, 0, 0]], 5)
    got = heldout_metrics(selection, heldout)
    assert got["maxboxacc"] == 20.0 and got["maxboxacc_threshold"] == 0.25  # 1 of 5 at index 1, not its own best 100%
    assert got["maxboxacc_v2_threshold"] == 0.5
    assert got["maxboxacc_v2_per_iou"] == {"30": 40.0, "50": 20.0, "70": 0.0}
    assert got["maxboxacc_v2"] == pytest.approx(20.0)
    # the held-out split's own optimum is higher: the protocol's whole point
    assert heldout.metrics(percent=True)["maxboxacc"] == 100.0 and heldout.metrics()["maxboxacc"] == 1.0


def test_heldout_cli_applies_the_selected_threshold(box_split, tmp_path):
    root, val_maps, test_maps = box_split
    out = tmp_path / "numbers.json"
    done = run_cli(
        "evaluate-maps", "--metadata", root / "meta", "--maps", root / "maps_val", "--cam-curve-interval", "0.01",
        "--heldout-metadata", root / "meta_test", "--heldout-maps", root / "maps_test", "--json", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(out.read_text())["heldout"]["at_selected"]
    val_v1, val_v2 = reference_box_counts(val_maps, 0.01)
    test_v1, test_v2 = reference_box_counts(test_maps, 0.01)
    i1, i2 = int(val_v1[0].argmax()), int(val_v2.sum(0).argmax())
    n = len(BOX_SET)
    assert got["maxboxacc"] == test_v1[0, i1] * 100.0 / n
    assert [got["maxboxacc_v2_per_iou"][str(i)] for i in IOUS] == [test_v2[r, i2] * 100.0 / n for r in range(3)]
    assert got["maxboxacc_threshold"] == np.arange(0, 1, 0.01)[i1]
    assert (i1, i2) != (int(test_v1[0].argmax()), int(test_v2.sum(0).argmax()))  # not the test split's own choice
    assert "held-out protocol" in done.stdout


# -- camexp evaluate on a tiny trained checkpoint ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_synthloc, tmp_path_factory):
    """One epoch of the default experiment; a 0.5 CAM threshold so the 1-epoch model localizes some images."""
    from camexp import config
    from camexp.train import train

    logs = tmp_path_factory.mktemp("logs")
    overrides = tiny_overrides(tiny_synthloc, logs, **{"eval.cam_threshold": 0.5})
    train(config.load(REPO / "experiments" / "synthloc_gap.yaml", overrides))
    return logs / "synthloc_gap" / "version_0"


@pytest.mark.slow
def test_evaluate_checkpoint_report_maps_and_metrics_agree(tiny_run):
    from camexp.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(
        tiny_run / "checkpoints" / "last.ckpt", ["trainer.enable_progress_bar=false"], save_maps=True
    )
    out = tiny_run / "eval_val"
    for name in ("report.md", "results.json", "wsoleval.json", "curves.png", "extremes.png"):
        assert (out / name).is_file(), name
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt", "masks.txt"):
        assert (out / "metadata" / name).is_file(), name
    ids = (out / "metadata" / "image_ids.txt").read_text().split()
    assert len(ids) == 21
    assert np.load(out / "maps" / f"{ids[0]}.npy").shape == (8, 8)  # raw CAM at feature resolution (64 / 8)

    # the paper metrics equal what the training run logged on the same weights and data
    trained = json.loads((tiny_run / "results.json").read_text())
    paper_keys = [f"val/{k}" for k in ("acc_top1", "acc_top5", "loc_top1", "loc_top5", "loc_gt_known", "num_images")]
    assert {k: results[k] for k in paper_keys} == {k: trained[k] for k in paper_keys}
    assert trained["val/loc_gt_known"] > 0 and trained["val/acc_top1"] > 0
    assert "val/loc_top5_heuristic" in results  # evaluate always scores Table 3's heuristic

    # evaluate-maps on the saved maps prints the report's wsoleval numbers
    rescored = tiny_run / "rescored.json"
    done = run_cli("evaluate-maps", "--metadata", out / "metadata", "--maps", out / "maps", "--json", rescored)
    assert done.returncode == 0, done.stderr
    again, reported = json.loads(rescored.read_text()), json.loads((out / "wsoleval.json").read_text())
    for key in ("maxboxacc", "maxboxacc_v2", "maxboxacc_v2_per_iou", "pxap", "counts", "num_images"):
        assert again[key] == reported[key], key
    assert results["val/maxboxacc"] == reported["maxboxacc"] / 100 and reported["pxap"] is not None
    report = (out / "report.md").read_text()
    assert f"| {reported['maxboxacc']:.2f} |" in report and "localization top-5 (Table 3 heuristic)" in report
    picture = cv2.imread(str(out / "extremes.png"))
    assert picture is not None and picture.shape[1] >= 8 * 128


@pytest.mark.slow
def test_evaluate_backprop_saves_input_resolution_saliency(tiny_run, tmp_path):
    from camexp.evaluate import evaluate_checkpoint

    out = tmp_path / "bp"
    results = evaluate_checkpoint(
        tiny_run / "checkpoints" / "last.ckpt", ["eval.method=backprop", "trainer.enable_progress_bar=false"],
        split="test", out_dir=out, save_maps=True, cam_curve_interval=0.01,
    )  # fmt: skip
    ids = (out / "metadata" / "image_ids.txt").read_text().split()
    saliency = np.load(out / "maps" / f"{ids[0]}.npy")
    assert saliency.shape == (64, 64) and saliency.min() >= 0  # |gradient| at the input, max over channels
    done = run_cli("evaluate-maps", "--metadata", out / "metadata", "--maps", out / "maps",
                   "--cam-curve-interval", "0.01", "--json", tmp_path / "bp.json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rescored, reported = json.loads((tmp_path / "bp.json").read_text()), json.loads((out / "wsoleval.json").read_text())
    assert rescored["counts"] == reported["counts"] and rescored["maxboxacc_v2"] == reported["maxboxacc_v2"]
    assert results["test/maxboxacc_v2"] == reported["maxboxacc_v2"] / 100
    assert "test/loc_gt_known" in results and "test/loc_top5_heuristic" not in results


@pytest.mark.slow
def test_evaluate_sweeps_the_boxes_once_when_the_run_used_the_wsoleval_protocol(tiny_run, tmp_path, monkeypatch):
    from camexp.evaluate import evaluate_checkpoint
    from camexp.wsol import protocol as W

    sweeps = []
    sweep = W.box_hits_v1_v2

    def counting_sweep(*args, **kwargs):
        sweeps.append(1)
        return sweep(*args, **kwargs)

    monkeypatch.setattr(W, "box_hits_v1_v2", counting_sweep)
    out = tmp_path / "ws"
    results = evaluate_checkpoint(
        tiny_run / "checkpoints" / "last.ckpt", ["eval.protocol=wsoleval", "trainer.enable_progress_bar=false"],
        out_dir=out, cam_curve_interval=0.01,
    )  # fmt: skip
    reported = json.loads((out / "wsoleval.json").read_text())
    # The exact scorers only (CAM's and the centre-Gaussian baseline's), not the callback's as well.
    assert reported["num_images"] == reported["baselines"]["center_gaussian"]["num_images"] == 21
    assert len(sweeps) == 2 * 21
    assert results["val/maxboxacc_v2"] == reported["maxboxacc_v2"] / 100
    assert not [key for key in results if key.endswith("_callback")]
    assert "val/loc_gt_known" in results  # the paper protocol still comes from the CAM callback


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "evaluate"])
@pytest.mark.parametrize("data_classes", [3, 6])
def test_class_count_mismatch_is_one_error_before_any_evaluation(tiny_run, tmp_path, capsys, command, data_classes):
    """A 4-class checkpoint on 3-class data (validate used to print a full table, status 0) or 6-class data
    (validate used to die with IndexError): both commands refuse it with one message, status 2."""
    from camexp.cli import main
    from tests.datasets_fixtures import write_cub

    root = write_cub(tmp_path / "cub", num_classes=data_classes, per_class=2, size=(64, 48))
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    overrides = ["data.name=cub", f"data.root={root}", "data.num_workers=0", "trainer.enable_progress_bar=false"]
    extra = ["--out", str(tmp_path / "out")] if command == "evaluate" else []
    status = main([command, str(ckpt), *overrides, *extra])
    err = capsys.readouterr()
    assert status == 2, err.out + err.err
    message = err.err + err.out
    assert str(ckpt) in message and "trained for 4 classes" in message and f"has {data_classes} classes" in message
    assert "Point data.root" in message and "Traceback" not in message
    assert "maxboxacc" not in err.out  # no metric table
    assert not (tiny_run / "validate").exists() or command == "evaluate"


@pytest.mark.slow
def test_validate_evaluate_and_evaluate_maps_score_border_crossing_boxes_alike(tiny_run, tiny_synthloc, tmp_path,
                                                                                 monkeypatch, capsys):
    """GT boxes that leave the image are clipped once, in original pixels, by every command: validate (wsoleval
    protocol), evaluate --save-maps and evaluate-maps on those maps give the same per-threshold hit counts."""
    import shutil

    from camexp import evaluate as evaluate_module
    from camexp.cli import main

    root = tmp_path / "synthloc"
    shutil.copytree(tiny_synthloc, root)
    val_ids = [line.split()[0] for line in (root / "train_test_split.txt").read_text().splitlines()
               if line.split()[1] == "0"]
    # right border, bottom border (fractional), and a box twice the image: clipped, the whole image, which the
    # low thresholds' whole-frame boxes hit (the unclipped box scored a miss there)
    crossing = {val_ids[0]: "40.0 10.0 40.0 30.0", val_ids[1]: "5.5 50.25 20.0 30.0", val_ids[2]: "0 0 128 128"}
    rows = [line.split(maxsplit=1) for line in (root / "bounding_boxes.txt").read_text().splitlines() if line]
    (root / "bounding_boxes.txt").write_text("".join(f"{i} {crossing.get(i, box)}\n" for i, box in rows))
    paths = dict(line.split() for line in (root / "images.txt").read_text().splitlines() if line)
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    data = [f"data.root={root}", "trainer.enable_progress_bar=false"]

    callbacks = []
    build = evaluate_module.build_cam_callback

    def recording_build(*args, **kwargs):
        callbacks.append(build(*args, **kwargs))
        return callbacks[-1]

    monkeypatch.setattr(evaluate_module, "build_cam_callback", recording_build)
    assert main(["validate", str(ckpt), *data, "eval.protocol=wsoleval", "--out", str(tmp_path / "v.json")]) == 0
    validated = json.loads((tmp_path / "v.json").read_text())["metrics"]
    validated_counts = callbacks[-1].last_wsoleval["val"]
    monkeypatch.undo()

    out = tmp_path / "eval"
    assert main(["evaluate", str(ckpt), *data, "--out", str(out), "--save-maps"]) == 0
    evaluated = json.loads((out / "wsoleval.json").read_text())
    rescored = tmp_path / "rescored.json"
    assert main(["evaluate-maps", "--metadata", str(out / "metadata"), "--maps", str(out / "maps"),
                 "--json", str(rescored)]) == 0
    again = json.loads(rescored.read_text())
    capsys.readouterr()

    # the saved metadata holds the boxes clipped to the image, in original pixels
    sizes = {r.split(",")[0]: tuple(map(int, r.split(",")[1:])) for r in
             (out / "metadata" / "image_sizes.txt").read_text().split()}
    boxes = {}
    for r in (out / "metadata" / "localization.txt").read_text().split():
        boxes.setdefault(r.split(",")[0], []).append(tuple(map(int, r.split(",")[1:])))
    assert boxes[paths[val_ids[0]]] == [(40, 10, 64, 40)] and boxes[paths[val_ids[1]]] == [(6, 50, 26, 64)]
    assert boxes[paths[val_ids[2]]] == [(0, 0, 64, 64)]
    for image_id, image_boxes in boxes.items():
        width, height = sizes[image_id]
        assert all(0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height for x0, y0, x1, y1 in image_boxes)

    # identical counts per threshold, best thresholds and values from the three commands
    n = evaluated["num_images"]
    assert n == again["num_images"] == 21
    assert validated_counts.num_images == n
    assert validated_counts.hits_v1.tolist() == evaluated["counts"]["hits_v1"] == again["counts"]["hits_v1"]
    assert validated_counts.hits_v2.tolist() == evaluated["counts"]["hits_v2"] == again["counts"]["hits_v2"]
    for key in ("maxboxacc", "maxboxacc_v2", "maxboxacc_threshold", "maxboxacc_v2_per_iou"):
        assert evaluated[key] == again[key], key
    assert validated["val/maxboxacc"] == pytest.approx(evaluated["maxboxacc"] / 100, abs=1e-6)
    assert validated["val/maxboxacc_v2"] == pytest.approx(evaluated["maxboxacc_v2"] / 100, abs=1e-6)
    assert validated["val/maxboxacc_threshold"] == pytest.approx(evaluated["maxboxacc_threshold"], abs=1e-6)


# -- evaluate / validate / cam: bad checkpoints, outputs and data roots, refused before any work -------------


def fake_run(tiny_synthloc, folder, **overrides):
    """A run directory as `camexp train` leaves it (config.yaml of the tiny set) with no checkpoint yet."""
    from camexp import config

    run = folder / "lightning_logs" / "synthloc_gap" / "version_0"
    cfg = config.load(REPO / "experiments" / "synthloc_gap.yaml", tiny_overrides(tiny_synthloc, folder, **overrides))
    config.save(cfg, run / "config.yaml")
    (run / "checkpoints").mkdir()
    return run


def torch_file(path, payload) -> None:
    """A real torch.save file: a zip with data.pkl, as a checkpoint is, holding `payload`."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def command_line(command: str, ckpt, tiny_synthloc, out, overrides: tuple[str, ...] = ()) -> list[str]:
    if command == "cam":
        return ["cam", str(tiny_synthloc / "images"), "--ckpt", str(ckpt), "--device", "cpu", "--workers", "0",
                "--out", str(out)]  # fmt: skip
    return [command, str(ckpt), "trainer.enable_progress_bar=false", *overrides, "--out", str(out)]


def error_line(capsys) -> str:
    """The one `camexp: error:` line of a refused command (and no traceback)."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("camexp: error:")]
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    return lines[0]


@pytest.mark.parametrize("command", ["evaluate", "validate", "cam"])
@pytest.mark.parametrize("content", ["zip of a text file", "a tensor"])
def test_a_file_that_is_not_a_checkpoint_is_one_line_naming_it(tiny_synthloc, tmp_path, capsys, command, content):
    """A zip that holds no data.pkl is refused on sight; a real torch file of something else (which used to end
    in an IndexError traceback) when it fails to load. Both name the file, and neither suggests resume=."""
    import zipfile

    import torch

    from camexp.cli import main

    ckpt = fake_run(tiny_synthloc, tmp_path) / "checkpoints" / "last.ckpt"
    if content == "a tensor":
        torch_file(ckpt, torch.zeros(3))
    else:
        with zipfile.ZipFile(ckpt, "w") as archive:
            archive.writestr("notes.txt", "not a checkpoint\n")
    assert main(command_line(command, ckpt, tiny_synthloc, tmp_path / "out")) == 2
    message = error_line(capsys)
    assert str(ckpt) in message and "resume=" not in message
    assert ("no data.pkl" in message) if content != "a tensor" else ("not a camexp checkpoint" in message)


@pytest.mark.parametrize("command", ["evaluate", "validate", "cam"])
def test_a_truncated_checkpoint_names_the_runs_valid_one_in_the_commands_words(tiny_synthloc, tmp_path, capsys,
                                                                                  command):
    """evaluate used to advise resume=, an option of train only."""
    import time

    import torch

    from camexp.cli import main

    checkpoints = fake_run(tiny_synthloc, tmp_path) / "checkpoints"
    older = checkpoints / "step0000002.ckpt"
    torch_file(older, {"state_dict": {"w": torch.ones(1000)}})
    time.sleep(0.02)
    newer = checkpoints / "last.ckpt"
    torch_file(newer, {"state_dict": {"w": torch.ones(1000)}})
    newer.write_bytes(newer.read_bytes()[: newer.stat().st_size // 2])
    assert main(command_line(command, newer, tiny_synthloc, tmp_path / "out")) == 2
    message = error_line(capsys)
    assert str(newer) in message and "truncated" in message and "resume" not in message
    usage = f"camexp cam --ckpt {older}" if command == "cam" else f"camexp {command} {older}"
    assert usage in message


@pytest.fixture
def unwritable_folder(tmp_path):
    """A real folder nobody here can create anything in: a 0o500 folder, or for root (whom permission bits do
    not stop) /sys, where the kernel refuses new entries to everyone."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    try:
        (Path("/sys") / "camexp-write-probe").mkdir()
    except OSError:
        yield Path("/sys")
        return
    (Path("/sys") / "camexp-write-probe").rmdir()
    pytest.skip("/sys accepts new folders on this machine: no folder that root cannot write into")


@pytest.mark.parametrize("command", ["evaluate", "validate", "cam"])
@pytest.mark.parametrize("where", ["an existing file", "an unwritable folder"])
def test_an_unwritable_out_is_refused_before_any_work(tiny_synthloc, tmp_path, capsys, unwritable_folder, command,
                                                      where):
    """evaluate used to find out only after the whole pass (cam with a FileExistsError / PermissionError
    traceback). The data root points at a fresh folder: any work would generate SynthLoc there first."""

    from camexp.cli import main

    ckpt = fake_run(tiny_synthloc, tmp_path) / "checkpoints" / "last.ckpt"
    torch_file(ckpt, {"state_dict": {}})
    blocker = tmp_path / "a_file"
    blocker.write_text("taken\n")
    name = "metrics.json" if command == "validate" else "out"  # validate --out takes a file, the others a folder
    parent = blocker if where == "an existing file" else unwritable_folder
    out = blocker if where == "an existing file" and command != "validate" else parent / name
    fresh = tmp_path / "fresh_synthloc"
    assert main(command_line(command, ckpt, tiny_synthloc, out, (f"data.root={fresh}",))) == 2
    message = error_line(capsys)
    assert "--out" in message and str(out) in message
    assert not fresh.exists() and not (parent / name).exists()


@pytest.mark.parametrize("command", ["evaluate", "validate"])
def test_a_relative_data_root_of_an_older_run_is_not_read_from_another_folder(tiny_synthloc, tmp_path, monkeypatch,
                                                                              capsys, command):
    """Runs saved before camexp recorded data.root absolute hold it as written. Evaluated from another folder it
    used to resolve there (and generate SynthLoc there): now refused, naming both paths and where it exists."""
    import shutil

    from camexp import config
    from camexp.cli import main

    made_in = tmp_path / "project"
    shutil.copytree(tiny_synthloc, made_in / "data" / "synthloc")
    run = made_in / "lightning_logs" / "synthloc_gap" / "version_0"
    cfg = config.load(REPO / "experiments" / "synthloc_gap.yaml",
                      tiny_overrides("data/synthloc", "lightning_logs"))  # fmt: skip
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))  # what older camexp saved: the root as written
    torch_file(run / "checkpoints" / "last.ckpt", {"state_dict": {}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([command, str(run / "checkpoints" / "last.ckpt")]) == 2
    message = error_line(capsys)
    assert f"data.root data/synthloc in {run / 'config.yaml'}" in message
    assert str(elsewhere / "data" / "synthloc") in message and f"data.root={made_in / 'data' / 'synthloc'}" in message
    assert not (elsewhere / "data").exists()  # nothing generated here


def test_a_saved_run_config_records_the_absolute_data_root(tmp_path, monkeypatch):
    from camexp import config

    monkeypatch.chdir(tmp_path)
    for root, expected in ((None, tmp_path / "data" / "synthloc"), ("sets/../sets/x", tmp_path / "sets" / "x")):
        cfg = config.load(REPO / "experiments" / "synthloc_gap.yaml", [f"data.root={root}"] if root else [])
        saved = config.save(cfg, tmp_path / "run" / "config.yaml")
        assert config.load(saved).data.root == str(expected)


@pytest.mark.slow
def test_validate_with_out_writes_its_overlays_beside_the_file_and_nothing_into_the_run(tiny_run, tmp_path, capsys):
    """validate --out FILE used to write the overlays into <run>/validate all the same."""
    from camexp.cli import main

    before = sorted(tiny_run.rglob("*"))
    out = tmp_path / "results" / "metrics.json"
    assert main(["validate", str(tiny_run / "checkpoints" / "last.ckpt"), "trainer.enable_progress_bar=false",
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["metrics"]["val/num_images"] == 21
    overlays = sorted((out.parent / "overlays").glob("*.png"))
    assert overlays and f"CAM overlays: {overlays[0]}" in capsys.readouterr().out
    assert sorted(tiny_run.rglob("*")) == before  # the run directory is left as it was
