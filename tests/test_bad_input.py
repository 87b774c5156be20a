"""A corrupt JPEG and a malformed annotation line each give a clear error naming the file."""

import shutil

import pytest

from camexp.data import CUBDataModule
from camexp.data.boxes import DegenerateBoxWarning
from camexp.data.cub import read_cub
from camexp.errors import CorruptImageError, DatasetError


def _copy(src, tmp_path):
    root = tmp_path / "cub"
    shutil.copytree(src, root)
    return root


def test_malformed_bounding_box_line_names_file_and_line(tiny_synthloc, tmp_path):
    root = _copy(tiny_synthloc, tmp_path)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[2] = "3 10.0 twelve 5.0 6.0"
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    dm = CUBDataModule(root, input_size=64, train_resize=72, num_workers=0)
    with pytest.raises(DatasetError) as err:
        dm.setup("fit")
    assert "bounding_boxes.txt" in str(err.value) and "line 3" in str(err.value)


def test_missing_index_file_names_it(tiny_synthloc, tmp_path):
    root = _copy(tiny_synthloc, tmp_path)
    (root / "train_test_split.txt").unlink()
    with pytest.raises(DatasetError, match="train_test_split.txt"):
        CUBDataModule(root, num_workers=0).setup("fit")


def test_corrupt_jpeg_names_the_file_through_a_real_loader(tiny_synthloc, tmp_path):
    root = _copy(tiny_synthloc, tmp_path)
    first = (root / "images.txt").read_text().split("\n")[0].split()[1]
    victim = root / "images" / first
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    dm = CUBDataModule(root, input_size=64, train_resize=72, batch_size=4, num_workers=0)
    dm.setup("fit")
    with pytest.raises(CorruptImageError) as err:
        for _ in dm.train_dataloader():
            pass
    assert str(victim) in str(err.value) and "skip_corrupt" in str(err.value)


def test_class_count_mismatch_fails_before_training(tiny_synthloc):
    dm = CUBDataModule(tiny_synthloc, num_workers=0)
    dm.setup("fit")
    with pytest.raises(DatasetError, match="model.num_classes=9"):
        dm.check_num_classes(9)
    assert dm.check_num_classes(None) == 4


def test_negative_width_box_warning_shows_the_files_numbers_file_and_line(tiny_synthloc, tmp_path):
    """The warning used to show the converted xyxy box ([10 12 5 18]) instead of what line 3 says."""
    root = _copy(tiny_synthloc, tmp_path)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[2] = "3 10.0 12.0 -5.0 6.0"
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.warns(DegenerateBoxWarning) as caught:
        read_cub(root)
    message = str(caught[0].message)
    assert str(root / "bounding_boxes.txt") in message and "line 3: box x 10 y 12 width -5 height 6" in message
