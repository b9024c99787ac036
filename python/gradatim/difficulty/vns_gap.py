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
- ``G`` is symmetric, so only block pairs ``i <= j`` are computed: the row sums of ``|.|`` go to
  the rows of block ``i``, the column sums to the rows of block ``j`` (the diagonal block once,
  by its row sums). That is ``(nb + 1) / (2 nb)`` of the products, about half.
- Memory: ``W`` (``N (dv + dt)`` floats) plus one ``block x block`` buffer reused for every pair
  and a ``block x (dv + dt)`` copy: ``O(N x block)``, never ``N x N``.
- Block sums are taken in float32 (pairwise along rows; in groups of 32 rows then float64 along
  columns) and accumulated as int64 fixed-point numbers with 2^-32 resolution (quantisation
  error below 1e-9 per row). Integer addition is associative, so the result is bit-for-bit the
  same whatever the order of the blocks or the number of ranks (``torchrun``); see
  :mod:`gradatim.difficulty.distributed`.

Default block size (:data:`DEFAULT_BLOCK_CPU`, :data:`DEFAULT_BLOCK_CUDA`): on CPU, 1024 rows
keeps the block buffer at 4 MiB (inside L2 + L3, so the ``abs`` and the two sums run from cache),
keeps each product large enough (1024 x 1024 x (dv + dt)) for BLAS to run at full speed, and
wastes only ``1/(2 nb)`` on the diagonal blocks; 512, 1024 and 2048 measured within 3 % of each
other at N = 20,000 on a 2-core AVX-512 machine, 4096 was 13 % slower. On CUDA, 8192 (a 256 MiB
buffer) keeps the GPU busy with few kernel launches. Products run in IEEE float32 (TF32 is turned
off for the call), as exactness needs.

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
_PRODUCT_BYTES = 32 << 20  # one float32 product (block x columns) on CPU


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


def _dense_numpy(
    w: np.ndarray, dv: int, rows: range, bs: int, scale: float, progress: bool
) -> NDArray[np.int64]:
    """int64 fixed-point row totals contributed by block rows ``rows`` (upper-triangular).

    Block row ``a`` (rows ``[s, e)``) multiplies ``W'_a`` by ``W[s:]^T`` in products of
    :func:`_chunk_cols` columns; the Rust kernel ``_core.vns_gap_block_sums`` then takes ``|.|``,
    the row sums (to rows ``[s, e)``) and the column sums (to the product's columns, except the
    diagonal square ``[s, e)``, whose row sums already count each pair) in one pass."""
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
        wi = wi_buf[:m]
        np.copyto(wi, w[s:e])
        np.negative(wi[:, dv:], out=wi[:, dv:])
        for c0 in range(s, n, cw):
            c1 = min(n, c0 + cw)
            r = flat[: m * (c1 - c0)].reshape(m, c1 - c0)
            np.matmul(wi, w[c0:c1].T, out=r)  # S^v - S^t for rows [s, e) x columns [c0, c1)
            # symmetry: column sums stand for the transposed pairs, never computed; the diagonal
            # square (first product of the row) counts each pair once by its row sums
            _core.vns_gap_block_sums(r, scale, acc, s, c0, m if c0 == s else 0)
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
