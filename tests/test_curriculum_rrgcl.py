"""RRGCL's class-level scheduler (paper 002, Eq. 11-13, Algorithm 1): hand-computed values,
hypothesis properties, and the CheXpert label table of torchxrayvision as real multi-label data."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradatim.curriculum import UNLABELED, RRGCLScheduler, rrgcl_rates
from gradatim.sampling import CurriculumSampler

PROPS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def eq11(l0: float, g: float, t: float, T: float) -> float:
    return min(1.0, (l0**g + (1 - l0**g) * t / T) ** (1 / g))


# -- the equations -------------------------------------------------------------------------------


def test_rates_by_hand():
    # raw [2, 4, 3] -> min-max [0, 1, 0.5]; c = 3 classes -> gamma = 1 + (1 - d) * 3 = [4, 1, 2.5]
    # lambda0 = gamma / 7.5 = [8/15, 2/15, 1/3]
    r0 = rrgcl_rates([2.0, 4.0, 3.0], 0, 8)
    np.testing.assert_allclose(r0, [8 / 15, 2 / 15, 1 / 3], rtol=0, atol=1e-15)
    # t = 2 of T = 8: gamma 1 is linear: 2/15 + (13/15) / 4 = 0.35
    r = rrgcl_rates([2.0, 4.0, 3.0], 2, 8)
    assert r[1] == pytest.approx(0.35, abs=1e-15)
    # gamma 4: ((8/15)^4 + (1 - (8/15)^4) / 4)^(1/4), (8/15)^4 = 4096/50625
    a = 4096 / 50625
    assert r[0] == pytest.approx((a + (1 - a) / 4) ** 0.25, abs=1e-15)
    assert r[0] == pytest.approx(0.746584, abs=1e-6)  # sqrt(sqrt(0.3106815))
    b = (1 / 3) ** 2.5
    assert r[2] == pytest.approx((b + (1 - b) / 4) ** (1 / 2.5), abs=1e-15)
    assert rrgcl_rates([2.0, 4.0, 3.0], 8, 8).tolist() == [1.0, 1.0, 1.0]
    assert rrgcl_rates([2.0, 4.0, 3.0], 11, 8).tolist() == [1.0, 1.0, 1.0]


def test_c_parameter_and_constant_difficulty():
    # c = 1: gamma = [2, 1] -> lambda0 = [2/3, 1/3]
    np.testing.assert_allclose(rrgcl_rates([0.0, 5.0], 0, 4, c=1.0), [2 / 3, 1 / 3], atol=1e-15)
    # a constant vector scales to 0.5: every gamma = 1 + 0.5 c, every lambda0 = 1 / C
    np.testing.assert_allclose(rrgcl_rates([7.0] * 4, 0, 10), [0.25] * 4, atol=1e-15)
    s = RRGCLScheduler([[0], [1], [0, 1]], [1.0, 1.0, 1.0], 5)
    np.testing.assert_allclose(s.class_difficulty, [0.5, 0.5])
    np.testing.assert_allclose(s.gamma, [2.0, 2.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="t"):
        rrgcl_rates([1.0, 2.0], -1, 10)
    with pytest.raises(ValueError, match="T must be a positive"):
        rrgcl_rates([1.0, 2.0], 0, 0)
    with pytest.raises(ValueError, match="not finite"):
        rrgcl_rates([1.0, float("nan")], 0, 10)
    with pytest.raises(ValueError, match="sample 1 has a non-finite"):
        RRGCLScheduler([[0], [0]], [0.0, float("inf")], 3)
    with pytest.raises(ValueError, match="2 class lists for 3"):
        RRGCLScheduler([[0], [0]], [0.0, 1.0, 2.0], 3)
    with pytest.raises(ValueError, match="'c'.*no samples"):
        RRGCLScheduler([["a"], ["b"]], [0.0, 1.0], 3, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown class 'z'"):
        RRGCLScheduler([["a"], ["z"]], [0.0, 1.0], 3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="epochs"):
        RRGCLScheduler([[0]], [0.0], 0)


# -- the scheduler, by hand ----------------------------------------------------------------------


def test_subsets_by_hand():
    # 8 samples, classes a / b, sample 7 has none (-> "unlabeled")
    classes = [["a"], ["a", "b"], ["b"], ["b"], ["a"], ["a"], ["b"], []]
    dif = [0.1, 0.5, 0.9, 0.2, 0.3, 0.7, 0.4, 0.0]
    s = RRGCLScheduler(classes, dif, 4)
    assert s.class_names == ["a", "b", UNLABELED]
    assert s.class_sizes.tolist() == [4, 4, 1]
    assert s.class_indices("a").tolist() == [0, 4, 1, 5]  # easiest first
    assert s.class_indices("b").tolist() == [3, 6, 1, 2]
    # raw means: a = 0.4, b = 0.5, unlabeled = 0.0 -> scaled [0.8, 1, 0]; c = 3
    np.testing.assert_allclose(s.raw_class_difficulty, [0.4, 0.5, 0.0])
    np.testing.assert_allclose(s.class_difficulty, [0.8, 1.0, 0.0])
    np.testing.assert_allclose(s.gamma, [1.6, 1.0, 4.0])
    np.testing.assert_allclose(s.lambda0, [1.6 / 6.6, 1 / 6.6, 4 / 6.6])
    for t in range(5):
        lam = [eq11(g / 6.6, g, t, 4) for g in (1.6, 1.0, 4.0)]
        k = [math.ceil(x * n) for x, n in zip(lam, (4, 4, 1), strict=True)]
        assert s.counts(t).tolist() == k
        want = set([0, 4, 1, 5][: k[0]]) | set([3, 6, 1, 2][: k[1]]) | {7}
        assert s.epoch_indices(t).tolist() == sorted(want)
    # t = 0: a takes ceil(0.2424 * 4) = 1, b ceil(0.1515 * 4) = 1
    assert s.epoch_indices(0).tolist() == [0, 3, 7]
    assert s.epoch_indices(4).tolist() == list(range(8))


def test_ties_are_broken_by_index_and_inputs_forms_agree():
    dif = [0.5, 0.5, 0.5, 0.1]
    s = RRGCLScheduler([[0], [0], [0], [0]], dif, 2)
    assert s.class_indices(0).tolist() == [3, 0, 1, 2]
    lists = [[0, 2], [1], [], [2], [0]]
    d = [0.3, 0.2, 0.9, 0.4, 0.1]
    a = RRGCLScheduler(lists, d, 6, class_names=["x", "y", "z"])
    hot = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, -1, np.nan]])
    b = RRGCLScheduler(hot, d, 6, class_names=["x", "y", "z"])
    c = RRGCLScheduler.from_csr([0, 2, 3, 3, 4, 5], [0, 2, 1, 2, 0], d, 6, class_names="xyz")
    for other in (b, c):
        assert other.class_names == a.class_names == ["x", "y", "z", UNLABELED]
        for t in range(7):
            assert other.epoch_indices(t).tolist() == a.epoch_indices(t).tolist()
    # an existing "unlabeled" class takes the samples without a class
    u = RRGCLScheduler([["a"], [], ["unlabeled"]], [0.0, 1.0, 2.0], 3)
    assert u.class_names == ["a", "unlabeled"] and u.class_sizes.tolist() == [1, 2]
    # integer ids without names: the ids present, sorted
    ids = RRGCLScheduler([[5], [9, 5], 9], [0.0, 1.0, 2.0], 3)
    assert ids.class_names == [5, 9] and ids.class_sizes.tolist() == [2, 2]


def test_from_file_parquet(tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"classes": [["a"], ["a", "b"], []], "dif": [0.3, 0.1, 0.2]})
    pq.write_table(table, tmp_path / "dif.parquet")
    s = RRGCLScheduler.from_file(tmp_path / "dif.parquet", 5)
    ref = RRGCLScheduler([["a"], ["a", "b"], []], [0.3, 0.1, 0.2], 5)
    assert s.class_names == ref.class_names
    np.testing.assert_array_equal(s.lambda0, ref.lambda0)


# -- properties ----------------------------------------------------------------------------------


@PROPS
@given(
    d=st.lists(st.floats(-5, 5), min_size=1, max_size=12),
    T=st.integers(1, 60),
    c=st.one_of(st.none(), st.floats(0, 20)),
)
def test_property_rates_monotone_and_reach_one(d, T, c):
    prev = rrgcl_rates(d, 0, T, c)
    assert np.all(prev > 0) and np.all(prev <= 1)
    np.testing.assert_allclose(prev.sum(), 1.0)  # Eq. 13 sums to 1
    for t in range(1, T + 1):
        cur = rrgcl_rates(d, t, T, c)
        assert np.all(cur >= prev)
        prev = cur
    assert prev.tolist() == [1.0] * len(d)
    # easier classes (larger gamma) start higher
    g = 1 + (1 - (np.asarray(d) - min(d)) / ((max(d) - min(d)) or 1)) * (len(d) if c is None else c)
    if max(d) > min(d):
        order = np.argsort(-g, kind="stable")
        r0 = rrgcl_rates(d, 0, T, c)
        assert np.all(np.diff(r0[order]) <= 1e-12)


@st.composite
def training_sets(draw):
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, 6))
    lists = draw(st.lists(st.lists(st.integers(0, k - 1), max_size=3), min_size=n, max_size=n))
    dif = draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n))
    return lists, dif


@pytest.mark.filterwarnings("ignore:RRGCL. the class difficulties differ:RuntimeWarning")
@PROPS
@given(data=training_sets(), T=st.integers(1, 12))
def test_property_every_class_every_epoch_and_nothing_lost(data, T):
    lists, dif = data
    s = RRGCLScheduler(lists, dif, T)
    # by name: with integer class names, an integer is a name first (ids of [[], [1]] are
    # 0 -> class 1 and 1 -> unlabeled, so `class_indices(1)` is class 1, not id 1)
    members = {k: set(s.class_indices(name).tolist()) for k, name in enumerate(s.class_names)}
    # every sample is in some class (no sample lost)
    assert set().union(*members.values()) == set(range(len(dif)))
    prev: set[int] = set()
    for t in range(T + 1):
        sub = s.epoch_indices(t).tolist()
        assert sub == sorted(set(sub))
        cur = set(sub)
        for k in range(s.num_classes):
            assert cur & members[k], f"class {k} missing at epoch {t}"
        assert prev <= cur  # subsets grow
        prev = cur
        # the ceil rule, recomputed with NumPy from the rates
        k_n = np.ceil(s.rates(t) * s.class_sizes).astype(int)
        assert s.counts(t).tolist() == k_n.tolist()
    assert prev == set(range(len(dif)))


# -- real labels: CheXpert (torchxrayvision's label table) ----------------------------------------

CHEXPERT_CLASSES = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
]


def chexpert_table() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "torchxrayvision is not installed (pip install --no-deps torchxrayvision): "
            "its data/chexpert_train.csv.gz is the real-label fixture of this test"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "chexpert_train.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} is missing from the torchxrayvision install")
    return path


@pytest.mark.filterwarnings("ignore:RRGCL. the class difficulties differ:RuntimeWarning")
@pytest.mark.slow
def test_chexpert_labels_class_coverage_and_subset_sizes():
    pc = pytest.importorskip("pyarrow.csv")
    table = pc.read_csv(chexpert_table())
    assert table.num_rows > 200_000
    labels = np.stack(
        [table.column(c).to_numpy(zero_copy_only=False) for c in CHEXPERT_CLASSES], axis=1
    )
    n = labels.shape[0]
    dif = np.random.default_rng(20250101).standard_normal(n)
    T = 10
    s = RRGCLScheduler(labels, dif, T, class_names=CHEXPERT_CLASSES)

    positive = labels == 1  # positives only; 0, -1 (uncertain) and NaN are not members
    unlabeled = ~positive.any(axis=1)
    assert s.class_names == [*CHEXPERT_CLASSES, UNLABELED]
    assert s.class_sizes.tolist() == [*positive.sum(axis=0).tolist(), int(unlabeled.sum())]
    assert s.c == 14.0

    # an independent NumPy implementation of Algorithm 1
    member_sets = [np.flatnonzero(positive[:, k]) for k in range(13)] + [np.flatnonzero(unlabeled)]
    sorted_members = [m[np.lexsort((m, dif[m]))] for m in member_sets]
    means = np.array([dif[m].mean() for m in member_sets])
    np.testing.assert_allclose(s.raw_class_difficulty, means, rtol=1e-12)
    scaled = (means - means.min()) / (means.max() - means.min())
    gamma = 1 + (1 - scaled) * 14
    l0 = gamma / gamma.sum()
    np.testing.assert_allclose(s.gamma, gamma, rtol=1e-12)
    sizes = []
    for t in range(T + 1):
        lam = np.minimum(1.0, (l0**gamma + (1 - l0**gamma) * t / T) ** (1 / gamma))
        if t == T:
            lam[:] = 1.0
        counts = np.ceil(lam * s.class_sizes).astype(int)
        assert s.counts(t).tolist() == counts.tolist()
        keep = np.zeros(n, dtype=bool)
        for m, k in zip(sorted_members, counts, strict=True):
            keep[m[:k]] = True
        sub = s.epoch_indices(t)
        np.testing.assert_array_equal(sub, np.flatnonzero(keep))
        for k, m in enumerate(member_sets):  # class coverage
            assert np.isin(m, sub).any(), f"{s.class_names[k]} missing at epoch {t}"
        sizes.append(sub.size)
    assert sizes == sorted(sizes) and sizes[-1] == n
    assert sizes[0] < n // 2  # the curriculum starts on a real subset


@pytest.mark.filterwarnings("ignore:RRGCL. the class difficulties differ:RuntimeWarning")
@pytest.mark.parametrize("T", [1, 3, 7])
def test_plain_range_loop_reaches_lambda_one_on_its_last_epoch(T: int) -> None:
    """Eq. 11 counts t = 1..T and includes every sample at t = T: a `for epoch in range(T)`
    loop over the sampler must train on every sample of every class in its last epoch, and its
    first epoch is the paper's t = 1 (hand rule: ceil(lambda_n(1) |D_n|) easiest of each class)."""
    rng = np.random.default_rng(T)
    n = 300
    classes = [[c] for c in rng.choice(["A", "B", "C"], n)]
    dif = rng.normal(size=n)
    sched = RRGCLScheduler(classes, dif, T)
    sampler = CurriculumSampler(sched, seed=0, shuffle=False)
    seen = []
    for epoch in range(T):
        sampler.set_epoch(epoch)
        seen.append(sorted(sampler))
    assert seen[-1] == list(range(n))
    rates = sched.rates(1)
    expected = set()
    for k, name in enumerate(sched.class_names):
        members = [i for i in range(n) if classes[i] == [name]]
        easiest = sorted(members, key=lambda i: dif[i])
        expected |= set(easiest[: math.ceil(rates[k] * len(members) - 1e-9)])
    assert set(seen[0]) == expected


def test_warns_once_when_class_means_barely_differ() -> None:
    rng = np.random.default_rng(0)
    n = 400
    classes = [["A"] if i % 2 else ["B"] for i in range(n)]
    noise = rng.normal(size=n)
    flat = noise - np.where(np.arange(n) % 2, noise[1::2].mean(), noise[::2].mean())
    flat += np.where(np.arange(n) % 2, 0.01, 0.0)  # class means 0.01 apart, sigma ~1
    with pytest.warns(RuntimeWarning, match=r"differ by only 0.01 \(1.0% of"):
        RRGCLScheduler(classes, flat, 5)
    separated = noise + np.where(np.arange(n) % 2, 1.0, 0.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RRGCLScheduler(classes, separated, 5)  # a real gap: no warning
