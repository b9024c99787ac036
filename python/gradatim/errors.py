"""gradatim's exception family.

Every error raised by gradatim's Rust core is mapped to one of these classes in a single place
(``rust/python/src/error.rs``). They subclass the built-in exception a caller would expect
(``ValueError`` for bad data or arguments, ``NotImplementedError`` for unsupported features), so
``except ValueError`` keeps working, and they pickle like any exception (worker processes can send
them back). I/O failures are the built-in ``OSError`` family with ``errno`` and ``filename`` set.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GradatimError",
    "InvalidArgumentError",
    "DecodeError",
    "UnsupportedFormatError",
    "ImageTooLargeError",
    "ManifestError",
]


class GradatimError(Exception):
    """Base class of every gradatim-specific error."""


class InvalidArgumentError(GradatimError, ValueError):
    """An argument is outside its domain (shape, size, dtype, value)."""


class DecodeError(GradatimError, ValueError):
    """The input could not be decoded as an image: empty, truncated or corrupt. The message names
    the input (path or ``<bytes>``) and the reason."""


class UnsupportedFormatError(DecodeError, NotImplementedError):
    """The input is of a format or uses a feature that gradatim does not read."""


class ImageTooLargeError(DecodeError):
    """The header declares more pixels than ``max_pixels``; nothing was allocated."""


class ManifestError(GradatimError, ValueError):
    """A manifest record (or a record of a dataset file being converted to one) is invalid.

    ``path`` names the file, ``row`` the 1-based line, row or entry (``row_kind`` says which),
    ``field`` the offending field (``"boxes[0].box"``); the message reads
    ``"manifest.jsonl line 12, field 'boxes[0].box': <reason>"``. Any of the three may be ``None``
    where unknown. The message never quotes report text.
    """

    def __init__(
        self,
        reason: str,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
        row_kind: str = "line",
    ) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.row = row
        self.field = field
        self.row_kind = row_kind
        where = self.path or "<records>"
        if row is not None:
            where += f" {row_kind} {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[ManifestError], tuple[Any, ...]]:
        # Default exception pickling calls cls(*self.args), i.e. __init__ with the formatted
        # message as the reason, which would repeat the location and lose the fields.
        return (type(self), (self.reason, self.path, self.row, self.field, self.row_kind))
