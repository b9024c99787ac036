"""``gradatim.DataLoader``: ``torch.utils.data.DataLoader``'s signature and semantics, with a fast
path for :class:`ManifestDataset`.

- Any other dataset (map-style or iterable), or a custom ``collate_fn``, takes the compatibility
  path: the loader *is* a ``torch.utils.data.DataLoader`` built from the same arguments.
- A ``ManifestDataset`` takes the fast path: ``num_workers`` Rust threads (0: built inline, as
  torch's main-process loading) build whole batches into one buffer each; Python receives one
  dict per batch (``pixel_values`` ``[B, C, H, W]``, ``boxes`` ``[B, max_boxes, 4]`` and
  ``box_count``,
  ``text``/``prompt``/``target``, ``task``, ``source``, ``id``, ``index``, ``stage``, ``box_mask``).
  Up to ``max(1, num_workers) * prefetch_factor`` batches are in flight; the next batch's indices
  (and MedCLM stages) are drawn only when its job is submitted, so curriculum changes made during
  training apply from the next submitted batch on.

Argument validation is torch's own: the constructor builds the torch loader (which starts no
worker until iterated), so every error message is torch's. ``timeout`` bounds the wait for
each batch, with torch's error message. Deviations on the fast path, by design: workers are
threads, not processes (``multiprocessing_context`` is unused, ``persistent_workers`` changes
nothing since threads start in microseconds, ``worker_init_fn(i)``
is called once per worker in this process at the start of each epoch), and ``shuffle=True`` draws
each epoch's permutation from ``(base_seed, epoch)`` where ``base_seed`` comes from ``generator``
(or torch's global RNG) at construction - which is what makes ``state_dict()`` resumes exact.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from gradatim import _core
from gradatim.data.dataset import ManifestDataset, batch_to_torch
from gradatim.errors import InvalidArgumentError

__all__ = ["DataLoader"]

STATE_VERSION = 1
_MASK64 = (1 << 64) - 1


def _mix(a: int, b: int) -> int:
    return (a * 0x9E3779B97F4A7C15 + b) & _MASK64


class DataLoader:
    """Drop-in replacement for :class:`torch.utils.data.DataLoader` (same arguments)."""

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
    ) -> None:
        self._torch = tud.DataLoader(
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
        batched = batch_size is not None or batch_sampler is not None
        self._fast = isinstance(dataset, ManifestDataset) and collate_fn is None and batched
        self._own_shuffle = bool(shuffle) and sampler is None and batch_sampler is None
        # torch-style seeding: the generator (or the global RNG) decides, once
        draw = torch.empty((), dtype=torch.int64).random_(generator=generator)
        self._base_seed = int(draw.item())
        self._epoch = 0
        self._resume_batches = 0
        self._batches_done = 0
        self._active: int | None = None
        self._stats = _Stats()

    # -- torch's attributes --------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_torch":
            raise AttributeError(name)
        return getattr(self._torch, name)

    def __len__(self) -> int:
        return len(self._torch)

    @property
    def fast_path(self) -> bool:
        """True when batches are built by gradatim's Rust pipeline."""
        return self._fast

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        if not self._fast:
            return iter(self._torch)
        return self._iter_fast()

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next iteration (also forwarded to a sampler that has ``set_epoch``)."""
        if int(epoch) != self._epoch:
            self._resume_batches = 0
        self._epoch = int(epoch)

    def _index_batches(self, epoch: int, skip: int) -> Iterator[np.ndarray]:
        t = self._torch
        if self._own_shuffle or (t.batch_sampler is not None and _is_sequential(t.batch_sampler)):
            n = len(self.dataset)
            order = (
                np.random.default_rng([self._base_seed, epoch]).permutation(n)
                if self._own_shuffle
                else np.arange(n)
            )
            bs = int(t.batch_size)
            stop = (n // bs) * bs if t.drop_last else n
            for start in range(skip * bs, stop, bs):
                yield order[start : start + bs]
            return
        source = t.batch_sampler
        sampler = getattr(source, "sampler", source)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        restored = hasattr(sampler, "load_state_dict") and skip > 0
        it = iter(source)
        if not restored:
            for _ in range(skip):  # deterministic samplers only; see state_dict()
                next(it, None)
        for batch in it:
            yield np.asarray(batch, dtype=np.int64)

    def _iter_fast(self) -> Iterator[dict[str, Any]]:
        t = self._torch
        ds: ManifestDataset = t.dataset
        epoch, skip = self._epoch, self._resume_batches
        self._resume_batches = 0
        self._active, self._batches_done = epoch, skip
        threads = int(t.num_workers)
        window = max(1, threads) * int(t.prefetch_factor or 2)
        stream = _core.Stream(ds._core, epoch, _mix(ds.seed, self._base_seed), threads)
        if t.worker_init_fn is not None:
            for worker in range(threads):
                t.worker_init_fn(worker)
        pin = _pinner(t.pin_memory, t.pin_memory_device)
        batches = self._index_batches(epoch, skip)
        submitted = done = skip
        stats = self._stats.start(epoch)

        def submit() -> bool:
            nonlocal submitted
            idx = next(batches, None)
            if idx is None:
                return False
            stream.submit(submitted, idx.tolist(), ds.stage_codes(idx, epoch))
            submitted += 1
            return True

        try:
            while submitted - done < window and submit():
                pass
            while done < submitted:
                t0 = time.perf_counter()
                got = stream.next(done if t.in_order else None, float(t.timeout))
                stats.stall += time.perf_counter() - t0
                if got is None:  # pragma: no cover - every submitted job yields a result
                    break
                submit()
                done += 1
                self._batches_done = done
                batch = got[1]
                stats.add(batch)
                yield batch_to_torch(batch, pin)
            self._epoch = epoch + 1
            self._active = None
        finally:
            stream.close()
            stats.finish()

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state from which :meth:`load_state_dict` continues *exactly*: the same
        remaining batches with the same augmentations (and the sampler's and stage scheduler's
        state). Exactness needs ``shuffle``, sequential order, or a sampler with
        ``state_dict``/``load_state_dict`` (gradatim's samplers)."""
        if not self._fast:
            raise InvalidArgumentError(
                "state_dict() needs the fast path (a ManifestDataset without a custom collate_fn)"
            )
        t = self._torch
        epoch = self._active if self._active is not None else self._epoch
        done = self._batches_done if self._active is not None else 0
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "epoch": epoch,
            "batches_done": done,
            "base_seed": self._base_seed,
            "sampler": None,
            "stages": None,
        }
        if not (self._own_shuffle or _is_sequential(t.batch_sampler)):
            sampler = getattr(t.batch_sampler, "sampler", t.batch_sampler)
            if not hasattr(sampler, "state_dict"):
                raise InvalidArgumentError(
                    f"state_dict(): {type(sampler).__name__} has no state_dict(), so its sequence "
                    "cannot be resumed exactly; use shuffle=True or a gradatim sampler"
                )
            s = sampler.state_dict()
            if "position" in s:  # the sampler ran ahead by the prefetch window: rewind
                s["epoch"], s["position"] = epoch, done * int(t.batch_size or 1)
            state["sampler"] = s
        stages = t.dataset.stages
        if hasattr(stages, "state_dict"):
            state["stages"] = stages.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the next iteration yields the remaining batches."""
        if not self._fast:
            raise InvalidArgumentError("load_state_dict() needs the fast path (a ManifestDataset)")
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise InvalidArgumentError(f"not a gradatim DataLoader state (version {STATE_VERSION})")
        self._epoch = int(state["epoch"])
        self._resume_batches = int(state["batches_done"])
        self._base_seed = int(state["base_seed"])
        self._active = None
        if state.get("sampler") is not None:
            t = self._torch
            getattr(t.batch_sampler, "sampler", t.batch_sampler).load_state_dict(state["sampler"])
        if state.get("stages") is not None:
            self._torch.dataset.stages.load_state_dict(state["stages"])

    # -- progress -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Throughput of the current or last epoch: ``images_per_s`` (samples delivered per
        second of wall time), ``stall_s`` (time the consumer waited for batches), ``work_s``
        (worker time), ``batches``, ``samples``, ``skipped`` and ``skipped_samples``."""
        return self._stats.summary()


def _is_sequential(batch_sampler: Any) -> bool:
    return isinstance(batch_sampler, tud.BatchSampler) and isinstance(
        batch_sampler.sampler, tud.SequentialSampler
    )


def _pinner(pin_memory: bool, device: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if not pin_memory or not torch.cuda.is_available():
        return None
    return lambda t: t.pin_memory(device) if device else t.pin_memory()


class _Stats:
    def __init__(self) -> None:
        self.start(0)

    def start(self, epoch: int) -> _Stats:
        self.epoch, self.t0, self.t1 = epoch, time.perf_counter(), None
        self.batches = self.samples = 0
        self.stall = self.work = 0.0
        self.skipped: list[tuple[int, str]] = []
        return self

    def add(self, batch: dict[str, Any]) -> None:
        self.batches += 1
        self.samples += len(batch["index"])
        self.work += batch["work_ns"] * 1e-9
        self.skipped.extend(batch["skipped"])

    def finish(self) -> None:
        self.t1 = time.perf_counter()
        if self.skipped:
            warnings.warn(
                f"gradatim: {len(self.skipped)} sample(s) could not be loaded in epoch "
                f"{self.epoch} and were replaced (see loader.stats()['skipped_samples'])",
                RuntimeWarning,
                stacklevel=3,
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
            "skipped_samples": self.skipped[:100],
        }
