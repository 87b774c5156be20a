"""User-facing errors: one paragraph that names the file or key and the fix, never a deep traceback."""

from __future__ import annotations


class CamexpError(Exception):
    """Base class of every error the CLI prints as a plain message."""


class DatasetError(CamexpError):
    """A dataset is missing, malformed or does not fit the model (names the file/line and the fix)."""


class CheckpointError(CamexpError):
    """A checkpoint file is missing, truncated or not a checkpoint (the message names it and what to do)."""


class CheckpointMismatchError(CamexpError):
    """A checkpoint does not fit the data it is asked to evaluate (names the checkpoint and the fix)."""


class CorruptImageError(DatasetError):
    """An image file cannot be decoded. Takes one message argument, so it keeps its type when a
    DataLoader worker re-raises it in the main process."""

    @classmethod
    def for_file(cls, path, reason: str = "") -> CorruptImageError:
        detail = f" ({reason})" if reason else ""
        return cls(
            f"Cannot decode image {path}{detail}. Replace or delete the file, or set data.skip_corrupt=true "
            f"to skip corrupt images (they are counted and reported at the end)."
        )


def user_message(err: BaseException) -> str:
    """The one-paragraph message of an error, also when a DataLoader worker wrapped its traceback."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


class ConfigError(CamexpError, ValueError):
    """A configuration problem; the message names the key, the file and the fix."""


class OutputExistsError(CamexpError, FileExistsError):
    """An output folder already holds something that must not be overwritten (the message names it)."""
