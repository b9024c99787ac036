"""VNS-Gap (RRGCL Eq. 1-4) against the plain NumPy N x N oracle, and its error messages."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from gradatim.difficulty import vns_gap
from gradatim.errors import InvalidArgumentError

vg = importlib.import_module("gradatim.difficulty.vns_gap")


def oracle(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Eq. 1-4 literally, in float64 with two N x N matrices."""
    v = v.astype(np.float64)
    t = t.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return np.abs(v @ v.T - t @ t.T).sum(axis=1)


def oracle_knn(v: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Sum of G_ij over the k most visually similar j != i (ties broken by index)."""
    v = v.astype(np.float64) / np.linalg.norm(v, axis=1, keepdims=True)
    t = t.astype(np.float64) / np.linalg.norm(t, axis=1, keepdims=True)
    sv, st = v @ v.T, t @ t.T
    np.fill_diagonal(sv, -np.inf)
    nbrs = np.argsort(-sv, axis=1, kind="stable")[:, :k]
    g = np.abs(np.take_along_axis(v @ v.T, nbrs, 1) - np.take_along_axis(st, nbrs, 1))
    return g.sum(axis=1)


def embeddings(n: int, dv: int = 64, dt: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated, offset embeddings (cosines far from 0, as real encoders give)."""
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((n, 8))
    v = lat @ rng.standard_normal((8, dv)) + 0.7 * rng.standard_normal((n, dv)) + 1.0
    t = lat @ rng.standard_normal((8, dt)) + rng.standard_normal((n, dt)) + 0.5
    return v.astype(np.float32), t.astype(np.float32)


@pytest.mark.parametrize(
    ("n", "block"),
    [(1, 4), (2, 1), (7, 3), (100, 7), (513, 128), (1000, 1024), (3000, 1000), (3000, 257)],
)
def test_blocked_equals_numpy_nxn(n: int, block: int) -> None:
    v, t = embeddings(n, seed=n)
    got = vns_gap(v, t, block=block, device="cpu")
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, oracle(v, t), rtol=1e-5, atol=1e-5)


def test_default_block_and_float64_input() -> None:
    v, t = embeddings(2500, dv=96, dt=32, seed=1)
    got = vns_gap(v.astype(np.float64), t.astype(np.float64), device="cpu")  # 1024: not a divisor
    np.testing.assert_allclose(got, oracle(v, t), rtol=1e-5)


def test_torch_path_on_cpu_equals_oracle() -> None:
    """The CUDA code path (torch) run on the CPU device: same scheme, same numbers."""
    v, t = embeddings(1100, seed=2)
    w = np.concatenate(
        [
            v / np.linalg.norm(v, axis=1, keepdims=True),
            t / np.linalg.norm(t, axis=1, keepdims=True),
        ],
        axis=1,
    ).astype(np.float32)
    bs, scale = 300, vg._fixed_point_scale(1100)
    acc = vg._dense_torch(w, v.shape[1], range(4), bs, scale, "cpu", False)
    np.testing.assert_allclose(acc.numpy() / scale, oracle(v, t), rtol=1e-5)


@pytest.mark.parametrize("n", [1000, 3000])  # k + 1 <= 1024: FAISS; above: NumPy selection
def test_knn_with_all_neighbours_equals_full_sum(n: int) -> None:
    v, t = embeddings(n, seed=3)
    got = vns_gap(v, t, k=n - 1, block=700, device="cpu")
    np.testing.assert_allclose(got, oracle(v, t), rtol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_knn_small_k_equals_bruteforce(k: int) -> None:
    v, t = embeddings(800, seed=4)
    got = vns_gap(v, t, k=k, block=256, device="cpu")
    # a handful of float32 cosines: ~1e-7 absolute each, so an absolute tolerance for tiny sums
    np.testing.assert_allclose(got, oracle_knn(v, t, k), rtol=1e-5, atol=1e-6)


def test_knn_ivf_with_every_list_probed_is_exact() -> None:
    v, t = embeddings(2000, seed=5)
    exact = vns_gap(v, t, k=10, device="cpu", index="flat")
    nlist = int(4 * np.sqrt(2000))
    ivf = vns_gap(v, t, k=10, device="cpu", index="ivf", nprobe=nlist)
    np.testing.assert_allclose(ivf, exact, rtol=1e-6)


def test_knn_excludes_the_sample_not_its_duplicate() -> None:
    """Rows 0, 1 and 2 have the same image embedding but different reports: each one's nearest
    neighbour must be one of the others (similarity 1), never itself."""
    v, t = embeddings(300, seed=6)
    v[1] = v[0]
    v[2] = v[0]
    got = vns_gap(v, t, k=2, device="cpu")
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    st = tn[:3] @ tn[:3].T
    for i in range(3):
        others = [j for j in range(3) if j != i]
        expected = sum(abs(1.0 - st[i, j]) for j in others)
        assert got[i] == pytest.approx(expected, rel=1e-5)


def test_permuting_samples_permutes_result() -> None:
    v, t = embeddings(900, seed=7)
    perm = np.random.default_rng(0).permutation(900)
    a = vns_gap(v, t, block=256, device="cpu")
    b = vns_gap(v[perm], t[perm], block=100, device="cpu")
    np.testing.assert_allclose(b, a[perm], rtol=1e-6)


def test_identical_modalities_give_zero_gap() -> None:
    v, _ = embeddings(200, seed=8)
    np.testing.assert_allclose(vns_gap(v, v * 3.0, device="cpu"), 0.0, atol=1e-4)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v, t: (v, t[:-1]), "mismatched N: visual has 50 rows"),
        (lambda v, t: (v[:0], t[:0]), "empty input"),
        (lambda v, t: (v[:, 0], t), "2-D"),
        (lambda v, t: (v.astype(object), t), "real numbers"),
    ],
)
def test_shape_errors(mutate, message: str) -> None:
    v, t = embeddings(50)
    a, b = mutate(v, t)
    with pytest.raises(InvalidArgumentError, match=message):
        vns_gap(a, b, device="cpu")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_row_is_named(bad: float) -> None:
    v, t = embeddings(9000)  # past the first check chunk
    t[8500, 3] = bad
    with pytest.raises(InvalidArgumentError, match="text row 8500 contains NaN or inf"):
        vns_gap(v, t, device="cpu")


def test_zero_norm_row_is_named() -> None:
    v, t = embeddings(40)
    v[17] = 0.0
    with pytest.raises(InvalidArgumentError, match="visual row 17 has zero norm"):
        vns_gap(v, t, device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be an int in"),
        ({"k": 50}, r"\[1, 49\]"),
        ({"k": 2.5}, "k must be"),
        ({"block": 0}, "block must be a positive int"),
        ({"device": "tpu"}, "device must be"),
        ({"k": 3, "index": "hnsw"}, "index must be"),
    ],
)
def test_argument_errors(kwargs: dict, message: str) -> None:
    v, t = embeddings(50)
    kwargs.setdefault("device", "cpu")
    with pytest.raises(InvalidArgumentError, match=message):
        vns_gap(v, t, **kwargs)


def test_triangular_shards_cover_and_balance() -> None:
    from gradatim.difficulty.distributed import shard_even, shard_triangular

    for nb in (1, 2, 5, 37, 100):
        for world in (1, 2, 3, 8):
            parts = [shard_triangular(nb, world, r) for r in range(world)]
            assert [a for p in parts for a in p] == list(range(nb))
            evens = [shard_even(nb, world, r) for r in range(world)]
            assert [a for p in evens for a in p] == list(range(nb))
            if nb >= 4 * world:
                work = [sum(nb - a for a in p) for p in parts]
                assert max(work) <= 1.25 * (nb * (nb + 1) / 2) / world


def test_extreme_magnitudes_take_the_float64_path() -> None:
    """Rows whose float32 sum of squares would overflow or underflow are normalised in float64:
    cosine similarity does not depend on a row's scale."""
    v, t = embeddings(300, seed=9)
    want = vns_gap(v, t, device="cpu")
    v2, t2 = v.copy(), t.copy()
    v2[5] *= 1e25  # squares overflow float32
    t2[7] *= 1e-25  # squares underflow float32
    np.testing.assert_allclose(vns_gap(v2, t2, device="cpu"), want, rtol=1e-6)
    np.testing.assert_allclose(
        vns_gap(v2.astype(np.float64), t2.astype(np.float64), device="cpu"),
        vns_gap(v2, t2, device="cpu"),
        rtol=1e-6,
    )
