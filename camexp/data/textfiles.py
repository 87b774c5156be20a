"""The text-file helpers of the DataModules. They live in camexp.textfiles, which is torch-free, so that
`camexp evaluate-maps` shares them without importing this package."""

from __future__ import annotations

from camexp.textfiles import line_error, read_lines

__all__ = ["line_error", "read_lines"]
