"""Real photographs that installed packages ship (read from the installed files, never downloaded).

imgaug 0.4.0 cannot be imported under the pinned NumPy; its files are found without importing it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"package {name} is not installed (make install)"
    return Path(list(spec.submodule_search_locations)[0])


def photo(name: str) -> Path:
    """A packaged photo by file name: scikit-image's data, scikit-learn's, matplotlib's or imgaug's quokka."""
    places = {
        "sklearn": package_dir("sklearn") / "datasets" / "images",
        "matplotlib": package_dir("matplotlib") / "mpl-data" / "sample_data",
        "imgaug": package_dir("imgaug"),
        "skimage": package_dir("skimage") / "data",
    }
    for folder in places.values():
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no packaged photo {name} in {', '.join(map(str, places.values()))}")


PHOTOS = (
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "camera.png",
    "china.jpg",
    "flower.jpg",
    "grace_hopper.jpg",
    "quokka.jpg",
)


def quokka_box() -> list[float]:
    """imgaug's annotated box of the quokka (x1, y1, x2, y2 in pixels of quokka.jpg)."""
    annotation = json.loads((package_dir("imgaug") / "quokka_annotations.json").read_text())
    (box,) = annotation["bounding_boxes"]
    return [box["x1"], box["y1"], box["x2"], box["y2"]]
