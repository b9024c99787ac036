"""The baseline pacing functions of RRGCL's ablation (linear, root, geometric, baby step, one pass):
hand-computed values, bucket rules, monotonicity, and training on the selected prefix / bucket."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradatim.curriculum import PACING_NAMES, PacingScheduler, bucket_stage, pacing


def test_values_by_hand():
    assert pacing("linear", 0, 10) == pytest.approx(0.01, abs=1e-15)
    assert pacing("linear", 5, 10) == pytest.approx(0.5 * 0.99 + 0.01, abs=1e-15)  # 0.505
    assert pacing("linear", 10, 10) == 1.0
    assert pacing("linear", 2, 8, c0=0.2) == pytest.approx(0.25 * 0.8 + 0.2, abs=1e-15)
    # root, p = 2 (Platanios): sqrt(t (1 - c0^2) / T + c0^2)
    assert pacing("root", 5, 10) == pytest.approx(math.sqrt(0.5 * (1 - 1e-4) + 1e-4), abs=1e-15)
    assert pacing("root", 0, 10) == pytest.approx(0.01, abs=1e-15)
    # root, p = 3 at t = T / 4: (0.25 (1 - 0.1^3) + 0.1^3)^(1/3) = 0.25075^(1/3)
    assert pacing("root", 2, 8, c0=0.1, p=3) == pytest.approx(0.25075 ** (1 / 3), abs=1e-15)
    # geometric: c0^(1 - t / T): 0.01^0.5 = 0.1
    assert pacing("geometric", 5, 10) == pytest.approx(0.1, abs=1e-15)
    assert pacing("geometric", 0, 10) == pytest.approx(0.01, abs=1e-15)
    for name in ("linear", "root", "geometric"):
        assert pacing(name, 10, 10) == pytest.approx(1.0, abs=1e-15)
        assert pacing(name, 25, 10) == 1.0  # min(1, ...)


def test_bucket_schedules():
    assert [bucket_stage(t, 10, 5) for t in range(11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    assert [bucket_stage(t, 6, 4) for t in range(7)] == [1, 1, 2, 3, 3, 4, 4]
    assert pacing("baby_step", 4, 10, buckets=5) == pytest.approx(0.6)
    dif = np.arange(100)[::-1].astype(float)  # sample 99 is the easiest
    bs = PacingScheduler(dif, "baby_step", 10, buckets=5)
    op = PacingScheduler(dif, "one_pass", 10, buckets=5)
    assert bs.range(4) == (0, 60) and op.range(4) == (40, 60)
    assert bs.epoch_indices(0).tolist() == list(range(80, 100))
    assert op.epoch_indices(4).tolist() == list(range(40, 60))
    assert op.epoch_indices(10).tolist() == list(range(0, 20))
    with pytest.raises(ValueError, match="empty buckets"):
        PacingScheduler([0.1, 0.2], "one_pass", 10, buckets=5)


def test_prefix_uses_the_ceil_rule_and_sorts_by_difficulty():
    dif = [0.5, 0.1, 0.9, 0.1, 0.3]
    s = PacingScheduler(dif, "linear", 4, c0=0.3)
    assert s.order.tolist() == [1, 3, 4, 0, 2]  # ties by index
    # t = 1: 0.25 * 0.7 + 0.3 = 0.475 -> ceil(2.375) = 3 easiest
    assert s.range(1) == (0, 3)
    assert s.epoch_indices(1).tolist() == [1, 3, 4]
    assert s.epoch_indices(4).tolist() == [0, 1, 2, 3, 4]
    # at least one sample even when c0 * N < 1
    assert PacingScheduler(dif, "geometric", 4).range(0) == (0, 1)


def test_errors():
    with pytest.raises(ValueError, match="unknown schedule"):
        pacing("cosine", 1, 10)
    with pytest.raises(ValueError, match="c0"):
        pacing("linear", 1, 10, c0=0)
    with pytest.raises(ValueError, match="c0"):
        pacing("linear", 1, 10, c0=1.5)
    with pytest.raises(ValueError, match="p"):
        pacing("root", 1, 10, p=0)
    with pytest.raises(ValueError, match="T"):
        pacing("linear", 1, 0)
    with pytest.raises(ValueError, match="t"):
        pacing("linear", -1, 10)
    with pytest.raises(ValueError, match="buckets"):
        pacing("baby_step", 1, 10, buckets=0)
    with pytest.raises(ValueError, match="non-finite"):
        PacingScheduler([0.1, float("nan")], "linear", 3)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(PACING_NAMES[:3]),
    T=st.integers(1, 50),
    c0=st.floats(1e-4, 1.0),
    p=st.floats(0.5, 4.0),
)
def test_property_monotone_between_c0_and_one(name, T, c0, p):
    values = [pacing(name, t, T, c0, p) for t in range(T + 1)]
    assert values[0] == pytest.approx(c0, rel=1e-9)
    assert values[-1] == pytest.approx(1.0, abs=1e-12)
    assert all(b >= a - 1e-15 for a, b in zip(values, values[1:], strict=False))


def test_sampler_trains_on_the_selected_prefix():
    import torch

    rng = np.random.default_rng(3)
    dif = rng.random(200)
    s = PacingScheduler(dif, "root", 5)
    sampler = s.sampler(seed=4)
    loader = torch.utils.data.DataLoader(range(200), sampler=sampler, batch_size=None)
    for epoch in range(6):
        got = [int(i) for i in loader]  # each pass moves on to the next epoch
        t = epoch + 1  # the ablation counts t = 1 .. T: range(T)'s last epoch is t = T
        lo, hi = s.range(t)
        assert sorted(got) == sorted(s.order[lo:hi].tolist())
        assert len(got) == math.ceil(s.fraction(t) * 200)
        if epoch == 4:
            assert len(got) == 200


@pytest.mark.parametrize(("T", "k"), [(10, 5), (5, 5), (12, 4), (7, 3), (3, 5), (20, 5)])
def test_bucket_stage_lengths_over_a_samplers_epochs(T, k):
    """How many of a sampler's epochs ``e = 0 .. T-1`` (``t = e + 1``) each One Pass stage gets,
    read from the buckets the sampler actually trains on, against the count written out from
    the documented rule ``j(t) = min(k, floor(t k / T) + 1)``: ``ceil(j T / k) - max(1,
    ceil((j - 1) T / k))`` epochs for ``j < k``, ``T + 1 - max(1, ceil((k - 1) T / k))`` for the
    last stage (docs/curriculum.md states these lengths)."""
    n = 10 * k
    dif = np.arange(n, dtype=float)  # sample i is the i-th easiest
    s = PacingScheduler(dif, "one_pass", T, buckets=k)
    sampler = s.sampler(seed=0)
    seen = []
    for e in range(T):
        sampler.set_epoch(e)
        got = sorted(int(i) for i in sampler)
        j = got[0] // (n // k) + 1  # the bucket: positions (j-1) n/k .. j n/k
        assert got == list(range((j - 1) * n // k, j * n // k))
        seen.append(j)
    lengths = [seen.count(j) for j in range(1, k + 1)]

    def ceil_div(a, b):
        return -(-a // b)

    expected = [ceil_div(j * T, k) - max(1, ceil_div((j - 1) * T, k)) for j in range(1, k)]
    expected.append(T + 1 - max(1, ceil_div((k - 1) * T, k)))
    assert lengths == [max(0, x) for x in expected]
    if T % k == 0:  # the sentence of the docs: T/k - 1, then T/k, then T/k + 1
        assert lengths == [T // k - 1] + [T // k] * (k - 2) + [T // k + 1]
    if (T, k) == (10, 5):
        assert lengths == [1, 2, 2, 2, 3]
    if T <= k:  # the easiest bucket is never trained on alone
        assert lengths[0] == 0
