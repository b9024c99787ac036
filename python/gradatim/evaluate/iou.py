"""Grounding IoU as CURE computes it: the IoU of the *union* of the predicted boxes with the union
of the reference boxes (CURE's evaluation code; paper 000, Section 4). A sample without reference
boxes has no IoU (``None``) and is left out of the means; a sample with reference boxes and no
predicted box scores 0. Areas are exact (coordinate compression over the boxes' edges)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["union_area", "union_iou"]

Box = Sequence[float]


def _valid(boxes: Sequence[Box]) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError("boxes must be finite [x1, y1, x2, y2]")
    keep = (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
    return arr[keep]


def union_area(boxes: Sequence[Box]) -> float:
    """Area of the union of axis-aligned boxes ``[x1, y1, x2, y2]`` (empty boxes add nothing)."""
    arr = _valid(boxes)
    if len(arr) == 0:
        return 0.0
    xs, ys = np.unique(arr[:, [0, 2]]), np.unique(arr[:, [1, 3]])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for x1, y1, x2, y2 in arr:
        i0, i1 = np.searchsorted(ys, [y1, y2])
        j0, j1 = np.searchsorted(xs, [x1, x2])
        covered[i0:i1, j0:j1] = True
    cell = np.outer(np.diff(ys), np.diff(xs))
    return float((cell * covered).sum())


def union_iou(predicted: Sequence[Box], reference: Sequence[Box]) -> float | None:
    """IoU of the unions; ``None`` without reference boxes (left out, as CURE does)."""
    ref = _valid(reference)
    if len(ref) == 0:
        return None
    pred = _valid(predicted)
    if len(pred) == 0:
        return 0.0
    # the intersection of two unions is the union of the pairwise intersections
    lo = np.maximum(pred[:, None, :2], ref[None, :, :2]).reshape(-1, 2)
    hi = np.minimum(pred[:, None, 2:], ref[None, :, 2:]).reshape(-1, 2)
    inter = union_area(np.concatenate([lo, hi], axis=1))
    union = union_area(pred) + union_area(ref) - inter
    return inter / union if union > 0 else 0.0
