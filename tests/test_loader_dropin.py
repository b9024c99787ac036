"""The drop-in promise, checked against torch itself: for the same generator, gradatim.DataLoader
gives torch.utils.data.DataLoader's batches, worker seeds and global RNG afterwards, on the fast
path and the compatibility path; its epochs, resume and API behave as torch's DataLoader and
torchdata's StatefulDataLoader define them."""

from __future__ import annotations

import gc
import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import gradatim as ga
from gradatim.sampling import MultiSourceSampler

# --- helpers ----------------------------------------------------------------------------------


class Squares(tud.Dataset):  # type: ignore[type-arg]
    """A plain map-style dataset (the compatibility path)."""

    def __init__(self, n: int = 23) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": torch.tensor(i), "x": torch.tensor([i, i * i])}


def manifest_dataset(manifest: Path, **kw: Any) -> ga.ManifestDataset:
    kw.setdefault("image_size", (48, 40))
    return ga.ManifestDataset(manifest, **kw)


def indices(batches: list[Any]) -> list[list[int]]:
    """The dataset indices of each batch (both loaders' batches carry an ``index`` entry)."""
    out = []
    for b in batches:
        idx = b["index"] if isinstance(b, dict) else b
        out.append(torch.as_tensor(idx).reshape(-1).tolist())
    return out


def seed_recorder(path: Path) -> Any:
    """A worker_init_fn that appends (id, num_workers, seed) of get_worker_info() to a file;
    it works in torch's worker processes and in gradatim's calling process alike."""

    def init(worker_id: int) -> None:
        info = tud.get_worker_info()
        with path.open("a") as f:
            f.write(json.dumps([worker_id, info.id, info.num_workers, info.seed]) + "\n")

    return init


def run_two_epochs(loader_cls: type, dataset: Any, kwargs: dict[str, Any], seeds: Path) -> Any:
    """Seed everything, build the loader, run two epochs; return batches, recorded worker
    seeds and the global RNG's next draws afterwards."""
    torch.manual_seed(1234)
    kw = dict(kwargs)
    if kw.pop("with_generator", False):
        kw["generator"] = torch.Generator().manual_seed(99)
    for key in ("sampler", "batch_sampler"):
        if callable(kw.get(key)):
            kw[key] = kw[key](dataset)
    if kw.get("num_workers", 0) > 0:
        kw["worker_init_fn"] = seed_recorder(seeds)
    loader = loader_cls(dataset, **kw)
    batches = [list(loader), list(loader)]
    recorded = (
        sorted(json.loads(x) for x in seeds.read_text().splitlines()) if seeds.exists() else []
    )
    return batches, recorded, torch.rand(4)


GRID = [
    {"batch_size": 5},
    {"batch_size": 5, "shuffle": True},
    {"batch_size": 5, "shuffle": True, "with_generator": True},
    {"batch_size": 5, "shuffle": True, "drop_last": True, "with_generator": True},
    {"batch_size": 4, "sampler": lambda ds: tud.RandomSampler(ds, replacement=True)},
    {"batch_size": 4, "sampler": lambda ds: tud.SubsetRandomSampler(range(3, 20))},
    {
        "batch_size": 3,
        "sampler": lambda ds: tud.WeightedRandomSampler([1.0 + i % 3 for i in range(len(ds))], 17),
    },
    {"batch_size": 4, "sampler": lambda ds: tud.DistributedSampler(ds, num_replicas=2, rank=1)},
    {"batch_sampler": lambda ds: tud.BatchSampler(tud.RandomSampler(ds), 6, False)},
    {"batch_sampler": lambda ds: tud.BatchSampler(tud.SequentialSampler(ds), 4, True)},
]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("config", range(len(GRID)))
def test_fast_path_equals_torch_batches_seeds_and_rng(
    manifest: Path, tmp_path: Path, config: int, workers: int
) -> None:
    """torch.utils.data.DataLoader over the same ManifestDataset is the oracle: same indices,
    same pixels (no augmentation: per-sample pixels do not depend on the seed), same worker
    seeds seen by worker_init_fn, same global RNG afterwards; two epochs."""
    ds = manifest_dataset(manifest)
    kw = {**GRID[config], "num_workers": workers}
    ref, ref_seeds, ref_rng = run_two_epochs(tud.DataLoader, ds, kw, tmp_path / "torch")
    got, got_seeds, got_rng = run_two_epochs(ga.DataLoader, ds, kw, tmp_path / "ours")
    for e in range(2):
        assert indices(got[e]) == indices(ref[e]), f"epoch {e}"
        for a, b in zip(got[e], ref[e], strict=True):
            assert a["id"] == b["id"]
            assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert got_seeds == ref_seeds
    assert torch.equal(got_rng, ref_rng)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("config", range(len(GRID)))
def test_compat_path_equals_torch(tmp_path: Path, config: int, workers: int) -> None:
    kw = {**GRID[config], "num_workers": workers}
    ref, ref_seeds, ref_rng = run_two_epochs(tud.DataLoader, Squares(), kw, tmp_path / "torch")
    got, got_seeds, got_rng = run_two_epochs(ga.DataLoader, Squares(), kw, tmp_path / "ours")
    assert [indices(e) for e in got] == [indices(e) for e in ref]
    assert got_seeds == ref_seeds
    assert torch.equal(got_rng, ref_rng)


# --- epochs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_break_then_iter_is_a_new_epoch_as_in_torch(manifest: Path, fast: bool) -> None:
    ds: Any = manifest_dataset(manifest) if fast else Squares(24)

    def stream(cls: type) -> list[list[int]]:
        dl = cls(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5))
        first = next(iter(dl))  # then break
        return indices([first]) + indices(list(dl)) + indices(list(dl))

    ours, theirs = stream(ga.DataLoader), stream(tud.DataLoader)
    assert ours == theirs
    assert ours[1:7] != ours[7:13]  # the epoch after the break is reshuffled


def test_gradatim_sampler_moves_on_after_break(manifest: Path) -> None:
    sampler = MultiSourceSampler([12, 12], [1, 1], seed=3, replacement=False)
    dl = ga.DataLoader(manifest_dataset(manifest), batch_size=4, sampler=sampler)
    next(iter(dl))
    after = indices(list(dl))
    assert sum(after, []) == sampler.epoch_indices(1).tolist()  # epoch 1, not epoch 0 again


@pytest.mark.parametrize("fast", [True, False])
def test_loader_keeps_the_users_distributed_set_epoch(manifest: Path, fast: bool) -> None:
    ds: Any = manifest_dataset(manifest) if fast else Squares(24)
    orders = []
    for epoch in range(3):  # a loader rebuilt every epoch, as Lightning and many scripts do
        sampler = tud.DistributedSampler(ds, num_replicas=2, rank=0, seed=7)
        sampler.set_epoch(epoch)
        expected = list(sampler)
        got = sum(indices(list(ga.DataLoader(ds, batch_size=3, sampler=sampler))), [])
        assert got == expected
        orders.append(got)
    assert orders[0] != orders[1] != orders[2]


# --- exact resume ----------------------------------------------------------------------------


def kill_and_resume(make: Any, stop: int, epochs: int = 2) -> tuple[list[Any], list[Any]]:
    """Uninterrupted ``epochs`` epochs vs. stop after ``stop`` batches, save as JSON, rebuild
    everything from scratch, load and run to the same end. The global RNG is the user's to
    checkpoint: it is saved with the loader's state and restored after loading."""
    torch.manual_seed(0)
    dl = make()
    reference = [b for _ in range(epochs) for b in dl]
    torch.manual_seed(0)
    run = make()
    it = iter(run)
    seen = [next(it) for _ in range(stop)]
    state = json.loads(json.dumps(run.state_dict()))
    rng = torch.get_rng_state()
    del it, run
    torch.manual_seed(12345)  # a new process
    resumed = make()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    for _ in range(epochs):
        seen += list(resumed)
    return seen, reference


def same_batches(a: list[Any], b: list[Any]) -> None:
    assert indices(a) == indices(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, dict) and "pixel_values" in x:
            assert x["id"] == y["id"] and x["target"] == y["target"]
            assert torch.equal(x["pixel_values"], y["pixel_values"])


@pytest.mark.parametrize("stop", [0, 1, 4, 6])
def test_resume_batch_sampler_over_multi_source_sampler(manifest: Path, stop: int) -> None:
    """The saved position counts samples, not batches x 1; stop=6 is the last, partial batch of
    the epoch (22 samples in batches of 4), which must load and resume as the epoch's end."""
    ds = manifest_dataset(manifest, augment=ga.Augment.cure_train())

    def make() -> ga.DataLoader:
        sampler = MultiSourceSampler([12, 12], [0.7, 0.3], num_samples=22, seed=5)
        bs = tud.BatchSampler(sampler, 4, False)
        return ga.DataLoader(
            ds, batch_sampler=bs, num_workers=2, generator=torch.Generator().manual_seed(2)
        )

    dl = make()
    ref_epochs = [list(dl), list(dl)]
    seen, _ = kill_and_resume(make, stop)
    same_batches(seen[: len(ref_epochs[0])], ref_epochs[0])
    # the resumed loader's first iterator finished epoch 0, its second one is epoch 1
    same_batches(seen[len(ref_epochs[0]) : len(ref_epochs[0]) * 2], ref_epochs[1])


@pytest.mark.parametrize("stop", [0, 2, 5])
def test_resume_out_of_order_loses_and_repeats_nothing(manifest: Path, stop: int) -> None:
    ds = manifest_dataset(manifest, augment=ga.Augment.cure_train())

    def make() -> ga.DataLoader:
        return ga.DataLoader(
            ds,
            batch_size=2,
            shuffle=True,
            num_workers=2,
            in_order=False,
            generator=torch.Generator().manual_seed(8),
        )

    seen, reference = kill_and_resume(make, stop, epochs=1)
    key = lambda b: tuple(b["index"].tolist())  # noqa: E731
    assert sorted(map(key, seen)) == sorted(map(key, reference))
    by_key = {key(b): b for b in reference}
    for b in seen:
        assert torch.equal(b["pixel_values"], by_key[key(b)]["pixel_values"])


def test_state_right_after_load_is_the_loaded_state(manifest: Path) -> None:
    """A second preemption before the first step must not replay the epoch."""
    ds = manifest_dataset(manifest)

    def make() -> ga.DataLoader:
        return ga.DataLoader(
            ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1)
        )

    reference = list(make())
    run = make()
    it = iter(run)
    head = [next(it), next(it)]
    state = json.loads(json.dumps(run.state_dict()))
    again = make()
    again.load_state_dict(state)
    assert again.state_dict() == state
    third = make()
    third.load_state_dict(json.loads(json.dumps(again.state_dict())))
    same_batches(head + list(third), reference)


def test_explicit_sequential_batch_sampler_iterates_and_resumes(manifest: Path) -> None:
    ds = manifest_dataset(manifest)

    def make() -> ga.DataLoader:
        return ga.DataLoader(
            ds, batch_sampler=tud.BatchSampler(tud.SequentialSampler(ds), 4, False)
        )

    assert indices(list(make())) == [list(range(i, min(i + 4, 24))) for i in range(0, 24, 4)]
    seen, reference = kill_and_resume(make, 3)
    same_batches(seen, reference)


SAMPLERS = {
    "random-generator": lambda ds: {
        "sampler": tud.RandomSampler(ds, generator=torch.Generator().manual_seed(4))
    },
    "random-global": lambda ds: {"shuffle": True},
    "subset-random": lambda ds: {"sampler": tud.SubsetRandomSampler(range(2, 21))},
    "weighted": lambda ds: {
        "sampler": tud.WeightedRandomSampler([1 + (i % 4) for i in range(len(ds))], 30)
    },
    "distributed": lambda ds: {
        "sampler": tud.DistributedSampler(ds, num_replicas=3, rank=2, seed=3)
    },
}


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("stop", [0, 3])
def test_stateful_resume_any_map_dataset_and_torch_sampler(
    name: str, workers: int, stop: int
) -> None:
    """StatefulDataLoader's promise for map-style datasets and torch's own samplers: the resumed
    run continues the uninterrupted one. The global RNG is the user's to restore, as it would
    be in a checkpoint, so the test restores it where it was saved."""
    ds = Squares()

    def make() -> ga.DataLoader:
        return ga.DataLoader(ds, batch_size=4, num_workers=workers, **SAMPLERS[name](ds))

    torch.manual_seed(0)
    reference = list(make())
    reference += list(make())  # a second loader: the state must carry nothing hidden
    torch.manual_seed(0)
    run = make()
    it = iter(run)
    seen = [next(it) for _ in range(min(stop, len(run)))]
    state = json.loads(json.dumps(run.state_dict()))
    rng = torch.get_rng_state()
    del it, run
    torch.manual_seed(777)  # a new process
    resumed = make()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)  # ... that restored its checkpoint
    seen += list(resumed)
    seen += list(make())
    assert indices(seen) == indices(reference)


@pytest.mark.parametrize("stop", [0, 5, 11])
def test_resume_without_batching_and_with_custom_collate(stop: int) -> None:
    ds = Squares()

    def make() -> ga.DataLoader:
        return ga.DataLoader(
            ds, batch_size=None, shuffle=True, generator=torch.Generator().manual_seed(3)
        )

    seen, reference = kill_and_resume(make, stop)
    assert [int(b["index"]) for b in seen] == [int(b["index"]) for b in reference]

    def make_collate() -> ga.DataLoader:
        return ga.DataLoader(
            ds,
            batch_size=3,
            shuffle=True,
            collate_fn=lambda items: [int(x["index"]) for x in items],
            generator=torch.Generator().manual_seed(3),
        )

    seen, reference = kill_and_resume(make_collate, min(stop, 7))
    assert seen == reference


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
def test_end_of_epoch_state_matches_stateful_dataloader() -> None:
    """torchdata's StatefulDataLoader defines it: a state taken after the last batch resumes as
    an empty rest of that epoch, then the next epoch; a state taken after StopIteration resumes
    at the next epoch."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    def lengths(cls: type, finish: bool) -> list[int]:
        dl = cls(Squares(), batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
        it = iter(dl)
        for _ in range(len(dl)):
            next(it)
        if finish:
            assert next(it, None) is None
        state = dl.state_dict()
        resumed = cls(
            Squares(), batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        resumed.load_state_dict(state)
        return [len(list(resumed)), len(list(resumed))]

    for finish in (False, True):
        assert lengths(ga.DataLoader, finish) == lengths(StatefulDataLoader, finish)


def test_state_dict_never_raises_and_says_when_inexact() -> None:
    class Stream(tud.IterableDataset):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(7))

    dl = ga.DataLoader(Stream(), batch_size=2, snapshot_every_n_steps=10)
    assert dl.snapshot_every_n_steps == 10
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    assert state["exact"] is False and "IterableDataset" in state["why"]
    fresh = ga.DataLoader(Stream(), batch_size=2)
    with pytest.warns(RuntimeWarning, match="does not resume exactly"):
        fresh.load_state_dict(state)
    assert [b.tolist() for b in fresh] == [[0, 1], [2, 3], [4, 5], [6]]
    exact = ga.DataLoader(Squares(), batch_size=2, shuffle=True).state_dict()
    assert exact["exact"] is True and exact["why"] is None
    with pytest.raises(ValueError, match="snapshot_every_n_steps"):
        ga.DataLoader(Squares(), snapshot_every_n_steps=0)


# --- type and API parity ----------------------------------------------------------------------


def test_is_a_torch_dataloader_and_generic(manifest: Path) -> None:
    dl = ga.DataLoader(manifest_dataset(manifest), batch_size=2)
    assert isinstance(dl, tud.DataLoader) and dl.fast_path
    assert ga.DataLoader[dict] is not None  # usable in annotations
    assert not ga.DataLoader(Squares(), batch_size=2).fast_path
    # torch's default collate passed explicitly (as Lightning does when it rebuilds) is the default
    assert ga.DataLoader(manifest_dataset(manifest), collate_fn=tud.default_collate).fast_path


@pytest.mark.parametrize("attr", ["batch_size", "sampler", "batch_sampler", "drop_last", "dataset"])
def test_assigning_after_construction_raises_as_torch(manifest: Path, attr: str) -> None:
    messages = []
    for cls in (tud.DataLoader, ga.DataLoader):
        dl = cls(manifest_dataset(manifest), batch_size=2)
        with pytest.raises(ValueError) as info:
            setattr(dl, attr, None)
        messages.append(str(info.value).replace(cls.__name__, "X"))
    assert messages[0] == messages[1]


# torch's iterator fails in its constructor, and its __del__ then trips over the half-built object
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_prefetch_factor_zero_raises_as_torch(manifest: Path) -> None:
    for ds in (manifest_dataset(manifest), Squares()):
        messages = []
        for cls in (tud.DataLoader, ga.DataLoader):
            dl = cls(ds, batch_size=2, num_workers=2, prefetch_factor=0)
            with pytest.raises(AssertionError) as info:
                iter(dl)
            messages.append(str(info.value))
            del info
        torch_says, we_say = messages
        if torch_says:
            assert we_say == torch_says and "prefetch_factor" in torch_says
        else:  # older torch (2.6 to at least 2.8) asserts without a message
            assert we_say == "" or we_say.startswith("prefetch_factor must be greater than 0")
    gc.collect()  # the half-built iterators go while the warning filter is in force


def test_worker_init_fn_sees_worker_info_and_cannot_reseed_the_caller(
    manifest: Path, tmp_path: Path
) -> None:
    ds = manifest_dataset(manifest)

    def reseed(worker_id: int) -> None:
        info = tud.get_worker_info()
        assert info is not None and info.id == worker_id and info.dataset is ds
        torch.manual_seed(0)
        np.random.seed(0)  # noqa: NPY002 - what users do in worker_init_fn
        random.seed(0)

    def draws(init: Any) -> tuple[Any, ...]:
        torch.manual_seed(5)
        np.random.seed(5)  # noqa: NPY002
        random.seed(5)
        list(ga.DataLoader(ds, batch_size=6, num_workers=2, worker_init_fn=init))
        return torch.rand(3).tolist(), np.random.rand(3).tolist()  # noqa: NPY002, random.random()

    assert draws(reseed) == draws(None)
    assert tud.get_worker_info() is None  # only inside the call


def test_iter_snapshots_the_settings(manifest: Path) -> None:
    ds = manifest_dataset(manifest)
    dl = ga.DataLoader(ds, batch_size=3, num_workers=2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    reference = list(ga.DataLoader(ds, batch_size=3, num_workers=2, generator=g))
    it = iter(dl)
    dl.num_workers, dl.prefetch_factor, dl.in_order, dl.timeout = 0, 7, False, 5
    same_batches(list(it), reference)


# --- what the generator determines on the fast path ------------------------------------------


def test_generator_determines_the_fast_path_stream(manifest: Path) -> None:
    ds = manifest_dataset(manifest, augment=ga.Augment.cure_train())

    def epoch(seed: int, workers: int, shuffle: bool = True) -> list[Any]:
        g = torch.Generator().manual_seed(seed)
        return list(
            ga.DataLoader(ds, batch_size=4, shuffle=shuffle, num_workers=workers, generator=g)
        )

    a = epoch(1, 0)
    same_batches(a, epoch(1, 0))
    same_batches(a, epoch(1, 2))  # independent of the number of workers
    b = epoch(2, 0)
    assert indices(a) != indices(b)
    # same (sequential) order, other generator: other augmentations
    s1, s2 = epoch(1, 0, shuffle=False), epoch(2, 0, shuffle=False)
    assert indices(s1) == indices(s2)
    assert not torch.equal(s1[0]["pixel_values"], s2[0]["pixel_values"])


def test_consecutive_epochs_differ(manifest: Path) -> None:
    ds = manifest_dataset(manifest, augment=ga.Augment.cure_train())
    dl = ga.DataLoader(ds, batch_size=24, generator=torch.Generator().manual_seed(0))
    a, b = next(iter(dl)), next(iter(dl))
    assert not torch.equal(a["pixel_values"], b["pixel_values"])
    assert list(itertools.chain(a["id"])) == list(b["id"])


@pytest.mark.parametrize("fast", [True, False])
def test_persistent_workers_equal_torch(manifest: Path, tmp_path: Path, fast: bool) -> None:
    """torch's persistent workers keep the first iterator's base seed; so does gradatim."""
    ds: Any = manifest_dataset(manifest) if fast else Squares(24)
    runs = []
    for cls in (tud.DataLoader, ga.DataLoader):
        seeds = tmp_path / cls.__module__
        torch.manual_seed(3)
        dl = cls(
            ds,
            batch_size=5,
            shuffle=True,
            num_workers=2,
            persistent_workers=True,
            worker_init_fn=seed_recorder(seeds),
        )
        epochs = [indices(list(dl)) for _ in range(3)]
        runs.append((epochs, sorted(seeds.read_text().splitlines()), torch.rand(3).tolist()))
    assert runs[0] == runs[1]


def test_compat_resume_seeds_workers_as_the_saved_iterator(tmp_path: Path) -> None:
    """Worker processes of a resumed iterator get the saved iterator's seeds (which their
    ``__getitem__`` randomness starts from), not seeds drawn anew."""

    def make(path: Path) -> ga.DataLoader:
        return ga.DataLoader(
            Squares(),
            batch_size=3,
            shuffle=True,
            num_workers=2,
            worker_init_fn=seed_recorder(path),
            generator=torch.Generator().manual_seed(6),
        )

    run = make(tmp_path / "a")
    it = iter(run)
    next(it)
    state = json.loads(json.dumps(run.state_dict()))
    del it
    resumed = make(tmp_path / "b")
    resumed.load_state_dict(state)
    list(resumed)
    read = lambda p: sorted(p.read_text().splitlines())  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b")
