"""Score maps on disk, as wsolevaluation stores them: ``<maps dir>/<image_id>.npy``.

The image id keeps its extension and its subfolders (``001.Albatross/x.jpg`` -> ``001.Albatross/x.jpg.npy``),
exactly what upstream's ``np.save(ospj(log_folder, 'scoremaps', image_id), cam)`` writes and its
``CamDataset`` reads, so maps move between camexp and upstream unchanged.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from camexp.errors import DatasetError


def map_path(maps_dir: str | Path, image_id: str) -> Path:
    """Where the map of `image_id` lives; ids that would leave the folder are refused."""
    parts = PurePosixPath(image_id).parts
    if not parts or image_id.startswith("/") or ".." in parts:
        raise DatasetError(f"Image id {image_id!r} cannot name a file under {maps_dir} (absolute or '..').")
    return Path(maps_dir) / f"{image_id}.npy"


def save_map(maps_dir: str | Path, image_id: str, scoremap: np.ndarray) -> Path:
    """Save one map losslessly (np.save keeps the dtype and every bit)."""
    path = map_path(maps_dir, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(scoremap))
    return path


def load_map(maps_dir: str | Path, image_id: str) -> np.ndarray:
    """One 2-D map; a missing, unreadable or wrongly shaped file is a DatasetError naming it."""
    path = map_path(maps_dir, image_id)
    try:
        scoremap = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(
            f"Score map {path} for image {image_id!r} is missing. Save one <image_id>.npy per line of "
            f"image_ids.txt under --maps (mirroring subfolders), or point --metadata at the split the maps belong to."
        ) from None
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"Score map {path} cannot be read as a .npy array ({err}). Re-save it with np.save."
        ) from err
    if scoremap.ndim == 3 and 1 in (scoremap.shape[0], scoremap.shape[-1]):
        scoremap = scoremap.reshape(scoremap.shape[1:] if scoremap.shape[0] == 1 else scoremap.shape[:2])
    if scoremap.ndim != 2 or 0 in scoremap.shape or not np.issubdtype(scoremap.dtype, np.number):
        raise DatasetError(
            f"Score map {path} has shape {scoremap.shape} ({scoremap.dtype}); expected one numeric 2-D (H, W) map."
        )
    check_no_infinity(scoremap, path, image_id)
    return scoremap


def check_no_infinity(scoremap: np.ndarray, path: Path, image_id: str) -> None:
    """A DatasetError naming the file, the image and the first pixel when a map holds +inf or -inf.

    An infinite value leaves min-max normalization undefined (upstream's code turns the map into NaNs and then
    into arbitrary uint8 values), so no score is honest. A NaN keeps upstream's documented rule: the whole map
    scores as zeros."""
    infinite = np.isinf(scoremap)
    if not infinite.any():
        return
    row, col = (int(v) for v in np.argwhere(infinite)[0])
    raise DatasetError(
        f"Score map {path} for image {image_id!r} holds {int(infinite.sum())} infinite value(s), the first "
        f"{scoremap[row, col]} at row {row}, column {col}; min-max normalization of such a map is undefined. "
        f"Re-save the map with finite values (e.g. clip the overflow), or with NaN in their place to score the "
        f"map as upstream scores a NaN map (all zeros: no box)."
    )


def missing_maps(maps_dir: str | Path, image_ids: list[str]) -> list[str]:
    """Image ids whose map file does not exist (a cheap check before a long scoring pass)."""
    return [i for i in image_ids if not map_path(maps_dir, i).is_file()]
