"""VNS-Gap's one-pass block epilogue (``_core.vns_gap_block_sums``, rust/core/src/difficulty) and
the CPU scheme built on it: against float64 NumPy oracles, over random shapes, block sizes and
odd N, and bit-for-bit independent of how the block rows are shared among ranks."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradatim import _core
from gradatim.difficulty import vns_gap
from gradatim.difficulty.distributed import shard_triangular
from gradatim.errors import InvalidArgumentError

vg = importlib.import_module("gradatim.difficulty.vns_gap")

PROPS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def oracle(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Eq. 1-4 in float64 with two dense N x N matrices."""
    v = v.astype(np.float64) / np.linalg.norm(v.astype(np.float64), axis=1, keepdims=True)
    t = t.astype(np.float64) / np.linalg.norm(t.astype(np.float64), axis=1, keepdims=True)
    return np.abs(v @ v.T - t @ t.T).sum(axis=1)


def embeddings(n: int, dv: int, dt: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((n, 4))
    v = lat @ rng.standard_normal((4, dv)) + 0.7 * rng.standard_normal((n, dv)) + 1.0
    t = lat @ rng.standard_normal((4, dt)) + rng.standard_normal((n, dt)) + 0.5
    return v.astype(np.float32), t.astype(np.float32)


def normalised_w(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    w = np.empty((v.shape[0], v.shape[1] + t.shape[1]), dtype=np.float32)
    w[:, : v.shape[1]] = v / np.linalg.norm(v, axis=1, keepdims=True)
    w[:, v.shape[1] :] = t / np.linalg.norm(t, axis=1, keepdims=True)
    return w


# --- the kernel -----------------------------------------------------------------------------


@PROPS
@given(
    rows=st.integers(1, 200),
    cols=st.integers(1, 700),
    col_from=st.integers(0, 700),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_equals_float64_row_and_column_sums(
    rows: int, cols: int, col_from: int, seed: int
) -> None:
    col_from = min(col_from, cols)
    rng = np.random.default_rng(seed)
    block = rng.uniform(-1.0, 1.0, (rows, cols)).astype(np.float32)
    scale = 2.0**32
    acc = np.zeros(rows + cols + 3, dtype=np.int64)
    _core.vns_gap_block_sums(block, scale, acc, 0, rows + 3, col_from)
    a = np.abs(block.astype(np.float64))
    want_rows, want_cols = a.sum(axis=1), a.sum(axis=0)
    # the documented bound: float32 partial sums of at most 32 terms in sequence (column groups
    # of 32 rows; the row chunks' lanes and tree are shallower), all terms >= 0: 32 ulps relative
    rtol = 32 * 2.0**-24
    np.testing.assert_allclose(acc[:rows] / scale, want_rows, rtol=rtol, atol=1e-9)
    assert (acc[rows : rows + 3 + col_from] == 0).all()  # gap and skipped columns untouched
    np.testing.assert_allclose(
        acc[rows + 3 + col_from :] / scale, want_cols[col_from:], rtol=rtol, atol=1e-9
    )


def test_kernel_is_more_accurate_than_float32_numpy() -> None:
    """The documented error bound, measured: the kernel's row sums (float32 chunks of 256, then
    float64) and column sums (float32 groups of 32 rows, then float64) stay within a few float32
    ulps of the float64 sums, no worse than NumPy's float32 pairwise row sum."""
    rng = np.random.default_rng(0)
    block = rng.uniform(0.0, 1.0, (1024, 4096)).astype(np.float32)
    acc = np.zeros(1024 + 4096, dtype=np.int64)
    scale = 2.0**32
    _core.vns_gap_block_sums(block, scale, acc, 0, 1024, 0)
    exact_rows = block.astype(np.float64).sum(axis=1)
    exact_cols = block.astype(np.float64).sum(axis=0)
    kernel_row_err = np.max(np.abs(acc[:1024] / scale - exact_rows) / exact_rows)
    numpy_row_err = np.max(np.abs(block.sum(axis=1).astype(np.float64) - exact_rows) / exact_rows)
    kernel_col_err = np.max(np.abs(acc[1024:] / scale - exact_cols) / exact_cols)
    assert kernel_row_err <= max(numpy_row_err, 2.0**-24)
    assert kernel_row_err < 1e-7 and kernel_col_err < 1e-7


def test_kernel_adds_to_what_is_there_and_rounds_half_to_even() -> None:
    block = np.array([[0.5, -1.0], [-2.0, 0.25]], dtype=np.float32)
    acc = np.array([10, 20, 30, 40], dtype=np.int64)
    _core.vns_gap_block_sums(block, 2.0, acc, 0, 2, 0)
    # rows: |0.5| + |-1| = 1.5 -> 3; 2.25 -> 4.5 -> 4 (half to even); columns: 2.5 -> 5, 1.25 -> 2
    assert acc.tolist() == [13, 24, 35, 42]


BAD = InvalidArgumentError


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (lambda b, a: _core.vns_gap_block_sums(b, float("nan"), a, 0, 0, 3), BAD, "scale"),
        (lambda b, a: _core.vns_gap_block_sums(b, 0.0, a, 0, 0, 3), BAD, "scale"),
        (lambda b, a: _core.vns_gap_block_sums(b, 1.0, a, 3, 0, 3), BAD, "outside"),
        (lambda b, a: _core.vns_gap_block_sums(b, 1.0, a, 0, 2, 0), BAD, "outside"),
        (lambda b, a: _core.vns_gap_block_sums(b, 1.0, a, 0, 0, 4), BAD, "col_from"),
        (lambda b, a: _core.vns_gap_block_sums(b.T, 1.0, a, 0, 0, 0), TypeError, "contiguous"),
        (lambda b, a: _core.vns_gap_block_sums(b, 1.0, a[::2], 0, 0, 3), TypeError, "acc"),
    ],
)
def test_kernel_refuses_bad_arguments(call, exc: type, message: str) -> None:
    block = np.ones((2, 3), dtype=np.float32)
    acc = np.zeros(4, dtype=np.int64)
    with pytest.raises(exc, match=message):
        call(block, acc)
    assert (acc == 0).all()


# --- the CPU scheme -------------------------------------------------------------------------


@PROPS
@given(
    n=st.integers(1, 260),
    block=st.integers(1, 300),
    dv=st.integers(1, 40),
    dt=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_blocked_gap_equals_dense_float64_oracle(
    n: int, block: int, dv: int, dt: int, seed: int
) -> None:
    v, t = embeddings(n, dv, dt, seed)
    got = vns_gap(v, t, block=block, device="cpu")
    np.testing.assert_allclose(got, oracle(v, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "block", "chunk_bytes"), [(301, 64, 4 * 64 * 100), (777, 100, 1)])
def test_narrow_products_equal_the_oracle(
    monkeypatch: pytest.MonkeyPatch, n: int, block: int, chunk_bytes: int
) -> None:
    """Several products per block row (the diagonal one and its neighbours), odd N."""
    monkeypatch.setattr(vg, "_PRODUCT_BYTES", chunk_bytes)
    assert vg._chunk_cols(n, block) < n - block
    v, t = embeddings(n, 24, 16, n)
    np.testing.assert_allclose(
        vns_gap(v, t, block=block, device="cpu"), oracle(v, t), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(("n", "block"), [(1000, 128), (1537, 256), (97, 10)])
def test_shards_add_up_bit_for_bit(n: int, block: int) -> None:
    """Any number of ranks, each with its triangular share of block rows, adds up (int64) to
    exactly the single-process totals, in any order of the shares."""
    v, t = embeddings(n, 32, 24, 1)
    w = normalised_w(v, t)
    scale = vg._fixed_point_scale(n)
    nb = -(-n // block)
    whole = vg._dense_numpy(w, 32, range(nb), block, scale, False)
    for world in (2, 3, 5):
        parts = [
            vg._dense_numpy(w, 32, shard_triangular(nb, world, r), block, scale, False)
            for r in range(world)
        ]
        np.testing.assert_array_equal(sum(parts[::-1]), whole)
    np.testing.assert_allclose(whole / scale, oracle(v, t), rtol=1e-5)
