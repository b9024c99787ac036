"""The fast path's iterator: index batches from the loader's (batch) sampler, built by Rust worker
threads (``rust/core/src/data/stream.rs``) into one buffer each.

Like torch's iterators it snapshots the loader's settings when created: with workers it starts
them and fills the prefetch window at once (torch's multiprocessing iterator draws the sampler's
first indices in its constructor); without workers each batch is drawn and built when asked for
(torch's single-process iterator), never ahead. Up to ``num_workers * prefetch_factor`` batches
are in flight. Curriculum changes land at the consumed position (the samples delivered): a
gradatim sampler's weight change asked for inside the window cancels the jobs in flight from it
on and draws them again (:meth:`FastIter.redraw`), and a MedCLM stage update rebuilds every job
in flight with the new stages, so what is delivered does not depend on the window.
"""

from __future__ import annotations

import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradatim import _core
from gradatim.data.dataset import batch_fields, batch_to_torch
from gradatim.data.epoch_run import EpochRun
from gradatim.data.worker_init import call_worker_init

if TYPE_CHECKING:
    from gradatim.data.loader import DataLoader

__all__ = ["FastIter", "Stats"]

_MASK64 = (1 << 64) - 1


def mix_seed(dataset_seed: int, base_seed: int) -> int:
    """The augmentation seed of an epoch: the dataset's seed and the iterator's base seed."""
    return (dataset_seed * 0x9E3779B97F4A7C15 + (base_seed & _MASK64)) & _MASK64


class FastIter(Iterator[dict[str, Any]]):
    """One epoch of the fast path."""

    def __init__(self, loader: DataLoader, run: EpochRun, init_workers: bool) -> None:
        threads = int(loader.num_workers)
        if threads > 0 and int(loader.prefetch_factor) <= 0:
            raise AssertionError(
                "prefetch_factor must be greater than 0 for MultiProcessingDataLoaderIter"
            )
        self._run = run
        self._dataset = loader.dataset
        self._in_order = bool(loader.in_order)
        self._timeout = float(loader.timeout)
        self._pin = _pinner(loader.pin_memory, loader.pin_memory_device)
        self._device = loader.device
        self._window = threads * int(loader.prefetch_factor) if threads > 0 else 1
        self._stats = loader._stats.start(run.epoch)
        self._items = run.items()
        self._exhausted = False
        self._skip = frozenset(run.ahead)  # delivered out of order before a resume
        self._submitted = self._next_number = run.skip
        self._pending = 0
        self._threads = threads
        # jobs in flight: batch number -> (job ticket, indices); a ticket is never reused, so a
        # cancelled job still being built cannot be taken for its redrawn batch
        self._flight: dict[int, tuple[int, list[int]]] = {}
        self._number_of: dict[int, int] = {}
        self._tickets = 0
        self._stages_seen = self._stage_generation()
        # a gradatim sampler read in order: it asks this iterator for the consumed position and
        # to redraw what it drew past a weight change
        self._sampler = _ordered_sampler(run)
        self._origin: int | None = None  # the sampler pass's start position, once drawn
        self._token: object = None  # that pass's token (another pass makes this one stale)
        if self._sampler is not None:
            self._sampler._consumer = weakref.ref(self)
        base_seed = run.start()  # drawn by the loader already; kept
        self._stream = _core.Stream(
            self._dataset._core, run.epoch, mix_seed(self._dataset.seed, base_seed), threads
        )
        if threads > 0:
            if init_workers and loader.worker_init_fn is not None:
                call_worker_init(loader.worker_init_fn, threads, base_seed, self._dataset)
            self._fill()

    def _submit(self) -> bool:
        """Draw the next batch's indices and hand the job to the workers."""
        while not self._exhausted:
            item = next(self._items, None)
            if item is None:
                self._exhausted = True
                break
            number = self._submitted
            self._submitted += 1
            if number in self._skip:
                continue
            if self._sampler is not None and self._token is None:
                self._token = self._sampler._pass.token
                if self._origin is None:
                    self._origin = self._sampler.pass_origin[1]
            self._send(number, np.asarray(item, dtype=np.int64).tolist())
            self._pending += 1
            return True
        return False

    def _send(self, number: int, idx: list[int]) -> None:
        """Hand batch ``number`` to the workers under a new ticket, with its stages as now."""
        stages = self._dataset.stage_codes(np.asarray(idx, dtype=np.int64), self._run.epoch)
        ticket = self._tickets
        self._tickets += 1
        self._stream.submit(ticket, idx, stages)
        self._flight[number] = (ticket, idx)
        self._number_of[ticket] = number

    def _withdraw(self, numbers: list[int]) -> None:
        """Cancel the jobs of batches ``numbers`` (in flight)."""
        tickets = [self._flight.pop(n)[0] for n in numbers]
        for t in tickets:
            del self._number_of[t]
        self._stream.cancel(tickets)
        self._pending -= len(numbers)

    def _stage_generation(self) -> Any:
        return getattr(getattr(self._dataset, "stages", None), "generation", None)

    def consumed_position(self) -> int | None:
        """Position, in the sampler pass's epoch, of the next sample the consumer receives: past
        every batch delivered (with ``in_order=False`` past the furthest one); ``None`` before
        the pass drew anything or after this iterator finished."""
        run = self._run
        cum = run._cum
        if self._origin is None or run.finished or cum is None or self._sampler is None:
            return None
        if self._sampler._pass.token is not self._token:  # the sampler is read by another pass
            return None
        furthest = max([run.prefix, *(n + 1 for n in run.ahead)])
        return self._origin + cum[min(furthest - run.skip, len(cum) - 1)]

    def redraw(self, position: int) -> None:
        """The sampler's indices from ``position`` on changed (a weight change at the consumed
        position): the batches in flight that reach it, and every later one, are cancelled, the
        sampler restarts at the first one's start, and they are drawn again, numbered as before."""
        run, cum = self._run, self._run._cum
        if self._origin is None or run.finished or cum is None or self._sampler is None:
            return
        ends = {n: self._origin + cum[n - run.skip + 1] for n in self._flight}
        hit = [n for n, end in ends.items() if end > position]
        if not hit:
            return
        first = min(hit)
        self._withdraw(sorted(n for n in self._flight if n >= first))
        self._sampler._redraw_from(self._origin + cum[first - run.skip])
        self._token = None  # the redrawn pass's, recorded at its first draw
        self._items = run.redraw(first)
        self._submitted, self._exhausted = first, False
        if self._threads > 0:
            self._fill()

    def _restage(self) -> None:
        """The stage scheduler changed: rebuild every batch in flight with its new stages."""
        numbers = sorted(self._flight)
        jobs = [self._flight[n][1] for n in numbers]
        self._withdraw(numbers)
        for n, idx in zip(numbers, jobs, strict=True):
            self._send(n, idx)
            self._pending += 1

    def _fill(self) -> None:
        while self._pending < self._window and self._submit():
            pass

    def __iter__(self) -> FastIter:
        return self

    def __next__(self) -> dict[str, Any]:
        generation = self._stage_generation()
        if generation != self._stages_seen:
            self._stages_seen = generation
            self._restage()
        self._fill()
        if self._pending == 0:
            self._finish()
            raise StopIteration
        while self._in_order and self._next_number in self._skip:
            self._next_number += 1
        t0 = time.perf_counter()
        want = self._flight[self._next_number][0] if self._in_order else None
        got = self._stream.next(want, self._timeout)
        self._stats.stall += time.perf_counter() - t0
        if got is None:  # pragma: no cover - every submitted job yields a result
            self._finish()
            raise StopIteration
        ticket, batch = got
        number = self._number_of.pop(ticket)
        del self._flight[number]
        self._pending -= 1
        if self._in_order:
            self._next_number += 1
        self._run.delivered(number)
        self._stats.add(batch)
        if self._threads > 0:  # without workers the next batch is drawn when asked for
            self._fill()
        out = batch_to_torch(batch_fields(batch), self._pin)  # torch's loader's keys
        if self._device is not None:
            out = {
                k: v.to(self._device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in out.items()
            }
        return out

    def _finish(self) -> None:
        if not self._run.finished:
            self._run.finished = True
            self._stream.close()
            self._stats.finish()

    def __len__(self) -> int:
        return len(self._run.index_sampler)  # type: ignore[arg-type]


def _ordered_sampler(run: EpochRun) -> Any:
    """The gradatim sampler the run's index sampler reads in order (itself, or under torch's
    plain ``BatchSampler``), when it can redraw from a position; else ``None``."""
    if not run.stateful:
        return None
    index = run.index_sampler
    sampler = index.sampler if type(index) is torch.utils.data.BatchSampler else index
    return sampler if callable(getattr(sampler, "_redraw_from", None)) else None


def _pinner(pin_memory: bool, device: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if not pin_memory or not torch.cuda.is_available():
        return None
    return lambda t: t.pin_memory(device) if device else t.pin_memory()


class Stats:
    """Throughput of the current or last epoch (``DataLoader.stats()``)."""

    def __init__(self) -> None:
        self.start(0)

    def start(self, epoch: int) -> Stats:
        self.epoch, self.t0, self.t1 = epoch, time.perf_counter(), None
        self.batches = self.samples = 0
        self.stall = self.work = 0.0
        self.skipped: dict[int, str] = {}  # each failing sample once, with its own error
        return self

    def add(self, batch: dict[str, Any]) -> None:
        self.batches += 1
        self.samples += len(batch["index"])
        self.work += batch["work_ns"] * 1e-9
        for index, reason in batch["skipped"]:
            self.skipped.setdefault(int(index), reason)

    def finish(self) -> None:
        self.t1 = time.perf_counter()
        if self.skipped:
            warnings.warn(
                f"gradatim: {len(self.skipped)} sample(s) could not be loaded in epoch "
                f"{self.epoch} and were replaced by other samples (see "
                "loader.stats()['skipped_samples'])",
                RuntimeWarning,
                stacklevel=4,
            )

    def summary(self) -> dict[str, Any]:
        wall = (self.t1 or time.perf_counter()) - self.t0
        return {
            "epoch": self.epoch,
            "batches": self.batches,
            "samples": self.samples,
            "wall_s": wall,
            "images_per_s": self.samples / wall if wall > 0 else 0.0,
            "stall_s": self.stall,
            "work_s": self.work,
            "skipped": len(self.skipped),
            "skipped_samples": list(self.skipped.items())[:100],
        }
