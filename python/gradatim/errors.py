"""gradatim's exception family.

Every error raised by gradatim's Rust core is mapped to one of these classes in a single place
(``rust/python/src/error.rs``). They subclass the built-in exception a caller would expect
(``ValueError`` for bad data or arguments, ``NotImplementedError`` for unsupported features), so
``except ValueError`` keeps working, and they pickle like any exception (worker processes can send
them back). I/O failures are the built-in ``OSError`` family with ``errno`` and ``filename`` set.
"""

from __future__ import annotations

__all__ = [
    "GradatimError",
    "InvalidArgumentError",
    "DecodeError",
    "UnsupportedFormatError",
    "ImageTooLargeError",
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
