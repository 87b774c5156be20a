"""Image decoding that fails with a message naming the file, and decodes no more pixels than needed."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from camexp.errors import CorruptImageError, DatasetError


def load_rgb_sized(path: str | Path, min_side: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """Decode any PIL-readable file as 8-bit RGB and return it with its ORIGINAL (width, height).

    Grayscale, CMYK, palette and PNG-saved-as-.JPEG files all come back as RGB (PIL reads the
    content, not the extension). With `min_side` > 0, a JPEG much larger than needed is decoded
    by libjpeg at 1/2, 1/4 or 1/8 scale (`Image.draft`), keeping both sides >= min_side: the
    transform then resizes far fewer pixels and decoding is 2-4x faster. Boxes must be scaled
    with the original size returned here, not with the (possibly reduced) image's size.
    """
    try:
        with Image.open(path) as img:
            original_size = img.size
            if min_side > 0 and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))  # no-op unless both sides stay >= min_side
            img.load()  # decode now: truncated files fail here, not later in a transform
            # Already-RGB images are returned as decoded: convert() would copy every pixel.
            return (img if img.mode == "RGB" else img.convert("RGB")), original_size
    except FileNotFoundError as err:
        raise DatasetError(
            f"Image listed in the dataset index is missing: {path}. Restore the file or fix the index."
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError.for_file(path, str(err)) from err


def load_rgb(path: str | Path, min_side: int = 0) -> Image.Image:
    """`load_rgb_sized` without the original size (for callers that need no boxes)."""
    return load_rgb_sized(path, min_side)[0]


def load_mask(path: str | Path) -> Image.Image:
    """Decode a segmentation mask as 8-bit grayscale."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("L")
    except FileNotFoundError as err:
        raise DatasetError(f"Mask file is missing: {path}. Restore the file or fix the annotation index.") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError.for_file(path, str(err)) from err
