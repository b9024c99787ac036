"""The data side of gradatim: manifests, augmentation, the drop-in DataLoader, box-aware text.

``ManifestDataset`` and ``DataLoader`` are imported on first use (``DataLoader`` needs torch), so
``gradatim.data.cache`` and the other torch-free pieces import without torch installed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gradatim.data.augment import Augment
from gradatim.data.box_mask import box_mask
from gradatim.data.box_text import parse_boxes, render_boxes

if TYPE_CHECKING:
    from gradatim.data.dataset import ManifestDataset
    from gradatim.data.loader import DataLoader

__all__ = ["Augment", "DataLoader", "ManifestDataset", "box_mask", "parse_boxes", "render_boxes"]

_LAZY = {"ManifestDataset": "gradatim.data.dataset", "DataLoader": "gradatim.data.loader"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module 'gradatim.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
