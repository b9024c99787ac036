"""MedCLM's Medium-stage box mask (docs/curriculum.md, "MedCLM stages"; implemented in
``rust/core/src/data/box_mask.rs``): the loader's ``box_mask`` of one sample, for use outside a
batch (another grid, a check against a reference)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core

__all__ = ["box_mask"]


def box_mask(
    boxes: ArrayLike,
    *,
    grid: tuple[int, int] = (24, 24),
    sigma: float = 3.0,
    kernel: int | None = 9,
    padding: Literal["reflect", "zero"] = "reflect",
    cells: Literal["truncate", "whole", "fraction"] = "truncate",
    empty: Literal["image", "zeros"] = "image",
) -> NDArray[np.float32]:
    """The mask of normalised ``[x1, y1, x2, y2]`` ``boxes`` on a ``grid = (w, h)`` of cells, as
    a ``(h, w)`` float32 array summing to 1 (or all zeros).

    Defaults: MedCLM's released ``_create_soft_mask`` (ksyint/PROGRESSIVE a7cca74,
    ``attn_loss.py``): ``cells="truncate"`` marks ``floor(x1 n) ..< trunc(x2 n)`` (start clamped
    to ``[0, n - 1]``, end to ``[1, n]``, in float32), so a box inside one cell away from the
    first row and column marks nothing; ``empty="image"``: no box is the whole image; a 9-tap
    Gaussian, sigma 3, reflect padding. gradatim's rules: ``cells="whole"`` (every touched cell),
    ``cells="fraction"`` (covered fraction), ``empty="zeros"``. Several boxes are marked together
    (the released code takes one box per sample)."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = (int(v) for v in grid)
    flat = _core.box_mask(
        arr.tolist(),
        (w, h),
        float(sigma),
        None if kernel is None else int(kernel),
        str(padding),
        str(cells),
        str(empty),
    )
    return np.asarray(flat, dtype=np.float32).reshape(h, w)
