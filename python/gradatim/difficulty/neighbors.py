"""The k nearest visual neighbours of every sample, the sample itself excluded (FAISS).

Used by the neighbourhood variant of VNS-Gap (``vns_gap(..., k=K)``). Rows are L2-normalised,
so inner product is cosine similarity:

- ``index="flat"``: ``faiss.IndexFlatIP``, exact.
- ``index="ivf"``: ``faiss.IndexIVFFlat`` with ``nlist = 4 sqrt(N)`` inverted lists trained by
  k-means on at most ``256 nlist`` rows (FAISS' own seeded clustering) and ``nprobe`` lists searched
  per query (default :data:`DEFAULT_NPROBE`); approximate, much faster for large N.
- ``index="auto"``: flat below :data:`IVF_MIN_ROWS` rows, IVF from there on. The exact search costs
  ``N^2 d`` multiply-adds, as much as the exact all-pairs VNS-Gap; the neighbourhood variant only
  saves time with IVF.

FAISS searches when ``k + 1 <= FAISS_MAX_K`` (1024) or the index is IVF. For larger ``k`` (a
neighbourhood that is a sizeable part of the data set) the exact selection is done with NumPy on
the block's row of visual similarities (``argpartition``), which is much faster than FAISS' heap
selection there and gives the same neighbour set (ties at the k-th similarity aside).

On CUDA, when the installed FAISS has GPU support (``faiss-gpu`` wheels, the ``gpu`` extra) and
``k + 1 <= 2048`` (FAISS' GPU k-selection limit), the index is moved to the GPU; otherwise the CPU
index is used.

Self-exclusion: ``k + 1`` neighbours are searched; the sample's own row is dropped when it is
among them. When it is not (more than ``k`` exact duplicates tie with it at similarity 1 and FAISS
listed the duplicates first), the last of the ``k + 1`` is dropped instead, so the sample itself is
never a neighbour of its own, while its duplicates are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradatim.errors import InvalidArgumentError

__all__ = [
    "IVF_MIN_ROWS",
    "DEFAULT_NPROBE",
    "FAISS_MAX_K",
    "build_index",
    "search_excluding_self",
    "select_excluding_self",
    "drop_self",
]

IVF_MIN_ROWS = 200_000
"""``index="auto"`` switches from the exact flat index to IVF at this many rows."""

DEFAULT_NPROBE = 64
"""Inverted lists searched per query with ``index="ivf"``."""

FAISS_MAX_K = 1024
"""Largest ``k + 1`` searched with the flat FAISS index (above it NumPy selects, see above)."""

GPU_MAX_K = 2048


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "vns_gap(k=...) needs FAISS: pip install faiss-cpu (or 'gradatim[difficulty]'; "
            "faiss-gpu for CUDA)"
        ) from exc
    return faiss


def build_index(
    vn: np.ndarray,
    *,
    index: str = "auto",
    nprobe: int | None = None,
    device: str = "cpu",
    k: int = 1,
) -> Any:
    """A FAISS inner-product index over the normalised rows ``vn`` (float32, C-contiguous)."""
    faiss = _faiss()
    n, d = vn.shape
    kind = index
    if kind == "auto":
        kind = "ivf" if n >= IVF_MIN_ROWS else "flat"
    if kind == "flat":
        idx = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(d)
        idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = min(n, 256 * nlist)
        train = vn if sample == n else vn[np.sort(rng.choice(n, sample, replace=False))]
        idx.train(np.ascontiguousarray(train))
        idx.nprobe = int(nprobe or DEFAULT_NPROBE)
    else:
        raise InvalidArgumentError(f"vns_gap: index must be 'auto', 'flat' or 'ivf', got {index!r}")
    if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources") and k + 1 <= GPU_MAX_K:
        dev_id = int(device.split(":")[1]) if ":" in device else 0
        res = faiss.StandardGpuResources()
        idx = faiss.index_cpu_to_gpu(res, dev_id, idx)
        idx._gradatim_res = res  # keep the resources alive as long as the index
    idx.add(vn)
    return idx


def search_excluding_self(idx: Any, queries: np.ndarray, first_row: int, k: int) -> np.ndarray:
    """Indices ``(q, k)`` of the ``k`` most similar rows to each query, the query's own row
    (``first_row + i`` for query ``i``) excluded."""
    _, found = idx.search(np.ascontiguousarray(queries), k + 1)
    if (found < 0).any():
        raise InvalidArgumentError(
            f"vns_gap: the index returned fewer than k + 1 = {k + 1} neighbours for some rows "
            "(IVF lists too small): raise nprobe or use index='flat'"
        )
    return drop_self(found, first_row, k)


def select_excluding_self(sims: np.ndarray, first_row: int, k: int) -> np.ndarray:
    """Like :func:`search_excluding_self` from a dense ``(q, N)`` block of visual similarities:
    the ``k + 1`` largest per row (unordered, column ``k`` the smallest of them), self dropped."""
    found = np.argpartition(-sims, k, axis=1)[:, : k + 1]
    return drop_self(found, first_row, k)


def drop_self(found: np.ndarray, first_row: int, k: int) -> np.ndarray:
    """From ``k + 1`` candidates per row (column ``k`` the least similar), drop the query's own row
    (``first_row + i``) where present, else the least similar candidate."""
    q = found.shape[0]
    own = found == (first_row + np.arange(q))[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(found, dtype=bool)
    keep[np.arange(q), drop] = False
    return found[keep].reshape(q, k)
