"""Validation and row normalisation of embedding matrices, shared by VNS-Gap and ITAS.

Everything here works in row chunks, so checking a 377,110 x 2048 matrix never allocates a
second matrix of its size (no full boolean mask, no float64 copy).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from gradatim.errors import InvalidArgumentError

CHUNK_ROWS = 8192
"""Rows per chunk when checking or normalising (a few MB of temporaries per chunk)."""


def as_matrix(x: ArrayLike, name: str, fn: str) -> np.ndarray:
    """``x`` as a 2-D real NumPy array (no copy when it already is one)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor (CPU or CUDA)
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"{fn}: {name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InvalidArgumentError(
            f"{fn}: {name} must be a 2-D (samples, features) array, got shape {arr.shape}"
        )
    return arr


def check_pair(visual: ArrayLike, text: ArrayLike, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """Both embedding matrices as 2-D arrays with the same, non-zero number of rows."""
    v = as_matrix(visual, "visual", fn)
    t = as_matrix(text, "text", fn)
    if v.shape[0] != t.shape[0]:
        raise InvalidArgumentError(
            f"{fn}: mismatched N: visual has {v.shape[0]} rows (samples), text has {t.shape[0]}"
        )
    if v.shape[0] == 0:
        raise InvalidArgumentError(f"{fn}: empty input (0 samples)")
    for name, arr in (("visual", v), ("text", t)):
        if arr.shape[1] == 0:
            raise InvalidArgumentError(f"{fn}: {name} embeddings have 0 features")
    return v, t


def check_finite(x: np.ndarray, name: str, fn: str) -> None:
    """Raise naming the first row that holds NaN or inf."""
    if x.dtype.kind in "iu":
        return
    for s in range(0, x.shape[0], CHUNK_ROWS):
        ok = np.isfinite(x[s : s + CHUNK_ROWS]).all(axis=1)
        if not ok.all():
            row = s + int(np.argmin(ok))
            raise InvalidArgumentError(f"{fn}: {name} row {row} contains NaN or inf")


def normalize_into(x: np.ndarray, out: np.ndarray, name: str, fn: str) -> None:
    """Write the L2-normalised rows of ``x`` into ``out`` (float32), checking as it goes.

    float32 input takes a fast path (squares summed pairwise in float32, which is accurate to a
    few ulp, then ``x * (1 / norm)`` written straight into ``out``: about 25x faster than going
    through float64). Any chunk with a row whose float32 sum of squares is not finite or below
    1e-30 (NaN/inf, overflow, zero or underflow) and any other dtype go through float64, so huge
    or tiny values neither overflow nor lose precision. Raises :class:`InvalidArgumentError`
    naming the first row with NaN/inf or a zero norm (whose cosine similarity is undefined)."""
    sq_buf = np.empty((min(CHUNK_ROWS, x.shape[0]), x.shape[1]), dtype=np.float32)
    for s in range(0, x.shape[0], CHUNK_ROWS):
        chunk = x[s : s + CHUNK_ROWS]
        if chunk.dtype == np.float32:
            sq = sq_buf[: chunk.shape[0]]
            with np.errstate(over="ignore", under="ignore"):  # such rows are redone below
                np.square(chunk, out=sq)
                ss = sq.sum(axis=1).astype(np.float64)
            if (np.isfinite(ss) & (ss > 1e-30)).all():
                inv = (1.0 / np.sqrt(ss)).astype(np.float32)
                np.multiply(chunk, inv[:, None], out=out[s : s + chunk.shape[0]])
                continue
        _normalize_float64(chunk, out[s : s + chunk.shape[0]], s, name, fn)


def _normalize_float64(chunk: np.ndarray, out: np.ndarray, s: int, name: str, fn: str) -> None:
    c = np.asarray(chunk, dtype=np.float64)
    ok = np.isfinite(c).all(axis=1)
    if not ok.all():
        raise InvalidArgumentError(f"{fn}: {name} row {s + int(np.argmin(ok))} contains NaN or inf")
    norm = np.linalg.norm(c, axis=1)
    if not (norm > 0).all():
        row = s + int(np.argmin(norm > 0))
        raise InvalidArgumentError(
            f"{fn}: {name} row {row} has zero norm (cosine similarity is undefined)"
        )
    out[:] = c / norm[:, None]
