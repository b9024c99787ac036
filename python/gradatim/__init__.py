"""gradatim: a Rust-accelerated data loader for curriculum-guided training of medical
vision-language models.

Submodules: :mod:`gradatim.image` (decode, CLAHE, affine warp with boxes, resize, flip, overlay,
normalise). The exception family lives in :mod:`gradatim.errors` and is re-exported here.
"""

from __future__ import annotations

from gradatim import errors, image
from gradatim._core import __version__
from gradatim.errors import (
    DecodeError,
    GradatimError,
    ImageTooLargeError,
    InvalidArgumentError,
    UnsupportedFormatError,
)

__all__ = [
    "__version__",
    "errors",
    "image",
    "GradatimError",
    "InvalidArgumentError",
    "DecodeError",
    "UnsupportedFormatError",
    "ImageTooLargeError",
]
