"""Scene datasets: Places365 file lists, SUN397 partitions, MIT Indoor67 split files. No boxes:
evaluation batches carry none and a real training run skips the box metrics without error."""

import pytest

from camexp import config
from camexp.data import FolderSplitsDataModule, Places365DataModule, build
from camexp.data.scenes import generic_splits, indoor67_splits, sun397_splits
from camexp.errors import ConfigError, DatasetError
from tests.conftest import REPO, tiny_overrides
from tests.datasets_fixtures import (
    INDOOR_CLASSES,
    PLACES_CLASSES,
    SUN_CLASSES,
    write_image,
    write_indoor67,
    write_places365,
    write_sun397,
)

KW = dict(input_size=32, train_resize=36, batch_size=16, num_workers=0)


def test_places365_lists_and_categories(tmp_path):
    root = write_places365(tmp_path / "places365", per_class=2, val_labels=(2, 0, 1))
    dm = Places365DataModule(root, **KW)
    dm.setup()
    assert dm.class_names == PLACES_CLASSES and not dm.has_boxes
    train = dm.dataset("train")
    assert train.images.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert str(train.images.path(2)) == str(root / "data_256/a/apartment_building/outdoor/00000001.jpg")
    val = next(iter(dm.val_dataloader()))
    assert set(val) == {"image", "label", "index", "skipped"}  # no boxes, no masks
    assert val["label"].tolist() == [2, 0, 1] and val["image"].shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
    "line, reason",
    [
        ("/a/airfield/00000009.jpg 1", "the folder says /a/airfield but class 1"),
        ("/a/airfield/00000009.jpg 7", "class index outside 0..2"),
        ("/a/airfield/00000009.jpg", "expected '<image path> <class index>'"),
    ],
)
def test_places365_bad_list_line_names_file_and_line(tmp_path, line, reason):
    root = write_places365(tmp_path / "places365")
    path = root / "places365_train_standard.txt"
    lines = path.read_text().splitlines()
    lines[1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        Places365DataModule(root, **KW).setup("fit")
    assert str(path) in str(err.value) and "line 2" in str(err.value) and reason in str(err.value)


def test_places365_empty_class_folder_and_missing_list(tmp_path):
    root = write_places365(tmp_path / "places365")
    for f in (root / "data_256" / "b" / "bakery" / "shop").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="missing or empty \\(b/bakery/shop\\)"):
        Places365DataModule(root, **KW).setup("fit")
    (root / "places365_val.txt").unlink()
    with pytest.raises(DatasetError, match="Missing file list .*places365_val.txt"):
        Places365DataModule(root, **KW).setup("validate")


def test_sun397_partitions_and_nested_classes(tmp_path):
    root = write_sun397(tmp_path / "SUN397", folds=2)
    dm = FolderSplitsDataModule(sun397_splits(root, {"partition": 2}), **KW)
    dm.setup()
    assert dm.class_names == [c.strip("/") for c in SUN_CLASSES]
    train, val = dm.dataset("train"), dm.dataset("val")
    assert train.images.labels.tolist() == [0, 0, 1, 1, 2, 2] and val.images.labels.tolist() == [0, 1, 2]
    assert str(val.images.path(1)) == str(root / "a/apse/indoor/sun_12abc.jpg")
    with pytest.raises(DatasetError, match="Missing split file .*Training_03.txt"):
        FolderSplitsDataModule(sun397_splits(root, {"partition": 3}), **KW).setup("fit")


def test_indoor67_split_files_and_errors(tmp_path):
    root = write_indoor67(tmp_path / "indoor67", per_class=3)
    dm = FolderSplitsDataModule(indoor67_splits(root), **KW)
    dm.setup()
    assert dm.class_names == INDOOR_CLASSES and dm.check_num_classes(3) == 3
    assert len(dm.dataset("train")) == 6 and dm.dataset("test").images.labels.tolist() == [0, 1, 2]
    with pytest.raises(DatasetError, match="model.num_classes=67"):
        dm.check_num_classes(67)

    (root / "TestImages.txt").write_text("airport_inside/airport_inside_0002.jpg\nlibrary_0001.jpg\n")
    with pytest.raises(DatasetError, match="line 2 in .*TestImages.txt.*expected '<class folder>/<file>'"):
        FolderSplitsDataModule(indoor67_splits(root), **KW).setup("validate")
    (root / "TestImages.txt").write_text("airport_inside/airport_inside_0002.jpg\nlibrary/library_0001.jpg\n")
    with pytest.raises(DatasetError, match="missing or empty \\(library\\)"):
        FolderSplitsDataModule(indoor67_splits(root), **KW).setup("validate")

    root = write_indoor67(tmp_path / "indoor67b")
    for f in (root / "Images" / "bakery").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="missing or empty.*bakery"):
        FolderSplitsDataModule(indoor67_splits(root), **KW).setup("fit")


def test_generic_scenes_needs_its_lists_and_reads_them(tmp_path):
    with pytest.raises(ConfigError, match="data.extra.train_list and data.extra.val_list"):
        generic_splits(tmp_path, {})
    root = write_indoor67(tmp_path / "set")
    lists = {"train_list": "TrainImages.txt", "val_list": "TestImages.txt"}
    splits = generic_splits(root, {"image_dir": "Images", **lists})
    dm = FolderSplitsDataModule(splits, **KW)
    dm.setup("validate")
    assert dm.class_names == INDOOR_CLASSES and len(dm.dataset("val")) == 3


def test_build_registers_every_dataset_name(tmp_path):
    root = write_indoor67(tmp_path / "indoor67")
    expected = {
        "indoor67": "FolderSplitsDataModule",
        "sun397": "FolderSplitsDataModule",
        "scenes": "FolderSplitsDataModule",
        "places365": "Places365DataModule",
        "ilsvrc": "ILSVRCDataModule",
        "cub": "CUBDataModule",
    }
    for name, cls in expected.items():
        lists = ["data.extra.train_list=TrainImages.txt", "data.extra.val_list=TestImages.txt"]
        extra = lists if name == "scenes" else []
        dm = build(config.load(None, [f"data.name={name}", *extra]).data, str(root))
        assert type(dm).__name__ == cls
        assert dm.has_boxes == (name in ("ilsvrc", "cub"))
    wsol = build(config.load(None, ["data.name=wsoleval", "data.extra.dataset=openimages"]).data, str(root))
    assert type(wsol).__name__ == "WSOLEvalDataModule" and not wsol.has_boxes
    with pytest.raises(ConfigError, match="Available: synthloc, cub, ilsvrc, wsoleval"):
        build(config.load(None, ["data.name=imagenet"]).data, str(root))


@pytest.mark.slow
def test_training_on_scenes_skips_box_metrics_and_reports_skipped_images(tmp_path):
    root = write_indoor67(tmp_path / "indoor67", per_class=3)
    victim = write_image(root / "Images" / "kitchen" / "kitchen_0002.jpg", (48, 40))
    victim.write_bytes(victim.read_bytes()[:150])  # truncated test image
    overrides = tiny_overrides(root, tmp_path / "logs", **{"data.name": "indoor67", "data.skip_corrupt": "true"})
    from camexp.train import train

    results = train(config.load(REPO / "experiments" / "synthloc_gap.yaml", overrides))
    assert results["val/skipped_images"] == 1 and results["val/num_images"] == 2
    assert 0.0 <= results["val/acc_top1"] <= 1.0
    assert not any(k.startswith("val/loc_") for k in results)  # box metrics skipped, no error
