"""Real photographs that installed packages ship: demos (`camexp photos`), tests and benchmarks.

scikit-image's and scikit-learn's sample images, matplotlib's grace_hopper.jpg and imgaug 0.4.0's quokka.jpg
with its annotated box, read from the installed files (never downloaded). imgaug cannot be imported under
the pinned NumPy: its files are found without importing it (`make install` installs it with --no-deps).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from camexp.errors import DatasetError

INSTALL_HINT = "Run `make install` (it installs the test extra and imgaug with --no-deps)."


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"The package {name}, whose data files camexp reads, is not installed. {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def photo(name: str) -> Path:
    """A packaged photo by file name: scikit-image's data, scikit-learn's, matplotlib's or imgaug's quokka."""
    folder = {
        "china.jpg": ("sklearn", "datasets/images"),
        "flower.jpg": ("sklearn", "datasets/images"),
        "grace_hopper.jpg": ("matplotlib", "mpl-data/sample_data"),
        "quokka.jpg": ("imgaug", "."),
    }.get(name, ("skimage", "data"))
    path = package_dir(folder[0]) / folder[1] / name
    if not path.is_file():
        raise DatasetError(f"No packaged photo {name} at {path}. Known photos: {', '.join(PHOTOS)}. {INSTALL_HINT}")
    return path


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


def copy_photos(out: Path) -> list[Path]:
    """Copy every packaged photo into `out` (for `camexp cam out/`)."""
    out.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(photo(name), out / name)) for name in PHOTOS]

