"""The fast path's iterator: index batches from the loader's (batch) sampler, built by Rust worker
threads (``rust/core/src/data/stream.rs``) into one buffer each.

Like torch's iterators it snapshots the loader's settings when created: with workers it starts
them and fills the prefetch window at once (torch's multiprocessing iterator draws the sampler's
first indices in its constructor); without workers each batch is drawn and built when asked for
(torch's single-process iterator). Up to ``num_workers * prefetch_factor`` batches are in flight;
a batch's indices and MedCLM stages are drawn when its job is submitted, so curriculum changes
reach the batches submitted after them.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradatim import _core
from gradatim.data.dataset import batch_to_torch
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
            idx = np.asarray(item, dtype=np.int64)
            stages = self._dataset.stage_codes(idx, self._run.epoch)
            self._stream.submit(number, idx.tolist(), stages)
            self._pending += 1
            return True
        return False

    def _fill(self) -> None:
        while self._pending < self._window and self._submit():
            pass

    def __iter__(self) -> FastIter:
        return self

    def __next__(self) -> dict[str, Any]:
        self._fill()
        if self._pending == 0:
            self._finish()
            raise StopIteration
        while self._in_order and self._next_number in self._skip:
            self._next_number += 1
        t0 = time.perf_counter()
        got = self._stream.next(self._next_number if self._in_order else None, self._timeout)
        self._stats.stall += time.perf_counter() - t0
        if got is None:  # pragma: no cover - every submitted job yields a result
            self._finish()
            raise StopIteration
        number, batch = got
        self._pending -= 1
        if self._in_order:
            self._next_number += 1
        self._run.delivered(number)
        self._stats.add(batch)
        self._fill()
        out = batch_to_torch(batch, self._pin)
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
