"""ILSVRC 2012 validation labels and boxes, from either source the dataset ships with:

- `LOC_val_solution.csv` (Kaggle's ImageNet Object Localization Challenge):
      ImageId,PredictionString
      ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295
  PredictionString = groups of "wnid x_min y_min x_max y_max", one per GT box;
- one VOC XML per image (ILSVRC2012_bbox_val_v3.tgz, or Kaggle's Annotations/CLS-LOC/val/).

The label is the wnid of the first object; every box of that wnid is kept (ILSVRC val images have
one class; boxes of another class, if a file had any, would not be boxes of the label). Degenerate
boxes are dropped with a warning (see data/boxes.py); anything malformed is a DatasetError naming
the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camexp.data.boxes import BoxReport
from camexp.data.voc_xml import parse_voc_xml
from camexp.errors import DatasetError
from camexp.textfiles import line_error, read_lines

CSV_HEADER = "ImageId,PredictionString"


@dataclass(frozen=True)
class ValAnnotation:
    label: int
    boxes: np.ndarray  # K x 4 xyxy in original pixels (degenerate ones already dropped)
    source: str  # "file:line" or the XML path, for messages


def _unknown_wnid(wnid: str, num_classes: int) -> str:
    return (
        f"wnid {wnid!r} is not one of the {num_classes} classes (the sorted folders of train/, or "
        f"LOC_synset_mapping.txt when there is no train/)"
    )


def read_loc_csv(path: Path, class_index: dict[str, int], help_text: str) -> dict[str, ValAnnotation]:
    """ImageId -> annotation from LOC_val_solution.csv."""
    lines = read_lines(path, help_text, "localization csv")
    if not lines or lines[0][1].replace(" ", "") != CSV_HEADER:
        first = lines[0] if lines else (1, "")
        raise line_error(path, first[0], first[1], f"expected the header {CSV_HEADER!r}", help_text)
    report = BoxReport(str(path))
    found: dict[str, ValAnnotation] = {}
    seen_at: dict[str, int] = {}
    for line_no, line in lines[1:]:
        image_id, sep, prediction = line.partition(",")
        image_id = image_id.strip()
        if not sep or not image_id:
            raise line_error(path, line_no, line, "expected 'ImageId,PredictionString'", help_text)
        if image_id in seen_at:
            raise line_error(path, line_no, line, f"{image_id} already listed on line {seen_at[image_id]}", help_text)
        tokens = prediction.split()
        if not tokens:
            raise line_error(path, line_no, line, "no object: the PredictionString is empty", help_text)
        if len(tokens) % 5:
            reason = f"{len(tokens)} tokens; expected groups of 'wnid x_min y_min x_max y_max'"
            raise line_error(path, line_no, line, reason, help_text)
        objects = []
        for k in range(0, len(tokens), 5):
            wnid = tokens[k]
            if wnid not in class_index:
                raise line_error(path, line_no, line, _unknown_wnid(wnid, len(class_index)), help_text)
            try:
                box = [float(v) for v in tokens[k + 1 : k + 5]]
            except ValueError as err:
                reason = f"box {k // 5 + 1} has a non-numeric coordinate"
                raise line_error(path, line_no, line, reason, help_text) from err
            objects.append((wnid, box, f"line {line_no}"))
        seen_at[image_id] = line_no
        found[image_id] = _annotation(objects, class_index, report, f"{path}:{line_no}")
    report.warn()
    return found


def read_voc_dir(
    xml_dir: Path, image_ids: Iterable[str], class_index: dict[str, int], help_text: str
) -> dict[str, ValAnnotation]:
    """ImageId -> annotation from xml_dir/<ImageId>.xml, for the given images (each must have one)."""
    report = BoxReport(str(xml_dir))
    found: dict[str, ValAnnotation] = {}
    missing = []
    for image_id in image_ids:
        xml = xml_dir / f"{image_id}.xml"
        if not xml.is_file():
            missing.append(str(xml))
            continue
        parsed = parse_voc_xml(xml, help_text)
        objects = []
        for obj in parsed.objects:
            if obj.name not in class_index:
                raise DatasetError(f"{xml} line {obj.line}: {_unknown_wnid(obj.name, len(class_index))}. {help_text}")
            objects.append((obj.name, obj.box, f"{xml.name} line {obj.line}"))
        found[image_id] = _annotation(objects, class_index, report, str(xml))
    if missing:
        raise DatasetError(
            f"{len(missing)} validation image(s) have no VOC annotation file, e.g. {missing[:3]}. "
            f"Point data.extra.val_xml_dir at the extracted ILSVRC2012_bbox_val folder. {help_text}"
        )
    report.warn()
    return found


def _annotation(objects: list, class_index: dict[str, int], report: BoxReport, source: str) -> ValAnnotation:
    """objects: (wnid, xyxy box, where) in file order; the first object's wnid is the label."""
    label_wnid = objects[0][0]
    kept = []
    for wnid, box, where in objects:
        if wnid == label_wnid and report.keep(box, where):
            kept.append(box)
    boxes = np.asarray(kept, dtype=np.float32).reshape(-1, 4)
    return ValAnnotation(class_index[label_wnid], boxes, source)
