"""CURE's error-aware inter-dataset curriculum: weights by hand (floor, clamp, uniform fallback),
and the ErrorAwareCurriculum driving a MultiSourceSampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradatim.curriculum import (
    ErrorAwareCurriculum,
    cure_weights,
    natural_weights,
    uniform_weights,
)


def test_weights_by_hand():
    w = cure_weights({"a": {"iou": 0.5, "text": 0.5}, "b": {"iou": 0.25}, "c": {"text": 1.0}})
    # perf = [0.5, 0.25 (iou alone), 1.0 (text alone)] -> err = [0.5, 0.75, 0 -> floor 0.01]
    # sum = 1.26 -> p = [0.396825..., 0.595238..., 0.0079365 (kept: CURE clamps only p <= 0)]
    assert list(w) == ["a", "b", "c"]
    assert w["a"] == pytest.approx(0.5 / 1.26, abs=1e-15)
    assert w["b"] == pytest.approx(0.75 / 1.26, abs=1e-15)
    assert w["c"] == pytest.approx(0.01 / 1.26, abs=1e-15)
    floored = cure_weights(
        {"a": {"iou": 0.5, "text": 0.5}, "b": {"iou": 0.25}, "c": {"text": 1.0}}, min_weight=0.01
    )
    assert floored["c"] == 0.01 and floored["a"] == w["a"]  # the opt-in floor


def test_alpha_weights_iou_and_text():
    # perf = 0.8 * 0.6 + 0.2 * 0.1 = 0.5; other = 0.8 * 0.0 + 0.2 * 0.5 = 0.1 -> err [0.5, 0.9]
    w = cure_weights({"x": {"iou": 0.6, "text": 0.1}, "y": {"iou": 0.0, "text": 0.5}})
    assert w["x"] == pytest.approx(0.5 / 1.4, abs=1e-15)
    assert w["y"] == pytest.approx(0.9 / 1.4, abs=1e-15)
    # alpha = 0.5: perf = [0.35, 0.25] -> err [0.65, 0.75]
    w = cure_weights({"x": {"iou": 0.6, "text": 0.1}, "y": {"iou": 0.0, "text": 0.5}}, alpha=0.5)
    assert w["x"] == pytest.approx(0.65 / 1.4, abs=1e-15)


def test_floor_clamp_and_uniform_fallback():
    # every source perfect: each err <= 0 becomes 0.01 -> uniform thirds (sum 0.03 >= 1e-6)
    w = cure_weights({k: {"iou": 1.0} for k in "abc"})
    assert list(w.values()) == pytest.approx([1 / 3] * 3, abs=1e-15)
    # err tiny but positive: sum < 1e-6 -> uniform
    w = cure_weights({"a": {"iou": 1 - 1e-9}, "b": {"iou": 1 - 3e-9}})
    assert list(w.values()) == [0.5, 0.5]
    # perf above 1 (a metric that exceeds 1) is floored the same way
    w = cure_weights({"a": {"text": 1.2}, "b": {"text": 0.0}})
    assert w["a"] == pytest.approx(0.01 / 1.01, abs=1e-15)
    assert w["b"] == pytest.approx(1 / 1.01, abs=1e-15)
    # 150 equal sources give p = 1/150: kept (CURE), raised by the opt-in floor
    w = cure_weights({str(i): {"iou": 0.5} for i in range(150)})
    assert all(v == pytest.approx(1 / 150, abs=1e-15) for v in w.values())
    w = cure_weights({str(i): {"iou": 0.5} for i in range(150)}, min_weight=0.01)
    assert set(w.values()) == {0.01}
    assert cure_weights({"only": {"iou": 0.2}}) == {"only": 1.0}


def cure_reference(metrics: dict, alpha: float = 0.8) -> list[float]:
    """CURE's published rule, written out: perf, err floored at 0.01, p = err / sum (uniform when
    the sum is below 1e-6), then only p <= 0 -> 0.01 and p > 1 -> 1."""
    err = []
    for m in metrics.values():
        i, t = m.get("iou"), m.get("text")
        perf = (
            alpha * i + (1 - alpha) * t
            if i is not None and t is not None
            else (i if t is None else t)
        )
        e = 1 - perf
        err.append(0.01 if e <= 0 else e)
    total = sum(err)
    p = [1 / len(err) if total < 1e-6 else e / total for e in err]
    return [0.01 if x <= 0 else 1.0 if x > 1 else x for x in p]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(0, 1.2)), st.one_of(st.none(), st.floats(0, 1.2))
        ).filter(lambda m: m != (None, None)),
        min_size=1,
        max_size=8,
    ),
    st.floats(0, 1),
)
def test_weights_equal_cures_rule(entries: list, alpha: float) -> None:
    metrics = {str(k): {"iou": i, "text": t} for k, (i, t) in enumerate(entries)}
    got = list(cure_weights(metrics, alpha).values())
    assert got == pytest.approx(cure_reference(metrics, alpha), abs=1e-12)


def test_bad_metrics():
    with pytest.raises(ValueError, match="'b'.*iou.*text"):
        cure_weights({"a": {"iou": 0.5}, "b": {}})
    with pytest.raises(ValueError, match="not finite"):
        cure_weights({"a": {"iou": float("nan")}})
    with pytest.raises(ValueError, match="unknown keys"):
        cure_weights({"a": {"bleu": 0.5}})
    with pytest.raises(ValueError, match="alpha"):
        cure_weights({"a": {"iou": 0.5}}, alpha=2.0)
    with pytest.raises(ValueError, match="non-empty"):
        cure_weights({})


def test_baselines():
    assert natural_weights([10, 30]) == [0.25, 0.75]
    assert uniform_weights(4) == [0.25] * 4


def test_error_aware_curriculum_drives_the_sampler():
    pytest.importorskip("torch")
    from gradatim.sampling import MultiSourceSampler

    sizes = [300, 200, 100]
    sampler = MultiSourceSampler(sizes, [1, 1, 1], num_samples=6000, seed=1)
    cur = ErrorAwareCurriculum(
        sampler, ["mimic", "mscxr", "padchest"], period=3, samples_per_step=8, initial="natural"
    )
    assert cur.weights == {"mimic": 0.5, "mscxr": 1 / 3, "padchest": 1 / 6}
    assert not cur.due(0) and cur.due(3) and not cur.due(4)
    it = iter(sampler)
    for _ in range(3 * 8):  # three steps of batch 8
        next(it)
    w = cur.update(
        {"mimic": {"iou": 0.9}, "mscxr": {"iou": 0.5, "text": 0.5}, "padchest": {"text": 0.2}},
        step=3,
    )
    assert w == pytest.approx({"mimic": 0.1 / 1.4, "mscxr": 0.5 / 1.4, "padchest": 0.8 / 1.4})
    assert sampler.weight_log[-1][0] == 24  # step 3 * 8 samples
    rest = np.array(list(it))
    freq = np.bincount(sampler.source_of(rest), minlength=3) / rest.size
    np.testing.assert_allclose(freq, [0.1 / 1.4, 0.5 / 1.4, 0.8 / 1.4], atol=0.02)
    state = json.loads(json.dumps(cur.state_dict()))
    other = ErrorAwareCurriculum(sampler, ["mimic", "mscxr", "padchest"])
    other.load_state_dict(state)
    assert other.history == cur.history and other.period == 3
    with pytest.raises(ValueError, match="missing"):
        cur.update({"mimic": {"iou": 0.9}}, step=6)
    with pytest.raises(ValueError, match="sources"):
        ErrorAwareCurriculum(sampler, ["a", "b", "c"]).load_state_dict(state)


def two_level_reference(source_metrics: dict, category_metrics: dict, hierarchy: dict) -> list:
    """CURE's two functions, written out: the rule on each level, each normalised on its own,
    P(sample) = P(dataset) x P(category | dataset)."""

    def level(metrics: dict) -> dict:
        w = dict(zip(metrics, cure_reference(metrics), strict=True))
        total = sum(w.values())
        return {k: v / total for k, v in w.items()}

    ps = level(source_metrics)
    pc = {s: level(category_metrics[s]) if s in category_metrics else
          {c: 1 / len(cs) for c in cs} for s, cs in hierarchy.items()}  # fmt: skip
    return [ps[s] * pc[s][c] for s, cs in hierarchy.items() for c in cs]


def test_two_level_curriculum_equals_cures_two_functions():
    from gradatim.curriculum import TwoLevelCurriculum
    from gradatim.sampling import MultiSourceSampler

    hierarchy = {
        "imagenome": [f"loc{i}" for i in range(87)],
        "vindr": ["nodule"],
        "mscxr": ["a", "b"],
    }
    sizes = [10] * 87 + [40, 20, 20]
    tree = {"imagenome": {f"loc{i}": 10 for i in range(87)}, "vindr": {"nodule": 40},
            "mscxr": {"a": 20, "b": 20}}  # fmt: skip
    sampler = MultiSourceSampler.from_hierarchy(tree, seed=0)
    assert sampler.hierarchy == hierarchy and sampler.sizes == sizes
    cur = TwoLevelCurriculum(sampler, period=2)  # the hierarchy comes from the sampler
    # uniform at both levels: the dataset with 87 categories does not take 87/90 of the samples
    start = cur.leaf_weights()
    assert sum(start[:87]) == pytest.approx(1 / 3) and start[87] == pytest.approx(1 / 3)
    src = {"imagenome": {"iou": 0.2, "text": 0.5}, "vindr": {"iou": 0.6}, "mscxr": {"iou": 0.9}}
    cats = {"mscxr": {"a": {"iou": 0.1}, "b": {"iou": 0.8}},
            "imagenome": {f"loc{i}": {"iou": i / 100} for i in range(87)}}  # fmt: skip
    got = cur.update(src, step=2, categories=cats)
    assert got == pytest.approx(two_level_reference(src, cats, hierarchy), abs=1e-12)
    w = np.asarray(sampler.weights)
    assert (w / w.sum()).tolist() == pytest.approx(got, abs=1e-12)  # the sampler follows
    # draws follow P(dataset) x P(category | dataset)
    idx = sampler.epoch_indices(0)
    leaf = sampler.source_of(idx)
    freq_vindr = float(np.mean(leaf == 87))
    assert abs(freq_vindr - got[87]) < 4 * (got[87] * (1 - got[87]) / len(idx)) ** 0.5 + 0.02
    # state round trip: a new curriculum continues with the same weights
    state = json.loads(json.dumps(cur.state_dict()))
    again = TwoLevelCurriculum(MultiSourceSampler(sizes, [1.0] * len(sizes)), hierarchy)
    again.load_state_dict(state)
    assert again.leaf_weights() == pytest.approx(got, abs=1e-15)
    assert [h[0] for h in again.history] == [0, 2]
