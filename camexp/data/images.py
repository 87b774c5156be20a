"""Image decoding that fails with a message naming the file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from camexp.errors import CorruptImageError, DatasetError


def load_rgb(path: str | Path) -> Image.Image:
    """Decode any PIL-readable file as 8-bit RGB (grayscale, CMYK, palette and PNG-as-.JPEG included)."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later in a transform
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise DatasetError(
            f"Image listed in the dataset index is missing: {path}. Restore the file or fix the index."
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError.for_file(path, str(err)) from err


def load_mask(path: str | Path) -> Image.Image:
    """Decode a segmentation mask as 8-bit grayscale."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError.for_file(path, str(err)) from err
