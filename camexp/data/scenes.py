"""Scene datasets (no boxes: CAMs are logged, box metrics are skipped) in the layouts they ship in.

- Places365-Standard: `categories_places365.txt` ("/a/airfield 0"), `places365_train_standard.txt`
  ("/a/airfield/00000001.jpg 0"), `places365_val.txt` ("Places365_val_00000001.jpg 165"); images
  under data_256/ (or data_large/, ...) and val_256/ (or val_large/).
- Folder-per-class sets with split files, the class being the folder of each listed path:
  SUN397 (`Partitions/Training_01.txt` / `Testing_01.txt`, lines "/a/abbey/sun_xxx.jpg", images
  under the SUN397 folder itself, classes from `ClassName.txt`) and MIT Indoor67
  (`TrainImages.txt` / `TestImages.txt`, lines "airport_inside/xxx.jpg", images under Images/).
  `scenes` is the same reader with every file name given in data.extra.

Class indices: the categories file (Places365), the class file (SUN397 ClassName.txt, sorted), or
the sorted folders named in the split files (Indoor67, generic): ImageFolder's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camexp.data.datamodule import check_extra_options
from camexp.data.folders import check_class_folders_nonempty
from camexp.data.image_list import ImageList, ImageListDataModule
from camexp.errors import ConfigError, DatasetError
from camexp.textfiles import line_error, read_lines

PLACES_HELP = (
    "Expected Places365-Standard under data.root: categories_places365.txt, places365_train_standard.txt, "
    "places365_val.txt, data_256/ (train images) and val_256/ (val images); see docs/datasets.md."
)
PLACES_TRAIN_DIRS = ("data_256", "data_256_standard", "data_large", "data_large_standard")  # official / torchvision
PLACES_VAL_DIRS = ("val_256", "val_large")
FOLDER_HELP = (
    "Expected a folder-per-class set with split files listing '<class folder>/<file>' per line "
    "(SUN397 Partitions/Training_01.txt, MIT Indoor67 TrainImages.txt); see docs/datasets.md."
)


def _first_dir(root: Path, candidates: tuple[str, ...], what: str, key: str, help_text: str) -> Path:
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"No {what} folder under {root} (looked for {', '.join(candidates)}). Set data.extra.{key}. {help_text}"
    )


class ScenesDataModule(ImageListDataModule):
    """Base of the scene families: classification labels only, so evaluation batches carry no `boxes`."""

    has_boxes = False


# -- Places365 ------------------------------------------------------------------------------------
class Places365DataModule(ScenesDataModule):
    OPTIONS = ("train_dir", "val_dir", "train_list", "val_list", "categories")

    def __init__(self, root: str | Path, extra: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.extra = check_extra_options("places365", extra or {}, self.OPTIONS)

    def _file(self, key: str, default: str) -> Path:
        return self.root / self.extra.get(key, default)

    def load_index(self) -> None:
        path = self._file("categories", "categories_places365.txt")
        names = []
        for line_no, line in read_lines(path, PLACES_HELP, "category file"):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) != len(names):
                reason = f"expected '<category> {len(names)}' (indices 0, 1, ... in order)"
                raise line_error(path, line_no, line, reason, PLACES_HELP)
            names.append(parts[0])
        self.class_names = names

    def split_images(self, split: str, evaluation: bool) -> ImageList:
        if split == "train":
            image_dir = self._image_dir("train_dir", PLACES_TRAIN_DIRS)
            list_file = self._file("train_list", "places365_train_standard.txt")
        elif split in ("val", "test"):  # Places365's test labels are not public: test = val
            image_dir = self._image_dir("val_dir", PLACES_VAL_DIRS)
            list_file = self._file("val_list", "places365_val.txt")
        else:
            raise DatasetError(f"Unknown Places365 split {split!r}: use train or val.")
        paths, labels = [], []
        num = len(self.class_names)
        for line_no, line in read_lines(list_file, PLACES_HELP, "file list"):
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise line_error(list_file, line_no, line, "expected '<image path> <class index>'", PLACES_HELP)
            label = int(parts[1])
            if not 0 <= label < num:
                raise line_error(list_file, line_no, line, f"class index outside 0..{num - 1}", PLACES_HELP)
            relative = parts[0].lstrip("/")
            folder = "/" + relative.rsplit("/", 1)[0] if "/" in relative else None
            if folder is not None and folder != self.class_names[label]:
                reason = f"the folder says {folder} but class {label} is {self.class_names[label]}"
                raise line_error(list_file, line_no, line, reason, PLACES_HELP)
            paths.append(relative)
            labels.append(label)
        if not paths:
            raise DatasetError(f"{list_file} lists no images. {PLACES_HELP}")
        if split == "train":
            check_class_folders_nonempty(image_dir, sorted({p.rsplit("/", 1)[0] for p in paths}), PLACES_HELP)
        return ImageList.build(image_dir, paths, labels)

    def _image_dir(self, key: str, candidates: tuple[str, ...]) -> Path:
        if key in self.extra:
            return self.root / self.extra[key]
        return _first_dir(self.root, candidates, "image", key, PLACES_HELP)


# -- folder-per-class sets with split files ------------------------------------------------------
@dataclass(frozen=True)
class FolderSplits:
    """Where a folder-per-class set keeps its images, split files and (optional) class list."""

    name: str
    root: Path  # data.root; split names ending in .txt are list files relative to it
    image_dir: Path
    split_files: dict[str, Path]  # split name -> list file
    class_file: Path | None = None  # one class folder per line ("/a/abbey"); None: folders in the split files


def _listed_path(line: str) -> str:
    """First field of a split-file line, relative (SUN397 writes '/a/abbey/x.jpg')."""
    return line.split()[0].lstrip("/")


def _class_of(relative: str) -> str:
    return relative.rsplit("/", 1)[0] if "/" in relative else ""


class FolderSplitsDataModule(ScenesDataModule):
    """SUN397, MIT Indoor67 and any folder-per-class set whose splits are files listing '<class>/<file>'."""

    def __init__(self, splits: FolderSplits, **kwargs) -> None:
        super().__init__(**kwargs)
        self.splits = splits

    def _split_file(self, split: str) -> Path:
        if split in self.splits.split_files:
            return self.splits.split_files[split]
        if split.endswith(".txt"):  # any list file under data.root, e.g. data.val_split=Partitions/Testing_05.txt
            return self.splits.root / split
        known = ", ".join(self.splits.split_files)
        raise DatasetError(f"Unknown {self.splits.name} split {split!r}: use {known}, or a split file name (*.txt).")

    def load_index(self) -> None:
        class_file = self.splits.class_file
        if class_file is not None:
            names = [line.strip("/").strip() for _, line in read_lines(class_file, FOLDER_HELP, "class list")]
            self.class_names = sorted(names)
        else:
            found: set[str] = set()
            for path in dict.fromkeys(self.splits.split_files.values()):
                for line_no, line in read_lines(path, FOLDER_HELP, "split file"):
                    cls = _class_of(_listed_path(line))
                    if not cls:
                        raise line_error(path, line_no, line, "expected '<class folder>/<file>'", FOLDER_HELP)
                    found.add(cls)
            self.class_names = sorted(found)
        if not self.class_names:
            raise DatasetError(f"No classes found for {self.splits.name}. {FOLDER_HELP}")
        check_class_folders_nonempty(self.splits.image_dir, self.class_names, FOLDER_HELP)

    def split_images(self, split: str, evaluation: bool) -> ImageList:
        path = self._split_file(split)
        index = {name: i for i, name in enumerate(self.class_names)}
        paths, labels = [], []
        for line_no, line in read_lines(path, FOLDER_HELP, "split file"):
            relative = _listed_path(line)
            cls = _class_of(relative)
            if cls not in index:
                reason = f"folder {cls or '(none)'!r} is not one of the {len(index)} classes"
                raise line_error(path, line_no, line, reason, FOLDER_HELP)
            paths.append(relative)
            labels.append(index[cls])
        if not paths:
            raise DatasetError(f"Split file {path} lists no images. {FOLDER_HELP}")
        return ImageList.build(self.splits.image_dir, paths, labels)


def sun397_splits(root: str | Path, extra: dict[str, Any] | None = None) -> FolderSplits:
    """SUN397: partition k (1..10, data.extra.partition) of the official Partitions/ files."""
    root = Path(root)
    extra = check_extra_options("sun397", extra or {}, ("partition", "partitions_dir", "image_dir", "class_file"))
    k = int(extra.get("partition", 1))
    if not 1 <= k <= 10:
        raise ConfigError(f"data.extra.partition={k}: SUN397 has partitions 1..10.")
    parts = root / extra.get("partitions_dir", "Partitions")
    train, test = parts / f"Training_{k:02d}.txt", parts / f"Testing_{k:02d}.txt"
    if "class_file" in extra:
        class_file: Path | None = root / extra["class_file"]
    else:
        class_file = next((p for p in (parts / "ClassName.txt", root / "ClassName.txt") if p.is_file()), None)
    return FolderSplits(
        "sun397", root, root / extra.get("image_dir", "."), {"train": train, "val": test, "test": test}, class_file
    )


def indoor67_splits(root: str | Path, extra: dict[str, Any] | None = None) -> FolderSplits:
    """MIT Indoor67: Images/<class>/*.jpg with TrainImages.txt / TestImages.txt."""
    root = Path(root)
    extra = check_extra_options("indoor67", extra or {}, ("image_dir", "train_list", "test_list"))
    train = root / extra.get("train_list", "TrainImages.txt")
    test = root / extra.get("test_list", "TestImages.txt")
    splits = {"train": train, "val": test, "test": test}
    return FolderSplits("indoor67", root, root / extra.get("image_dir", "Images"), splits)


def generic_splits(root: str | Path, extra: dict[str, Any] | None = None) -> FolderSplits:
    """Any folder-per-class set: data.extra.image_dir, train_list, val_list, [test_list], [class_file]."""
    root = Path(root)
    known = ("image_dir", "train_list", "val_list", "test_list", "class_file")
    extra = check_extra_options("scenes", extra or {}, known)
    missing = [k for k in ("train_list", "val_list") if k not in extra]
    if missing:
        raise ConfigError(
            f"data.name=scenes needs data.extra.{' and data.extra.'.join(missing)} (split files listing "
            f"'<class folder>/<file>' per line, relative to data.root)."
        )
    files = {"train": root / extra["train_list"], "val": root / extra["val_list"]}
    files["test"] = root / extra["test_list"] if "test_list" in extra else files["val"]
    class_file = root / extra["class_file"] if "class_file" in extra else None
    return FolderSplits("scenes", root, root / extra.get("image_dir", "."), files, class_file)
