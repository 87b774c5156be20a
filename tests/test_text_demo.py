"""The text-detection demo: text rendered onto crops of packaged photos (exact boxes from the drawn pixels),
written as real files, and the concept detector (`camexp probe --positives/--negatives`, `camexp text-demo`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from camexp import cli
from camexp.data.text import generate_text_set, packaged_photos, photo_crop, render_text
from camexp.errors import DatasetError
from camexp.features.concepts import concept_files, mining_sizes, read_concept_boxes
from tests.probe_fixtures import save_checkpoint


@pytest.fixture(scope="module")
def photos():
    return packaged_photos()


def test_text_box_is_the_bounding_box_of_the_pixels_the_drawing_changed(photos):
    fonts, angles = set(), []
    for seed in range(24):
        rng = np.random.default_rng(seed)
        background = photo_crop(rng, photos, 96)
        before = background.copy()
        sample = render_text(background, rng)
        np.testing.assert_array_equal(background, before)  # the background itself is left as it was
        changed = (sample.image != background).any(axis=2)
        rows, cols = np.nonzero(changed)
        assert sample.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        np.testing.assert_array_equal(sample.mask, changed)
        x0, y0, x1, y1 = sample.box
        assert 0 < x0 < x1 < 96 and 0 < y0 < y1 < 96  # inside the margins
        assert changed.sum() >= 0.02 * (x1 - x0) * (y1 - y0)  # strokes, not a filled rectangle or a dot
        fonts.add(sample.font)
        angles.append(sample.angle)
    assert len(fonts) >= 4 and np.ptp(angles) > 20  # several fonts and angles, not one template


def test_text_on_a_background_of_the_text_colour_still_gets_the_box_of_what_changed():
    """A drawn pixel that already had the text's colour did not change: the box follows the changed pixels."""
    background = np.zeros((64, 64, 3), np.uint8)
    background[:, 32:] = 255  # half black, half white: whatever the colour, part of the word may not change
    for seed in range(8):
        sample = render_text(background, np.random.default_rng(seed))
        rows, cols = np.nonzero((sample.image != background).any(axis=2))
        assert sample.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_text_set_is_real_files_deterministic_from_the_seed(tmp_path):
    first = generate_text_set(tmp_path / "a", n=5, size=64, seed=3, progress=False)
    second = generate_text_set(tmp_path / "b", n=5, size=64, seed=3, progress=False)
    other = generate_text_set(tmp_path / "c", n=5, size=64, seed=4, progress=False)
    positives = concept_files(first / "positives", "--positives")
    negatives = concept_files(first / "negatives", "--negatives")
    assert [p.name for p in positives] == [f"text_{i:04d}.jpg" for i in range(5)] and len(negatives) == 5
    for a in [*positives, *negatives, first / "boxes.txt"]:
        b = second / a.relative_to(first)
        assert a.read_bytes() == b.read_bytes()
    assert (first / "boxes.txt").read_text() != (other / "boxes.txt").read_text()
    boxes = read_concept_boxes(first / "boxes.txt", first / "positives", positives)
    from PIL import Image

    for positive, negative, box in zip(positives, negatives, boxes, strict=True):
        diff = np.abs(np.asarray(Image.open(positive), np.int16) - np.asarray(Image.open(negative), np.int16))
        rows, cols = np.nonzero(diff.max(axis=2) > 60)  # the text, through JPEG's 8 x 8 blocks
        x0, y0, x1, y1 = box[0]
        assert len(rows) and x0 - 8 <= cols.min() and cols.max() < x1 + 8 and y0 - 8 <= rows.min()
        assert rows.max() < y1 + 8
    stamp = positives[0].stat().st_mtime_ns
    generate_text_set(first, n=5, size=64, seed=3, progress=False)  # same settings: kept as it is
    assert positives[0].stat().st_mtime_ns == stamp


def test_boxes_file_naming_an_unknown_image_or_missing_a_positive_is_one_error(tmp_path):
    root = generate_text_set(tmp_path / "t", n=3, size=48, seed=0, progress=False)
    positives = concept_files(root / "positives", "--positives")
    lines = (root / "boxes.txt").read_text().splitlines()
    bad = tmp_path / "unknown.txt"
    bad.write_text("\n".join([*lines, "elsewhere.jpg 1 2 3 4"]) + "\n")
    with pytest.raises(DatasetError, match=r"line 5 in .*unknown.txt.*no image elsewhere.jpg under --positives"):
        read_concept_boxes(bad, root / "positives", positives)
    short = tmp_path / "short.txt"
    short.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match=r"no box for 1 positive image\(s\): text_0002.jpg"):
        read_concept_boxes(short, root / "positives", positives)
    flat = tmp_path / "flat.txt"
    flat.write_text("text_0000.jpg 5 5 5 9\n")
    with pytest.raises(DatasetError, match="the box has no area"):
        read_concept_boxes(flat, root / "positives", positives)


@pytest.mark.slow
def test_text_demo_trains_the_detector_with_mining_and_scores_its_cam_boxes(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "gap.ckpt")
    out, cache = tmp_path / "demo", tmp_path / "cache"
    args = ["text-demo", "--features", str(ckpt), "--out", str(out), "--n", "16", "--size", "64", "--rounds", "2",
            "--cache", str(cache), "--device", "cpu"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "features extracted" in printed and "| box hit (paper rule at 0.2, IoU >= 0.5)" in printed
    results = json.loads((out / "results.json").read_text())
    first, per_round = mining_sizes(12)  # 16 negatives, a quarter held out
    assert [r["negatives"] for r in results["rounds"]] == [first, first + per_round, first + 2 * per_round]
    assert [len(r["added"]) for r in results["rounds"]] == [per_round, per_round, 0]
    added = [name for r in results["rounds"] for name in r["added"]]
    assert len(set(added)) == len(added) and all(name.startswith("plain_") for name in added)
    assert results["mined_paired"]["mined"] == len(added) >= results["mined_paired"]["paired"]
    held = results["held_out_positives"]
    assert len(held) == results["images"]["held_out_positives"] == 4
    ious = np.array([r["iou"] for r in held])
    assert results["localization"]["loc_gt_known"] == pytest.approx(np.mean(ious >= 0.5))
    assert results["localization"]["mean_iou"] == pytest.approx(ious.mean(), abs=1e-4)
    assert results["baseline_center_gaussian"]["loc_gt_known"] == pytest.approx(
        np.mean(np.array([r["baseline_iou"] for r in held]) >= 0.5)
    )
    for name in ("concept_overlays.png", "hard_negatives.png"):
        assert (out / name).stat().st_size > 1000 and f"]({name})" in (out / "report.md").read_text()

    # the same command again: the set and the features are reused, the numbers are the same
    assert cli.main(args) == 0
    assert "features read from cache" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["rounds"] == results["rounds"]
