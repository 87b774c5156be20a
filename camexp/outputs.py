"""Output paths checked before the work that fills them: a pass over a split must not end in "cannot write".

`output_folder` and `output_file` try what the command will do (create the folder, write a file into it) and
turn a failure into one CamexpError that names the option, the path and the fix. Torch-free.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from camexp.errors import CamexpError, ConfigError


def output_folder(path: str | Path, option: str) -> Path:
    """`path` as an output folder, created (with its parents) and proven writable; otherwise a CamexpError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CamexpError(
            f"{option} {path} is an existing file, not a folder. Pass a folder path to {option} (a new or "
            f"existing folder), or move the file away."
        )
    problem = _unwritable(path)
    if problem:
        raise CamexpError(f"Cannot write into {option} {path}: {problem}. Pass a folder you can write to as {option}.")
    return path


def output_file(path: str | Path, option: str) -> Path:
    """`path` as an output file: not a folder, its folder created and writable, the file itself writable if it
    exists; otherwise a CamexpError naming it."""
    path = Path(path)
    if path.is_dir():
        raise CamexpError(f"{option} {path} is a folder; {option} takes a file name (e.g. {path / 'metrics.json'}).")
    problem = _unwritable(path.parent)
    if not problem and path.exists() and not os.access(path, os.W_OK):
        problem = "the file is read-only"
    if problem:
        raise CamexpError(f"Cannot write {option} {path}: {problem}. Pass a file name in a folder you can write to.")
    return path


def check_writable(folder: str | Path, what: str, fix: str) -> None:
    """A folder that will be written into later, checked WITHOUT creating it (a refused run must leave no empty
    run directory): refused when it, or the nearest part of it that exists, is a file or cannot be written."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable (a read-only folder or file system)"
    else:
        return
    raise ConfigError(f"Cannot write into {folder} ({what}): {problem}. {fix}")


def _unwritable(folder: Path) -> str | None:
    """Why `folder` cannot be created or written into, or None once it exists and took a (removed) test file.

    Writing a file, not os.access, so the answer also holds for root on a read-only file system."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".camexp-write-test-")
    except OSError as err:
        where = f" ({err.filename})" if err.filename and Path(err.filename) != folder else ""
        return f"{err.strerror or err}{where}"
    os.close(handle)
    os.unlink(probe)
    return None
