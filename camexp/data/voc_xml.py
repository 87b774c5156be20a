"""PASCAL VOC annotation files (the ILSVRC2012_bbox_val / ILSVRC Annotations/CLS-LOC layout):

    <annotation>
      <filename>ILSVRC2012_val_00000001</filename>
      <size><width>500</width><height>375</height></size>
      <object><name>n01751748</name><bndbox><xmin>111</xmin><ymin>108</ymin><xmax>441</xmax><ymax>352</ymax></bndbox></object>
      ...
    </annotation>

Parsed with expat so that every error names the file AND the line of the offending element
(ElementTree forgets line numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from camexp.errors import DatasetError

BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VOCObject:
    name: str
    box: tuple[float, float, float, float]  # xmin ymin xmax ymax, pixels as written in the file
    line: int  # line of the <object> element


@dataclass(frozen=True)
class VOCAnnotation:
    path: Path
    size: tuple[int, int] | None  # (width, height) from <size>, when present
    objects: list[VOCObject]


class _Collector:
    """expat callbacks: keep the text of the elements we need, with their line numbers."""

    def __init__(self, parser: expat.XMLParserType) -> None:
        self.parser = parser
        self.stack: list[str] = []
        self.text: list[str] = []
        self.objects: list[dict] = []
        self.size: dict[str, tuple[str, int]] = {}
        self.root_line = 1

    def start(self, tag: str, _attrs) -> None:
        line = self.parser.CurrentLineNumber
        if not self.stack:
            self.root_line = line
        if self.stack == ["annotation"] and tag == "object":
            self.objects.append({"line": line})
        self.stack.append(tag)
        self.text = []

    def chars(self, data: str) -> None:
        self.text.append(data)

    def end(self, tag: str) -> None:
        value = ("".join(self.text).strip(), self.parser.CurrentLineNumber)
        parent = self.stack[-2] if len(self.stack) >= 2 else None
        inside_object = self.stack[:2] == ["annotation", "object"]
        if inside_object and len(self.stack) == 3 and tag == "name":
            self.objects[-1]["name"] = value
        elif inside_object and len(self.stack) == 4 and parent == "bndbox" and tag in BOX_FIELDS:
            self.objects[-1][tag] = value
        elif self.stack[:2] == ["annotation", "size"] and tag in ("width", "height"):
            self.size[tag] = value
        self.stack.pop()
        self.text = []


def parse_voc_xml(path: str | Path, help_text: str = "") -> VOCAnnotation:
    """Objects (name, xyxy box, line) of one VOC file. Malformed XML, an <object> without <name> or a
    numeric <bndbox>, and a file without any <object> raise a DatasetError naming file and line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f"Missing annotation file {path}. {help_text}".rstrip()) from err
    parser = expat.ParserCreate()
    collector = _Collector(parser)
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise DatasetError(
            f"Malformed XML in {path} at line {err.lineno}, column {err.offset}: "
            f"{expat.ErrorString(err.code)}. {help_text}".rstrip()
        ) from err
    objects = [_object(path, raw, help_text) for raw in collector.objects]
    if not objects:
        raise DatasetError(
            f"{path} (line {collector.root_line}) has no <object>: every annotated image needs at least one "
            f"object with a <name> and a <bndbox>. {help_text}".rstrip()
        )
    return VOCAnnotation(path, _size(collector.size), objects)


def _object(path: Path, raw: dict, help_text: str) -> VOCObject:
    if "name" not in raw or not raw["name"][0]:
        raise DatasetError(f"{path} line {raw['line']}: <object> without a <name>. {help_text}".rstrip())
    values = []
    for field in BOX_FIELDS:
        if field not in raw:
            raise DatasetError(
                f"{path} line {raw['line']}: <object> {raw['name'][0]} has no <bndbox><{field}>. {help_text}".rstrip()
            )
        text, line = raw[field]
        try:
            values.append(float(text))
        except ValueError as err:
            raise DatasetError(
                f"{path} line {line}: <{field}> is {text!r}, not a number. {help_text}".rstrip()
            ) from err
    return VOCObject(raw["name"][0], (values[0], values[1], values[2], values[3]), raw["line"])


def _size(size: dict[str, tuple[str, int]]) -> tuple[int, int] | None:
    try:
        return int(float(size["width"][0])), int(float(size["height"][0]))
    except (KeyError, ValueError):
        return None
