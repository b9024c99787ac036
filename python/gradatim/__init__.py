"""gradatim: a Rust-accelerated data loader for curriculum-guided training of medical
vision-language models.

Submodules: :mod:`gradatim.image` (decode, CLAHE, affine warp with boxes, resize, flip, overlay,
normalise), :mod:`gradatim.data` (``ManifestDataset``, ``Augment``, the drop-in ``DataLoader``;
re-exported here, imported on first use because they need torch), :mod:`gradatim.sampling`,
:mod:`gradatim.curriculum`, :mod:`gradatim.difficulty`. The exception family lives in
:mod:`gradatim.errors` and is re-exported here.
"""

from __future__ import annotations

from gradatim import errors, image
from gradatim._core import __version__
from gradatim.errors import (
    DecodeError,
    GradatimError,
    ImageTooLargeError,
    InvalidArgumentError,
    ManifestError,
    UnsupportedFormatError,
)

__all__ = [
    "__version__",
    "errors",
    "image",
    "Augment",
    "DataLoader",
    "ManifestDataset",
    "GradatimError",
    "InvalidArgumentError",
    "ManifestError",
    "DecodeError",
    "UnsupportedFormatError",
    "ImageTooLargeError",
]


_LAZY_MODULES = ("curriculum", "data", "datasets", "difficulty", "manifest", "sampling")


def __getattr__(name: str) -> object:
    # the loader needs torch; `import gradatim` alone (e.g. for gradatim.image) must not
    import importlib

    if name in ("Augment", "DataLoader", "ManifestDataset"):
        return getattr(importlib.import_module("gradatim.data"), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"gradatim.{name}")
    raise AttributeError(f"module 'gradatim' has no attribute {name!r}")
