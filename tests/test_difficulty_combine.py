"""Eq. 10 (combine) and the class difficulty difC, checked against the RRGCL scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from gradatim.difficulty import class_difficulty, combine, zscore
from gradatim.errors import InvalidArgumentError


def test_combine_is_eq10_with_population_std() -> None:
    rng = np.random.default_rng(0)
    d1, d2 = rng.gamma(2.0, 3.0, 500), rng.normal(1.0, 0.2, 500)
    want = 0.6 * (d1 - d1.mean()) / d1.std() - 0.4 * (d2 - d2.mean()) / d2.std()
    np.testing.assert_allclose(combine(d1, d2), want, rtol=1e-12)
    want1 = 0.6 * (d1 - d1.mean()) / d1.std(ddof=1) - 0.4 * (d2 - d2.mean()) / d2.std(ddof=1)
    np.testing.assert_allclose(combine(d1, d2, ddof=1), want1, rtol=1e-12)
    literal = 0.6 * (d1 - d1.mean()) / d1.std() + 0.4 * (d2 - d2.mean()) / d2.std()
    np.testing.assert_allclose(combine(d1, d2, itas_sign="literal"), literal, rtol=1e-12)


def test_constant_score_gives_zero_zscores() -> None:
    np.testing.assert_array_equal(zscore(np.full(7, 3.5)), np.zeros(7))
    d1 = np.arange(5.0)
    np.testing.assert_allclose(combine(d1, np.ones(5)), 0.6 * zscore(d1))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones(3), np.ones(4)), "mismatched N"),
        ((np.array([1.0, np.nan]), np.ones(2)), r"dif1\[1\] is not finite"),
        ((np.ones((2, 2)), np.ones(4)), "1-D"),
        ((np.ones(0), np.ones(0)), "empty"),
        ((np.ones(3), np.ones(3), np.inf), "alpha must be finite"),
    ],
)
def test_combine_errors(args: tuple, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        combine(*args)


def test_class_difficulty_hand_computed() -> None:
    dif = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    classes = [["A"], ["A", "B"], ["B"], [], ["C", "C"]]
    cd = class_difficulty(dif, classes)
    assert cd.raw == {"A": 0.5, "B": 1.5, "C": 10.0, "unlabeled": 3.0}
    assert cd.sizes == {"A": 2, "B": 2, "C": 1, "unlabeled": 1}
    assert cd["A"] == 0.0 and cd["C"] == 1.0
    assert cd["B"] == pytest.approx(1.0 / 9.5)
    assert cd.ordering() == ["A", "B", "unlabeled", "C"]
    const = class_difficulty(np.ones(3), [["x"], ["y"], ["z"]])
    assert dict(const) == {"x": 0.5, "y": 0.5, "z": 0.5}


@pytest.mark.filterwarnings("ignore:RRGCL. the class difficulties differ:RuntimeWarning")
def test_class_difficulty_equals_rrgcl_scheduler() -> None:
    """One definition: the scheduler (Rust) and this function give the same difC."""
    from gradatim.curriculum import rrgcl

    rng = np.random.default_rng(1)
    names = ["Atelectasis", "Cardiomegaly", "Edema", "No Finding", "unlabeled"]
    classes = [list(rng.choice(names, rng.integers(1, 3), replace=False)) for _ in range(3000)]
    dif = rng.normal(size=3000)
    cd = class_difficulty(dif, classes)
    sched = rrgcl.RRGCLScheduler(classes, dif, epochs=10)
    got = dict(zip(sched.class_names, sched.class_difficulty, strict=True))
    raw = dict(zip(sched.class_names, sched.raw_class_difficulty, strict=True))
    assert set(got) == set(cd)
    for c in cd:
        assert cd[c] == pytest.approx(got[c], abs=1e-12)
        assert cd.raw[c] == pytest.approx(raw[c], abs=1e-12)


def test_class_difficulty_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="one class list per sample"):
        class_difficulty(np.ones(3), [["a"]])
    with pytest.raises(InvalidArgumentError, match=r"dif\[1\] is not finite"):
        class_difficulty(np.array([1.0, np.inf]), [["a"], ["b"]])


def test_itas_sign_intent_ranks_mispaired_reports_hardest() -> None:
    """10 % of the reports belong to other images. VNS-Gap (real, exact) and ITAS (real MINE)
    both flag them; the default (Section 3.2's intent) ranks them hardest, while Eq. 10's printed
    sign ranks them easier than VNS-Gap alone does."""
    from gradatim.difficulty import itas, vns_gap

    rng = np.random.default_rng(4)
    n, d = 2000, 8
    v = rng.normal(size=(n, d))
    t = v @ rng.normal(size=(d, d)) + 0.3 * rng.normal(size=(n, d))
    bad = rng.choice(n, n // 10, replace=False)
    t[bad] = t[rng.permutation(bad)]
    dif1 = vns_gap(v.astype(np.float32), t.astype(np.float32), device="cpu")
    dif2 = itas(v, t, epochs=10, hidden=64, seed=0, device="cpu")

    def mean_percentile(dif: np.ndarray) -> float:  # where the mis-paired pairs rank, 1 = hardest
        ranks = np.argsort(np.argsort(dif)) / (n - 1)
        return float(ranks[bad].mean())

    intent = mean_percentile(combine(dif1, dif2))
    literal = mean_percentile(combine(dif1, dif2, itas_sign="literal"))
    vns_only = mean_percentile(dif1)
    assert intent > 0.9 and intent > vns_only
    assert literal < vns_only
    np.testing.assert_allclose(combine(dif1, dif2), 0.6 * zscore(dif1) - 0.4 * zscore(dif2))
    with pytest.raises(InvalidArgumentError, match="itas_sign"):
        combine(dif1, dif2, itas_sign="plus")
