"""Where gradatim.DataLoader must behave as torch's DataLoader and torchdata's StatefulDataLoader
and once did not: resuming from a state alone wherever StatefulDataLoader does (the 8-position
probe), iterators that outlive their loader, ManifestDataset subclasses that override how a
batch is fetched, and the batch keys of the fast path against torch's loader and the docs."""

from __future__ import annotations

import gc
import json
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.utils.data as tud

import gradatim as ga

DOCS = Path(__file__).resolve().parents[1] / "docs" / "loader.md"


class Squares(tud.Dataset):  # type: ignore[type-arg]
    """A plain map-style dataset (the compatibility path)."""

    def __len__(self) -> int:
        return 11

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": torch.tensor(i), "x": torch.tensor([i, i * i])}


def order(batches: Any) -> list[int]:
    """The sample indices of some batches, in delivery order."""
    return [int(i) for b in batches for i in torch.as_tensor(b["index"]).reshape(-1)]


def stream(batches: Any) -> list[tuple[int, float]]:
    """Each delivered sample: its index and, for images, its pixels' sum (the augmentation)."""
    out = []
    for b in batches:
        pixels = b.get("pixel_values")
        sums = pixels.double().flatten(1).sum(1).tolist() if pixels is not None else None
        for k, i in enumerate(torch.as_tensor(b["index"]).reshape(-1).tolist()):
            out.append((int(i), round(sums[k], 6) if sums is not None else 0.0))
    return out


# --- item: the 8-position resume probe ---------------------------------------------------------

EPOCHS = 3  # the original run, and so every resumed one, ends after this many passes
# (name, num_workers, steps before the state is saved): "iter" = iter(loader), "next" = one
# batch, "last" = the epoch's remaining batches without StopIteration, "drain" = until it
POSITIONS = [
    ("before the first iter()", 0, []),
    ("right after iter(), num_workers=0", 0, ["iter"]),
    ("right after iter(), num_workers=2", 2, ["iter"]),
    ("mid-epoch", 0, ["iter", "next", "next"]),
    ("after the last batch, before StopIteration", 0, ["iter", "last"]),
    ("epoch boundary: after StopIteration, before the next iter()", 0, ["iter", "drain"]),
    ("right after the second epoch's iter()", 0, ["iter", "drain", "iter"]),
    ("mid second epoch, num_workers=2", 2, ["iter", "drain", "iter", "next"]),
]


def probe(
    cls: type, make: Callable[[type, int], Any], workers: int, steps: list[str], scramble: int
) -> tuple[bool, Any]:
    """Run to the position and save the state; the original run goes on to the end of epoch
    ``EPOCHS``. Then a new process (the global RNG scrambled) builds a fresh loader, loads the
    state and runs to the same end. Returns (the same samples in the same order, with the same
    pixels, state["exact"])."""
    torch.manual_seed(0)
    loader = make(cls, workers)
    it, passes, taken = None, 0, 0
    for step in steps:
        if step == "iter":
            it, passes, taken = iter(loader), passes + 1, 0
        elif step == "next":
            next(it)
            taken += 1
        elif step == "last":
            for _ in range(len(loader) - taken):
                next(it)
        else:
            list(it)
    live = bool(steps) and steps[-1] != "drain"  # an iterator is part-way through its epoch
    state = loader.state_dict()
    if cls is ga.DataLoader:
        state = json.loads(json.dumps(state))  # plain JSON, as a checkpoint stores it
    rest = stream(it) if live else []
    for _ in range(EPOCHS - passes):
        rest += stream(loader)

    torch.manual_seed(scramble)  # the new process: its global RNG is elsewhere
    resumed = make(cls, workers)
    resumed.load_state_dict(state)
    got = stream(resumed) if live else []
    for _ in range(EPOCHS - passes):
        got += stream(resumed)
    return got == rest, state.get("exact")


def _squares(cls: type, workers: int, **kw: Any) -> Any:
    return cls(Squares(), batch_size=3, num_workers=workers, **kw)


def _manifest(cls: type, workers: int, manifest: Path, **kw: Any) -> Any:
    ds = ga.ManifestDataset(manifest, image_size=(24, 20), augment=ga.Augment.cure_train())
    return cls(ds, batch_size=5, num_workers=workers, **kw)


def _own_generator(cls: type, workers: int) -> Any:
    sampler = tud.RandomSampler(range(11), generator=torch.Generator().manual_seed(4))
    return _squares(cls, workers, sampler=sampler)


LOADERS: dict[str, Callable[[Path], Callable[[type, int], Any]]] = {
    # the configuration: shuffle=True without a generator (the global RNG orders it)
    "shuffle, compatibility path": lambda m: lambda cls, w: _squares(cls, w, shuffle=True),
    "shuffle, fast path": lambda m: lambda cls, w: _manifest(cls, w, m, shuffle=True),
    # a sampler with a generator of its own (StatefulDataLoader fast-forwards it from the start)
    "own-generator sampler": lambda m: _own_generator,
    # persistent workers keep the first iterator's base seed: the later passes draw none
    "persistent workers, compatibility path": lambda m: (
        lambda cls, w: _squares(cls, 2, shuffle=True, persistent_workers=True)
    ),
    "persistent workers, fast path": lambda m: (
        lambda cls, w: _manifest(
            cls,
            2,
            m,
            shuffle=True,
            persistent_workers=True,
            generator=torch.Generator().manual_seed(1),
        )
    ),
}


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
@pytest.mark.parametrize("config", list(LOADERS))
def test_resume_probe_equals_stateful_dataloader(manifest: Path, config: str) -> None:
    """At each of 8 positions the state alone (no global RNG restored) continues the original
    run (the same samples in the same order, with the same augmentations) wherever torchdata's
    StatefulDataLoader does, and ``exact`` is never True for a state that does not. (The
    persistent-worker loaders have 2 workers at every position.)"""
    from torchdata.stateful_dataloader import StatefulDataLoader

    make = LOADERS[config](manifest)
    ours, theirs = {}, {}
    for k, (name, workers, steps) in enumerate(POSITIONS):
        ours[name] = probe(ga.DataLoader, make, workers, steps, 1000 + 17 * k)
        theirs[name] = probe(StatefulDataLoader, make, workers, steps, 1000 + 17 * k)[0]
    missed = [n for n in ours if theirs[n] and not ours[n][0]]
    assert not missed, f"StatefulDataLoader resumes these and gradatim does not: {missed}"
    dishonest = [n for n, (same, exact) in ours.items() if exact and not same]
    assert not dishonest, f"exact=True, yet another order: {dishonest}"
    # gradatim's states record every random source they depend on: exact everywhere
    assert all(same and exact for same, exact in ours.values()), ours


def test_state_records_the_global_rng_and_loading_puts_it_back() -> None:
    """What the order depends on is in the state: the global RNG at state_dict() (without a
    generator), and nothing of it with one."""
    torch.manual_seed(5)
    loader = _squares(ga.DataLoader, 0, shuffle=True)
    state = json.loads(json.dumps(loader.state_dict()))
    expected = torch.rand(3)
    torch.manual_seed(6)
    _squares(ga.DataLoader, 0, shuffle=True).load_state_dict(state)
    assert torch.equal(torch.rand(3), expected)
    seeded = _squares(ga.DataLoader, 0, shuffle=True, generator=torch.Generator().manual_seed(1))
    assert "global_rng" not in seeded.state_dict()


@pytest.mark.parametrize("wrap", ["BatchSampler", "BatchSamplerShard"])
def test_a_wrapped_samplers_own_generator_is_recorded(wrap: str) -> None:
    """The generator of a sampler under torch's BatchSampler or accelerate's BatchSamplerShard
    (what ``prepare_data_loader`` builds) orders the later epochs: resumed at an epoch boundary
    and in the second epoch, the run continues."""

    def make(cls: type, workers: int) -> Any:
        sampler = tud.RandomSampler(range(11), generator=torch.Generator().manual_seed(4))
        batches: Any = tud.BatchSampler(sampler, 3, False)
        if wrap == "BatchSamplerShard":
            from accelerate.data_loader import BatchSamplerShard

            batches = BatchSamplerShard(batches, num_processes=2, process_index=1)
        return cls(Squares(), batch_sampler=batches, num_workers=workers)

    for k, steps in enumerate([["iter", "drain"], ["iter", "drain", "iter", "next"]]):
        assert probe(ga.DataLoader, make, 0, steps, 50 + k) == (True, True), steps


# --- item: an iterator that outlives its loader ------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("fast", [False, True])
def test_iterator_outlives_its_loader(manifest: Path, workers: int, fast: bool) -> None:
    """``list(make_iter())`` (and tqdm) call ``len()`` on an iterator whose loader is gone: it
    works, and gives torch's batches."""
    ds = ga.ManifestDataset(manifest, image_size=(24, 20)) if fast else Squares()
    kw: dict[str, Any] = {"batch_size": 4, "shuffle": True, "num_workers": workers}

    def make_iter() -> tuple[Any, weakref.ref[Any]]:
        loader = ga.DataLoader(ds, generator=torch.Generator().manual_seed(3), **kw)
        return iter(loader), weakref.ref(loader)

    it, gone = make_iter()
    gc.collect()
    assert gone() is None, "the test needs the loader collected"
    reference = list(tud.DataLoader(ds, generator=torch.Generator().manual_seed(3), **kw))
    assert len(it) == len(reference)
    assert order(list(it)) == order(reference)


# --- item: a ManifestDataset subclass that changes how a batch is fetched ---------------------


class Tagged(ga.ManifestDataset):
    """Adds a field and transforms the pixels in ``__getitems__``."""

    def __getitems__(self, indices: Any) -> list[dict[str, Any]]:
        items = super().__getitems__(indices)
        for item in items:
            item["pixel_values"] = 1 - item["pixel_values"]
            item["twice"] = 2 * item["index"]
        return items


class Flipped(ga.ManifestDataset):
    """Transforms whole batches in ``load_batch`` (which ``__getitems__`` calls)."""

    def load_batch(self, indices: Any, **kw: Any) -> dict[str, Any]:
        batch = super().load_batch(indices, **kw)
        batch["pixel_values"] = batch["pixel_values"].flip(-1)
        return batch


def same(a: Any, b: Any) -> bool:
    """Deep equality of collated values (tensors, strings, lists and tuples of them)."""
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(b, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    return bool(a == b)


def assert_same_batches(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert list(a) == list(b)
        for key in b:
            assert same(a[key], b[key]), key


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("subclass", [Tagged, Flipped])
def test_subclass_overriding_the_fetch_is_honoured(
    manifest: Path, subclass: type, workers: int
) -> None:
    """torch's loader fetches through the override; so does gradatim's (compatibility path),
    giving torch's batches, and it still resumes."""
    ds = subclass(manifest, image_size=(24, 20))
    kw: dict[str, Any] = {"batch_size": 5, "shuffle": True, "num_workers": workers}
    loader = ga.DataLoader(ds, generator=torch.Generator().manual_seed(2), **kw)
    assert not loader.fast_path
    want = list(tud.DataLoader(ds, generator=torch.Generator().manual_seed(2), **kw))
    assert_same_batches(list(loader), want)
    if subclass is Tagged:
        assert all(torch.equal(b["twice"], 2 * b["index"]) for b in want)

    run = ga.DataLoader(ds, generator=torch.Generator().manual_seed(2), **kw)
    it = iter(run)
    head = [next(it), next(it)]
    state = json.loads(json.dumps(run.state_dict()))
    resumed = ga.DataLoader(ds, generator=torch.Generator().manual_seed(2), **kw)
    resumed.load_state_dict(state)
    assert_same_batches(head + list(resumed), want)


def test_an_instance_override_and_a_plain_subclass(manifest: Path) -> None:
    """torch reads ``__getitems__`` off the instance; a subclass that changes neither it nor
    ``load_batch`` keeps the fast path."""

    class Named(ga.ManifestDataset):
        def describe(self) -> str:
            return "named"

    assert ga.DataLoader(Named(manifest, image_size=(24, 20)), batch_size=2).fast_path
    ds = ga.ManifestDataset(manifest, image_size=(24, 20))
    plain = ds.__getitems__
    ds.__getitems__ = lambda idx: [dict(s, extra=torch.tensor(7)) for s in plain(idx)]  # type: ignore[method-assign]
    loader = ga.DataLoader(ds, batch_size=3)
    assert not loader.fast_path
    assert_same_batches(list(loader), list(tud.DataLoader(ds, batch_size=3)))


# --- item: the batch keys -----------------------------------------------------------------------


def documented_keys() -> tuple[set[str], set[str]]:
    """The keys docs/loader.md ("Batches") lists for every batch, and those only some have."""
    text = DOCS.read_text()
    section = text.split("\n## Batches\n", 1)[1].split("\n## ", 1)[0]
    every = re.search(r"Every batch has the keys (.*?)\.\n", section, re.S)
    some = re.search(r"Only some batches have (.*?)\.\n", section, re.S)
    assert every and some, "docs/loader.md, Batches: the key lists are gone"
    return set(re.findall(r"`(\w+)`", every.group(1))), set(re.findall(r"`(\w+)`", some.group(1)))


@pytest.mark.parametrize("stages", [None, "easy", "medium"])
def test_batch_keys_equal_torch_loaders_and_the_docs(manifest: Path, stages: str | None) -> None:
    ds = ga.ManifestDataset(manifest, image_size=(24, 20), stages=stages)
    ours = next(iter(ga.DataLoader(ds, batch_size=4)))
    torchs = next(iter(tud.DataLoader(ds, batch_size=4)))
    assert list(ours) == list(torchs)
    every, some = documented_keys()
    assert some == {"box_mask"}
    assert set(ours) == every | ({"box_mask"} if stages == "medium" else set())
