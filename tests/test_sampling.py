"""gradatim.sampling: MultiSourceSampler and CurriculumSampler against torch's sampler semantics
(DistributedSampler sharding, WeightedRandomSampler frequencies), determinism, resumption, and
CURE's interleave pattern against an independent transcription of CURE's published rule."""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch.utils.data import (  # noqa: E402
    DataLoader,
    DistributedSampler,
    Sampler,
    WeightedRandomSampler,
)

from gradatim.sampling import (  # noqa: E402
    CurriculumSampler,
    MultiSourceSampler,
    interleave_pattern,
    interleave_slots,
)

PROPS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def chi2_critical(df: int, z: float = 3.719) -> float:
    """Upper quantile of chi-square(df) at p ~ 1e-4 (Wilson-Hilferty approximation)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    keep = probs > 0
    exp = probs[keep] * counts.sum()
    return float(((counts[keep] - exp) ** 2 / exp).sum()), int(keep.sum() - 1)


def take(it, k):
    return list(itertools.islice(it, k))


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -0.5, 1.0], "weight 1 is negative"),
        ([1.0, float("nan"), 1.0], "weight 1 is NaN"),
        ([0.0, 0.0, 0.0], "all weights are zero"),
        ([1.0, 1.0], "expected 3 weights"),
        ([1.0, 1.0, 1.0, 1.0], "expected 3 weights"),
        ([1.0, float("inf"), 1.0], "infinite"),
        ([[1.0, 1.0, 1.0]], "1-D"),
    ],
)
def test_bad_weights_are_value_errors_that_say_which(weights, message):
    with pytest.raises(ValueError, match=message):
        MultiSourceSampler([3, 4, 5], weights)
    s = MultiSourceSampler([3, 4, 5], [1, 1, 1])
    before = s.state_dict()
    with pytest.raises(ValueError, match=message):
        s.set_weights(weights)
    assert s.state_dict() == before  # a refused change leaves no trace


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="source 1 is empty"):
        MultiSourceSampler([3, 0], [1, 1])
    with pytest.raises(ValueError, match="negative size"):
        MultiSourceSampler([3, -1], [1, 1])
    with pytest.raises(ValueError, match="mode"):
        MultiSourceSampler([3], [1], mode="roundrobin")
    with pytest.raises(ValueError, match="rank"):
        MultiSourceSampler([3], [1], rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_samples"):
        MultiSourceSampler([3], [1], num_samples=0)
    MultiSourceSampler([3, 0], [1, 0])  # an empty source with weight 0 is fine


def test_is_a_torch_sampler_and_works_with_dataloader():
    s = MultiSourceSampler([10, 20], [1, 3], num_samples=100, seed=3)
    assert isinstance(s, Sampler)
    expected = s.epoch_indices(0).tolist()
    batches = list(DataLoader(range(30), sampler=s, batch_size=8))
    assert torch.cat(batches).tolist() == expected
    assert s.epoch == 1  # the pass ran to its end: the next one is the next epoch


# -- distribution --------------------------------------------------------------------------------


@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("mode", ["random", "interleave"])
def test_source_frequencies_match_weights(replacement, mode):
    sizes = [100, 2000, 50, 10000]
    w = np.array([0.1, 0.2, 0.3, 0.4])
    n = 200_000
    s = MultiSourceSampler(sizes, w, num_samples=n, seed=7, replacement=replacement, mode=mode)
    counts = np.bincount(s.source_of(s.epoch_indices(0)), minlength=4)
    if mode == "random":
        stat, df = chi2(counts, w)
        assert stat < chi2_critical(df), (counts, stat)
    else:  # deterministic: exactly the slot proportions up to one pattern period
        slots = np.array(interleave_slots(w))
        np.testing.assert_allclose(counts / n, slots / slots.sum(), atol=slots.sum() / n)


@PROPS
@given(
    w=st.lists(st.floats(0.02, 10.0), min_size=2, max_size=6),
    replacement=st.booleans(),
)
def test_property_empirical_frequencies(w, replacement):
    sizes = [37 * (i + 1) for i in range(len(w))]
    n = 30_000
    s = MultiSourceSampler(sizes, w, num_samples=n, seed=11, replacement=replacement)
    counts = np.bincount(s.source_of(s.epoch_indices(0)), minlength=len(w))
    p = np.asarray(w) / np.sum(w)
    stat, df = chi2(counts, p)
    assert stat < chi2_critical(df), (counts, p)


def test_agrees_with_weighted_random_sampler():
    """The same per-source distribution as torch's WeightedRandomSampler given per-element
    weights w_s / size_s: both pass a chi-square test against the weights, and so does ours
    inside a source (uniform over its elements)."""
    sizes = np.array([30, 300, 3000])
    w = np.array([0.5, 0.3, 0.2])
    n = 120_000
    per_elem = np.repeat(w / sizes, sizes)
    g = torch.Generator().manual_seed(0)
    wrs = np.array(list(WeightedRandomSampler(per_elem.tolist(), n, generator=g)))
    ours = MultiSourceSampler(sizes, w, num_samples=n, seed=0)
    idx = ours.epoch_indices(0)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for x in (wrs, idx):
        counts = np.bincount(np.searchsorted(offsets, x, side="right") - 1, minlength=3)
        stat, df = chi2(counts, w)
        assert stat < chi2_critical(df), counts
    inside = np.bincount(idx[idx < 30], minlength=30)
    stat, df = chi2(inside, np.full(30, 1 / 30))
    assert stat < chi2_critical(df)


def test_without_replacement_reads_each_source_as_permutations():
    sizes = [13, 29]
    s = MultiSourceSampler(sizes, [1, 1], num_samples=200, seed=5, replacement=False)
    idx = s.epoch_indices(0)
    src = s.source_of(idx)
    for k, size in enumerate(sizes):
        mine = idx[src == k] - s.offsets[k]
        full = len(mine) // size
        for c in range(full):  # every complete cycle is a permutation of the source
            assert sorted(mine[c * size : (c + 1) * size].tolist()) == list(range(size))
        rest = mine[full * size :]
        assert len(set(rest.tolist())) == len(rest)


# -- determinism and resumption ------------------------------------------------------------------


def test_chunks_equal_the_epoch():
    s = MultiSourceSampler([50, 60], [1, 2], num_samples=1000, seed=1, replacement=False)
    parts = list(s.chunks(epoch=3, chunk_size=128))
    assert [len(p) for p in parts] == [128] * 7 + [104]
    assert np.concatenate(parts).tolist() == s.epoch_indices(3).tolist()


def test_same_seed_same_sequence_other_seed_or_epoch_differs():
    a = MultiSourceSampler([50, 60], [1, 2], seed=1)
    b = MultiSourceSampler([50, 60], [1, 2], seed=1)
    assert list(a) == list(b)
    assert list(a) == list(b)  # second pass: epoch 1 on both
    c = MultiSourceSampler([50, 60], [1, 2], seed=2)
    assert c.epoch_indices(0).tolist() != a.epoch_indices(0).tolist()
    assert a.epoch_indices(0).tolist() != a.epoch_indices(1).tolist()
    # set_epoch pins the epoch like DistributedSampler
    a.set_epoch(0)
    assert list(a) == b.epoch_indices(0).tolist()


configs = st.fixed_dictionaries(
    {
        "sizes": st.lists(st.integers(1, 40), min_size=1, max_size=4),
        "num_samples": st.integers(1, 120),
        "replacement": st.booleans(),
        "mode": st.sampled_from(["random", "interleave"]),
        "world_size": st.integers(1, 4),
        "drop_last": st.booleans(),
        "chunk_size": st.sampled_from([1, 3, 7, 64, 65536]),
        "seed": st.integers(0, 2**64 - 1),
    }
)


def build(cfg, rank=0, **over):
    c = {**cfg, **over}
    n = len(c["sizes"])
    return MultiSourceSampler(
        c["sizes"],
        [1.0 + i for i in range(n)],
        c["num_samples"],
        seed=c["seed"],
        replacement=c["replacement"],
        mode=c["mode"],
        rank=rank,
        world_size=c["world_size"],
        drop_last=c["drop_last"],
        chunk_size=c["chunk_size"],
    )


@PROPS
@given(cfg=configs, data=st.data())
def test_property_resume_at_any_step_reproduces_the_rest(cfg, data):
    rank = data.draw(st.integers(0, cfg["world_size"] - 1))
    ref = build(cfg, rank)
    n = len(ref)
    change = data.draw(st.integers(0, 2 * n + 1))
    new_w = [float(x) for x in data.draw(st.permutations(range(1, len(cfg["sizes"]) + 1)))]
    ref.set_weights(new_w, step=change)
    expected = list(ref) + list(ref)  # epochs 0 and 1

    k = data.draw(st.integers(0, len(expected)))
    s = build(cfg, rank)
    s.set_weights(new_w, step=change)
    stream = itertools.chain(iter(s), iter(s))
    got = take(stream, k)
    state = json.loads(json.dumps(s.state_dict()))  # plain JSON data

    r = build(cfg, rank, seed=0)  # the seed comes from the state
    r.load_state_dict(state)
    rest = []
    for _ in range(state["epoch"], 2):  # what remains of epochs 0 and 1
        rest += list(r)
    assert got + rest == expected


def test_resume_mid_epoch_with_set_epoch_keeps_position():
    s = MultiSourceSampler([100], [1], seed=3)
    it = iter(s)
    head = take(it, 40)
    state = s.state_dict()
    r = MultiSourceSampler([100], [1], seed=3)
    r.load_state_dict(state)
    r.set_epoch(0)  # the training loop's usual call at the top of the resumed epoch
    assert head + list(r) == MultiSourceSampler([100], [1], seed=3).epoch_indices(0).tolist()


def test_load_state_dict_checks_configuration():
    s = MultiSourceSampler([10, 20], [1, 1])
    with pytest.raises(ValueError, match="sizes"):
        MultiSourceSampler([10, 21], [1, 1]).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="world_size"):
        MultiSourceSampler([10, 20], [1, 1], world_size=2).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="not a MultiSourceSampler"):
        s.load_state_dict({"kind": "other"})


def test_deepcopy_continues_the_sequence():
    s = MultiSourceSampler([10, 20], [1, 2], seed=9, replacement=False)
    it = iter(s)
    take(it, 7)
    s.set_weights([0, 1])
    c = copy.deepcopy(s)
    assert list(it) == list(c)


# -- weight changes ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [4, 1000])
@pytest.mark.parametrize("replacement", [True, False])
def test_set_weights_applies_from_the_next_index(chunk_size, replacement):
    s = MultiSourceSampler(
        [50, 50], [1, 0], num_samples=100, chunk_size=chunk_size, replacement=replacement
    )
    it = iter(s)
    first = take(it, 30)
    assert s.set_weights([0, 1]) == 30
    rest = list(it)
    assert all(i < 50 for i in first) and all(i >= 50 for i in rest)
    assert s.weight_log == [(0, [1.0, 0.0]), (30, [0.0, 1.0])]
    # a step that was already handed out moves to the next index
    s2 = MultiSourceSampler([50, 50], [1, 0], num_samples=100, chunk_size=chunk_size)
    it2 = iter(s2)
    take(it2, 10)
    assert s2.set_weights([0, 1], step=3) == 10
    # a future step switches there, within the current chunk or later
    s3 = MultiSourceSampler([50, 50], [1, 0], num_samples=100, chunk_size=chunk_size)
    it3 = iter(s3)
    take(it3, 5)
    assert s3.set_weights([0, 1], step=140) == 140  # epoch 1, position 40
    e0 = list(it3)
    e1 = list(s3)
    assert all(i < 50 for i in e0) and all(i < 50 for i in e1[:40])
    assert all(i >= 50 for i in e1[40:])


def test_resume_from_a_consumed_position_replays_a_logged_change():
    """A loader that prefetched: the change was logged at step 100 while the model had consumed 60;
    the saved state (position overwritten with the consumed count) replays both sides exactly."""
    s = MultiSourceSampler([40, 40, 40], [1, 1, 1], num_samples=300, seed=4, chunk_size=16)
    it = iter(s)
    seen = take(it, 100)
    s.set_weights([0, 0, 1])
    seen += take(it, 50)
    state = s.state_dict()
    state["position"] = 60
    r = MultiSourceSampler([40, 40, 40], [1, 1, 1], num_samples=300, chunk_size=16)
    r.load_state_dict(state)
    replay = take(iter(r), 90)
    assert replay == seen[60:150]
    assert all(i >= 80 for i in replay[40:])


def test_weight_changes_with_a_prefetching_dataloader():
    """A change scheduled beyond what the loader prefetched lands exactly at its step; a change
    asked for at an index already prefetched lands at the sampler's position, is logged there, and
    a resume from the consumed position reproduces exactly what the loader delivered."""
    ref = MultiSourceSampler([64, 64], [1, 0], num_samples=512, seed=2)
    ref.set_weights([0, 1], step=320)
    expected = list(ref)

    s = MultiSourceSampler([64, 64], [1, 0], num_samples=512, seed=2)
    loader = DataLoader(range(128), sampler=s, batch_size=16, num_workers=2, prefetch_factor=2)
    got, state, applied = [], None, None
    for step, batch in enumerate(loader):
        got += batch.tolist()
        if step == 2:  # 3 batches consumed, about 7 prefetched: step 320 is still ahead
            assert s.set_weights([0, 1], step=320) == 320
        if step == 24:  # ask for a switch back at the consumed position, long prefetched
            applied = s.set_weights([1, 1], step=(step + 1) * 16)
            assert applied > (step + 1) * 16
            state = s.state_dict()
            state["position"] = (step + 1) * 16
    assert got[:400] == expected[:400]
    assert state["weight_log"][-1][0] == applied
    r = MultiSourceSampler([64, 64], [1, 0], num_samples=512)
    r.load_state_dict(json.loads(json.dumps(state)))
    assert list(r) == got[400:]


# -- sharding ------------------------------------------------------------------------------------


@PROPS
@given(cfg=configs)
def test_property_rank_shards_are_distributed_sampler_shards(cfg):
    single = build(cfg, 0, world_size=1, drop_last=False)
    glob = single.epoch_indices(2)
    union_positions = []
    for rank in range(cfg["world_size"]):
        s = build(cfg, rank)
        ds = DistributedSampler(
            range(cfg["num_samples"]),
            num_replicas=cfg["world_size"],
            rank=rank,
            shuffle=False,
            drop_last=cfg["drop_last"],
        )
        positions = list(ds)
        assert len(s) == len(ds)
        assert s.epoch_indices(2).tolist() == glob[positions].tolist()
        union_positions += positions
    # disjoint and complete: every global position once (plus DistributedSampler's padding)
    total = len(union_positions)
    n = cfg["num_samples"]
    if cfg["drop_last"]:
        assert sorted(union_positions) == list(range(total))
    else:
        assert sorted(set(union_positions)) == list(range(n))
        assert total - n < cfg["world_size"]


# -- interleave ----------------------------------------------------------------------------------


def cure_reference(class_weights):
    """CURE's published rule (vlm_research_kit/data/dataset_helpers.py), transcribed."""
    if all(w == class_weights[0] for w in class_weights):
        return list(range(len(class_weights)))
    keep = [i for i, w in enumerate(class_weights) if w > 0]
    ws_ = [class_weights[i] for i in keep]
    total = sum(ws_)
    ws = [w / total for w in ws_]
    w_min = min(ws)
    freqs = [max(int(20 * w / w_min), 1) for w in ws]
    count = sum(freqs)
    slots = [None] * count
    order = sorted(range(len(ws)), key=lambda i: freqs[i], reverse=True)
    free = list(range(count))
    for i in order:
        step = len(free) / freqs[i]
        for j in range(freqs[i]):
            slots[free[int(j * step)]] = i
        free = [x for x in free if slots[x] is None]
    return [keep[i] for i in slots]


def test_interleave_pattern_by_hand():
    assert interleave_pattern([2, 1]).tolist() == [0, 0, 1] * 20
    assert interleave_pattern([1, 1, 1]).tolist() == [0, 1, 2]
    assert interleave_slots([0.5, 0.25, 0.0, 0.25]) == [40, 20, 0, 20]
    with pytest.raises(ValueError, match="interleave pattern"):
        interleave_pattern([1e-9, 1.0])


@PROPS
@given(
    st.lists(
        st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0]), min_size=1, max_size=6
    )
)
def test_property_interleave_equals_cure_reference(w):
    if sum(w) == 0:
        return
    ours, ref = interleave_pattern(w).tolist(), cure_reference(w)
    # the same repeating sequence (our period is shorter when the positive weights are all equal)
    period = math.lcm(len(ours), len(ref))
    assert ours * (period // len(ours)) == ref * (period // len(ref))


def test_interleave_sampler_follows_pattern_and_restarts_on_change():
    s = MultiSourceSampler([100, 100, 100], [3, 2, 1], num_samples=600, mode="interleave")
    pat = interleave_pattern([3, 2, 1])
    it = iter(s)
    src = s.source_of(take(it, 250))
    assert src.tolist() == [pat[g % len(pat)] for g in range(250)]
    s.set_weights([1, 1, 0])
    src2 = s.source_of(list(it)).tolist()
    assert src2[:6] == [0, 1, 0, 1, 0, 1]


# -- CurriculumSampler ---------------------------------------------------------------------------


class Fixed:
    def __init__(self, n):
        self.n = n

    def epoch_indices(self, t):
        return np.arange(0, self.n * 2, 2)[: self.n - 3 * int(t)]


@pytest.mark.parametrize("drop_last", [False, True])
def test_curriculum_sampler_shards_and_shuffles(drop_last):
    sched = Fixed(50)
    for epoch in range(3):
        subset = sched.epoch_indices(epoch)
        union = []
        for rank in range(3):
            s = CurriculumSampler(sched, seed=1, rank=rank, world_size=3, drop_last=drop_last)
            s.set_epoch(epoch)
            mine = list(s)
            ds = DistributedSampler(range(len(subset)), 3, rank, shuffle=False, drop_last=drop_last)
            assert len(mine) == len(ds) == len(s.indices(epoch))
            union += mine
        assert set(union) <= set(subset.tolist())
        if not drop_last:
            assert set(union) == set(subset.tolist())
    a = CurriculumSampler(sched, seed=1)
    assert sorted(a.indices(0).tolist()) == sched.epoch_indices(0).tolist()
    assert a.indices(0).tolist() != sched.epoch_indices(0).tolist()
    assert a.indices(0).tolist() != CurriculumSampler(sched, seed=2).indices(0).tolist()
    assert (
        CurriculumSampler(sched, shuffle=False).indices(1).tolist()
        == sched.epoch_indices(1).tolist()
    )


def test_curriculum_sampler_resume_and_auto_epoch():
    sched = Fixed(40)
    s = CurriculumSampler(sched, seed=5)
    e0 = list(s)
    assert s.epoch == 1 and len(s) == 37
    s.set_epoch(0)
    it = iter(s)
    head = take(it, 11)
    state = json.loads(json.dumps(s.state_dict()))
    r = CurriculumSampler(sched)
    r.load_state_dict(state)
    assert head + list(r) == e0
    assert (
        list(DataLoader(range(100), sampler=CurriculumSampler(sched, seed=5), batch_size=None))
        == e0
    )


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("sizes", [[17, 5, 9], [100, 1, 40, 3]])
def test_quota_mode_is_an_exact_permutation_and_shards_partition(sizes, world):
    """Weights proportional to the sizes, no replacement, mode="quota": each epoch is every
    sample exactly once (as DistributedSampler over a ConcatDataset), in a new order each epoch,
    and the ranks' shards are DistributedSampler's slices of that one sequence."""
    total = sum(sizes)
    single = MultiSourceSampler(sizes, sizes, seed=3, replacement=False, mode="quota")
    e0, e1 = single.epoch_indices(0).tolist(), single.epoch_indices(1).tolist()
    assert sorted(e0) == list(range(total)) == sorted(e1) and e0 != e1
    shards = []
    for rank in range(world):
        s = MultiSourceSampler(
            sizes, sizes, seed=3, replacement=False, mode="quota", rank=rank, world_size=world
        )
        ds = DistributedSampler(range(total), world, rank, shuffle=False)
        assert s.epoch_indices(0).tolist() == [e0[i] for i in ds]
        shards.append(s.epoch_indices(0).tolist())
    padded = -(-total // world) * world - total  # DistributedSampler repeats the start
    assert len(sum(shards, [])) == total + padded and set(sum(shards, [])) == set(range(total))


def test_quota_counts_are_the_largest_remainder():
    s = MultiSourceSampler([50, 50, 50], [0.62, 0.38, 0.0], num_samples=11, seed=0, mode="quota")
    counts = np.bincount(s.source_of(s.epoch_indices(0)), minlength=3).tolist()
    assert counts == [7, 4, 0]  # 6.82 and 4.18: floors 6 and 4, the spare goes to 0.82
    with pytest.raises(ValueError, match="quota"):
        MultiSourceSampler([3], [1.0], mode="quotas")
