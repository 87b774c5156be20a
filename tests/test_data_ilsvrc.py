"""ILSVRC 2012 in its shipped layouts: train/<wnid>/ as ImageFolder, val labels + every GT box from
VOC XML or LOC_val_solution.csv, boxes clipped and scaled to the 224 x 224 input (hand numbers)."""

import shutil
import warnings

import pytest
import torch
from torchvision.datasets import ImageFolder

from camexp.data import ILSVRCDataModule
from camexp.data.boxes import DegenerateBoxWarning
from camexp.errors import DatasetError
from tests.datasets_fixtures import ILSVRC_VAL, WNIDS, loc_csv, voc_xml, write_ilsvrc

# Hand-computed: 400x300 -> x * 224/400 = 0.56, y * 224/300; 320x160 -> x 0.7, y 1.4 (2nd box clipped
# to 280,120,320,160 first); 500x500 -> 0.448.
EXPECTED = {
    "ILSVRC2012_val_00000001": (0, [[22.4, 22.4, 112.0, 112.0], [56.0, 44.8, 168.0, 179.2]]),
    "ILSVRC2012_val_00000002": (2, [[0.0, 0.0, 112.0, 112.0], [196.0, 168.0, 224.0, 224.0]]),
    "ILSVRC2012_val_00000003": (1, [[22.4, 44.8, 134.4, 179.2]]),
}


def _dm(root, **extra) -> ILSVRCDataModule:
    return ILSVRCDataModule(root, extra, input_size=224, train_resize=256, batch_size=4, num_workers=0)


def _val_batch(dm):
    dm.setup("validate")
    return next(iter(dm.val_dataloader()))


def _check_val_batch(batch):
    assert batch["image"].shape == (3, 3, 224, 224)
    assert batch["index"].tolist() == [0, 1, 2]
    for i, (label, boxes) in enumerate(EXPECTED.values()):
        assert int(batch["label"][i]) == label
        assert int(batch["box_count"][i]) == len(boxes)
        torch.testing.assert_close(batch["boxes"][i, : len(boxes)], torch.tensor(boxes), atol=1e-4, rtol=0)


@pytest.mark.parametrize("annotations", ["xml", "csv"])
def test_val_labels_and_all_boxes_scaled_from_xml_or_csv(tmp_path, annotations):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations=annotations)
    _check_val_batch(_val_batch(_dm(root)))


def test_kaggle_layout_found_without_options(tmp_path):
    root = write_ilsvrc(tmp_path / "kaggle", annotations="csv", kaggle=True)
    dm = _dm(root)
    _check_val_batch(_val_batch(dm))
    assert dm.class_names == ["tench", "goldfish", "great white shark"]  # readable names, sorted-wnid order


def test_train_is_imagefolder_order_and_classes(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", train_per_class=2)
    dm = _dm(root)
    dm.setup("fit")
    train = dm.dataset("train")
    reference = ImageFolder(str(root / "train"))
    assert dm.wnids == reference.classes == WNIDS
    assert [str(train.images.path(i)) for i in range(len(train))] == [p for p, _ in reference.samples]
    assert train.images.labels.tolist() == reference.targets == [0, 0, 1, 1, 2, 2]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "index", "skipped"}  # weak supervision: no boxes in training
    assert batch["image"].shape[1:] == (3, 224, 224)


def test_val_in_class_folders_with_xml_and_folder_mismatch(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml")
    for image_id, (wnid, _, _) in ILSVRC_VAL.items():
        (root / "val" / wnid).mkdir(exist_ok=True)
        shutil.move(root / "val" / f"{image_id}.JPEG", root / "val" / wnid / f"{image_id}.JPEG")
    dm = _dm(root)
    dm.setup("validate")
    data = dm.dataset("val")
    got = {data.images.path(i).stem: int(data.images.labels[i]) for i in range(len(data))}
    assert got == {k: v[0] for k, v in EXPECTED.items()}

    wrong = root / "val" / "n01443537" / "ILSVRC2012_val_00000002.JPEG"
    shutil.move(root / "val" / "n01484850" / "ILSVRC2012_val_00000002.JPEG", wrong)
    with pytest.raises(DatasetError, match="n01443537.*labels it n01484850"):
        _dm(root).setup("validate")


def test_malformed_xml_names_file_and_line(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml")
    xml = root / "bbox_val" / "val" / "ILSVRC2012_val_00000002.xml"
    xml.write_text(xml.read_text().replace("</xmin>", "</xmn>", 1))
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("validate")
    assert str(xml) in str(err.value) and "line 12" in str(err.value)


def test_xml_layout_errors_name_the_option_for_another_xml_folder(tmp_path):
    """The VOC XML layout messages used to leave out data.extra.val_xml_dir, the way to point at the folder."""
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml")
    xml = root / "bbox_val" / "val" / "ILSVRC2012_val_00000002.xml"
    xml.write_text(xml.read_text().replace("</xmin>", "</xmn>", 1))
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("validate")
    assert str(xml) in str(err.value) and "data.extra.val_xml_dir=PATH" in str(err.value)
    shutil.rmtree(root / "bbox_val")
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("validate")
    assert "No validation labels" in str(err.value) and "Point data.extra.val_xml_dir at" in str(err.value)


def test_xml_with_non_numeric_coordinate_names_file_and_line(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml")
    xml = root / "bbox_val" / "val" / "ILSVRC2012_val_00000003.xml"
    xml.write_text(xml.read_text().replace("<ymax>400</ymax>", "<ymax>4OO</ymax>"))
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("validate")
    assert str(xml) in str(err.value) and "line 15" in str(err.value) and "'4OO'" in str(err.value)


def test_xml_without_object_names_file_and_line(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml")
    xml = root / "bbox_val" / "val" / "ILSVRC2012_val_00000001.xml"
    xml.write_text(voc_xml("ILSVRC2012_val_00000001", (400, 300), []))
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("validate")
    assert str(xml) in str(err.value) and "line 1" in str(err.value) and "no <object>" in str(err.value)


@pytest.mark.parametrize(
    "row, reason",
    [
        ("ILSVRC2012_val_00000002,n01484850 0 0 160 80 n01484850 280 120", "8 tokens"),
        ("ILSVRC2012_val_00000002,", "no object"),
        ("ILSVRC2012_val_00000002,n09999999 0 0 160 80", "n09999999"),
        ("ILSVRC2012_val_00000002,n01484850 0 zero 160 80", "non-numeric"),
        ("ILSVRC2012_val_00000001,n01440764 0 0 10 10", "already listed on line 2"),
    ],
)
def test_malformed_csv_row_names_file_and_line(tmp_path, row, reason):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="csv")
    lines = (root / "LOC_val_solution.csv").read_text().splitlines()
    lines[2] = row
    (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        _dm(root).setup("validate")
    message = str(err.value)
    assert str(root / "LOC_val_solution.csv") in message and "line 3" in message and reason in message


def test_csv_without_header_is_reported_at_line_1(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="csv")
    csv = root / "LOC_val_solution.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(DatasetError, match="line 1 .*ImageId,PredictionString"):
        _dm(root).setup("validate")


def test_degenerate_box_is_dropped_with_a_warning_naming_file_and_line(tmp_path):
    val = dict(ILSVRC_VAL)
    val["ILSVRC2012_val_00000001"] = ("n01440764", (400, 300), [(40, 30, 200, 150), (300, 60, 100, 240)])
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="csv", val=val)
    dm = _dm(root)
    with pytest.warns(DegenerateBoxWarning) as record:
        batch = _val_batch(dm)
    message = str(record[0].message)
    assert str(root / "LOC_val_solution.csv") in message and "line 2" in message and "[300 60 100 240]" in message
    assert batch["box_count"].tolist() == [1, 2, 1]
    torch.testing.assert_close(batch["boxes"][0, 0], torch.tensor([22.4, 22.4, 112.0, 112.0]))


def test_image_whose_only_box_is_degenerate_fails_before_evaluation(tmp_path):
    val = dict(ILSVRC_VAL)
    val["ILSVRC2012_val_00000003"] = ("n01443537", (500, 500), [(50, 100, 50, 400)])
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml", val=val)
    with pytest.warns(DegenerateBoxWarning), pytest.raises(DatasetError, match="ILSVRC2012_val_00000003.JPEG"):
        _dm(root).setup("validate")


def test_box_outside_the_image_is_dropped_when_clipping_leaves_nothing(tmp_path):
    val = dict(ILSVRC_VAL)
    val["ILSVRC2012_val_00000003"] = ("n01443537", (500, 500), [(50, 100, 300, 400), (600, 600, 700, 700)])
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml", val=val)
    dm = _dm(root)
    with pytest.warns(DegenerateBoxWarning, match="ILSVRC2012_val_00000003.JPEG.*outside the image"):
        batch = _val_batch(dm)
    assert batch["box_count"].tolist() == [2, 2, 1]


def test_val_image_without_annotation_is_an_error(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="csv")
    csv = {k: v for k, v in ILSVRC_VAL.items() if k != "ILSVRC2012_val_00000002"}
    (root / "LOC_val_solution.csv").write_text(loc_csv(csv))
    with pytest.raises(DatasetError, match="have no row in .*ILSVRC2012_val_00000002"):
        _dm(root).setup("validate")


def test_empty_class_folder_fails_before_training(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc")
    for f in (root / "train" / "n01443537").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="n01443537"):
        _dm(root).setup("fit")


def test_class_count_mismatch_and_missing_annotations_fail_clearly(tmp_path):
    root = write_ilsvrc(tmp_path / "ilsvrc", annotations="xml")
    dm = _dm(root)
    dm.setup("validate")
    with pytest.raises(DatasetError, match="model.num_classes=1000 but the dataset has 3 classes"):
        dm.check_num_classes(1000)
    shutil.rmtree(root / "bbox_val")
    with pytest.raises(DatasetError, match="LOC_val_solution.csv.*bbox_val.*data.extra.val_xml_dir"):
        _dm(root).setup("validate")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError, match="Validation image folder not found"):
            _dm(root, val_dir="no_such_dir").setup("validate")
