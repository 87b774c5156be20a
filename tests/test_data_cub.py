"""CUB-200-2011 in the full official layout: 200 classes, the official split, boxes and masks."""

import shutil

import pytest
import torch

from camexp.data import CUBDataModule
from camexp.data.boxes import DegenerateBoxWarning
from camexp.errors import DatasetError
from tests.datasets_fixtures import write_cub


def _dm(root, size=80, **kwargs) -> CUBDataModule:
    return CUBDataModule(root, input_size=size, train_resize=size, batch_size=8, num_workers=0, **kwargs)


def test_200_classes_and_official_split(tmp_path):
    root = write_cub(tmp_path / "CUB_200_2011", num_classes=200, per_class=2, size=(20, 16), masks=False)
    dm = _dm(root, size=16)
    dm.setup()
    assert dm.num_classes == 200 and dm.check_num_classes(200) == 200
    assert dm.class_names[0] == "001.Bird_1" and dm.class_names[-1] == "200.Bird_200"
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == len(val) == 200  # image k of each class: even k train, odd k test
    assert train.images.labels.tolist() == list(range(200)) == val.images.labels.tolist()
    assert train.images.relpath(5) == "006.Bird_6/Bird_6_0000.jpg"
    assert val.images.relpath(5) == "006.Bird_6/Bird_6_0001.jpg"
    assert not dm.dataset("val").has_masks


def test_eval_boxes_and_masks_scaled_to_the_input(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=3, per_class=2, size=(40, 30))
    dm = _dm(root, size=80)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    # x=4 y=3 w=20 h=15 on 40 x 30 -> xyxy 4,3,24,18 -> x * 2, y * 80/30
    assert batch["boxes"].shape == (3, 1, 4) and batch["box_count"].tolist() == [1, 1, 1]
    torch.testing.assert_close(batch["boxes"][:, 0], torch.tensor([[8.0, 8.0, 48.0, 48.0]] * 3))
    assert batch["label"].tolist() == [0, 1, 2]
    mask = batch["mask"]  # rows 3..17, cols 4..23 of 40 x 30 -> exactly the box at 80 x 80 (nearest)
    assert mask.shape == (3, 80, 80) and mask.dtype == torch.bool
    assert mask[:, 8:48, 8:48].all() and int(mask.sum()) == 3 * 40 * 40


def test_masks_found_in_the_sibling_folder_segmentations_tgz_creates(tmp_path):
    root = write_cub(tmp_path / "CUB_200_2011", num_classes=2, per_class=2)
    shutil.move(root / "segmentations", tmp_path / "segmentations")
    dm = _dm(root)
    dm.setup("validate")
    assert "mask" in next(iter(dm.val_dataloader()))


def test_box_partly_outside_is_clipped_before_scaling(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=1, per_class=2, size=(40, 30), masks=False)
    (root / "bounding_boxes.txt").write_text("1 4.0 3.0 20.0 15.0\n2 30.0 20.0 20.0 20.0\n")
    dm = _dm(root)
    dm.setup("validate")
    boxes = next(iter(dm.val_dataloader()))["boxes"]
    # image 2 (test): 30,20,50,40 clipped to 30,20,40,30 -> x * 2, y * 80/30
    torch.testing.assert_close(boxes[0, 0], torch.tensor([60.0, 160 / 3, 80.0, 80.0]))


def test_degenerate_box_warns_with_file_and_line_and_is_dropped(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines.insert(1, "2 5.0 5.0 0.0 10.0")  # a second, zero-width box for test image 2
    lines[0] = "1 4.0 3.0 -3.0 15.0"  # the only box of train image 1: negative width
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    dm = _dm(root)
    with pytest.warns(DegenerateBoxWarning) as record:
        dm.setup()  # training is unaffected: train images need no boxes
    message = str(record[0].message)
    assert "bounding_boxes.txt" in message and "line 1" in message and "line 2" in message
    assert "Dropped 2 degenerate" in message
    assert next(iter(dm.val_dataloader()))["box_count"].tolist() == [1, 1]


def test_test_image_without_a_valid_box_fails_before_evaluation(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[1] = "2 5.0 5.0 10.0 0.0"  # image 2 is a test image; its only box has zero height
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.warns(DegenerateBoxWarning), pytest.raises(DatasetError, match="Bird_1_0001.jpg"):
        _dm(root).setup("validate")


# -- index files that disagree, bad bytes, unknown options, evaluation files checked at setup -------------
def _edit(root, name, index, new_line):
    lines = (root / name).read_text().splitlines()
    lines[index] = new_line
    (root / name).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "name, index, new_line, line_no, first_line",
    [
        ("images.txt", 1, "1 001.Bird_1/Bird_1_0001.jpg", 2, 1),  # id 1 twice: image 2 would drop out
        ("image_class_labels.txt", 2, "2 2", 3, 2),  # id 2 relabelled by a second line
        ("bounding_boxes.txt", 1, "1 4.0 3.0 20.0 15.0", 2, 1),  # the same box of image 1 twice
    ],
)
def test_duplicate_ids_fail_at_setup_naming_both_lines(tmp_path, name, index, new_line, line_no, first_line):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    _edit(root, name, index, new_line)
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("fit")
    message = str(err.value)
    assert name in message and "duplicate" in message
    assert f"line {line_no}" in message and f"line {first_line}" in message


def test_split_flag_other_than_0_or_1_fails_naming_file_and_line(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    _edit(root, "train_test_split.txt", 2, "3 2")  # image 3 would silently become a test image
    with pytest.raises(DatasetError, match=r"Malformed line 3 in .*train_test_split.txt.*1 \(train\) or 0 \(test\)"):
        _dm(root).setup("fit")


@pytest.mark.parametrize("name", ["image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"])
def test_ids_missing_from_images_txt_fail_naming_the_file(tmp_path, name):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    lines = (root / "images.txt").read_text().splitlines()
    (root / "images.txt").write_text("\n".join(lines[:-1]) + "\n")  # image 4 listed everywhere else
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("fit")
    assert name in str(err.value) and "id 4 (line 4)" in str(err.value)


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    data = (root / "classes.txt").read_bytes().replace(b"2 002.Bird_2", b"2 002.B\xffird_2")
    (root / "classes.txt").write_bytes(data)
    with pytest.raises(DatasetError, match=r"classes.txt line 2 is not UTF-8"):
        _dm(root).setup("fit")


@pytest.mark.parametrize("name", ["cub", "synthloc", "cluttered_mnist"])
def test_unknown_data_extra_key_is_refused(tmp_path, name):
    from camexp import config
    from camexp.data import build
    from camexp.errors import ConfigError

    cfg = config.load(None, [f"data.name={name}", "data.extra.val_dirr=x"])
    with pytest.raises(ConfigError, match=rf"Unknown data.extra option\(s\) for {name}: \['val_dirr'\]. Known: none"):
        build(cfg.data, str(tmp_path / "nothing_here"))


def test_missing_validation_image_fails_at_setup(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, masks=False)
    (root / "images" / "002.Bird_2" / "Bird_2_0001.jpg").unlink()  # image 4, a test image
    with pytest.raises(DatasetError, match=r"Missing val image .*Bird_2_0001.jpg.*image id 4"):
        _dm(root).setup("fit")  # fit builds the validation split too: before the first training epoch


def test_box_wholly_outside_its_image_fails_at_setup(tmp_path):
    root = write_cub(tmp_path / "cub", num_classes=2, per_class=2, size=(40, 30), masks=False)
    _edit(root, "bounding_boxes.txt", 3, "4 45.0 3.0 20.0 15.0")  # x from 45 on a 40 px wide image
    with pytest.raises(DatasetError, match=r"bounding_boxes.txt line 4.*image id 4.*wholly outside its 40x30"):
        _dm(root).setup("validate")
