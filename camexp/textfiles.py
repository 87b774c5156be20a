"""Reading the plain-text index files datasets ship with, so every failure names the file and line.

Torch-free: `camexp evaluate-maps` (through camexp.wsol.metadata) reads its metadata with these helpers
and starts without importing torch; the DataModules in camexp.data use the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from camexp.errors import DatasetError


def read_lines(path: Path, help_text: str, what: str = "index file") -> list[tuple[int, str]]:
    """Non-blank lines (stripped) with their 1-based line numbers. A missing or undecodable file is
    a DatasetError naming it and saying which layout was expected (`help_text`)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Missing {what} {path}. {help_text}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line_no = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DatasetError(f"{path} line {line_no} is not UTF-8 text ({err.reason}). {help_text}") from err
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def line_error(path: Path, line_no: int, line: str, reason: str, help_text: str = "") -> DatasetError:
    """The one-paragraph error for a malformed line."""
    shown = line if len(line) <= 200 else line[:200] + "..."
    return DatasetError(f"Malformed line {line_no} in {path}: {shown!r} ({reason}). {help_text}".rstrip())


def read_table(
    path: Path, columns: int, parse: Callable[[list[str]], Any], help_text: str, what: str = "index file"
) -> list[tuple[int, Any]]:
    """(line number, parse(fields)) for every non-blank line of a whitespace-separated table of `columns` fields
    (the last field keeps its inner spaces). A wrong field count or a ValueError from `parse` is a malformed line."""
    rows = []
    for line_no, line in read_lines(path, help_text, what):
        parts = line.split(maxsplit=columns - 1)
        try:
            if len(parts) != columns:
                raise ValueError(f"expected {columns} fields, found {len(parts)}")
            row = parse(parts)
        except ValueError as err:
            raise line_error(path, line_no, line, str(err), help_text) from err
        rows.append((line_no, row))
    return rows
