"""ITAS by MINE (RRGCL Eq. 5-9): known mutual information, shuffled pairs, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradatim.difficulty import fit_mine, itas
from gradatim.errors import InvalidArgumentError


def gaussian_pairs(
    n: int, d: int, rho: float, noise_dims: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """``d`` pairs of components with correlation ``rho`` plus ``noise_dims`` independent
    components on each side, each side then rotated by a random orthogonal matrix (the mutual
    information is invariant to it): ``I = -d/2 log(1 - rho^2)`` nats."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    x = np.concatenate([x, rng.standard_normal((n, noise_dims))], axis=1)
    y = np.concatenate([y, rng.standard_normal((n, noise_dims))], axis=1)
    q1 = np.linalg.qr(rng.standard_normal((d + noise_dims,) * 2))[0]
    q2 = np.linalg.qr(rng.standard_normal((d + noise_dims,) * 2))[0]
    return (x @ q1).astype(np.float32), (y @ q2).astype(np.float32), -d / 2 * np.log(1 - rho**2)


@pytest.mark.parametrize(("d", "rho", "seed"), [(4, 0.7, 0), (2, 0.8, 1)])
def test_mi_estimate_within_10_percent(d: int, rho: float, seed: int) -> None:
    v, t, true_mi = gaussian_pairs(20_000, d, rho, 12, seed)
    res = fit_mine(v, t, epochs=20, hidden=64, seed=seed, device="cpu")
    assert len(res.mi_history) == 20
    assert abs(res.mi - true_mi) <= 0.10 * true_mi, (res.mi, true_mi)
    assert res.mi_history[0] < res.mi  # it learned


def test_shuffled_pairs_score_lower() -> None:
    v, t, _ = gaussian_pairs(8_000, 4, 0.8, 4, seed=2)
    rng = np.random.default_rng(0)
    bad = rng.choice(8_000, 2_000, replace=False)
    t = t.copy()
    t[bad] = t[rng.permutation(bad)]  # 25 % of the reports now belong to other images
    scores = itas(v, t, epochs=10, hidden=64, seed=0, device="cpu")
    is_bad = np.zeros(8_000, dtype=bool)
    is_bad[bad] = True
    assert scores[is_bad].mean() < scores[~is_bad].mean() - 1.0
    # ranking quality: P(score of an intact pair > score of a shuffled pair)
    ranks = np.argsort(np.argsort(scores))
    auc = (ranks[~is_bad].sum() - (~is_bad).sum() * ((~is_bad).sum() - 1) / 2) / (
        (~is_bad).sum() * is_bad.sum()
    )
    assert auc > 0.9


def test_deterministic_and_leaves_global_rng_alone() -> None:
    v, t, _ = gaussian_pairs(3_000, 2, 0.6, 2, seed=3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = fit_mine(v, t, epochs=3, seed=7, device="cpu")
    after = torch.rand(1)
    threads = torch.get_num_threads()
    b = fit_mine(v, t, epochs=3, seed=7, device="cpu")
    c = fit_mine(v, t, epochs=3, seed=8, device="cpu")
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.mi_history == b.mi_history
    assert not np.array_equal(a.scores, c.scores)
    assert torch.equal(before, after)
    assert torch.get_num_threads() == threads


def test_on_epoch_callback_reports_every_epoch() -> None:
    v, t, _ = gaussian_pairs(1_000, 2, 0.6, 0, seed=4)
    seen: list[tuple[int, float]] = []
    res = fit_mine(
        v,
        t,
        epochs=4,
        batch_size=128,
        seed=0,
        device="cpu",
        on_epoch=lambda e, m: seen.append((e, m)),
    )
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert [m for _, m in seen] == res.mi_history


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"batch_size": -1}, "batch_size"),
        ({"ema_rate": 0.0}, "ema_rate"),
        ({"lr": 0.0}, "lr must be"),
    ],
)
def test_argument_errors(kwargs: dict, message: str) -> None:
    v, t, _ = gaussian_pairs(100, 2, 0.5, 0, seed=5)
    with pytest.raises(InvalidArgumentError, match=message):
        itas(v, t, device="cpu", **kwargs)


def test_data_errors() -> None:
    v, t, _ = gaussian_pairs(100, 2, 0.5, 0, seed=6)
    with pytest.raises(InvalidArgumentError, match="mismatched N"):
        itas(v, t[:50], device="cpu")
    v[42, 1] = np.nan
    with pytest.raises(InvalidArgumentError, match="visual row 42 contains NaN"):
        itas(v, t, device="cpu")
    with pytest.raises(InvalidArgumentError, match="at least 2 samples"):
        itas(t[:1], t[:1], device="cpu")
