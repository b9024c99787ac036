"""How OpenCV 5.0 and 5.1 map a destination pixel back into the source in `cv2.warpAffine`
(INTER_LINEAR, 1/3/4 channels), transcribed in NumPy from docs/image.md ("Which OpenCV"), and the
documented difference of gradatim's warp (5.0's rule) from 5.1.

5.0 (gradatim): the inverse matrix is cast to float32; inside groups of 16 pixels
`sx = fma(M0, x, float(y*M1) + M2)`, in the last `w % 16` columns `sx = fma(x, M0, y*M1) + M2`;
the weight `a = sx - floor(sx)` comes from that float32 coordinate.
5.1: the coordinate is computed in float64 from the float64 inverse, `x*M0 + (y*M1 + M2)`; 8-bit
images round it to float32 and take the weight from that, 16-bit images take the weight from the
float64 coordinate itself (and interpolate in an order not transcribed here), and pixels whose
taps straddle the source's edge round their own way.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
GROUP = 16


def inverse(m: np.ndarray) -> np.ndarray:
    """The destination -> source matrix, as cv::warpAffine computes it (float64)."""
    m = np.asarray(m, dtype=np.float64)
    d = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    d = 1.0 / d if d != 0 else 0.0
    i0, i1, i3, i4 = m[1, 1] * d, m[0, 1] * -d, m[1, 0] * -d, m[0, 0] * d
    return np.array(
        [[i0, i1, -i0 * m[0, 2] - i1 * m[1, 2]], [i3, i4, -i3 * m[0, 2] - i4 * m[1, 2]]]
    )


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add: the product of two float32 is exact in float64."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(F32)


def coordinates_50(m: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 5.0's float32 source coordinates (x, y), each of shape (h, w)."""
    w, h = size
    inv = inverse(m).astype(F32)
    x = np.broadcast_to(np.arange(w, dtype=F32), (h, w))
    y = np.broadcast_to(np.arange(h, dtype=F32)[:, None], (h, w))
    tail = np.broadcast_to(np.arange(w) >= w // GROUP * GROUP, (h, w))
    out = []
    for r in range(2):
        m0, m1, m2 = (np.full((h, w), v, dtype=F32) for v in inv[r])
        row = (y * m1).astype(F32)
        grouped = _fma32(m0, x, (row + m2).astype(F32))
        scalar = (_fma32(x, m0, row) + m2).astype(F32)
        out.append(np.where(tail, scalar, grouped))
    return out[0], out[1]


def coordinates_51(m: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 5.1's float64 source coordinates (x, y), each of shape (h, w)."""
    w, h = size
    inv = inverse(m)
    x = np.arange(w, dtype=np.float64)[None, :]
    y = np.arange(h, dtype=np.float64)[:, None]
    return tuple(inv[r, 0] * x + (inv[r, 1] * y + inv[r, 2]) for r in range(2))  # type: ignore[return-value]


def assert_documented_difference(
    img: np.ndarray, m: np.ndarray, size: tuple[int, int], ours: np.ndarray, ref: np.ndarray
) -> None:
    """gradatim (5.0's rounding) against OpenCV >= 5.1, as docs/image.md states it.

    8-bit: at most 1 level apart on under 0.1 % of pixels, and nearly always (>= 90 % of them)
    at pixels whose float32 coordinate differs between the two rules or whose taps straddle the
    source's edge. 16-bit: under 1 % of pixels; a pixel moves by at most 1 level plus what a
    coordinate error of `side * 2^-21` (a few float32 ulps) makes of its 2x2 taps' range -
    several levels at the radiograph's collimator edges, 1 elsewhere."""
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    differs = diff > 0
    x51, y51 = coordinates_51(m, size)
    h, w = img.shape[:2]
    ix, iy = np.floor(x51).astype(np.int64), np.floor(y51).astype(np.int64)
    interior = (ix >= 0) & (ix + 1 < w) & (iy >= 0) & (iy + 1 < h)
    if img.dtype == np.uint8:
        assert diff.max() <= 1, f"max diff {diff.max()} (documented: 1)"
        assert differs.mean() < 1e-3, f"{differs.mean():.4%} of pixels differ"
        x50, y50 = coordinates_50(m, size)
        moved = (x50 != x51.astype(F32)) | (y50 != y51.astype(F32))
        explained = differs & (moved | ~interior)
        assert explained.sum() >= 0.9 * differs.sum(), (
            f"only {int(explained.sum())} of {int(differs.sum())} differing pixels are explained"
        )
        return
    assert differs.mean() < 0.01, f"{differs.mean():.4%} of pixels differ"
    grey = img if img.ndim == 2 else img.max(axis=2)
    cx, cy = np.clip(ix, 0, w - 2), np.clip(iy, 0, h - 2)
    taps = np.stack([grey[cy, cx], grey[cy, cx + 1], grey[cy + 1, cx], grey[cy + 1, cx + 1]])
    taps = taps.astype(np.int64)
    spread = np.where(interior, taps.max(axis=0) - taps.min(axis=0), np.iinfo(img.dtype).max)
    bound = 1 + np.ceil(2.0 * spread * max(w, h, *size) * 2.0**-21)
    over = diff > bound
    assert not over.any(), (
        f"{int(over.sum())} pixels differ beyond the documented bound, first at "
        f"{np.argwhere(over)[0]}: {diff[over][0]} levels"
    )
