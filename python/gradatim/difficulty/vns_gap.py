"""VNS-Gap, RRGCL's first learning-difficulty measure (paper 002, Section 3.2.2, Eq. 1-4).

``dif1(i) = sum_j |S^v_ij - S^t_ij|`` where ``S^v`` and ``S^t`` are the cosine-similarity matrices
of the visual and the text embeddings (Eq. 1-2), ``G = |S^v - S^t|`` (Eq. 3) and the sum runs over
all ``j`` (Eq. 4; ``G_ii = 0``). A sample that looks like others but is described differently
has a large gap and is hard.

How it is computed, exactly and without an N x N matrix:

- Rows are L2-normalised once (float64 where float32 could overflow) into one float32 matrix
  ``W = [V | T]``. For a row block ``i`` the copy ``W'_i = [V_i | -T_i]`` turns both products
  into ONE matrix product: ``W'_i W_j^T = V_i V_j^T - T_i T_j^T = S^v_ij - S^t_ij``, with no
  subtraction pass.
- ``G`` is symmetric, so (nearly) only pairs ``i <= j`` are computed. On CPU, block row ``a``
  (rows ``[s, e)``, halves ``[s, s + h)`` and ``[s + h, e)``) multiplies ``W'_a`` by
  ``W[s + h:]^T`` in products of up to :data:`_PRODUCT_BYTES` (16 MiB: ``block x 4096`` columns
  at the default block, cut into equal widths), wide enough for BLAS to run as fast as on the
  plain ``N x N`` products and small enough to be still in L3 when the kernel below reads it
  (at N = 10,000: 8 and 16 MiB 0.55x the GEMM-only time, 4 MiB 0.565x, 32 MiB 0.575x); then
  the top half's own ``h x h`` square. Row sums of ``|.|`` go to
  the product's rows, column sums to its columns (they stand for the transposed pairs), except on
  the two diagonal squares, which count each pair once by their row sums. The diagonal block
  costs 3/4 of a square, so the products cover about ``1/2 + block / (4 N)`` of the ``N x N``
  products (0.525 at N = 10,000, 0.513 at 20,000 with the default block; the whole diagonal
  block would give ``1/2 + block / (2 N)``, 0.550 and 0.525).
- The ``|.|``, row sums, column sums and fixed-point conversion of a product are ONE pass in Rust
  (``_core.vns_gap_block_sums``, ``rust/core/src/difficulty/gap_sums.rs``; the GIL is released),
  not several NumPy passes over the product: 0.5-0.9 % of the GEMM-only time at N = 10,000,
  1.8 % at 20,000 (the NumPy passes took 2-3 % at 10,000).
- Memory: ``W`` (``N (dv + dt)`` floats) plus one product buffer (at most 16 MiB, or
  ``block x block``) reused for every product and a ``block x (dv + dt)`` copy:
  ``O(N x block)``, never ``N x N``.
- Product sums (the kernel's fixed order, the same on every CPU): each row in float32 over chunks
  of 256 columns (64 lanes of 4 values each, then a pairwise tree), the chunks in float64
  (relative error about ``10 u``, ``u = 2^-24``, tighter than NumPy's float32 pairwise sum);
  each column in float32 over groups of 32 rows (at most ``31 u``), the groups in float64. Each
  float64 sum is rounded to an int64 fixed-point number with 2^-32 resolution (at most 2^-33 per
  product a row takes part in, below 1e-8 per row at N = 100,000) and accumulated. Integer
  addition is associative, so the result is bit-for-bit the same whatever the order of the block
  rows or the number of ranks (``torchrun``); see :mod:`gradatim.difficulty.distributed`.
- CUDA (:func:`_dense_torch`): block pairs ``i <= j`` of ``block x block``, torch's ``abs`` and
  float64 sums, the same fixed point.

Default block size (:data:`DEFAULT_BLOCK_CPU`, :data:`DEFAULT_BLOCK_CUDA`): on CPU, 1024 rows:
the diagonal blocks waste ``block / (4 N)`` of the products, while fewer rows per product make
BLAS slower (it packs the product's columns once per call); at N = 10,000 on a 2-core AVX-512
machine 640-1280 rows measured within noise of each other, 512 was 6 % slower and 256 was 35 %
slower. On CUDA, 8192 (a 256 MiB buffer) keeps the GPU busy with few kernel launches. Products
run in IEEE float32 (TF32 is turned off for the call), as exactness needs.

The neighbourhood variant ``k=K`` sums ``G_ij`` over the ``K`` nearest visual neighbours of ``i``
(cosine similarity of the visual embeddings, ``i`` itself excluded; see
:mod:`gradatim.difficulty.neighbors`). With ``K = N - 1`` it equals the full sum.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core
from gradatim.difficulty import distributed as dist
from gradatim.difficulty._checks import check_pair, normalize_into
from gradatim.errors import InvalidArgumentError

__all__ = ["DEFAULT_BLOCK_CPU", "DEFAULT_BLOCK_CUDA", "vns_gap", "resolve_device"]

DEFAULT_BLOCK_CPU = 1024
DEFAULT_BLOCK_CUDA = 8192
_KNN_GATHER_BYTES = 64 << 20  # neighbour rows gathered at once in the k-NN variant
_PRODUCT_BYTES = 16 << 20  # one float32 product (block x columns) on CPU: stays in L3


def resolve_device(device: Any = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when ``torch.cuda.is_available()``, else ``"cpu"``; ``"cpu"``,
    ``"cuda"`` and ``"cuda:N"`` (or a ``torch.device``) pass through."""
    name = str(device)
    if name == "auto":
        try:
            import torch
        except ImportError:
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if name.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise InvalidArgumentError(f"device={name!r}: CUDA is not available here")
        return name
    raise InvalidArgumentError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _fixed_point_scale(n: int) -> float:
    """2^s with ``2 n 2^s < 2^62``: every row total (at most ``2 n``) fits an int64."""
    return float(2.0 ** min(32, 61 - math.ceil(math.log2(2 * n + 1))))


def _blocks(n: int, bs: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + bs)) for s in range(0, n, bs)]


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc=desc, unit="block")


def _chunk_cols(n: int, bs: int) -> int:
    """Columns per product on CPU: as wide as :data:`_PRODUCT_BYTES` allows (at least ``bs``)."""
    return int(min(n, max(bs, _PRODUCT_BYTES // (4 * bs))))


def _column_chunks(s: int, n: int, cw: int) -> list[tuple[int, int]]:
    """Columns ``[s, n)`` cut into the fewest products of at most ``cw`` columns, of equal widths
    (to one column): no narrow last product, which BLAS would run slowly."""
    k = -(-(n - s) // cw)
    return [(s + (n - s) * q // k, s + (n - s) * (q + 1) // k) for q in range(k)]


def _dense_numpy(
    w: np.ndarray, dv: int, rows: range, bs: int, scale: float, progress: bool
) -> NDArray[np.int64]:
    """int64 fixed-point row totals contributed by block rows ``rows`` (upper-triangular).

    Block row ``a`` (rows ``[s, e)``, halves ``[s, s + h)`` and ``[s + h, e)``) multiplies
    ``W'_a`` by ``W[s + h:]^T`` in products of at most :func:`_chunk_cols` columns, plus the top
    half's own ``h x h`` square. The Rust kernel ``_core.vns_gap_block_sums`` takes ``|.|``, the
    row sums and the column sums of each product in one pass. Column sums stand for the transposed
    pairs, never computed; the two diagonal squares count each pair once, by their row sums. So
    the diagonal block costs ``3/4`` of a square, not all of it."""
    n, d = w.shape
    blocks = _blocks(n, bs)
    cw = _chunk_cols(n, bs)
    acc = np.zeros(n, dtype=np.int64)
    wi_buf = np.empty((bs, d), dtype=np.float32)
    flat = np.empty(bs * cw, dtype=np.float32)
    bar = _progress(sum(len(blocks) - a for a in rows), progress, "VNS-Gap")
    for a in rows:
        s, e = blocks[a]
        m = e - s
        h = m // 2
        wi = wi_buf[:m]
        np.copyto(wi, w[s:e])
        np.negative(wi[:, dv:], out=wi[:, dv:])
        for c0, c1 in _column_chunks(s + h, n, cw):
            r = flat[: m * (c1 - c0)].reshape(m, c1 - c0)
            np.matmul(wi, w[c0:c1].T, out=r)  # S^v - S^t for rows [s, e) x columns [c0, c1)
            if c0 == s + h:  # columns [s + h, e): the bottom half's diagonal square
                _core.vns_gap_block_sums(r[:h], scale, acc, s, c0, 0)
                _core.vns_gap_block_sums(r[h:], scale, acc, s + h, c0, m - h)
            else:
                _core.vns_gap_block_sums(r, scale, acc, s, c0, 0)
        if h:  # the top half's diagonal square
            r = flat[: h * h].reshape(h, h)
            np.matmul(wi[:h], w[s : s + h].T, out=r)
            _core.vns_gap_block_sums(r, scale, acc, s, s, h)
        if bar is not None:
            bar.update(len(blocks) - a)
    if bar is not None:
        bar.close()
    return acc


@contextlib.contextmanager
def _ieee_float32() -> Iterator[None]:
    """Run CUDA float32 products in IEEE float32 (not TF32, whose 10-bit mantissa would cost
    three digits of every cosine), restoring the caller's setting afterwards."""
    import torch

    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(prev)


def _dense_torch(
    w_host: np.ndarray, dv: int, rows: range, bs: int, scale: float, device: str, progress: bool
) -> Any:
    """The same scheme as :func:`_dense_numpy` with torch on ``device`` (CUDA in practice; CPU
    works too and is what the tests run). Returns an int64 tensor on ``device``."""
    import torch

    n, d = w_host.shape
    blocks = _blocks(n, bs)
    dev = torch.device(device)
    w = torch.from_numpy(w_host).to(dev)
    acc = torch.zeros(n, dtype=torch.int64, device=dev)
    wi_buf = torch.empty((bs, d), dtype=torch.float32, device=dev)
    flat = torch.empty(bs * bs, dtype=torch.float32, device=dev)
    bar = _progress(sum(len(blocks) - a for a in rows), progress, "VNS-Gap")
    with torch.no_grad(), _ieee_float32():
        for a in rows:
            s, e = blocks[a]
            m = e - s
            wi = wi_buf[:m]
            wi.copy_(w[s:e])
            wi[:, dv:].neg_()
            for c in range(a, len(blocks)):
                s2, e2 = blocks[c]
                r = flat[: m * (e2 - s2)].view(m, e2 - s2)
                torch.mm(wi, w[s2:e2].T, out=r)
                r.abs_()
                acc[s:e] += torch.round(r.sum(dim=1, dtype=torch.float64) * scale).long()
                if c != a:
                    acc[s2:e2] += torch.round(r.sum(dim=0, dtype=torch.float64) * scale).long()
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return acc


def _knn(
    w: np.ndarray,
    dv: int,
    k: int,
    rows: range,
    bs: int,
    scale: float,
    index: str,
    nprobe: int | None,
    device: str,
    progress: bool,
) -> NDArray[np.int64]:
    """int64 fixed-point totals over each row's ``k`` visual neighbours, for row blocks ``rows``.

    Neighbours come from FAISS (or NumPy selection for large ``k``, see
    :mod:`gradatim.difficulty.neighbors`). The gaps of the selected pairs are either gathered
    (``k`` small: ``k (dv + dt)`` values per row) or, when ``32 k >= N``, read from the block's
    dense row of ``S^v - S^t`` (one GEMM), far cheaper than gathering most of the matrix."""
    from gradatim.difficulty.neighbors import (
        FAISS_MAX_K,
        build_index,
        search_excluding_self,
        select_excluding_self,
    )

    n, d = w.shape
    vn = np.ascontiguousarray(w[:, :dv])
    use_faiss = index == "ivf" or (index == "auto" and n >= _ivf_min_rows()) or k + 1 <= FAISS_MAX_K
    idx = build_index(vn, index=index, nprobe=nprobe, device=device, k=k) if use_faiss else None
    dense = 32 * k >= n or idx is None
    per_row = 4 * (n if dense else k * d)
    sub = max(1, _KNN_GATHER_BYTES // per_row)
    blocks = _blocks(n, bs)
    acc = np.zeros(n, dtype=np.int64)
    bar = _progress(len(rows), progress, f"VNS-Gap k={k}")
    for a in rows:
        s, e = blocks[a]
        nbrs = search_excluding_self(idx, vn[s:e], s, k) if idx is not None else None
        wi = w[s:e].copy()
        np.negative(wi[:, dv:], out=wi[:, dv:])
        for q0 in range(0, e - s, sub):
            q1 = min(e - s, q0 + sub)
            if nbrs is None:
                sel = select_excluding_self(vn[s + q0 : s + q1] @ vn.T, s + q0, k)
            else:
                sel = nbrs[q0:q1]
            if dense:
                g = np.take_along_axis(wi[q0:q1] @ w.T, sel, axis=1)  # (q, k): S^v - S^t
            else:
                g = np.matmul(w[sel], wi[q0:q1, :, None])[..., 0]
            np.abs(g, out=g)
            acc[s + q0 : s + q1] = np.rint(g.sum(axis=1).astype(np.float64) * scale)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return acc


def _ivf_min_rows() -> int:
    from gradatim.difficulty.neighbors import IVF_MIN_ROWS

    return IVF_MIN_ROWS


def vns_gap(
    visual: ArrayLike,
    text: ArrayLike,
    *,
    block: int | None = None,
    k: int | None = None,
    device: Any = "auto",
    index: str = "auto",
    nprobe: int | None = None,
    distributed: bool = False,
    progress: bool = False,
) -> NDArray[np.float64]:
    """VNS-Gap ``dif1`` of every sample (RRGCL Eq. 1-4): ``sum_j |cos(v_i, v_j) - cos(t_i, t_j)|``.

    Exact, blocked and symmetric (see the module docstring): memory ``O(N x block)``, never an
    ``N x N`` matrix; NumPy/BLAS on CPU, torch on CUDA.

    Args:
        visual: ``(N, dv)`` visual embeddings (any real dtype; used as float32 after
            normalisation).
        text: ``(N, dt)`` text embeddings of the same samples, in the same order.
        block: rows per block (default 1024 on CPU, 8192 on CUDA).
        k: ``None`` for the sum over all ``j`` (Eq. 4); an int ``1 <= k <= N - 1`` for the sum over
            the ``k`` nearest visual neighbours of ``i``, ``i`` itself excluded (FAISS).
        device: ``"auto"`` (CUDA when ``torch.cuda.is_available()``), ``"cpu"``, ``"cuda[:N]"``.
        index: k-NN index, ``"auto"`` | ``"flat"`` (exact) | ``"ivf"`` (approximate); see
            :mod:`gradatim.difficulty.neighbors`.
        nprobe: lists searched per query with the IVF index (default 64).
        distributed: shard the row blocks over the ranks of the initialised
            ``torch.distributed`` process group; every rank returns the full result, bit-for-bit
            the one of a single process.
        progress: show a progress bar (tqdm) over the blocks.

    Returns:
        ``(N,)`` float64 ``dif1``.

    Raises:
        InvalidArgumentError: empty input, mismatched N, a non-2-D array, NaN/inf in a row or a
            zero-norm row (the message names the matrix and the row), bad ``block``/``k``.
    """
    v, t = check_pair(visual, text, "vns_gap")
    n, dv = v.shape
    dt = t.shape[1]
    dev = resolve_device(device)
    if block is None:
        block = DEFAULT_BLOCK_CUDA if dev.startswith("cuda") else DEFAULT_BLOCK_CPU
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise InvalidArgumentError(f"vns_gap: block must be a positive int, got {block!r}")
    if k is not None and (
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1
    ):
        raise InvalidArgumentError(
            f"vns_gap: k must be an int in [1, N - 1] = [1, {n - 1}] (the sample itself is "
            f"excluded), got {k!r}"
        )
    bs = int(min(block, n))
    w = np.empty((n, dv + dt), dtype=np.float32)
    normalize_into(v, w[:, :dv], "visual", "vns_gap")
    normalize_into(t, w[:, dv:], "text", "vns_gap")
    scale = _fixed_point_scale(n)
    nb = -(-n // bs)
    rank, world = dist.rank_and_world() if distributed else (0, 1)
    if k is not None:
        rows = dist.shard_even(nb, world, rank)
        acc: Any = _knn(w, dv, int(k), rows, bs, scale, index, nprobe, dev, progress)
    else:
        rows = dist.shard_triangular(nb, world, rank)
        if dev.startswith("cuda"):
            acc = _dense_torch(w, dv, rows, bs, scale, dev, progress)
        else:
            acc = _dense_numpy(w, dv, rows, bs, scale, progress)
    if distributed:
        acc = dist.all_reduce_sum(acc)
    if not isinstance(acc, np.ndarray):
        acc = acc.cpu().numpy()
    return acc.astype(np.float64) / scale
