"""Curriculum changes land at the *consumed* position, whatever the loader prefetched: a weight
change asked for at sample ``s`` makes sample ``s`` the first one drawn with the new weights, for
every ``num_workers`` x ``prefetch_factor``; the batches in flight past it are drawn again, and a
MedCLM stage update reaches every batch delivered after it. The reference is the same sampler read
without any loader (no prefetch at all)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradatim as ga
from gradatim.curriculum import StageScheduler
from gradatim.sampling import MultiSourceSampler, NestedInterleaveSampler

SETTINGS = [(0, 1)] + list(itertools.product([1, 2], [1, 2, 4]))  # (num_workers, prefetch)
EVEN, ODD = list(range(0, 24, 2)), list(range(1, 24, 2))  # the two sources' records


def _loader(ds: ga.ManifestDataset, sampler: Any, workers: int, prefetch: int, **kw: Any):
    extra = {"prefetch_factor": prefetch} if workers else {}
    return ga.DataLoader(ds, sampler=sampler, batch_size=8, num_workers=workers, **extra, **kw)


def _sampler(**kw: Any) -> MultiSourceSampler:
    return MultiSourceSampler(None, [1, 0], num_samples=96, seed=3, members=[EVEN, ODD], **kw)


@pytest.fixture(scope="module")
def ds(manifest: Path) -> ga.ManifestDataset:
    return ga.ManifestDataset(manifest, image_size=(16, 16))


@pytest.mark.parametrize(("workers", "prefetch"), SETTINGS)
def test_a_weight_change_lands_at_the_consumed_sample(
    ds: ga.ManifestDataset, workers: int, prefetch: int
) -> None:
    """Asked after three batches of 8 to switch at sample 24: sample 24 is the first drawn from
    the new source (not 32, or 56 with four batches in flight), and every batch equals the
    reference sampler's, read with no loader."""
    ref = _sampler()
    ref.set_weights([0, 1], step=24)
    expected = [int(i) for i in ref.epoch_indices(0)]
    s = _sampler()
    got: list[int] = []
    for k, batch in enumerate(_loader(ds, s, workers, prefetch)):
        got += batch["index"].tolist()
        if k == 2:
            assert s.set_weights([0, 1], step=24) == 24
    first = next(i for i, x in enumerate(got) if x % 2 == 1)
    assert first == 24 and all(x % 2 == 1 for x in got[24:])
    assert got == expected
    assert s.weight_log == [(0, [1.0, 0.0]), (24, [0.0, 1.0])]


@pytest.mark.parametrize(("workers", "prefetch"), SETTINGS)
def test_default_step_is_the_consumed_position_and_resume_replays_it(
    ds: ga.ManifestDataset, workers: int, prefetch: int
) -> None:
    """``set_weights`` without a step applies from the next sample the consumer receives (here
    16, mid-way into batches in flight), ``weights`` reads the consumed position, and a state
    saved after the switch resumes into exactly the uninterrupted stream."""
    s = _sampler(chunk_size=5)
    loader = _loader(ds, s, workers, prefetch)
    got: list[int] = []
    state = None
    for k, batch in enumerate(loader):
        got += batch["index"].tolist()
        if k == 1:
            assert s.weights == [1.0, 0.0]
            assert s.set_weights([1, 1]) == 16
            assert s.weights == [1.0, 1.0]
        if k == 3:
            state = json.loads(json.dumps(loader.state_dict()))
    ref = _sampler(chunk_size=5)
    ref.set_weights([1, 1], step=16)
    assert got == [int(i) for i in ref.epoch_indices(0)]
    again = _loader(ds, _sampler(), workers, prefetch)
    again.load_state_dict(state)
    rest = [i for b in again for i in b["index"].tolist()]
    assert rest == got[32:]


@pytest.mark.parametrize(("workers", "prefetch"), SETTINGS)
def test_in_flight_batches_are_redrawn_across_a_finished_pass(
    ds: ga.ManifestDataset, workers: int, prefetch: int
) -> None:
    """A short epoch (3 batches) that the sampler has already handed out entirely: a change at
    the consumed position still redraws what is in flight, and the next epoch follows too."""
    s = MultiSourceSampler(None, [1, 0], num_samples=24, seed=5, members=[EVEN, ODD])
    loader = _loader(ds, s, workers, prefetch)
    got: list[int] = []
    for k, batch in enumerate(loader):
        got += batch["index"].tolist()
        if k == 0:
            assert s.set_weights([0, 1], step=8) == 8
    got += [i for b in loader for i in b["index"].tolist()]
    ref = MultiSourceSampler(None, [1, 0], num_samples=24, seed=5, members=[EVEN, ODD])
    ref.set_weights([0, 1], step=8)
    assert got == [int(i) for e in (0, 1) for i in ref.epoch_indices(e)]


@pytest.mark.parametrize(("workers", "prefetch"), SETTINGS)
def test_nested_interleave_node_weights_land_at_the_consumed_sample(
    ds: ga.ManifestDataset, workers: int, prefetch: int
) -> None:
    def make() -> NestedInterleaveSampler:
        return NestedInterleaveSampler.from_dataset(
            ds, {"alpha": 1.0, "beta": 1.0}, num_samples=64, seed=1
        )

    ref = make()
    ref.set_node_weights({"beta": 0.0}, step=20)
    expected = [int(i) for i in ref.epoch_indices(0)]
    s = make()
    got: list[int] = []
    for k, batch in enumerate(_loader(ds, s, workers, prefetch)):
        got += batch["index"].tolist()
        if k == 1:
            assert s.set_node_weights({"beta": 0.0}, step=20) == 20
    assert got == expected


@pytest.mark.parametrize(("workers", "prefetch"), SETTINGS)
def test_a_stage_update_reaches_every_batch_delivered_after_it(
    manifest: Path, workers: int, prefetch: int
) -> None:
    """MedCLM: an update of the stage scheduler after batch 1 changes the stages of batches 2..,
    whatever was in flight; batches 0 and 1 keep the stages they were delivered with."""

    def scheduler() -> StageScheduler:
        return StageScheduler(["alpha", "beta"], seed=2, easy_warmup_epochs=0, ramp_kappa=1.0)

    stages = scheduler()
    ds = ga.ManifestDataset(manifest, image_size=(16, 16), stages=stages)
    sampler = MultiSourceSampler(None, [1, 1], num_samples=48, seed=3, members=[EVEN, ODD])
    loader = _loader(ds, sampler, workers, prefetch)
    loader.set_epoch(2)
    got = []
    for k, batch in enumerate(loader):
        got.append((batch["index"].tolist(), batch["stage"].tolist()))
        if k == 1:
            stages.update({"alpha": {"easy": 1.0, "medium": 0.2}, "beta": {"easy": 0.1}}, epoch=1)
    before, after = scheduler(), scheduler()
    after.update({"alpha": {"easy": 1.0, "medium": 0.2}, "beta": {"easy": 0.1}}, epoch=1)
    doms = ["alpha", "beta"]
    for k, (idx, codes) in enumerate(got):
        oracle = before if k < 2 else after
        want = oracle.assign(idx, 2, [doms[i % 2] for i in idx]).tolist()
        assert codes == want, k
    assert any(
        before.assign(idx, 2, [doms[i % 2] for i in idx]).tolist() != codes
        for idx, codes in got[2:]
    )  # the update did change some stage: the comparison can fail


def test_no_batch_is_drawn_ahead_without_workers(ds: ga.ManifestDataset) -> None:
    """``num_workers=0``: after delivering batch k the sampler has handed out exactly k + 1
    batches' indices (torch's single-process iterator)."""
    s = _sampler()
    it = iter(_loader(ds, s, 0, 1))
    for k in range(4):
        next(it)
        assert s.state_dict()["position"] == 8 * (k + 1)
    np.testing.assert_array_equal(s.epoch_indices(0)[:8], _sampler().epoch_indices(0)[:8])
