"""Sources by name wherever their records lie (``MultiSourceSampler.from_dataset``), categories
inside sources, and an epoch curriculum composed with the source weights (one sampler, one state).

Oracles: the contiguous-range sampler (already tested against hand rules in test_sampling.py)
mapped through each source's members; the phantom manifest, whose sources interleave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim.curriculum import RRGCLScheduler, TwoLevelCurriculum
from gradatim.datasets import phantom
from gradatim.errors import InvalidArgumentError
from gradatim.sampling import MultiSourceSampler


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> ga.ManifestDataset:
    root = tmp_path_factory.mktemp("phantom")
    manifest = phantom.generate(root, n=24, size=(96, 96), image_format="png")
    return ga.ManifestDataset(manifest, image_size=(32, 32))


class _Column:
    """A data set seen only through its columns (what from_dataset reads)."""

    def __init__(self, **columns: list[str]) -> None:
        self.columns = columns

    def column(self, name: str) -> list[str]:
        return self.columns[name]


def _members(sources: list[str], names: list[str]) -> list[np.ndarray]:
    src = np.asarray(sources, dtype=object)
    return [np.flatnonzero(src == n) for n in names]


def test_phantom_sources_interleave_and_weights_land_on_their_records(
    dataset: ga.ManifestDataset,
) -> None:
    sources = dataset.column("source")
    names = list(dict.fromkeys(sources))
    assert len(names) >= 3
    runs = sum(1 for a, b in zip(sources, sources[1:], strict=False) if a != b)
    assert runs > len(names)  # not one contiguous range per source
    weights = {names[0]: 0.7, names[1]: 0.3, **{n: 0.0 for n in names[2:]}}
    s = MultiSourceSampler.from_dataset(dataset, weights, num_samples=20_000, seed=5)
    drawn = np.asarray(sources, dtype=object)[s.epoch_indices(0)]
    share = {n: float(np.mean(drawn == n)) for n in names}
    assert share[names[0]] == pytest.approx(0.7, abs=0.02)
    assert share[names[1]] == pytest.approx(0.3, abs=0.02)
    assert all(share[n] == 0.0 for n in names[2:])
    # source_of answers with the sampler's own numbering (weights' order)
    assert (s.source_of(s.epoch_indices(0)) == [names.index(x) for x in drawn]).all()


@settings(max_examples=40, deadline=None)
@given(
    sources=st.lists(st.sampled_from("abc"), min_size=1, max_size=60),
    seed=st.integers(0, 2**64 - 1),
    replacement=st.booleans(),
    mode=st.sampled_from(["random", "interleave", "quota"]),
)
def test_from_dataset_is_the_contiguous_sampler_through_the_members(
    sources: list[str], seed: int, replacement: bool, mode: str
) -> None:
    names = sorted(set(sources))
    members = _members(sources, names)
    w = {n: float(i + 1) for i, n in enumerate(names)}
    kw = {"seed": seed, "replacement": replacement, "mode": mode, "num_samples": 50}
    ours = MultiSourceSampler.from_dataset(_Column(source=sources), w, **kw)
    oracle = MultiSourceSampler([len(m) for m in members], list(w.values()), **kw)
    table = np.concatenate(members)
    for epoch in (0, 3):
        assert (ours.epoch_indices(epoch) == table[oracle.epoch_indices(epoch)]).all()
    assert list(ours) == table[oracle.epoch_indices(0)].tolist()


def test_from_dataset_names_missing_and_unknown_sources() -> None:
    ds = _Column(source=["mimic", "vindr", "mimic", "padchest"])
    with pytest.raises(InvalidArgumentError, match=r"\['padchest'\] have no weight"):
        MultiSourceSampler.from_dataset(ds, {"mimic": 0.7, "vindr": 0.3})
    with pytest.raises(InvalidArgumentError, match=r"\['chexpert'\] are not in the data set"):
        MultiSourceSampler.from_dataset(ds, {"mimic": 1, "vindr": 1, "padchest": 0, "chexpert": 1})
    with pytest.raises(InvalidArgumentError, match="ManifestDataset"):
        MultiSourceSampler.from_dataset([1, 2], {"mimic": 1})
    with pytest.raises(InvalidArgumentError, match="more than one source"):
        MultiSourceSampler(None, [1, 1], members=[[0, 1], [1, 2]])


def test_categories_make_a_two_level_hierarchy(dataset: ga.ManifestDataset) -> None:
    sources, tasks = dataset.column("source"), dataset.column("task")
    names = list(dict.fromkeys(sources))
    s = MultiSourceSampler.from_dataset(
        dataset, dict.fromkeys(names, 1.0), categories="task", num_samples=30_000, seed=2
    )
    h = s.hierarchy
    assert h is not None and list(h) == names
    for n in names:  # categories in first-appearance order within the source
        assert h[n] == list(
            dict.fromkeys(t for src, t in zip(sources, tasks, strict=True) if src == n)
        )
    # uniform at both levels: P(source) x P(category | source)
    idx = s.epoch_indices(0)
    pairs = list(zip(np.asarray(sources)[idx], np.asarray(tasks)[idx], strict=True))
    for n in names:
        share = sum(p[0] == n for p in pairs) / len(pairs)
        assert share == pytest.approx(1 / len(names), abs=0.02)
        for c in h[n]:
            got = sum(p == (n, c) for p in pairs) / len(pairs)
            assert got == pytest.approx(1 / len(names) / len(h[n]), abs=0.02)
    # the two-level curriculum drives it: a worse category of the first source gets more
    cur = TwoLevelCurriculum(s, period=1)
    first = names[0]
    metrics = {n: {"iou": 0.5, "text": 0.5} for n in names}
    cats = {first: {c: {"iou": 0.9, "text": 0.9} for c in h[first]}}
    cats[first][h[first][0]] = {"iou": 0.1, "text": 0.1}
    cur.update(metrics, step=0, categories=cats)
    leaf = cur.leaf_weights()
    assert leaf[0] > leaf[1]


def test_explicit_categories_must_cover_every_record() -> None:
    ds = _Column(source=["a", "a", "b"])
    with pytest.raises(InvalidArgumentError, match="one per record"):
        MultiSourceSampler.from_dataset(ds, {"a": 1, "b": 1}, categories=["x", "y"])


class _Halves:
    """An epoch schedule: the even indices at t = 1, everything from t = 2 on."""

    first_t = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def epoch_indices(self, t: float) -> np.ndarray:
        return np.arange(0, self.n, 2) if t <= 1 else np.arange(self.n)


def test_composed_epochs_draw_from_the_schedule_subset_with_source_weights() -> None:
    sources = ["a", "b", "b", "c"] * 50
    ds = _Column(source=sources)
    w = {"a": 0.5, "b": 0.25, "c": 0.25}
    s = MultiSourceSampler.from_dataset(ds, w, schedule=_Halves(len(sources)), seed=4)
    assert len(s) == len(sources)  # epochs keep their length
    e0 = s.epoch_indices(0)
    assert (e0 % 2 == 0).all()  # epoch 0 = t 1: the even indices only
    # "c" (index 4k + 3) has no even index: not drawn; "a" and "b" share in proportion 2 : 1
    drawn = np.asarray(sources, dtype=object)[e0]
    assert not (drawn == "c").any()
    assert np.mean(drawn == "a") == pytest.approx(2 / 3, abs=0.08)
    assert set(s.epoch_indices(1).tolist()) - set(range(0, 200, 2))  # t 2: odd ones too
    # the oracle: a contiguous sampler over the subset's members, same seed and weights
    sub = [m[m % 2 == 0] for m in _members(sources, list(w))]
    oracle = MultiSourceSampler([len(m) for m in sub], [0.5, 0.25, 0.0], num_samples=200, seed=4)
    assert (e0 == np.concatenate(sub)[oracle.epoch_indices(0)]).all()


def test_composed_weight_changes_and_resume_are_exact() -> None:
    sources = ["a", "a", "b", "b"] * 20  # even indices: both sources
    ds = _Column(source=sources)

    def make() -> MultiSourceSampler:
        return MultiSourceSampler.from_dataset(
            ds, {"a": 1.0, "b": 1.0}, schedule=_Halves(len(sources)), seed=9, chunk_size=7
        )

    full = make()
    it = iter(full)
    head = [next(it) for _ in range(30)]
    assert all(i % 2 == 0 for i in head) and {sources[i] for i in head} == {"a", "b"}
    full.set_weights([0.0, 1.0])  # from the next index on: only "b"
    state = full.state_dict()
    tail = list(it)
    assert len(head) + len(tail) == len(sources)
    assert all(i % 2 == 0 and sources[i] == "b" for i in tail)
    resumed = make()
    resumed.load_state_dict(state)
    assert list(resumed) == tail
    assert state["schedule"] == "_Halves" and state["members"]
    # a state of another data set (other members) is refused
    other = MultiSourceSampler.from_dataset(
        _Column(source=["b", "b", "a", "a"] * 20),
        {"a": 1.0, "b": 1.0},
        schedule=_Halves(80),
        seed=9,
    )
    with pytest.raises(InvalidArgumentError, match="members"):
        other.load_state_dict(state)


def test_composed_epoch_without_any_weighted_sample_is_a_clear_error() -> None:
    sources = ["a", "b"] * 10
    s = MultiSourceSampler.from_dataset(
        _Column(source=sources), {"a": 0.0, "b": 1.0}, schedule=_Halves(len(sources))
    )
    with pytest.raises(InvalidArgumentError, match=r"epoch 0: the schedule's subset \(t = 1\)"):
        s.epoch_indices(0)
    assert len(s.epoch_indices(1)) == len(sources)


def test_rrgcl_inside_sources_cure_across_in_the_drop_in_loader(
    dataset: ga.ManifestDataset, tmp_path: Path
) -> None:
    """RRGCL's class-level subset inside each source, source weights across, through the loader:
    every index is in the epoch's RRGCL subset, and a resumed loader continues exactly."""
    n = len(dataset)
    rng = np.random.default_rng(0)
    classes = [[["normal", "effusion", "nodule"][i % 3]] for i in range(n)]
    schedule = RRGCLScheduler(classes, rng.random(n).tolist(), epochs=3)
    names = list(dict.fromkeys(dataset.column("source")))
    sampler = MultiSourceSampler.from_dataset(
        dataset, dict.fromkeys(names, 1.0), schedule=schedule, seed=1
    )
    subset = set(schedule.epoch_indices(1).tolist())
    assert len(subset) < n
    loader = ga.DataLoader(
        dataset, batch_size=4, sampler=sampler, generator=torch.Generator().manual_seed(0)
    )
    seen = [b["index"].tolist() for b in loader]
    assert all(i in subset for batch in seen for i in batch)
    # resume after 2 batches of epoch 1
    it = iter(loader)
    first = [next(it)["index"].tolist() for _ in range(2)]
    state = loader.state_dict()
    rest = [b["index"].tolist() for b in it]
    sampler2 = MultiSourceSampler.from_dataset(
        dataset, dict.fromkeys(names, 1.0), schedule=schedule, seed=1
    )
    loader2 = ga.DataLoader(
        dataset, batch_size=4, sampler=sampler2, generator=torch.Generator().manual_seed(0)
    )
    loader2.load_state_dict(state)
    assert [b["index"].tolist() for b in loader2] == rest
    assert first
