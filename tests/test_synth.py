"""SynthLoc generator: CUB layout on disk, exact boxes and masks, determinism, and the properties that make
it a weakly supervised localization benchmark (scale spread, small discriminative head, clutter off the
object)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from camexp.synth import (
    CLASS_NAMES,
    HEAD_COLOURS,
    METADATA_FILE,
    class_names,
    class_spec,
    generate_synthloc,
    read_metadata,
    render_sample,
)

SMALL = dict(seed=3, n_train=20, n_val=10, size=64, num_classes=10, progress=False)


def _table(root: Path, name: str) -> dict[int, list[str]]:
    """A CUB annotation file as {image_id: [fields...]}."""
    rows = [line.split() for line in (root / name).read_text().splitlines() if line.strip()]
    return {int(r[0]): r[1:] for r in rows}


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(mask)
    return (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_synthloc(tmp_path_factory.mktemp("synth") / "synthloc", **SMALL)


def test_cub_layout_is_complete_and_consistent(small_set: Path):
    root = small_set
    classes = _table(root, "classes.txt")
    images = _table(root, "images.txt")
    labels = _table(root, "image_class_labels.txt")
    split = _table(root, "train_test_split.txt")
    boxes = _table(root, "bounding_boxes.txt")

    assert sorted(classes) == list(range(1, 11))
    assert [classes[c][0] for c in sorted(classes)] == [f"{c + 1:03d}.{n}" for c, n in enumerate(CLASS_NAMES)]
    assert sorted(images) == list(range(1, 31))
    assert set(labels) == set(split) == set(boxes) == set(images)
    assert Counter(v[0] for v in split.values()) == {"1": 20, "0": 10}
    for image_id, (rel,) in images.items():
        folder = classes[int(labels[image_id][0])][0]
        assert rel.startswith(folder + "/") and rel.endswith(".jpg")
        image = cv2.imread(str(root / "images" / rel), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert (root / "images" / rel).read_bytes()[:2] == b"\xff\xd8"  # a real JPEG
        assert (root / "segmentations" / rel).with_suffix(".png").is_file()
    meta = json.loads((root / METADATA_FILE).read_text())
    assert {k: meta[k] for k in ("seed", "n_train", "n_val", "size", "num_classes")} == {
        k: SMALL[k] for k in ("seed", "n_train", "n_val", "size", "num_classes")
    }
    assert read_metadata(root) == meta
    assert not list(root.parent.glob("*.tmp-*"))  # no temporary folder left behind


def test_boxes_are_the_tight_box_of_the_written_mask(small_set: Path):
    images = _table(small_set, "images.txt")
    boxes = _table(small_set, "bounding_boxes.txt")
    for image_id, (rel,) in images.items():
        mask = cv2.imread(str((small_set / "segmentations" / rel).with_suffix(".png")), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert tuple(float(v) for v in boxes[image_id]) == _tight_box(mask == 255)


def test_every_class_appears_in_both_splits(small_set: Path):
    labels = _table(small_set, "image_class_labels.txt")
    split = _table(small_set, "train_test_split.txt")
    train = {labels[i][0] for i in labels if split[i][0] == "1"}
    val = {labels[i][0] for i in labels if split[i][0] == "0"}
    assert train == val == {str(c) for c in range(1, 11)}


def test_same_seed_gives_identical_bytes_other_seed_differs(small_set: Path, tmp_path: Path):
    again = generate_synthloc(tmp_path / "again", **SMALL)
    other = generate_synthloc(tmp_path / "other", **{**SMALL, "seed": SMALL["seed"] + 1})

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    reference = files(small_set)
    assert files(again) == reference
    other_files = files(other)
    jpgs = [k for k in reference if k.endswith(".jpg") and k in other_files]
    assert jpgs and all(reference[k] != other_files[k] for k in jpgs)


def test_existing_output_is_reused_only_when_parameters_match(small_set: Path, tmp_path: Path):
    stamp = (small_set / METADATA_FILE).stat().st_mtime_ns
    assert generate_synthloc(small_set, **SMALL) == small_set
    assert (small_set / METADATA_FILE).stat().st_mtime_ns == stamp  # not rewritten
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_synthloc(small_set, **{**SMALL, "seed": 99})
    partial = tmp_path / "partial"
    (partial / "images").mkdir(parents=True)  # looks like an interrupted run: no synthloc.json
    assert read_metadata(partial) is None
    with pytest.raises(FileExistsError, match="no complete SynthLoc set"):
        generate_synthloc(partial, **SMALL)


def test_object_scale_spans_small_to_large():
    sides = []
    for i in range(100):
        sample = render_sample(np.random.default_rng([7, i]), i % 10, size=64)
        sides += [sample.box[2] / 64, sample.box[3] / 64]
        x, y, w, h = sample.box
        assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64  # fully inside
    assert min(sides) < 0.3 and max(sides) > 0.6
    assert 0.1 <= min(sides) and max(sides) <= 0.85


def test_head_is_small_part_of_object_and_its_box_does_not_localize():
    head_only_hits = 0
    for i in range(60):
        sample = render_sample(np.random.default_rng([11, i]), i % 10, size=128)
        assert not (sample.head_mask & ~sample.mask).any()
        assert _tight_box(sample.mask) == sample.box
        fraction = sample.head_mask.sum() / sample.mask.sum()
        assert 0.02 < fraction < 0.35
        head_only_hits += _iou(_tight_box(sample.head_mask), sample.box) >= 0.5
    assert head_only_hits <= 3  # a CAM that sees only the head almost never localizes


def test_image_shows_the_class_head_colour_under_the_head_mask():
    for class_id in range(10):
        spec = class_spec(class_id)
        sample = render_sample(np.random.default_rng([5, class_id]), class_id, size=128)
        inner = cv2.erode(sample.head_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        mean = sample.image[inner].astype(float).mean(axis=0)
        distances = {name: np.abs(mean - np.array(rgb)).max() for name, rgb in HEAD_COLOURS.items()}
        assert min(distances, key=distances.get) == spec.head_colour


def test_clutter_stays_off_the_object():
    inside = []
    for i in range(40):
        sample = render_sample(np.random.default_rng([13, i]), i % 10, size=128)
        assert not (sample.clutter_mask & sample.mask).any()
        x, y, w, h = (int(v) for v in sample.box)
        inside.append(sample.clutter_mask[y : y + h, x : x + w].sum() / (w * h))
        assert sample.clutter_mask.any() or w * h > 0.4 * 128 * 128  # clutter unless the object fills the image
    assert max(inside) <= 0.05


def test_texture_narrows_to_a_pair_and_head_identifies_the_class():
    for n in (2, 10, 20):
        specs = [class_spec(c, n) for c in range(n)]
        assert max(Counter(s.texture for s in specs).values()) == 2
        assert len({(s.head_colour, s.head_shape) for s in specs}) == n
        assert len(set(class_names(n))) == n
    with pytest.raises(ValueError, match="classes"):
        class_names(21)
