"""wsolevaluation metadata: train / train-fullsup (val) / test splits, boxes from localization.txt
scaled with image_sizes.txt, OpenImages masks and ignore masks exactly as the reference's get_mask()."""

import pytest
import torch

from camexp.data import WSOLEvalDataModule
from camexp.data.boxes import DegenerateBoxWarning
from camexp.errors import ConfigError, DatasetError
from tests.datasets_fixtures import write_wsoleval_boxes, write_wsoleval_openimages


def _dm(root, dataset="cub", size=224, **kwargs) -> WSOLEvalDataModule:
    extra = {"dataset": dataset, **kwargs.pop("extra", {})}
    return WSOLEvalDataModule(root, extra, input_size=size, train_resize=size, batch_size=8, num_workers=0, **kwargs)


def test_cub_splits_labels_and_boxes(tmp_path):
    root = write_wsoleval_boxes(tmp_path / "wsol")
    dm = _dm(root, val_split="train-fullsup", test_split="test")
    dm.setup()
    assert dm.class_names == ["001.Albatross", "002.Auklet"] and dm.has_boxes
    train = next(iter(dm.train_dataloader()))
    assert "boxes" not in train and sorted(train["label"].tolist()) == [0, 1]

    val = next(iter(dm.val_dataloader()))  # 200 x 100: x * 1.12, y * 2.24
    torch.testing.assert_close(val["boxes"][0, 0], torch.tensor([22.4, 22.4, 134.4, 134.4]))

    test = next(iter(dm.test_dataloader()))  # 400 x 300 and 320 x 160, as the ILSVRC hand numbers
    assert test["label"].tolist() == [0, 1] and test["box_count"].tolist() == [2, 1]
    expected = torch.tensor([[[22.4, 22.4, 112.0, 112.0], [56.0, 44.8, 168.0, 179.2]],
                             [[0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(test["boxes"], expected)


def test_ilsvrc_folder_and_explicit_roots(tmp_path):
    root = write_wsoleval_boxes(tmp_path / "wsol", folder="ILSVRC")
    (tmp_path / "wsol" / "dataset").rename(tmp_path / "images")
    dm = _dm(root, dataset="ilsvrc", extra={"image_root": str(tmp_path / "images" / "ILSVRC")}, test_split="test")
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["box_count"].tolist() == [2, 1]


def test_openimages_masks_and_ignore_masks(tmp_path):
    root = write_wsoleval_openimages(tmp_path / "wsol")
    dm = _dm(root, dataset="openimages", size=32, test_split="test")
    dm.setup()
    assert not dm.has_boxes and dm.class_names == ["0bt_c3", "0by6g"]
    val = next(iter(dm.val_dataloader()))
    assert "boxes" not in val
    mask, ignore = val["mask"][0], val["mask_ignore"][0]
    # 64 -> 32 columns, cv2 nearest (src = 2 * dst): instances at cols 0-15 and 48-63 -> 0-7 and 24-31;
    # ignore cols 8-55 -> 4-27, minus the foreground -> 8-23.
    assert mask[:, :8].all() and mask[:, 24:].all() and int(mask.sum()) == 16 * 32
    assert ignore[:, 8:24].all() and int(ignore.sum()) == 16 * 32 and not (mask & ignore).any()
    test = next(iter(dm.test_dataloader()))  # a 0/1 mask, rows 0-23 of 48 -> 0-15 of 32; no ignore mask
    assert test["mask"][0, :16].all() and int(test["mask"].sum()) == 16 * 32 and not test["mask_ignore"].any()


@pytest.mark.parametrize(
    "name, line, reason",
    [
        ("class_labels.txt", "001.Albatross/t_1.jpg,bird", "expected integers"),
        ("localization.txt", "001.Albatross/t_1.jpg,40,30,200", "expected 5 comma-separated fields"),
        ("localization.txt", "001.Albatross/zz.jpg,40,30,200,150", "not listed in image_ids.txt"),
        ("image_sizes.txt", "001.Albatross/t_1.jpg,0,300", "must be positive"),
    ],
)
def test_malformed_metadata_line_names_file_and_line(tmp_path, name, line, reason):
    root = write_wsoleval_boxes(tmp_path / "wsol")
    path = root / "metadata" / "CUB" / "test" / name
    path.write_text(line + "\n" + path.read_text())
    with pytest.raises(DatasetError) as err:
        _dm(root, test_split="test").setup("test")
    assert str(path) in str(err.value) and "line 1" in str(err.value) and reason in str(err.value)


def test_degenerate_box_warning_shows_the_rows_numbers(tmp_path):
    """The warning used to show the box after clipping to the image, not the numbers of the row."""
    root = write_wsoleval_boxes(tmp_path / "wsol")
    loc = root / "metadata" / "CUB" / "test" / "localization.txt"
    loc.write_text(loc.read_text() + "002.Auklet/t_2.jpg,400,10,500,60\n001.Albatross/t_1.jpg,90,50,20,70\n")
    with pytest.warns(DegenerateBoxWarning) as caught:
        _dm(root, test_split="test").setup("test")
    message = str(caught[0].message)
    assert str(loc) in message
    assert "line 4 (002.Auklet/t_2.jpg): box x0 400 y0 10 x1 500 y1 60 (clipped to the 320 x 160 image)" in message
    assert "line 5 (001.Albatross/t_1.jpg): box x0 90 y0 50 x1 20 y1 70;" in message  # inverted: nothing clipped


def test_missing_split_file_and_missing_boxes_fail_before_evaluation(tmp_path):
    root = write_wsoleval_boxes(tmp_path / "wsol")
    loc = root / "metadata" / "CUB" / "test" / "localization.txt"
    loc.write_text("001.Albatross/t_1.jpg,40,30,200,150\n")
    with pytest.raises(DatasetError, match="no valid box for 1 image.*002.Auklet/t_2.jpg"):
        _dm(root, test_split="test").setup("test")
    (root / "metadata" / "CUB" / "val" / "image_ids.txt").unlink()
    with pytest.raises(DatasetError, match="Missing image list .*val/image_ids.txt"):
        _dm(root).setup("validate")


def test_dataset_choice_is_required(tmp_path):
    with pytest.raises(ConfigError, match="data.extra.dataset = cub | ilsvrc | openimages"):
        WSOLEvalDataModule(tmp_path, {})
