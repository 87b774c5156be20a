"""SynthLoc generator: CUB layout on disk, exact boxes and masks, determinism, versioned regeneration, the
part_dominance dial, and the properties that make it a weakly supervised localization benchmark (scale
spread, small head that is the most discriminative cue but never sufficient alone, clutter off the object)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from camexp.data.cub_datamodule import SynthLocDataModule
from camexp.data.synth import (
    CLASS_NAMES,
    COLOUR_FAMILIES,
    HEAD_COLOURS,
    METADATA_FILE,
    _dial,
    class_names,
    class_spec,
    draw_cues,
    generate_synthloc,
    head_partner,
    read_metadata,
    render_sample,
)
from camexp.errors import DatasetError
from tests.conftest import cub_table, tight_box

SMALL = dict(seed=3, n_train=20, n_val=10, size=64, num_classes=10, progress=False)


def head_distribution(num_classes: int, part_dominance: float) -> np.ndarray:
    """P(head shows class j's signature | class c) as an N x N matrix (rows: c), version 2: the distribution
    `draw_cues` samples from."""
    m, q, _ = _dial(part_dominance)
    p = np.full((num_classes, num_classes), (1.0 - m) / num_classes)
    for c in range(num_classes):
        p[c, c] += m * q
        p[c, head_partner(c, num_classes)] += m * (1.0 - q)
    return p


def class_information(joint: np.ndarray) -> float:
    """Fraction of the class entropy a cue carries, 1 - H(class | cue) / H(class), from a joint count or
    probability table (rows: class, columns: cue value)."""
    joint = np.asarray(joint, dtype=np.float64)
    joint = joint / joint.sum()
    p_class = joint.sum(axis=1)
    p_cue = joint.sum(axis=0)
    h_class = -sum(p * math.log2(p) for p in p_class if p > 0)
    nz = joint > 0
    cond = joint[nz] / np.broadcast_to(p_cue, joint.shape)[nz]
    h_given = -float(np.sum(joint[nz] * np.log2(cond)))
    return 1.0 - h_given / h_class if h_class > 0 else 0.0


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
    classes = cub_table(root, "classes.txt")
    images = cub_table(root, "images.txt")
    labels = cub_table(root, "image_class_labels.txt")
    split = cub_table(root, "train_test_split.txt")
    boxes = cub_table(root, "bounding_boxes.txt")

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
    assert meta["version"] == 2 and meta["part_dominance"] == 0.5
    assert read_metadata(root) == meta
    assert not list(root.parent.glob("*.tmp-*"))  # no temporary folder left behind


def test_boxes_are_the_tight_box_of_the_written_mask(small_set: Path):
    images = cub_table(small_set, "images.txt")
    boxes = cub_table(small_set, "bounding_boxes.txt")
    for image_id, (rel,) in images.items():
        mask = cv2.imread(str((small_set / "segmentations" / rel).with_suffix(".png")), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert tuple(float(v) for v in boxes[image_id]) == tight_box(mask == 255)


def test_every_class_appears_in_both_splits(small_set: Path):
    labels = cub_table(small_set, "image_class_labels.txt")
    split = cub_table(small_set, "train_test_split.txt")
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


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_existing_output_is_reused_when_parameters_match_else_regenerated(small_set: Path, tmp_path: Path):
    stamp = (small_set / METADATA_FILE).stat().st_mtime_ns
    assert generate_synthloc(small_set, **SMALL) == small_set
    assert (small_set / METADATA_FILE).stat().st_mtime_ns == stamp  # not rewritten

    reference = _files(small_set)
    root = tmp_path / "synthloc"
    for other in ({"version": 1}, {"part_dominance": 1.0}, {"seed": 99}):  # another version, dial, parameter
        generate_synthloc(root, **{**SMALL, **other})
        assert read_metadata(root)["version"] == other.get("version", 2)
        generate_synthloc(root, **SMALL)  # replaced by the set these arguments make, byte for byte
        assert _files(root) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthloc"]  # no temporary or old folder left

    partial = tmp_path / "partial"
    (partial / "images").mkdir(parents=True)  # looks like an interrupted run: no synthloc.json
    assert read_metadata(partial) is None
    with pytest.raises(FileExistsError, match="no complete SynthLoc set"):
        generate_synthloc(partial, **SMALL)


def test_synth_command_says_written_reused_or_regenerated_and_refuses_bad_input(tmp_path: Path, capsys):
    """`camexp synth --n-train 0` used to end in a ValueError traceback; a reused set was reported as written."""
    from camexp.cli import main

    out = tmp_path / "synthloc"
    args = ["synth", "--out", str(out), "--n-train", "8", "--n-val", "4", "--size", "32", "--num-classes", "4"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"SynthLoc written to {out}"
    stamp = (out / METADATA_FILE).stat().st_mtime_ns
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"SynthLoc reused (the same parameters) at {out}"
    assert (out / METADATA_FILE).stat().st_mtime_ns == stamp
    assert main([*args, "--seed", "1"]) == 0  # a set made with other parameters: replaced, as the data module does
    assert capsys.readouterr().out.strip() == f"SynthLoc regenerated (the set there had other parameters) at {out}"
    assert read_metadata(out)["seed"] == 1

    assert main([*args, "--n-train", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camexp: error: n_train=0 and n_val=4 must each be at least num_classes=4") and (
        "Traceback" not in err
    )
    foreign = tmp_path / "foreign"
    (foreign / "images").mkdir(parents=True)  # not a SynthLoc set: never touched
    assert main(["synth", "--out", str(foreign), *args[3:]]) == 2
    assert f"camexp: error: {foreign} already holds files but no complete SynthLoc set" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["images"]


def test_datamodule_regenerates_a_set_of_another_version_and_never_reads_it(tmp_path: Path):
    root = tmp_path / "synthloc"
    synth = {k: v for k, v in SMALL.items() if k != "progress"}
    generate_synthloc(root, **{**SMALL, "version": 1})
    v1_names = read_metadata(root)["class_names"]
    datamodule = SynthLocDataModule(root, synth={**synth, "version": 2, "part_dominance": 0.5})
    datamodule.prepare_data()
    meta = read_metadata(root)
    assert meta["version"] == 2 and meta["part_dominance"] == 0.5 and meta["class_names"] != v1_names
    datamodule.load_index()
    assert [n.split(".", 1)[-1] for n in datamodule.class_names] == list(class_names(10))
    stamp = (root / METADATA_FILE).stat().st_mtime_ns
    SynthLocDataModule(root, synth={**synth, "version": 2, "part_dominance": 0.5}).prepare_data()
    assert (root / METADATA_FILE).stat().st_mtime_ns == stamp  # same settings: reused
    stray = tmp_path / "stray"
    (stray / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="not a complete SynthLoc set"):
        SynthLocDataModule(stray, synth=synth).prepare_data()


# sha256 (first 16 hex digits) of image + mask bytes of render_sample(default_rng([21, i]), i, 64, 10) from the
# version-1 generator as it was before version 2 existed: version=1 must keep producing exactly these.
V1_DIGESTS = ("74170b5385252fbf", "d18e3d54b13422ea", "14301f049877ec59")


def test_version_1_is_byte_identical_to_the_original_generator():
    for i, digest in enumerate(V1_DIGESTS):
        sample = render_sample(np.random.default_rng([21, i]), i, 64, 10, version=1)
        assert hashlib.sha256(sample.image.tobytes() + sample.mask.tobytes()).hexdigest()[:16] == digest


def test_render_is_deterministic_and_the_dial_changes_only_the_cues():
    for version, dial in ((2, 0.5), (2, 0.9), (1, 0.5)):
        a = render_sample(np.random.default_rng([4, 2]), 7, 64, 10, version, dial)
        b = render_sample(np.random.default_rng([4, 2]), 7, 64, 10, version, dial)
        assert a.image.tobytes() == b.image.tobytes() and a.box == b.box
    # The same draws at every dial setting: only the head's signature (and so its outline) and the body's
    # colours change, so an object stays where it was, at nearly the same box.
    for i in range(20):
        boxes = [render_sample(np.random.default_rng([4, i]), i % 10, 64, 10, 2, d).box for d in (0.0, 1.0)]
        assert _iou(*boxes) > 0.75
    with pytest.raises(ValueError, match="part_dominance"):
        render_sample(np.random.default_rng(0), 0, 64, 10, 2, 1.5)


DIAL = (0.0, 0.2, 0.4, 0.5, 0.75, 1.0)


def _measured_cues(num_classes: int, dial: float, n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Joint counts (class x head signature shown) and (class x (texture, colour family) drawn), measured by
    drawing the generator's cues for n images (the draws render_sample makes first)."""
    textures = sorted({class_spec(c, num_classes).texture for c in range(num_classes)})
    head = np.zeros((num_classes, num_classes))
    body = np.zeros((num_classes, len(textures) * len(COLOUR_FAMILIES)))
    for i in range(n):
        c = i % num_classes
        head_class, family = draw_cues(np.random.default_rng([17, i]), c, num_classes, dial)
        head[c, head_class] += 1
        body[c, textures.index(class_spec(c, num_classes).texture) * len(COLOUR_FAMILIES) + family] += 1
    return head, body


def test_dial_moves_measured_part_dominance_monotonically():
    """Part dominance = the fraction of the class entropy the head carries, 1 - H(class | head) / H(class),
    measured on drawn cues; it rises with the dial from 0 to 1 while the body's share falls."""
    head_info, body_info = [], []
    for dial in DIAL:
        head, body = _measured_cues(10, dial)
        head_info.append(class_information(head))
        body_info.append(class_information(body))
    assert head_info[0] < 0.02 and head_info[-1] > 0.99
    assert all(b > a + 0.02 for a, b in itertools.pairwise(head_info))  # strictly rising
    assert body_info[0] > 0.99 and body_info[-1] < 0.6
    assert all(b <= a + 0.01 for a, b in itertools.pairwise(body_info))  # the body's share never rises
    exact = [class_information(head_distribution(10, d)) for d in np.linspace(0, 1, 21)]
    assert all(b > a for a, b in itertools.pairwise(exact))
    assert abs(exact[10] - head_info[DIAL.index(0.5)]) < 0.02  # measurement agrees with the distribution


def test_default_head_is_most_discriminative_cue_but_never_sufficient_alone():
    p = head_distribution(10, 0.5)
    assert ((p > 0).sum(axis=0) >= 2).all()  # every head signature leaves at least two candidate classes
    head, body = _measured_cues(10, 0.5)
    head_only_accuracy = head.max(axis=0).sum() / head.sum()
    assert head_only_accuracy < 0.55
    specs = [class_spec(c) for c in range(10)]
    texture = np.array([[s.texture == t for t in sorted({x.texture for x in specs})] for s in specs], float)
    family = np.array([[s.colour_family == f for f in COLOUR_FAMILIES] for s in specs], float)
    assert class_information(head) > max(class_information(texture), class_information(family)) + 0.1
    assert class_information(body) > 0.99  # texture and colour family together identify the class
    # head + texture identify the class: the two classes a head leaves have different textures
    for j in range(10):
        candidates = np.flatnonzero(p[:, j] > 0)
        assert len({specs[c].texture for c in candidates}) == len(candidates)


def test_render_draws_the_cues_it_reports():
    for i in range(20):
        c = i % 10
        sample = render_sample(np.random.default_rng([8, i]), c, 128, 10, 2, 0.5)
        assert (sample.head_class, sample.colour_family) == draw_cues(np.random.default_rng([8, i]), c, 10, 0.5)
        assert sample.head_class in (c, (c + 3) % 10)
        assert sample.colour_family == c % 3
        inner = cv2.erode(sample.mask.astype(np.uint8) & ~sample.head_mask, np.ones((5, 5), np.uint8)).astype(bool)
        mean = sample.image[inner].astype(float).mean(axis=0)
        chroma = {
            k: np.array(v, float).mean(axis=0) / np.array(v, float).mean(axis=0).sum()
            for k, v in COLOUR_FAMILIES.items()
        }
        nearest = min(chroma, key=lambda k: np.abs(chroma[k] - mean / mean.sum()).sum())
        assert nearest == class_spec(c).colour_family


def test_object_scale_spans_small_to_large():
    sides = []
    for i in range(100):
        sample = render_sample(np.random.default_rng([7, i]), i % 10, size=64)
        sides += [sample.box[2] / 64, sample.box[3] / 64]
        x, y, w, h = sample.box
        assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64  # fully inside
    assert min(sides) < 0.3 and max(sides) > 0.6
    assert 0.15 <= min(sides) and max(sides) <= 0.9  # version 2: 20-85% by design, +-1 px of rasterization


def test_head_is_small_part_of_object_and_its_box_does_not_localize():
    head_only_hits = 0
    for i in range(60):
        sample = render_sample(np.random.default_rng([11, i]), i % 10, size=128)
        assert not (sample.head_mask & ~sample.mask).any()
        assert tight_box(sample.mask) == sample.box
        fraction = sample.head_mask.sum() / sample.mask.sum()
        assert 0.02 < fraction < 0.35
        head_only_hits += _iou(tight_box(sample.head_mask), sample.box) >= 0.5
    assert head_only_hits <= 3  # a CAM that sees only the head almost never localizes


@pytest.mark.parametrize("version", [1, 2])
def test_image_shows_the_drawn_head_colour_under_the_head_mask(version: int):
    for class_id in range(10):
        sample = render_sample(np.random.default_rng([5, class_id]), class_id, 128, 10, version)
        spec = class_spec(sample.head_class, 10, version)
        assert version == 2 or sample.head_class == class_id
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


def test_class_definitions_of_both_versions():
    for n in (2, 10, 20):
        v1 = [class_spec(c, n, 1) for c in range(n)]  # v1: texture narrows to a pair, the head identifies
        assert max(Counter(s.texture for s in v1).values()) == 2
        assert len({(s.head_colour, s.head_shape) for s in v1}) == n
        v2 = [class_spec(c, n) for c in range(n)]  # v2: texture shared by 3, (texture, colour family) unique
        assert max(Counter(s.texture for s in v2).values()) == min(n, 3)
        assert len({(s.texture, s.colour_family) for s in v2}) == n
        assert len({(s.head_colour, s.head_shape) for s in v2}) == n
        assert len(set(class_names(n))) == len(set(class_names(n, 1))) == n
    with pytest.raises(ValueError, match="classes"):
        class_names(21)
    with pytest.raises(ValueError, match="version"):
        class_names(10, version=3)


def test_v1_part_experiment_selects_version_1_in_its_own_folder():
    from camexp import config

    repo = Path(__file__).resolve().parents[1]
    default = config.load(repo / "experiments" / "synthloc_gap.yaml", [])
    v1 = config.load([repo / "experiments" / "synthloc_gap.yaml", repo / "experiments" / "synthloc_v1_part.yaml"], [])
    assert (default.data.synth.version, default.data.synth.part_dominance) == (2, 0.5)
    assert v1.data.synth.version == 1 and v1.name == "synthloc_v1_part"
    assert config.data_root(v1) != config.data_root(default)
