"""Writers of tiny datasets in their real on-disk layouts (JPEGs via PIL, VOC XML, csv, split files).

Plain functions, not fixtures: each test writes exactly the variant it needs under tmp_path.
Images are small and carry a colour pattern, so decoding can be checked by pixel value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]  # sorted: class indices 0, 1, 2
WNID_NAMES = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
              "n01484850": "great white shark, white shark"}


def write_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0, fmt: str = "JPEG") -> Path:
    """A smooth colour image of `size` = (width, height); `fmt` may differ from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, (seed * 53) % 256)], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, format=fmt)
    return path


# -- ILSVRC ---------------------------------------------------------------------------------------
# Validation images: id -> (wnid, (width, height), boxes xyxy in original pixels)
ILSVRC_VAL = {
    "ILSVRC2012_val_00000001": ("n01440764", (400, 300), [(40, 30, 200, 150), (100, 60, 300, 240)]),
    # the second box lies partly outside the 320 x 160 image
    "ILSVRC2012_val_00000002": ("n01484850", (320, 160), [(0, 0, 160, 80), (280, 120, 400, 200)]),
    "ILSVRC2012_val_00000003": ("n01443537", (500, 500), [(50, 100, 300, 400)]),
}


def voc_xml(image_id: str, size: tuple[int, int], objects: list[tuple[str, tuple]]) -> str:
    """One ILSVRC2012_bbox_val-style annotation file."""
    parts = [
        "<annotation>",
        "\t<folder>val</folder>",
        f"\t<filename>{image_id}</filename>",
        f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t\t<depth>3</depth>\n\t</size>",
    ]
    for wnid, (x0, y0, x1, y1) in objects:
        parts += [
            "\t<object>",
            f"\t\t<name>{wnid}</name>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x0}</xmin>",
            f"\t\t\t<ymin>{y0}</ymin>",
            f"\t\t\t<xmax>{x1}</xmax>",
            f"\t\t\t<ymax>{y1}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    return "\n".join(parts + ["</annotation>"]) + "\n"


def loc_csv(val: dict) -> str:
    rows = ["ImageId,PredictionString"]
    for image_id, (wnid, _, boxes) in val.items():
        rows.append(image_id + "," + " ".join(f"{wnid} {x0} {y0} {x1} {y1}" for x0, y0, x1, y1 in boxes) + " ")
    return "\n".join(rows) + "\n"


def write_ilsvrc(
    root: Path, annotations: str = "xml", train_per_class: int = 2, kaggle: bool = False, val: dict | None = None
) -> Path:
    """train/<wnid>/*.JPEG, val/*.JPEG and val labels as VOC XML (bbox_val/) and/or LOC csv."""
    val = ILSVRC_VAL if val is None else val
    images = root / "ILSVRC" / "Data" / "CLS-LOC" if kaggle else root
    for c, wnid in enumerate(WNIDS):
        for k in range(train_per_class):
            write_image(images / "train" / wnid / f"{wnid}_{k + 1}.JPEG", (48 + 8 * k, 40), seed=c)
    for image_id, (_, size, _) in val.items():
        write_image(images / "val" / f"{image_id}.JPEG", size)
    if annotations in ("xml", "both"):
        xml_dir = root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" if kaggle else root / "bbox_val" / "val"
        xml_dir.mkdir(parents=True, exist_ok=True)
        for image_id, (wnid, size, boxes) in val.items():
            (xml_dir / f"{image_id}.xml").write_text(voc_xml(image_id, size, [(wnid, b) for b in boxes]))
    if annotations in ("csv", "both"):
        (root / "LOC_val_solution.csv").write_text(loc_csv(val))
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {WNID_NAMES[w]}\n" for w in WNIDS))
    return root


# -- CUB-200-2011 ---------------------------------------------------------------------------------
def write_cub(
    root: Path, num_classes: int = 3, per_class: int = 2, size: tuple[int, int] = (40, 30), masks: bool = True
) -> Path:
    """Official layout; image k of class c is train when k is even. Box of every image: x=4 y=3 w=20 h=15."""
    root.mkdir(parents=True, exist_ok=True)
    images, labels, split, boxes, classes = [], [], [], [], []
    image_id = 0
    for c in range(1, num_classes + 1):
        name = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {name}")
        for k in range(per_class):
            image_id += 1
            rel = f"{name}/Bird_{c}_{k:04d}.jpg"
            write_image(root / "images" / rel, size, seed=c)
            if masks:
                mask = np.zeros((size[1], size[0]), np.uint8)
                mask[3:18, 4:24] = 255
                (root / "segmentations" / rel).with_suffix(".png").parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save((root / "segmentations" / rel).with_suffix(".png"))
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {1 if k % 2 == 0 else 0}")
            boxes.append(f"{image_id} 4.0 3.0 20.0 15.0")
    for name, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("bounding_boxes.txt", boxes),
        ("classes.txt", classes),
    ):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


# -- wsolevaluation metadata ----------------------------------------------------------------------
def write_wsoleval_boxes(root: Path, folder: str = "CUB") -> Path:
    """metadata/<folder>/{train,val,test} + dataset/<folder>/ images, boxes as x0,y0,x1,y1."""
    meta = root / "metadata" / folder
    images = root / "dataset" / folder
    splits = {
        "train": [("001.Albatross/a_1.jpg", 0, (40, 30)), ("002.Auklet/b_1.jpg", 1, (40, 30))],
        "val": [("001.Albatross/v_1.jpg", 0, (200, 100))],
        "test": [("001.Albatross/t_1.jpg", 0, (400, 300)), ("002.Auklet/t_2.jpg", 1, (320, 160))],
    }
    boxes = {
        "001.Albatross/v_1.jpg": [(20, 10, 120, 60)],
        "001.Albatross/t_1.jpg": [(40, 30, 200, 150), (100, 60, 300, 240)],
        "002.Auklet/t_2.jpg": [(0, 0, 160, 80)],
        "001.Albatross/a_1.jpg": [(1, 1, 30, 20)],
        "002.Auklet/b_1.jpg": [(2, 2, 30, 20)],
    }
    for split, rows in splits.items():
        d = meta / split
        d.mkdir(parents=True, exist_ok=True)
        (d / "image_ids.txt").write_text("".join(f"{i}\n" for i, _, _ in rows))
        (d / "class_labels.txt").write_text("".join(f"{i},{c}\n" for i, c, _ in rows))
        (d / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, _, (w, h) in rows))
        (d / "localization.txt").write_text("".join(f"{i},{x0},{y0},{x1},{y1}\n" for i, _, _ in rows
                                                    for x0, y0, x1, y1 in boxes[i]))
        for i, c, size in rows:
            write_image(images / i, size, seed=c)
    return root


def write_wsoleval_openimages(root: Path) -> Path:
    """OpenImages30k: masks (0/255 PNG, any size) per instance + one ignore mask per image."""
    meta = root / "metadata" / "OpenImages"
    images = root / "dataset" / "OpenImages"
    rows = {"train": [("train/0bt_c3/aa01.jpg", 0), ("train/0by6g/bb01.jpg", 1)],
            "val": [("val/0bt_c3/cc01.jpg", 0)], "test": [("test/0by6g/dd01.jpg", 1)]}
    for split, items in rows.items():
        d = meta / split
        d.mkdir(parents=True, exist_ok=True)
        (d / "image_ids.txt").write_text("".join(f"{i}\n" for i, _ in items))
        (d / "class_labels.txt").write_text("".join(f"{i},{c}\n" for i, c in items))
        for i, c in items:
            write_image(images / i, (64, 48), seed=c)
    # val image: two instances (left and right quarter), ignore box = the middle half of the image.
    stem = "val/0bt_c3/cc01"
    for name, (x0, x1) in (("m0bt_c3_1", (0, 16)), ("m0bt_c3_2", (48, 64))):
        m = np.zeros((48, 64), np.uint8)
        m[:, x0:x1] = 255
        Image.fromarray(m).save(images / f"{stem}_{name}.png")
    ignore = np.zeros((48, 64), np.uint8)
    ignore[:, 8:56] = 255  # overlaps both instances: the overlap is foreground, not ignore
    Image.fromarray(ignore).save(images / f"{stem}_ignore.png")
    m = np.zeros((48, 64), np.uint8)
    m[0:24, :] = 1  # a 0/1 mask: foreground is any value > 0.5, as the reference
    Image.fromarray(m).save(images / "test/0by6g/dd01_m0by6g_1.png")
    (meta / "val" / "localization.txt").write_text(
        f"{stem}.jpg,{stem}_m0bt_c3_1.png,{stem}_ignore.png\n{stem}.jpg,{stem}_m0bt_c3_2.png,\n"
    )
    (meta / "test" / "localization.txt").write_text("test/0by6g/dd01.jpg,test/0by6g/dd01_m0by6g_1.png,\n")
    return root


# -- scenes ---------------------------------------------------------------------------------------
PLACES_CLASSES = ["/a/airfield", "/a/apartment_building/outdoor", "/b/bakery/shop"]


def write_places365(root: Path, per_class: int = 2, val_labels: tuple[int, ...] = (2, 0, 1)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(PLACES_CLASSES)))
    train = []
    for i, c in enumerate(PLACES_CLASSES):
        for k in range(per_class):
            rel = f"{c}/{k + 1:08d}.jpg"
            write_image(root / "data_256" / rel.lstrip("/"), (48, 40), seed=i)
            train.append(f"{rel} {i}")
    (root / "places365_train_standard.txt").write_text("\n".join(train) + "\n")
    val = []
    for k, label in enumerate(val_labels):
        name = f"Places365_val_{k + 1:08d}.jpg"
        write_image(root / "val_256" / name, (48, 40), seed=label)
        val.append(f"{name} {label}")
    (root / "places365_val.txt").write_text("\n".join(val) + "\n")
    return root


SUN_CLASSES = ["/a/abbey", "/a/apse/indoor", "/b/bakery/shop"]


def write_sun397(root: Path, folds: int = 1) -> Path:
    """The SUN397 folder itself (a/abbey/...) with ClassName.txt and Partitions/Training_01.txt etc."""
    train, test = [], []
    for i, c in enumerate(SUN_CLASSES):
        for k in range(3):
            rel = f"{c}/sun_{i}{k}abc.jpg"
            write_image(root / rel.lstrip("/"), (48, 40), seed=i)
            (train if k < 2 else test).append(rel)
    parts = root / "Partitions"
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "ClassName.txt").write_text("\n".join(SUN_CLASSES) + "\n")
    for f in range(1, folds + 1):
        (parts / f"Training_{f:02d}.txt").write_text("\n".join(train) + "\n")
        (parts / f"Testing_{f:02d}.txt").write_text("\n".join(test) + "\n")
    return root


INDOOR_CLASSES = ["airport_inside", "bakery", "kitchen"]


def write_indoor67(root: Path, per_class: int = 3) -> Path:
    """Images/<class>/*.jpg + TrainImages.txt (first per_class - 1 of each class) / TestImages.txt (the last)."""
    train, test = [], []
    for i, c in enumerate(INDOOR_CLASSES):
        for k in range(per_class):
            rel = f"{c}/{c}_{k:04d}.jpg"
            write_image(root / "Images" / rel, (48, 40), seed=i)
            (train if k < per_class - 1 else test).append(rel)
    (root / "TrainImages.txt").write_text("\n".join(train) + "\n")
    (root / "TestImages.txt").write_text("\n".join(test) + "\n")
    return root
