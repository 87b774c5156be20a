"""ILSVRC 2012 (ImageNet-1k) in the layouts it ships in. Under data.root (default data/ilsvrc):

    train/<wnid>/*.JPEG                          training images, one folder per class
    val/ILSVRC2012_val_00000001.JPEG ...         validation images, flat (or val/<wnid>/*.JPEG)
    LOC_val_solution.csv + LOC_synset_mapping.txt  validation labels + boxes (Kaggle), or
    bbox_val/ILSVRC2012_val_00000001.xml ...     one VOC XML per validation image (ILSVRC2012_bbox_val_v3.tgz;
                                                 bbox_val/val/*.xml as the tarball extracts also works)

Kaggle's download (ILSVRC/Data/CLS-LOC/{train,val}, ILSVRC/Annotations/CLS-LOC/val) is found
automatically. Class index = sorted wnid order, exactly torchvision's ImageFolder on train/.
Options (data.extra, paths relative to data.root): train_dir, val_dir, val_annotations
(auto | csv | xml | none), loc_csv, val_xml_dir, synset_mapping. See docs/datasets.md.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camexp.data.datamodule import check_extra_options
from camexp.data.folders import class_folders, images_under, is_image_file, scan_class_folders
from camexp.data.ilsvrc_val import ValAnnotation, read_loc_csv, read_voc_dir
from camexp.data.image_list import ImageList, ImageListDataModule
from camexp.errors import ConfigError, DatasetError
from camexp.textfiles import line_error, read_lines

LAYOUT_HELP = (
    "Expected under data.root: train/<wnid>/*.JPEG, val/*.JPEG and either LOC_val_solution.csv "
    "(+ LOC_synset_mapping.txt; another file: data.extra.loc_csv=PATH) or one VOC XML per validation image in "
    "bbox_val/<image>.xml (another folder, e.g. the extracted ILSVRC2012_bbox_val_v3.tgz: "
    "data.extra.val_xml_dir=PATH; paths relative to data.root or absolute); see docs/datasets.md (ILSVRC)."
)
KAGGLE = Path("ILSVRC") / "Data" / "CLS-LOC"
OPTIONS = ("train_dir", "val_dir", "val_annotations", "loc_csv", "val_xml_dir", "synset_mapping")
ANNOTATION_KINDS = ("auto", "csv", "xml", "none")


@dataclass(frozen=True)
class ILSVRCLayout:
    root: Path
    train_dir: Path
    val_dir: Path
    loc_csv: Path
    val_xml_dir: Path | None
    synset_mapping: Path
    val_annotations: str  # auto | csv | xml | none


def resolve_layout(root: str | Path, extra: dict[str, Any] | None = None) -> ILSVRCLayout:
    """Where each part lives: data.extra overrides, else the plain layout, else Kaggle's."""
    root, extra = Path(root), check_extra_options("ilsvrc", extra, OPTIONS)
    kind = extra.get("val_annotations", "auto")
    if kind not in ANNOTATION_KINDS:
        raise ConfigError(f"data.extra.val_annotations={kind!r}; allowed: {', '.join(ANNOTATION_KINDS)}.")
    kaggle = (root / KAGGLE).is_dir() and not (root / "train").is_dir()
    images = root / KAGGLE if kaggle else root

    def at(key: str, default: Path) -> Path:
        return root / extra[key] if key in extra else default  # an absolute extra path wins over root

    xml_candidates = [root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val", root / "bbox_val" / "val", root / "bbox_val"]
    if "val_xml_dir" in extra:
        xml_dir: Path | None = root / extra["val_xml_dir"]
    else:
        xml_dir = next((d for d in xml_candidates if d.is_dir()), None)
    return ILSVRCLayout(
        root=root,
        train_dir=at("train_dir", images / "train"),
        val_dir=at("val_dir", images / "val"),
        loc_csv=at("loc_csv", root / "LOC_val_solution.csv"),
        val_xml_dir=xml_dir,
        synset_mapping=at("synset_mapping", root / "LOC_synset_mapping.txt"),
        val_annotations=kind,
    )


def read_synset_mapping(path: Path) -> dict[str, str]:
    """wnid -> readable name ("n01440764 tench, Tinca tinca" -> "tench")."""
    names = {}
    for line_no, line in read_lines(path, LAYOUT_HELP, "synset mapping"):
        wnid, _, words = line.partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise line_error(path, line_no, line, "expected '<wnid> <names>', e.g. 'n01440764 tench, Tinca tinca'")
        names[wnid] = words.split(",")[0].strip() or wnid
    return names


def ilsvrc_classes(layout: ILSVRCLayout) -> tuple[list[str], list[str]]:
    """(wnids in class-index order, readable names): train/'s folders sorted, else the synset mapping sorted."""
    mapping = read_synset_mapping(layout.synset_mapping) if layout.synset_mapping.is_file() else {}
    if layout.train_dir.is_dir():
        wnids = class_folders(layout.train_dir, LAYOUT_HELP)
    elif mapping:
        wnids = sorted(mapping)
    else:
        raise DatasetError(
            f"Cannot tell the ILSVRC classes: neither {layout.train_dir} nor {layout.synset_mapping} exists. "
            f"{LAYOUT_HELP}"
        )
    return wnids, [mapping.get(w, w) for w in wnids]


def _val_images(val_dir: Path) -> list[str]:
    """Validation images relative to val_dir: flat (official) or one folder per wnid (valprep.sh)."""
    if not val_dir.is_dir():
        raise DatasetError(f"Validation image folder not found: {val_dir}. {LAYOUT_HELP}")
    flat = sorted(e.name for e in os.scandir(val_dir) if e.is_file() and is_image_file(e.name))
    return flat or images_under(val_dir)


class ILSVRCDataModule(ImageListDataModule):
    """ILSVRC 2012: train/ as ImageFolder (no boxes), val with every GT box from csv or XML."""

    def __init__(self, root: str | Path, extra: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layout = resolve_layout(root, extra)
        self.wnids: list[str] = []

    def load_index(self) -> None:
        self.wnids, self.class_names = ilsvrc_classes(self.layout)

    def split_images(self, split: str, evaluation: bool) -> ImageList:
        if split == "train":
            paths, labels = scan_class_folders(self.layout.train_dir, self.wnids, LAYOUT_HELP)
            return ImageList.build(self.layout.train_dir, paths, labels)
        if split in ("val", "test"):
            return self._val_list()
        raise DatasetError(f"Unknown ILSVRC split {split!r}: use train or val (ILSVRC 2012 test has no labels).")

    def _val_list(self) -> ImageList:
        layout = self.layout
        paths = _val_images(layout.val_dir)
        if not paths:
            raise DatasetError(f"No validation images in {layout.val_dir}. {LAYOUT_HELP}")
        ids = [Path(p).stem for p in paths]
        annotations = self._val_annotations(ids, per_class=any(len(Path(p).parts) > 1 for p in paths))
        if annotations is None:  # per-class val folders without boxes: classification only
            class_index = {w: i for i, w in enumerate(self.wnids)}
            folders = [Path(p).parts[0] if len(Path(p).parts) > 1 else "" for p in paths]
            unknown = sorted({f for f in folders if f not in class_index})
            if unknown:
                raise DatasetError(
                    f"{layout.val_dir}: no box annotations were found and folders {unknown[:3]} are not class wnids, "
                    f"so the validation labels are unknown. {LAYOUT_HELP}"
                )
            self.has_boxes = False
            return ImageList.build(layout.val_dir, paths, [class_index[f] for f in folders])
        missing = [i for i in ids if i not in annotations]
        if missing:
            raise DatasetError(
                f"{len(missing)} validation image(s) in {layout.val_dir} have no row in {layout.loc_csv}, "
                f"e.g. {missing[:3]}. Use the csv that belongs to these images, or remove the images."
            )
        chosen = [annotations[i] for i in ids]
        self._check_val_folders(paths, chosen)
        return ImageList.build(
            layout.val_dir,
            paths,
            [a.label for a in chosen],
            boxes=[a.boxes for a in chosen],
            box_sources=[a.source for a in chosen],
        )

    def _val_annotations(self, ids: list[str], per_class: bool) -> dict[str, ValAnnotation] | None:
        layout, kind = self.layout, self.layout.val_annotations
        class_index = {w: i for i, w in enumerate(self.wnids)}
        if kind == "csv" or (kind == "auto" and layout.loc_csv.is_file()):
            return read_loc_csv(layout.loc_csv, class_index, LAYOUT_HELP)
        if kind == "xml" or (kind == "auto" and layout.val_xml_dir is not None):
            if layout.val_xml_dir is None or not layout.val_xml_dir.is_dir():
                folder = layout.val_xml_dir or layout.root / "bbox_val"
                raise DatasetError(
                    f"data.extra.val_annotations=xml but the XML folder {folder} does not exist. "
                    f"Set data.extra.val_xml_dir. {LAYOUT_HELP}"
                )
            return read_voc_dir(layout.val_xml_dir, ids, class_index, LAYOUT_HELP)
        if kind == "none" or per_class:
            warnings.warn(
                f"No ILSVRC validation boxes found ({layout.loc_csv.name}, bbox_val/): validation reports "
                f"classification only and skips the box metrics.",
                stacklevel=2,
            )
            return None
        raise DatasetError(
            f"No validation labels: {layout.loc_csv} and the VOC XML folder ({layout.root / 'bbox_val'}) are both "
            f"missing, and {layout.val_dir} is flat. Point data.extra.val_xml_dir at the folder of "
            f"<image>.xml files, or data.extra.loc_csv at LOC_val_solution.csv. {LAYOUT_HELP}"
        )

    def _check_val_folders(self, paths: list[str], chosen: list[ValAnnotation]) -> None:
        """val/<wnid>/x.JPEG: the folder must agree with the annotation's class."""
        for path, annotation in zip(paths, chosen, strict=True):
            parts = Path(path).parts
            if len(parts) > 1 and parts[0] in self.wnids and self.wnids[annotation.label] != parts[0]:
                raise DatasetError(
                    f"{self.layout.val_dir / path} lies in folder {parts[0]} but {annotation.source} labels it "
                    f"{self.wnids[annotation.label]}. The folder layout and the annotations disagree."
                )
