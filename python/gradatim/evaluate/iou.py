"""Grounding IoU as CURE computes it: the IoU of the *union* of the predicted boxes with the union
of the reference boxes (CURE's evaluation code; paper 000, Section 4). A sample without reference
boxes has no IoU (``None``) and is left out of the means; a sample with reference boxes and no
predicted box scores 0. Areas are exact sums over the boxes' own edges, computed by a sweep line
over x with a segment tree over the y edges: O(n log n) time and O(n) memory for n boxes, so a
generated text with many boxes costs little (``gradatim evaluate`` still bounds the boxes it reads
per row, ``MAX_PREDICTED_BOXES``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["union_area", "union_iou", "covered_areas"]

Box = Sequence[float]


def _valid(boxes: Sequence[Box]) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError("boxes must be finite [x1, y1, x2, y2]")
    keep = (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
    return arr[keep]


def covered_areas(first: np.ndarray, second: np.ndarray) -> tuple[float, float, float]:
    """The areas covered by the union of ``first``, by the union of ``second`` and by both
    (``(n, 4)`` arrays of non-empty finite boxes): one sweep over the x edges, each box entering
    and leaving once, with a segment tree over the y edges counting the boxes of each set that
    cover a node whole and the lengths each node has covered by the first set, the second and
    both."""
    boxes = np.concatenate([first, second]).reshape(-1, 4)
    if len(boxes) == 0:
        return 0.0, 0.0, 0.0
    ys = np.unique(boxes[:, [1, 3]])
    lo_y = np.searchsorted(ys, boxes[:, 1]).tolist()
    hi_y = np.searchsorted(ys, boxes[:, 3]).tolist()
    which = [0] * len(first) + [1] * len(second)
    # events: (x, +1 enter / -1 leave, box); leaving before entering at the same x changes no area
    xs = np.concatenate([boxes[:, 0], boxes[:, 2]])
    signs = np.concatenate([np.ones(len(boxes), np.int64), -np.ones(len(boxes), np.int64)])
    order = np.lexsort((signs, xs))
    xs_sorted = xs[order].tolist()
    signs_sorted = signs[order].tolist()
    index_sorted = (order % len(boxes)).tolist()
    segments = len(ys) - 1
    size = 1
    while size < segments:
        size *= 2
    width = [0.0] * (2 * size)  # the y length each node spans
    lengths = np.diff(ys).tolist()
    for i in range(segments):
        width[size + i] = lengths[i]
    for node in range(size - 1, 0, -1):
        width[node] = width[2 * node] + width[2 * node + 1]
    count = ([0] * (2 * size), [0] * (2 * size))  # boxes of each set covering the node whole
    cov = ([0.0] * (2 * size), [0.0] * (2 * size))  # length covered in the node, per set
    both = [0.0] * (2 * size)  # length covered by both sets in the node

    def pull(node: int) -> None:
        leaf = node >= size
        c0, c1 = count[0][node], count[1][node]
        w = width[node]
        l0 = 0.0 if leaf else cov[0][2 * node] + cov[0][2 * node + 1]
        l1 = 0.0 if leaf else cov[1][2 * node] + cov[1][2 * node + 1]
        lb = 0.0 if leaf else both[2 * node] + both[2 * node + 1]
        cov[0][node] = w if c0 else l0
        cov[1][node] = w if c1 else l1
        if c0 and c1:
            both[node] = w
        elif c0:
            both[node] = l1
        elif c1:
            both[node] = l0
        else:
            both[node] = lb

    def update(node: int, left: int, right: int, lo: int, hi: int, s: int, sign: int) -> None:
        if hi <= left or right <= lo:
            return
        if lo <= left and right <= hi:
            count[s][node] += sign
        else:
            mid = (left + right) // 2
            update(2 * node, left, mid, lo, hi, s, sign)
            update(2 * node + 1, mid, right, lo, hi, s, sign)
        pull(node)

    areas = [0.0, 0.0, 0.0]
    previous = xs_sorted[0]
    for x, sign, k in zip(xs_sorted, signs_sorted, index_sorted, strict=True):
        dx = x - previous
        if dx > 0:
            areas[0] += dx * cov[0][1]
            areas[1] += dx * cov[1][1]
            areas[2] += dx * both[1]
        previous = x
        update(1, 0, size, lo_y[k], hi_y[k], which[k], sign)
    return areas[0], areas[1], areas[2]


def union_area(boxes: Sequence[Box]) -> float:
    """Area of the union of axis-aligned boxes ``[x1, y1, x2, y2]`` (empty boxes add nothing)."""
    arr = _valid(boxes)
    return covered_areas(arr, arr[:0])[0]


def union_iou(predicted: Sequence[Box], reference: Sequence[Box]) -> float | None:
    """IoU of the unions; ``None`` without reference boxes (left out, as CURE does)."""
    ref = _valid(reference)
    if len(ref) == 0:
        return None
    pred = _valid(predicted)
    if len(pred) == 0:
        return 0.0
    pred_area, ref_area, inter = covered_areas(pred, ref)
    union = pred_area + ref_area - inter
    return inter / union if union > 0 else 0.0
