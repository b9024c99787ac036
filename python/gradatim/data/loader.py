"""``gradatim.DataLoader``: a ``torch.utils.data.DataLoader`` (a subclass, same arguments, same
batches for the same generator) with a fast path for :class:`ManifestDataset` and exact resume.

- A ``ManifestDataset`` with torch's default collation takes the fast path: ``num_workers`` Rust
  threads (0: built inline, as torch's main-process loading) build whole batches into one buffer
  each; Python receives one dict per batch (``pixel_values`` ``[B, C, H, W]``, ``boxes``
  ``[B, max_boxes, 4]``, ``box_count``, ``text``/``prompt``/``target``, ``task``, ``source``,
  ``id``, ``index``, ``stage``, ``box_mask`` when a sample is Medium, ...: the keys torch's loader
  gives over the same dataset).
- Anything else (other datasets, a ``ManifestDataset`` subclass overriding ``__getitems__`` or
  ``load_batch``, a custom ``collate_fn``, ``batch_size=None``) takes the compatibility path:
  torch's own iterators, unchanged but for the bookkeeping of resume.

Both paths draw the index batches from torch's sampler objects and draw their random numbers
exactly when and as torch does (the iterator's base seed, then the sampler's draws), so for any
dataset, sampler and generator the batch indices, the worker seeds and the global RNG afterwards
are torch's. ``state_dict()`` / ``load_state_dict()`` follow ``StatefulDataLoader``; see
``docs/loader.md`` for what resumes exactly and the deviations of the fast path (threads, not
processes).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.utils.data as tud
from torch.utils.data import dataloader as _tdl

from gradatim.data.dataset import ManifestDataset
from gradatim.data.epoch_run import EpochRun, Resume
from gradatim.data.fast_iter import FastIter, Stats
from gradatim.data.rng_source import RngSource, decode_state, encode_state
from gradatim.errors import InvalidArgumentError

__all__ = ["DataLoader"]

STATE_VERSION = 2
T_co = TypeVar("T_co", covariant=True)


class DataLoader(tud.DataLoader[T_co]):
    """Drop-in replacement for :class:`torch.utils.data.DataLoader` (same arguments, plus
    ``snapshot_every_n_steps`` as in ``torchdata``'s ``StatefulDataLoader``, accepted for
    compatibility: gradatim computes the state when asked, so every step is a snapshot)."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: torch.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        snapshot_every_n_steps: int = 1,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            drop_last=drop_last,
            timeout=timeout,
            worker_init_fn=worker_init_fn,
            multiprocessing_context=multiprocessing_context,
            generator=generator,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device,
            in_order=in_order,
        )
        if isinstance(snapshot_every_n_steps, bool) or int(snapshot_every_n_steps) < 1:
            raise ValueError("snapshot_every_n_steps must be a positive int")
        self.snapshot_every_n_steps = int(snapshot_every_n_steps)
        self._fast = _takes_fast_path(dataset, collate_fn, self._auto_collation)
        #: where batches are moved (set by ``gradatim.data.accelerate.prepare_data_loader``)
        self.device: torch.device | None = None
        self._indices = _IndexSampler(self)
        self._next_epoch = 0
        self._resume: Resume | None = None
        self._resume_state: dict[str, Any] | None = None
        self._run: EpochRun | None = None
        self._sampler_gen_start: torch.Tensor | None = None
        self._workers_initialised = False
        self._persistent_seed: int | None = None
        self._forced_base_seed: int | None = None
        self._stats = Stats()

    # -- what torch's iterators read -----------------------------------------------------------
    @property
    def _index_sampler(self) -> Any:
        indices = self.__dict__.get("_indices")
        return indices if indices is not None else self._real_index_sampler()

    def _real_index_sampler(self) -> Any:
        return self.batch_sampler if self._auto_collation else self.sampler

    @property
    def epoch(self) -> int:
        """The epoch of the current iterator (or, before the first, of the next one)."""
        run = self._run
        return run.epoch if run is not None and not run.finished else self._next_epoch

    @property
    def fast_path(self) -> bool:
        """True when batches are built by gradatim's Rust pipeline."""
        return self._fast

    # -- iteration ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next iterator (then ``epoch + 1``, ...). Also calls ``set_epoch`` of the
        sampler when it has one, as you asked for it; the loader itself never does."""
        epoch = int(epoch)
        if self._resume is not None and self._resume.epoch != epoch:
            self._resume = self._resume_state = None
        self._next_epoch = epoch
        sampler = _sampler_of(self._real_index_sampler())
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def _start_run(self) -> EpochRun:
        resume, self._resume, self._resume_state = self._resume, None, None
        epoch = resume.epoch if resume is not None else self._next_epoch
        self._next_epoch = epoch + 1
        stateful = _gradatim_sampler(self._real_index_sampler()) is not None
        run = EpochRun(
            epoch, RngSource(self.generator), self._real_index_sampler(), resume, stateful
        )
        self._run = run
        gen = _own_generator(self._real_index_sampler(), self.generator)
        # a sampler's own generator before its first draw of this pass (only it draws from it)
        self._sampler_gen_start = gen.get_state() if gen is not None else None
        return run

    def __iter__(self) -> Iterator[Any]:
        run = self._start_run()
        persistent = self.persistent_workers and self.num_workers > 0
        if self._fast:
            if run.resume is None and persistent and self._persistent_seed is not None:
                run.base_seed = self._persistent_seed  # torch's persistent workers keep theirs
            run.start()
            if persistent:
                self._persistent_seed = run.base_seed
            init = not (persistent and self._workers_initialised)
            self._workers_initialised = True
            return FastIter(self, run, init)
        loaded_seed = self._persistent_seed if persistent and self._iterator is None else None
        if run.resume is None and loaded_seed is not None:
            # a loaded state's persistent workers: the next pass is theirs, with their seed and
            # no draw (as torch's _reset of a persistent iterator draws none)
            self._forced_base_seed = loaded_seed
            try:
                it = super().__iter__()
            finally:
                self._forced_base_seed = None
        elif run.resume is None:
            if not (persistent and self._iterator is not None):  # _reset draws no seed
                run.rng_start = run.source.get_state()
            it = super().__iter__()
        else:
            # the saved iterator's seed, not a new draw: the global RNG is only borrowed, and a
            # generator is set from the saved state when the sampler draws
            self._forced_base_seed = run.base_seed
            borrow = run.source.get_state() if run.source.is_global else None
            try:
                with run.source.replaying(borrow):
                    it = super().__iter__()
            finally:
                self._forced_base_seed = None
        it._gradatim_run = run  # type: ignore[union-attr]
        run.base_seed = int(it._base_seed)  # type: ignore[union-attr]
        if persistent:
            self._persistent_seed = run.base_seed
        return it

    def check_worker_number_rationality(self) -> None:
        """torch's advice about too many worker *processes*; the fast path's workers are threads
        of this process building whole batches, so it says nothing there."""
        fast = self.__dict__.get("_fast")
        if fast is None:  # still in torch's __init__: decide as __init__ will
            collate = getattr(self, "collate_fn", None)
            fast = _takes_fast_path(self.dataset, collate, self._auto_collation)
        if not fast:
            super().check_worker_number_rationality()

    def _get_iterator(self) -> _tdl._BaseDataLoaderIter:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        self.check_worker_number_rationality()
        return _MultiProcessingIter(self)

    # -- state ----------------------------------------------------------------------------------
    def _not_exact(self) -> str | None:
        """Why this configuration cannot resume exactly, or None."""
        if self._dataset_kind == _tdl._DatasetKind.Iterable:
            return (
                "an IterableDataset is read from its start again: gradatim resumes map-style "
                "datasets (their order comes from the sampler)"
            )
        if not self._fast and not self.in_order and self.num_workers > 0:
            return (
                "in_order=False with worker processes on the compatibility path delivers batches "
                "in an order that is not recorded; use in_order=True or a ManifestDataset"
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state from which :meth:`load_state_dict` continues exactly: the
        remaining batches of the current epoch with the same indices (and, on the fast path, the
        same augmentations), then the same later epochs. It never raises; where the configuration
        cannot resume exactly, ``state["exact"]`` is False and ``state["why"]`` says why.

        Without a ``generator`` the loader draws from torch's global CPU RNG (each iterator's base
        seed, ``RandomSampler``'s seed, ...), so the state records that RNG as it is now
        (``global_rng``), and :meth:`load_state_dict` puts it back."""
        if self._resume_state is not None:  # loaded and not started yet: the same position
            return self._with_global_rng(dict(self._resume_state))
        why = self._not_exact()
        run = self._run
        state: dict[str, Any] = {"version": STATE_VERSION, "exact": why is None, "why": why}
        if run is None or run.finished:
            state.update(epoch=self._next_epoch, batches_done=0, finished=True)
            if self.generator is not None:
                state["generator"] = encode_state(self.generator.get_state())
        else:
            state.update(run.state(), finished=False)
        sampler = _gradatim_sampler(self._real_index_sampler())
        if sampler is not None:
            s = sampler.state_dict()
            origin = sampler.pass_origin
            if run is not None and not run.finished and origin is not None:
                s["epoch"], s["position"] = origin[0], origin[1] + run.samples_since_start
            state["sampler"] = s
        stages = getattr(self.dataset, "stages", None)
        if hasattr(stages, "state_dict"):
            state["stages"] = stages.state_dict()
        gen = _own_generator(self._real_index_sampler(), self.generator)
        if gen is not None:  # the pass replays from where it started, a next pass starts here
            start = self._sampler_gen_start
            if run is None or run.finished or start is None:
                start = gen.get_state()
            state["sampler_generator"] = encode_state(start)
        if self.persistent_workers and self.num_workers > 0 and self._persistent_seed is not None:
            state["persistent_base_seed"] = self._persistent_seed  # the later passes keep it
        return self._with_global_rng(state)

    def _with_global_rng(self, state: dict[str, Any]) -> dict[str, Any]:
        """Without a generator, what the loader draws next comes from torch's global RNG: record
        it, so that loading the state alone continues the same order."""
        if self.generator is None:
            state["global_rng"] = encode_state(torch.get_rng_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the next iterator yields the remaining batches of
        the saved epoch (none if it was at its end), the one after it the next epoch. Without a
        ``generator`` this sets torch's global CPU RNG to the saved ``global_rng`` (the loader
        draws from it); a sampler's own generator is set to its saved state."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise InvalidArgumentError(
                f"not a gradatim DataLoader state of version {STATE_VERSION} "
                f"(got a {type(state).__name__} with version {version!r})"
            )
        if not state.get("exact", True):
            warnings.warn(
                f"gradatim DataLoader: this state does not resume exactly ({state.get('why')}); "
                "its epoch starts from the beginning",
                RuntimeWarning,
                stacklevel=2,
            )
        self._run = None
        if self.generator is None and state.get("global_rng") is not None:
            # the RNG this loader draws from, where it was when the state was saved
            torch.set_rng_state(decode_state(state["global_rng"]))
        gen = _own_generator(self._real_index_sampler(), self.generator)
        if gen is not None and state.get("sampler_generator") is not None:
            gen.set_state(decode_state(state["sampler_generator"]))
        if self.persistent_workers and state.get("persistent_base_seed") is not None:
            self._persistent_seed = int(state["persistent_base_seed"])
        sampler = _gradatim_sampler(self._real_index_sampler())
        if sampler is not None and state.get("sampler") is not None:
            sampler.load_state_dict(state["sampler"])
        stages = getattr(self.dataset, "stages", None)
        if state.get("stages") is not None and hasattr(stages, "load_state_dict"):
            stages.load_state_dict(state["stages"])
        if state.get("finished", True) or not state.get("exact", True):
            self._resume = self._resume_state = None
            self._next_epoch = int(state["epoch"])
            if state.get("generator") is not None and self.generator is not None:
                self.generator.set_state(decode_state(state["generator"]))
            return
        self._resume = Resume.from_state(state)
        self._resume_state = dict(state)
        self._next_epoch = self._resume.epoch

    # -- progress -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Throughput of the current or last epoch on the fast path: ``images_per_s`` (samples
        delivered per second of wall time), ``stall_s`` (time the consumer waited for batches),
        ``work_s`` (worker time), ``batches``, ``samples``, ``skipped`` and
        ``skipped_samples``."""
        return self._stats.summary()


class _IndexSampler:
    """The loader's index sampler as torch's iterators see it: the real one, read through the
    current :class:`EpochRun` (resume point, random-state records, delivered count). An
    iterator may outlive its loader (``list(iter(DataLoader(...)))``): it holds the real index
    sampler itself (torch refuses to replace it after construction), so ``len()`` still works."""

    def __init__(self, loader: DataLoader) -> None:
        self._loader = weakref.ref(loader)
        self._real = loader._real_index_sampler()

    def __len__(self) -> int:
        return len(self._real)

    def __iter__(self) -> Iterator[Any]:
        loader = self._loader()
        if loader is None:
            return iter(self._real)
        run = loader._run
        if run is None or run.finished or loader._dataset_kind == _tdl._DatasetKind.Iterable:
            return iter(self._real)
        return run.items()


class _Delivering:
    """torch's iterators, plus: the batches they deliver are counted into the loader's
    :class:`EpochRun`, and a resumed iterator's base seed (which seeds the worker processes) is
    the saved one rather than the value torch's constructor draws (that draw is undone: the
    random source is put back where it was before it)."""

    _gradatim_run: EpochRun | None = None

    def __init__(self, loader: DataLoader) -> None:
        self._gradatim_forced_seed = loader._forced_base_seed
        source = RngSource(loader.generator)
        # nothing draws between here and torch's base seed draw (the sampler draws lazily)
        self._gradatim_undo = (
            (source, source.get_state()) if self._gradatim_forced_seed is not None else None
        )
        super().__init__(loader)  # type: ignore[call-arg]

    @property
    def _base_seed(self) -> int:
        return self._gradatim_base_seed

    @_base_seed.setter
    def _base_seed(self, drawn: int) -> None:
        forced = self._gradatim_forced_seed
        self._gradatim_base_seed = drawn if forced is None else forced
        undo, self._gradatim_undo = self._gradatim_undo, None
        if undo is not None:
            undo[0].set_state(undo[1])

    def __next__(self) -> Any:
        run = self._gradatim_run
        try:
            data = super().__next__()  # type: ignore[misc]
        except StopIteration:
            if run is not None:
                run.finished = True
            raise
        if run is not None:
            run.delivered(run.prefix)
        return data


class _SingleProcessIter(_Delivering, _tdl._SingleProcessDataLoaderIter):
    pass


class _MultiProcessingIter(_Delivering, _tdl._MultiProcessingDataLoaderIter):
    pass


def _takes_fast_path(dataset: Any, collate_fn: Any, auto_collation: bool) -> bool:
    """A ManifestDataset batched by torch's default collation, whose batches are the ones the
    fast path builds: torch's loader fetches a batch with ``__getitems__`` (which calls
    ``load_batch``), so a subclass (or instance) that overrides either, to add a field or a
    transform, takes the compatibility path, which calls it as torch's loader does."""
    if not isinstance(dataset, ManifestDataset) or not auto_collation:
        return False
    if collate_fn not in (None, tud.default_collate):
        return False
    return all(
        getattr(getattr(dataset, name, None), "__func__", None) is getattr(ManifestDataset, name)
        for name in ("__getitems__", "load_batch")
    )


def _own_generator(index_sampler: Any, loader_generator: Any) -> torch.Generator | None:
    """The sampler's own ``generator`` (torch's random samplers given one), which orders the
    passes as the loader's source does: the state records it. Found on the index sampler or
    what it wraps (``sampler`` / ``batch_sampler``: torch's ``BatchSampler``, accelerate's
    ``BatchSamplerShard``). None when the sampler draws from the loader's generator
    (``shuffle=True``) or the global RNG."""
    obj = index_sampler
    for _ in range(4):
        if obj is None:
            break
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator) and gen is not loader_generator:
            return gen
        inner = getattr(obj, "sampler", None)
        obj = inner if inner is not None else getattr(obj, "batch_sampler", None)
    return None


def _sampler_of(index_sampler: Any) -> Any:
    return getattr(index_sampler, "sampler", index_sampler)


def _gradatim_samplers() -> tuple[type, ...]:
    from gradatim.sampling import CurriculumSampler, MultiSourceSampler, NestedInterleaveSampler

    return (MultiSourceSampler, CurriculumSampler, NestedInterleaveSampler)


def _gradatim_sampler(index_sampler: Any) -> Any:
    """A gradatim sampler the index sampler reads in order (itself, or under torch's plain
    ``BatchSampler``): it is positioned from its own state instead of being fast-forwarded."""
    sampler = index_sampler.sampler if type(index_sampler) is tud.BatchSampler else index_sampler
    return sampler if isinstance(sampler, _gradatim_samplers()) else None
