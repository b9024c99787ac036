"""Boxes in target text and back (docs/loader.md, "Box-aware text supervision"; implemented in
``rust/core/src/data/box_format.rs``). Boxes are normalised ``[x1, y1, x2, y2]`` in [0, 1]."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core

BoxFormat = Literal["cure", "maira2", "loc", "xyxy"]

__all__ = ["BoxFormat", "render_boxes", "parse_boxes"]


def render_boxes(boxes: ArrayLike, box_format: BoxFormat = "cure") -> str:
    """Render normalised boxes as text: ``cure`` ``[cx,cy,w,h]`` (2 decimals), ``maira2``
    ``<box><xNN><yNN><xNN><yNN></box>`` (100 bins), ``loc`` ``<locYYYY><locXXXX>..`` (1024 bins,
    y first), ``xyxy`` ``[x1, y1, x2, y2]`` (4 decimals); boxes separated by a space."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return _core.render_boxes(box_format, arr.tolist())


def parse_boxes(text: str, box_format: BoxFormat = "cure") -> NDArray[np.float64]:
    """Every box in ``text`` as an ``(N, 4)`` array of normalised ``[x1, y1, x2, y2]`` (binned
    formats return bin centres); malformed fragments are ignored."""
    return np.asarray(_core.parse_boxes(box_format, text), dtype=np.float64).reshape(-1, 4)
