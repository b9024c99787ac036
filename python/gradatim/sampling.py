"""Samplers: which global indices a rank reads, in which order. Indices are generated in Rust
(``rust/core/src/sampling``) in chunks, deterministically from ``(seed, epoch, position)``.

- :class:`MultiSourceSampler`: weighted draws over the concatenation of several sources (natural,
  uniform or curriculum weights), weights changeable at any step;
- :class:`CurriculumSampler`: shuffles and shards the subset a curriculum picks for each epoch
  (RRGCL, pacing baselines);
- :class:`NestedInterleaveSampler`: CURE's training order itself: its ``SequentialSampler`` over
  nested ``WeightedCompositeDataset`` s (sources, categories, sub-categories);
- :func:`interleave_pattern`: CURE's deterministic slot pattern.

The samplers are ``torch.utils.data.Sampler`` subclasses (when torch is installed) and work with a
plain ``torch.utils.data.DataLoader``. Distributed sharding follows
``torch.utils.data.DistributedSampler``: every rank computes the same global sequence, pads it by
repeating its start up to a multiple of ``world_size`` (or truncates it with ``drop_last``) and
takes positions ``rank, rank + world_size, ...`` (``NestedInterleaveSampler``'s order has no end:
rank ``r`` reads its positions ``t x world_size + r``). ``state_dict()`` is plain JSON-able data;
``load_state_dict()`` continues the exact sequence. See ``docs/curriculum.md``.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core
from gradatim.errors import InvalidArgumentError

try:  # torch is optional: without it the samplers are plain iterables with the same protocol
    from torch.utils.data import Sampler as _SamplerBase
except ImportError:  # pragma: no cover - exercised only where torch is absent

    class _SamplerBase:  # type: ignore[no-redef]
        """Stand-in for ``torch.utils.data.Sampler`` when torch is not installed."""


__all__ = [
    "MultiSourceSampler",
    "NestedInterleaveSampler",
    "CurriculumSampler",
    "interleave_pattern",
    "interleave_slots",
]

STATE_VERSION = 1
DEFAULT_CHUNK = 1 << 16
_U64 = 1 << 64


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    return int(seed) % _U64  # like torch.Generator.manual_seed, any int is accepted


def _int_arg(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"{what}: must be >= {minimum}, got {value}")
    return int(value)


def _sizes(sizes: ArrayLike) -> list[int]:
    arr = np.asarray(sizes)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidArgumentError(
            f"sizes: expected a non-empty 1-D sequence of ints, got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InvalidArgumentError(f"sizes: expected integers, got dtype {arr.dtype}")
    if np.any(arr < 0):
        bad = int(np.flatnonzero(arr < 0)[0])
        raise InvalidArgumentError(f"sizes: source {bad} has a negative size ({arr[bad]})")
    return [int(x) for x in arr]


def _weights(weights: ArrayLike) -> list[float]:
    try:
        arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"weights: expected a 1-D sequence of numbers ({e})") from None
    if arr.ndim != 1:
        raise InvalidArgumentError(
            f"weights: expected a 1-D sequence of numbers, got shape {arr.shape}"
        )
    return [float(x) for x in arr]


def interleave_pattern(weights: ArrayLike) -> NDArray[np.int64]:
    """One period of CURE's deterministic interleave: source ids, each source ``i`` appearing
    ``max(int(20 * w_i / w_min), 1)`` times (weights normalised first; zero weights get no slot),
    spread evenly (see ``docs/curriculum.md``). Equal weights give a plain round robin."""
    return _core.interleave_pattern(_weights(weights))


def interleave_slots(weights: ArrayLike) -> list[int]:
    """Slots per source in one period of :func:`interleave_pattern`."""
    return list(_core.interleave_slots(_weights(weights)))


def _members(members: Sequence[ArrayLike], sizes: ArrayLike | None) -> list[NDArray[np.int64]]:
    out = [np.asarray(m, dtype=np.int64).reshape(-1) for m in members]
    if not out:
        raise InvalidArgumentError("members: at least one source is required")
    table = np.concatenate(out)
    if table.size and table.min() < 0:
        raise InvalidArgumentError(f"members: negative index {int(table.min())}")
    if np.unique(table).size != table.size:
        raise InvalidArgumentError("members: an index belongs to more than one source (or twice)")
    if sizes is not None and _sizes(sizes) != [len(m) for m in out]:
        raise InvalidArgumentError("sizes: must equal the members' lengths (or be None)")
    return out


def _ranges(sizes: list[int]) -> Iterator[tuple[int, int]]:
    start = 0
    for n in sizes:
        yield start, n
        start += n


def _masked(weights: Sequence[float], sizes: Sequence[int]) -> list[float]:
    return [float(w) if n > 0 else 0.0 for w, n in zip(weights, sizes, strict=True)]


class _PassTracker:
    """Bookkeeping of one pass over a list of indices, cheap per item: the pass yields from a
    list iterator, and the position is read back from that iterator's ``__length_hint__``."""

    def __init__(self, origin: tuple[int, int] | None = None) -> None:
        self.epoch: int | None = None  # epoch of the active pass, None when no pass is active
        # (epoch, position) where that pass started; a pass redrawn from a position keeps the
        # origin of the pass it replaces (``held``, until it starts)
        self.origin: tuple[int, int] | None = origin
        self.held = origin
        self.chunk: list[int] = []
        self.chunk_start = 0
        self.it: Iterator[int] = iter(self.chunk)
        self.token: object = None

    def consumed(self) -> int:
        return self.chunk_start + len(self.chunk) - self.it.__length_hint__()  # type: ignore[attr-defined]

    def load(self, chunk: list[int], start: int) -> Iterator[int]:
        self.chunk, self.chunk_start = chunk, start
        self.it = iter(chunk)
        return self.it


def _next_pass(sampler: MultiSourceSampler | CurriculumSampler) -> tuple[int, int]:
    """Epoch and start position of a new pass. A pass that was started and left unfinished
    (``break``) counts as an epoch, so the next pass is the next epoch, as a new iterator over
    ``RandomSampler`` reshuffles; ``set_epoch`` and ``load_state_dict`` say otherwise."""
    track = sampler._pass
    if track.epoch is not None:
        epoch, pos = track.epoch + 1, 0
    else:
        epoch, pos = sampler._epoch, sampler._resume
    sampler._epoch, sampler._resume = epoch, 0
    return epoch, pos


def _start(track: _PassTracker, epoch: int, pos: int) -> object:
    """Start a pass over ``track``: its token, and its origin (kept when the pass is a redraw)."""
    token = object()
    track.token, track.epoch = token, epoch
    track.origin, track.held = track.held or (epoch, pos), None
    return token


class _Consumer(Protocol):
    """What reads a sampler's pass and delivers it to the training loop, batches ahead
    (``gradatim.DataLoader``'s iterator): a weight change is placed at what it delivered, and
    what it drew past the change is drawn again."""

    def consumed_position(self) -> int | None:
        """Position in the pass's epoch of the next sample the training loop will receive (past
        everything delivered, in or out of order); ``None`` when not reading this pass."""

    def redraw(self, position: int) -> None:
        """The indices from ``position`` (in the pass's epoch) on changed: what was drawn from
        there and not delivered is cancelled, and drawn again from the sampler."""


def _handed_out(sampler: MultiSourceSampler | NestedInterleaveSampler) -> int:
    """The step of the next index the sampler's pass will hand out."""
    if sampler._pass.epoch is not None:
        return sampler._pass.epoch * len(sampler) + sampler._pass.consumed()
    return sampler._epoch * len(sampler) + sampler._resume


def _reader(sampler: MultiSourceSampler | NestedInterleaveSampler) -> tuple[Any, int] | None:
    """The consumer reading the sampler's current (or just finished) pass, and the step of the
    next sample it delivers; ``None`` without one."""
    ref = sampler._consumer
    consumer = ref() if ref is not None else None
    origin = sampler._pass.origin
    if consumer is None or origin is None:
        return None
    pos = consumer.consumed_position()
    if pos is None:
        return None
    return consumer, origin[0] * len(sampler) + pos


def _now(sampler: MultiSourceSampler | NestedInterleaveSampler) -> int:
    """The step of the next sample the training loop receives: the consumer's position when a
    ``gradatim.DataLoader`` reads the sampler, else the next index the sampler hands out."""
    got = _reader(sampler)
    return got[1] if got is not None else _handed_out(sampler)


def _changed_from(sampler: MultiSourceSampler | NestedInterleaveSampler, at: int) -> None:
    """The indices from step ``at`` on changed: the not yet handed out rest of the current chunk
    is cut (the pass regenerates it), and a consumer that drew past ``at`` draws again."""
    track = sampler._pass
    if track.epoch is not None:
        cut = at - track.epoch * len(sampler) - track.chunk_start
        if 0 <= cut < len(track.chunk):
            del track.chunk[max(cut, track.consumed() - track.chunk_start) :]
    got = _reader(sampler)
    if got is not None and at < _handed_out(sampler):
        got[0].redraw(at - sampler._pass.origin[0] * len(sampler))  # type: ignore[index]


def _redraw_from(sampler: MultiSourceSampler | NestedInterleaveSampler, position: int) -> None:
    """Make the next pass start at ``position`` of the current pass's epoch, keeping that
    pass's origin (the consumer counts delivered samples from it): the consumer's redraw."""
    origin = sampler._pass.origin
    if origin is None:
        raise InvalidArgumentError("redraw: the sampler has no pass to redraw")
    sampler._pass = _PassTracker(origin)
    sampler._epoch, sampler._resume = origin[0], _int_arg(position, "position")


def _set_epoch(sampler: MultiSourceSampler | CurriculumSampler, epoch: int) -> None:
    if epoch != sampler._epoch or sampler._pass.epoch is not None:
        sampler._resume = 0
    sampler._epoch = epoch
    sampler._pass = _PassTracker()


class MultiSourceSampler(_SamplerBase):  # type: ignore[type-arg,misc]
    """Weighted sampler over the concatenation of several sources, yielding global indices
    (source ``i`` occupies ``offsets[i] .. offsets[i + 1]``).

    Args:
        sizes: number of samples of each source.
        weights: relative weight of each source (non-negative, finite, not all zero; they need not
            sum to 1). A source with weight 0 is never drawn.
        num_samples: draws per epoch over all ranks (default: the total size of the sources).
        seed: base seed; epoch ``e`` uses the stream ``(seed, e)``.
        replacement: with replacement, the element inside the chosen source is uniform. Without,
            each source is read along a fresh random permutation and, when exhausted, starts a new
            one, so weights keep their meaning even when they ask for more than a source holds.
        mode: ``"random"`` draws the source of every position independently with the weights;
            ``"interleave"`` follows CURE's deterministic slot pattern
            (:func:`interleave_pattern`), restarted at each epoch and weight change (CURE's own
            order, which does not restart, is :class:`NestedInterleaveSampler`); ``"quota"``
            gives each source exactly its
            largest-remainder share of ``weights x num_samples`` positions, shuffled per epoch:
            with weights
            proportional to the sizes and ``replacement=False`` an epoch is every sample exactly
            once, as ``DistributedSampler`` over a ``ConcatDataset``.
        rank, world_size, drop_last: ``DistributedSampler`` sharding.
        chunk_size: indices generated per call into Rust.

    Steps: a weight change applies from a *step*, the per-rank position counted from the start of
    epoch 0 (``epoch * len(self) + position``). ``set_weights`` logs ``(step, weights)``; the log
    is part of ``state_dict()``, so a resumed run switches at the same step. The indices of the
    current chunk not handed out yet are regenerated, and a ``gradatim.DataLoader`` reading the
    sampler draws again the batches it prefetched past the step, so the switch lands at the step
    asked for (at the earliest, the consumed position) whatever the loader prefetched.

    Epochs: like ``DistributedSampler``, ``set_epoch(e)`` picks the epoch; when a pass runs to its
    end without ``set_epoch``, the next pass uses the next epoch (as ``RandomSampler`` would
    reshuffle), so calling ``set_epoch`` every epoch is optional but recommended.

    Sources anywhere in the data set: with ``members`` (one array of data-set indices per
    source, as :meth:`from_dataset` builds them from the records' ``source`` names), source ``i``
    is ``members[i]`` instead of a contiguous range, and the sampler yields those data-set indices.

    Composed with an epoch curriculum: with ``schedule`` (RRGCL's class-level epoch subsets, a
    pacing baseline; anything with ``epoch_indices(t)``), epoch ``e`` draws each source's samples
    from its members that ``schedule.epoch_indices(e + schedule.first_t)`` names, the sources
    weighted as always (CURE's weights across sources, RRGCL's subset inside each). Epochs keep
    ``num_samples`` positions, so the weight log's steps mean the same in every epoch; a source
    without a sample in an epoch's subset is not drawn in that epoch. One sampler, one state.
    """

    def __init__(
        self,
        sizes: ArrayLike,
        weights: ArrayLike,
        num_samples: int | None = None,
        *,
        seed: int = 0,
        replacement: bool = True,
        mode: str = "random",
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        chunk_size: int = DEFAULT_CHUNK,
        members: Sequence[ArrayLike] | None = None,
        schedule: EpochSchedule | None = None,
    ) -> None:
        super().__init__()
        self._members = None if members is None else _members(members, sizes)
        if members is not None:
            sizes = [len(m) for m in self._members]  # type: ignore[union-attr]
        self._sizes = _sizes(sizes)
        if schedule is not None and not callable(getattr(schedule, "epoch_indices", None)):
            raise TypeError("schedule: expected an object with an epoch_indices(t) method")
        if schedule is not None and self._members is None:
            self._members = [np.arange(o, o + n, dtype=np.int64) for o, n in _ranges(self._sizes)]
        self._schedule = schedule
        self._table = None if self._members is None else np.concatenate(self._members)
        self._views: dict[int, tuple[_core.MultiSource, NDArray[np.int64]]] = {}
        self._num_samples_arg = (
            None if num_samples is None else _int_arg(num_samples, "num_samples", 1)
        )
        self._seed = _seed(seed)
        self._replacement = bool(replacement)
        self._mode = str(mode)
        self._rank = _int_arg(rank, "rank")
        self._world_size = _int_arg(world_size, "world_size", 1)
        self._drop_last = bool(drop_last)
        self._chunk_size = _int_arg(chunk_size, "chunk_size", 1)
        self._core = self._make_core(self._seed, _weights(weights))
        self._offsets = np.asarray(self._core.offsets, dtype=np.int64)
        self._epoch = 0
        self._resume = 0
        self._pass = _PassTracker()
        self._consumer: weakref.ReferenceType[Any] | None = None  # a loader's iterator

    @classmethod
    def from_hierarchy(cls, sizes: dict[str, dict[str, int]], **kwargs: Any) -> MultiSourceSampler:
        """A sampler over the leaves ``(source, category)`` of ``{source: {category: size}}``,
        in that order (the dataset's records grouped accordingly), uniform at both levels:
        ``P(source) x P(category | source)``. :class:`gradatim.curriculum.TwoLevelCurriculum`
        re-weights it; :attr:`hierarchy` gives the structure back."""
        if not sizes or any(not cats for cats in sizes.values()):
            raise InvalidArgumentError("sizes: expected {source: {category: size}}, none empty")
        leaf_sizes = [int(n) for cats in sizes.values() for n in cats.values()]
        weights = [1.0 / len(sizes) / len(cats) for cats in sizes.values() for _ in cats]
        sampler = cls(leaf_sizes, weights, **kwargs)
        sampler._hierarchy = {str(s): [str(c) for c in cats] for s, cats in sizes.items()}
        return sampler

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        weights: Mapping[str, float],
        *,
        categories: str | Sequence[str] | None = None,
        keep: ArrayLike | None = None,
        **kwargs: Any,
    ) -> MultiSourceSampler:
        """A sampler over ``dataset``'s records grouped by their ``source`` name, weighted by name
        (``{"mimic": 0.7, "vindr": 0.3}``; sources in this order), wherever the records of a source
        lie in the data set. Every source of the data set needs a weight (0 leaves it out) and
        every named source must exist, so a weight cannot land on the wrong records.

        ``categories`` (a column name such as ``"task"``, or one label per record) splits each
        source into categories for :class:`gradatim.curriculum.TwoLevelCurriculum`: leaves
        ``(source, category)``, categories in order of first appearance, the source's weight
        shared equally among them (:attr:`hierarchy` gives the structure). Other keyword
        arguments are the constructor's (``schedule=`` composes an epoch curriculum).

        ``keep`` (a boolean mask or indices) restricts the sampler to those records, e.g. one task
        for CURE's first phase; the sources to name are then those of the kept records."""
        sources = _column(dataset, "source")
        kept = np.ones(len(sources), dtype=bool)
        if keep is not None:
            k = np.asarray(keep)
            kept = k.astype(bool) if k.dtype == bool else np.isin(np.arange(len(sources)), k)
            if kept.shape != (len(sources),) or not kept.any():
                raise InvalidArgumentError("keep: expected a non-empty mask or indices of records")
        names = [str(k) for k in weights]
        present = dict.fromkeys(s for s, k in zip(sources, kept.tolist(), strict=True) if k)
        missing = [s for s in present if s not in weights]
        if missing:
            raise InvalidArgumentError(
                f"weights: the data set's sources {missing} have no weight (give 0 to leave "
                f"one out); named: {names}"
            )
        absent = [n for n in names if n not in present]
        if absent:
            raise InvalidArgumentError(
                f"weights: sources {absent} are not in the data set (its sources: {list(present)})"
            )
        src = np.asarray(sources, dtype=object)
        src[~kept] = None
        if categories is None:
            members = [np.flatnonzero(src == n) for n in names]
            sampler = cls(None, [float(weights[n]) for n in names], members=members, **kwargs)
            sampler._source_names = names
            return sampler
        cats = _column(dataset, categories) if isinstance(categories, str) else list(categories)
        if len(cats) != len(sources):
            raise InvalidArgumentError(
                f"categories: expected one per record ({len(sources)}), got {len(cats)}"
            )
        cat = np.asarray([str(c) for c in cats], dtype=object)
        hierarchy: dict[str, list[str]] = {}
        members, leaf_weights = [], []
        for n in names:
            rows = np.flatnonzero(src == n)
            order = list(dict.fromkeys(cat[rows].tolist()))
            hierarchy[n] = order
            for c in order:
                members.append(rows[cat[rows] == c])
                leaf_weights.append(float(weights[n]) / len(order))
        sampler = cls(None, leaf_weights, members=members, **kwargs)
        sampler._hierarchy = hierarchy
        sampler._source_names = names
        return sampler

    @property
    def source_names(self) -> list[str] | None:
        """The sources' names, in the sampler's order, for a sampler made by
        :meth:`from_dataset` (``None`` otherwise): what its weights belong to."""
        names = getattr(self, "_source_names", None)
        return None if names is None else list(names)

    @property
    def hierarchy(self) -> dict[str, list[str]] | None:
        """``{source: [category, ...]}`` for a sampler made by :meth:`from_hierarchy`."""
        h = getattr(self, "_hierarchy", None)
        return None if h is None else {s: list(c) for s, c in h.items()}

    def _make_core(
        self, seed: int, weights: list[float], sizes: list[int] | None = None
    ) -> _core.MultiSource:
        return _core.MultiSource(
            self._sizes if sizes is None else sizes,
            weights,
            self._num_samples_arg if sizes is None else int(self._core.num_samples),
            seed,
            self._replacement,
            self._mode,
            self._rank,
            self._world_size,
            self._drop_last,
        )

    def _view(self, epoch: int) -> tuple[_core.MultiSource, NDArray[np.int64] | None]:
        """The core drawing ``epoch`` and the table from its positions to data-set indices."""
        if self._schedule is None:
            return self._core, self._table
        view = self._views.get(epoch)
        if view is None:
            t = epoch + int(getattr(self._schedule, "first_t", 0))
            subset = np.asarray(self._schedule.epoch_indices(t), dtype=np.int64)
            members = [m[np.isin(m, subset)] for m in self._members]  # type: ignore[union-attr]
            sizes = [len(m) for m in members]
            n = len(self)
            log = self.weight_log
            # the entries in force somewhere in this epoch, the first from position 0 on
            first = max(i for i, (s, _) in enumerate(log) if s <= epoch * n)
            used = [(s, _masked(w, sizes)) for s, w in log[first:] if s < (epoch + 1) * n]
            if not any(used[0][1]) or sum(sizes) == 0:
                raise InvalidArgumentError(
                    f"epoch {epoch}: the schedule's subset (t = {t}) holds no sample of a source "
                    f"with a positive weight"
                )
            core = self._make_core(self._seed, used[0][1], sizes)
            for s, w in used[1:]:
                if not any(w):
                    raise InvalidArgumentError(
                        f"epoch {epoch}: from step {s} no source with a positive weight has a "
                        f"sample in the schedule's subset (t = {t})"
                    )
                core.set_weights(s, w)
            view = (core, np.concatenate(members))
            self._views = {epoch: view}  # one epoch at a time
        return view

    def _draw(self, epoch: int, start: int, count: int) -> NDArray[np.int64]:
        core, table = self._view(epoch)
        chunk = core.chunk(epoch, start, count)
        return chunk if table is None else table[chunk]

    # -- torch Sampler protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        """Indices per rank and epoch: ``ceil(num_samples / world_size)``, or the floor with
        ``drop_last`` (``DistributedSampler.num_samples``)."""
        return int(self._core.local_len)

    def __iter__(self) -> Iterator[int]:
        epoch, pos = _next_pass(self)
        n = len(self)
        track = self._pass
        token = _start(track, epoch, pos)
        track.load([], pos)
        while pos < n:
            count = min(self._chunk_size, n - pos)
            chunk = self._draw(epoch, pos, count).tolist()
            yield from track.load(chunk, pos)
            if track.token is not token:  # a newer pass took over
                return
            pos = track.consumed()
        track.epoch = None
        self._epoch = epoch + 1

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass. Setting the epoch a restored state points at keeps the
        restored position (so the usual ``set_epoch`` at the top of a resumed epoch is safe)."""
        _set_epoch(self, _int_arg(epoch, "epoch"))

    @property
    def pass_origin(self) -> tuple[int, int] | None:
        """``(epoch, position)`` where the current (or last unfinished) pass started."""
        return self._pass.origin

    # -- weights ---------------------------------------------------------------------------------
    def _now(self) -> int:
        """The step of the next sample the consumer receives (see :meth:`set_weights`)."""
        return _now(self)

    def _redraw_from(self, position: int) -> None:
        _redraw_from(self, position)

    def set_weights(self, weights: ArrayLike, *, step: int | None = None) -> int:
        """Use ``weights`` from ``step`` on (default: the consumed position). The consumed
        position is the step of the next sample the training loop receives: read by a
        ``gradatim.DataLoader`` (fast path), the samples it delivered, whatever it prefetched
        (its batches in flight from ``step`` on are cancelled and drawn again, so they hold what
        a loader without prefetch would deliver); read directly or by torch's loaders, the next
        index this sampler hands out. An earlier step is moved to the consumed position (what
        was delivered stays delivered). Returns the step at which the weights apply. Raises
        ``ValueError`` for negative, NaN, infinite, all-zero or wrong-length weights."""
        now = self._now()
        at = now if step is None else max(_int_arg(step, "step"), now)
        self._core.set_weights(at, _weights(weights))
        self._views = {}
        _changed_from(self, at)
        return at

    @property
    def weights(self) -> list[float]:
        """The weights in force at the consumed position (see :meth:`set_weights`)."""
        return list(self._core.weights_at(self._now()))

    @property
    def weight_log(self) -> list[tuple[int, list[float]]]:
        """Every logged change as ``(step, weights)``, sorted by step; the first is at step 0."""
        return [(int(s), list(w)) for s, w in self._core.log()]

    # -- introspection ---------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def offsets(self) -> NDArray[np.int64]:
        """Global index of each source's first element; the last entry is the total size."""
        return self._offsets.copy()

    @property
    def num_samples(self) -> int:
        """Draws per epoch over all ranks (before padding / drop_last)."""
        return int(self._core.num_samples)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def seed(self) -> int:
        return self._seed

    def source_of(self, indices: ArrayLike) -> NDArray[np.int64]:
        """The source of each index this sampler yields."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._table is not None:
            pos = np.empty(int(self._table.max()) + 1, dtype=np.int64)
            pos[self._table] = np.arange(self._table.size)
            idx = pos[idx]
        return np.searchsorted(self._offsets, idx, side="right").astype(np.int64) - 1

    def epoch_indices(self, epoch: int | None = None) -> NDArray[np.int64]:
        """This rank's whole epoch as an int64 array (does not move the iteration state)."""
        e = self._epoch if epoch is None else _int_arg(epoch, "epoch")
        return self._draw(e, 0, len(self))

    def chunks(
        self, epoch: int | None = None, chunk_size: int | None = None
    ) -> Iterator[NDArray[np.int64]]:
        """This rank's epoch as consecutive int64 arrays of ``chunk_size`` indices (default: the
        sampler's), for loaders that batch indices without a Python step per index. Uses the
        weight log as it stands; does not move the iteration state."""
        e = self._epoch if epoch is None else _int_arg(epoch, "epoch")
        size = self._chunk_size if chunk_size is None else _int_arg(chunk_size, "chunk_size", 1)
        n = len(self)
        for start in range(0, n, size):
            yield self._draw(e, start, min(size, n - start))

    # -- state -----------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "sizes": list(self._sizes),
            "num_samples": self.num_samples,
            "replacement": self._replacement,
            "mode": self._mode,
            "world_size": self._world_size,
            "drop_last": self._drop_last,
            "members": None if self._table is None else _digest(self._table),
            "schedule": None if self._schedule is None else type(self._schedule).__name__,
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: configuration, seed, epoch, position (indices handed out in the
        epoch) and the weight log. A loader that prefetches may overwrite ``position`` with the
        number of indices the model consumed."""
        if self._pass.epoch is not None:
            epoch, position = self._pass.epoch, self._pass.consumed()
        else:
            epoch, position = self._epoch, self._resume
        if position >= len(self) > 0:
            epoch, position = epoch + 1, 0
        return {
            "version": STATE_VERSION,
            "kind": "MultiSourceSampler",
            **self._config(),
            "rank": self._rank,
            "seed": self._seed,
            "epoch": int(epoch),
            "position": int(position),
            "weight_log": [[s, w] for s, w in self.weight_log],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the sequence saved by :meth:`state_dict` (of this rank or any rank: the rank
        is this sampler's own). The configuration must match; seed and weight log are adopted."""
        if not isinstance(state, dict) or state.get("kind") != "MultiSourceSampler":
            raise InvalidArgumentError("state: not a MultiSourceSampler state_dict")
        if state.get("version") != STATE_VERSION:
            raise InvalidArgumentError(f"state: unsupported version {state.get('version')!r}")
        for key, mine in self._config().items():
            if state.get(key) != mine:
                raise InvalidArgumentError(
                    f"state: {key} is {state.get(key)!r} in the state but {mine!r} here"
                )
        log = state["weight_log"]
        if not log or int(log[0][0]) != 0:
            raise InvalidArgumentError("state: the weight log must start at step 0")
        seed = _seed(state["seed"])
        core = self._make_core(seed, _weights(log[0][1]))
        for step, w in log[1:]:
            core.set_weights(_int_arg(step, "state: weight_log step"), _weights(w))
        position = _int_arg(state["position"], "state: position")
        if position > int(core.local_len):
            raise InvalidArgumentError(f"state: position {position} is beyond the epoch")
        self._core, self._seed, self._views = core, seed, {}
        self._epoch = _int_arg(state["epoch"], "state: epoch")
        self._resume = position
        self._pass = _PassTracker()

    def __getstate__(self) -> dict[str, Any]:
        # copy / deepcopy support through the JSON-able state (never pickles the Rust object)
        return {"init": self._init_args(), "state": self.state_dict()}

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__init__(**st["init"])  # type: ignore[misc]
        self.load_state_dict(st["state"])

    def _init_args(self) -> dict[str, Any]:
        return {
            "sizes": list(self._sizes),
            "weights": self.weight_log[0][1],
            "num_samples": self._num_samples_arg,
            "seed": self._seed,
            "replacement": self._replacement,
            "mode": self._mode,
            "rank": self._rank,
            "world_size": self._world_size,
            "drop_last": self._drop_last,
            "chunk_size": self._chunk_size,
            "members": self._members,
            "schedule": self._schedule,
        }

    def __repr__(self) -> str:
        return (
            f"MultiSourceSampler(sizes={self._sizes}, weights={self.weights}, "
            f"num_samples={self.num_samples}, mode={self._mode!r}, "
            f"replacement={self._replacement}, rank={self._rank}, world_size={self._world_size})"
        )


NodePath = tuple[str, ...]


def _path(key: Any) -> NodePath:
    """A node of the tree: ``("source",)``, ``("source", "category")``, ... (a string is split
    on ``/``)."""
    if isinstance(key, str):
        return tuple(key.split("/"))
    return tuple(str(k) for k in key)


class _Plan:
    """One weight configuration of the tree, ready to map positions to leaves: per internal node
    its slot pattern over its children with positive weight, each child's slots per period, each
    slot's rank among its child's slots, and every node's length (CURE's
    ``WeightedCompositeDataset``: ``ceil(len(child) / slots)`` periods for its slowest child;
    a leaf's length is its size)."""

    def __init__(self, sampler: NestedInterleaveSampler, weights: Mapping[NodePath, float]) -> None:
        self.pattern: dict[NodePath, NDArray[np.int64]] = {}
        self.rank: dict[NodePath, NDArray[np.int64]] = {}
        self.slots: dict[NodePath, NDArray[np.int64]] = {}
        self.children: dict[NodePath, list[NodePath]] = {}
        self.length: dict[NodePath, int] = {}
        for leaf, size in zip(sampler._leaves, sampler._sizes, strict=True):
            self.length[leaf] = size
        for node in sorted(sampler._children, key=len, reverse=True):  # deepest first
            kids = [c for c in sampler._children[node] if weights[c] > 0]
            if not kids:
                raise InvalidArgumentError(
                    f"weights: node {'/'.join(node) or '(root)'} has no child with a positive "
                    "weight"
                )
            for c in kids:
                if self.length[c] == 0:
                    raise InvalidArgumentError(
                        f"weights: {'/'.join(c)} has a positive weight and no sample"
                    )
            pattern = np.asarray(_core.interleave_pattern([weights[c] for c in kids]), np.int64)
            slots = np.bincount(pattern, minlength=len(kids)).astype(np.int64)
            order = np.argsort(pattern, kind="stable")  # each child's slots, in slot order
            starts = np.concatenate([[0], np.cumsum(slots)[:-1]])
            rank = np.empty(len(pattern), dtype=np.int64)
            rank[order] = np.arange(len(pattern)) - starts[pattern[order]]
            periods = max(-(-self.length[c] // int(n)) for c, n in zip(kids, slots, strict=True))
            self.pattern[node], self.rank[node], self.slots[node] = pattern, rank, slots
            self.children[node] = kids
            self.length[node] = periods * len(pattern)


class NestedInterleaveSampler(_SamplerBase):  # type: ignore[type-arg,misc]
    """CURE's training order: its trainer reads its ``WeightedCompositeDataset`` through a
    ``SequentialSampler``, and a source with categories is itself such a composite over its
    categories (Chest ImaGenome's over prompt modes, each over anatomical locations)
    (PabloMessina/CURE 9365333, ``scripts/train_medgemma.py``,
    ``vlm_research_kit/data/dataset_helpers.py``, ``vlm_research_kit/data/datasets/*.py``).

    The data are a tree: sources, optionally categories inside them and sub-categories inside
    those; the leaves hold the samples (``members``, data-set indices). Every internal node
    interleaves its children with CURE's slot pattern for their weights
    (:func:`interleave_pattern`), and position ``i`` of a node reads its child ``c = pattern[i mod
    L]`` at that child's running count ``(i div L) x slots(c) + (slots of c before i mod L)``,
    taken modulo the child's length (a leaf's length is its size; a composite's is
    ``ceil(len(child) / slots(child))`` periods of its slowest child, times ``L``). The root is
    read at ``g mod len(root)``, ``g`` the sample's global position since the start of training:
    no restart at epochs or at a weight change (CURE's trainer resumes each cycle at its global
    step with the new weights). Inside a leaf, position ``j`` is element ``j mod size`` of the
    leaf's order: with ``shuffle=False`` the members as given (CURE's lists before its shuffles),
    else a permutation keyed by ``(seed, leaf, g div len(root), j div size)`` (CURE re-shuffles
    its lists at every validation cycle; gradatim at every pass through a leaf). So nothing
    inside a leaf repeats before all of it was read, within one pass over the root.

    Sharding: rank ``r`` of ``W`` reads global positions ``t W + r`` at its step ``t = epoch x
    len(self) + position``; ``len(self) = ceil(num_samples / W)`` (``num_samples`` defaults to
    the number of samples). Epochs only count steps: the order runs on across them.

    Weights: one per node (default 1: uniform at every level). :meth:`set_node_weights` changes
    some from a step on (per-rank steps, as :class:`MultiSourceSampler`); :meth:`set_weights`
    takes one weight per leaf and gives each node the sum of its leaves. The log of changes is
    part of :meth:`state_dict`.
    """

    def __init__(
        self,
        members: Sequence[ArrayLike],
        paths: Sequence[Any],
        weights: Mapping[Any, float] | None = None,
        *,
        num_samples: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__()
        self._members = _members(members, None)
        leaves = [_path(p) for p in paths]
        if len(leaves) != len(self._members):
            raise InvalidArgumentError("paths: expected one path per member array")
        if len(set(leaves)) != len(leaves) or any(not p for p in leaves):
            raise InvalidArgumentError("paths: expected distinct, non-empty leaf paths")
        children: dict[NodePath, list[NodePath]] = {}
        for leaf in leaves:
            for k in range(len(leaf)):
                kids = children.setdefault(leaf[:k], [])
                if leaf[: k + 1] not in kids:
                    kids.append(leaf[: k + 1])
        inner = [leaf for leaf in leaves if leaf in children]
        if inner:
            raise InvalidArgumentError(f"paths: {'/'.join(inner[0])} is a leaf and a node")
        self._leaves, self._children = leaves, children
        self._sizes = [len(m) for m in self._members]
        self._nodes = [n for n in children if n] + [leaf for leaf in leaves]
        self._table = np.concatenate(self._members)
        self._num_samples = (
            sum(self._sizes) if num_samples is None else _int_arg(num_samples, "num_samples", 1)
        )
        if self._num_samples < 1:
            raise InvalidArgumentError("members: no samples")
        self._seed = _seed(seed)
        self._shuffle = bool(shuffle)
        self._world_size = _int_arg(world_size, "world_size", 1)
        self._rank = _int_arg(rank, "rank")
        if self._rank >= self._world_size:
            raise InvalidArgumentError(
                f"rank: must be in [0, world_size = {self._world_size}), got {self._rank}"
            )
        self._chunk_size = _int_arg(chunk_size, "chunk_size", 1)
        self._log: list[tuple[int, dict[NodePath, float]]] = []
        self._plans: dict[int, _Plan] = {}
        self._perms: dict[int, tuple[int, NDArray[np.int64]]] = {}
        first = self._complete({n: 1.0 for n in self._nodes}, weights or {})
        self._log.append((0, first))
        self._plan(0)
        self._epoch = 0
        self._resume = 0
        self._pass = _PassTracker()
        self._consumer: weakref.ReferenceType[Any] | None = None  # a loader's iterator

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        weights: Mapping[str, float],
        *,
        categories: str | Sequence[str] | None = None,
        keep: ArrayLike | None = None,
        **kwargs: Any,
    ) -> NestedInterleaveSampler:
        """A sampler over ``dataset``'s records grouped by ``source`` (weighted by name, every
        source of the kept records named, as :meth:`MultiSourceSampler.from_dataset`) and, with
        ``categories`` (a column name or one label per record; ``"a/b"`` is category ``a``,
        sub-category ``b``), by category inside each source, in order of first appearance;
        categories start at equal weight. ``keep`` restricts it to some records."""
        sources = [str(s) for s in _column(dataset, "source")]
        kept = np.ones(len(sources), dtype=bool)
        if keep is not None:
            k = np.asarray(keep)
            kept = k.astype(bool) if k.dtype == bool else np.isin(np.arange(len(sources)), k)
            if kept.shape != (len(sources),) or not kept.any():
                raise InvalidArgumentError("keep: expected a non-empty mask or indices of records")
        present = list(dict.fromkeys(s for s, k in zip(sources, kept.tolist(), strict=True) if k))
        missing = [s for s in present if s not in weights]
        absent = [n for n in weights if n not in present]
        if missing or absent:
            raise InvalidArgumentError(
                f"weights: sources {missing} have no weight, {absent} are not in the data set"
            )
        labels: list[str] | None = None
        if categories is not None:
            cats = _column(dataset, categories) if isinstance(categories, str) else list(categories)
            if len(cats) != len(sources):
                raise InvalidArgumentError(
                    f"categories: expected one per record ({len(sources)}), got {len(cats)}"
                )
            labels = [str(c) for c in cats]
        groups: dict[NodePath, list[int]] = {}
        for name in weights:
            for i in np.flatnonzero(kept & (np.asarray(sources, dtype=object) == name)).tolist():
                path = (str(name),) + (() if labels is None else _path(labels[i]))
                groups.setdefault(path, []).append(i)
        node_weights = {(str(n),): float(w) for n, w in weights.items()}
        return cls(list(groups.values()), list(groups), node_weights, **kwargs)

    # -- weights ---------------------------------------------------------------------------------
    def _complete(
        self, base: Mapping[NodePath, float], changes: Mapping[Any, float]
    ) -> dict[NodePath, float]:
        out = dict(base)
        for key, w in changes.items():
            node = _path(key)
            if node not in out:
                raise InvalidArgumentError(f"weights: no node {'/'.join(node)!r}")
            value = float(w)
            if not math.isfinite(value) or value < 0:
                raise InvalidArgumentError(f"weights[{'/'.join(node)!r}]: expected >= 0, got {w}")
            out[node] = value
        _Plan(self, out)  # refuses a node without a positive child, or an empty weighted leaf
        return out

    def _entry(self, step: int) -> int:
        return max(k for k, (s, _) in enumerate(self._log) if s <= step)

    def _plan(self, k: int) -> _Plan:
        plan = self._plans.get(k)
        if plan is None:
            plan = self._plans[k] = _Plan(self, self._log[k][1])
        return plan

    def _now(self) -> int:
        return _now(self)

    def _redraw_from(self, position: int) -> None:
        _redraw_from(self, position)

    def set_node_weights(self, weights: Mapping[Any, float], *, step: int | None = None) -> int:
        """Change the weights of some nodes (``{("src", "cat"): w}`` or ``{"src/cat": w}``) from
        per-rank step ``step`` on (default, and at the earliest: the consumed position, as
        :meth:`MultiSourceSampler.set_weights`: a ``gradatim.DataLoader`` draws again what it
        drew past it); the other nodes keep theirs. Returns the step the change applies at."""
        now = self._now()
        at = now if step is None else max(_int_arg(step, "step"), now)
        k = self._entry(at)
        new = self._complete(self._log[k][1], weights)
        self._log = [e for e in self._log if e[0] < at] + [(at, new)]  # later ones replaced
        self._plans = {}
        _changed_from(self, at)
        return at

    def set_weights(self, weights: ArrayLike, *, step: int | None = None) -> int:
        """One weight per leaf (in :attr:`leaves` order); every node gets the sum of its
        leaves' weights, so each level interleaves its children in those proportions."""
        w = _weights(weights)
        if len(w) != len(self._leaves):
            raise InvalidArgumentError(f"weights: expected {len(self._leaves)} leaf weights")
        sums: dict[NodePath, float] = {}
        for leaf, v in zip(self._leaves, w, strict=True):
            for k in range(1, len(leaf) + 1):
                sums[leaf[:k]] = sums.get(leaf[:k], 0.0) + v
        return self.set_node_weights(sums, step=step)

    @property
    def node_weights(self) -> dict[str, float]:
        """The weight of every node (``"source"``, ``"source/category"``, ...) now in force."""
        return {"/".join(n): w for n, w in self._log[self._entry(self._now())][1].items()}

    @property
    def weights(self) -> list[float]:
        """Each leaf's share of the draws now in force: the product, down its path, of its
        node's weight over the weights of the node and its siblings."""
        w = self._log[self._entry(self._now())][1]
        out = []
        for leaf in self._leaves:
            share = 1.0
            for k in range(1, len(leaf) + 1):
                total = sum(w[c] for c in self._children[leaf[: k - 1]])
                share *= w[leaf[:k]] / total if total > 0 else 0.0
            out.append(share)
        return out

    @property
    def weight_log(self) -> list[tuple[int, dict[str, float]]]:
        """Every change as ``(step, {node: weight})``; the first is at step 0."""
        return [(s, {"/".join(n): v for n, v in w.items()}) for s, w in self._log]

    # -- structure -------------------------------------------------------------------------------
    @property
    def leaves(self) -> list[NodePath]:
        return list(self._leaves)

    @property
    def sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def hierarchy(self) -> dict[str, Any] | None:
        """``{source: [category, ...]}``, or ``{source: {category: [sub-category, ...]}}`` where
        a source has sub-categories; ``None`` when no source has categories."""
        if all(len(leaf) == 1 for leaf in self._leaves):
            return None
        out: dict[str, Any] = {}
        for (src,) in self._children[()]:
            cats = self._children.get((src,), [])
            if any(c in self._children for c in cats):
                out[src] = {c[1]: [x[2] for x in self._children.get(c, [])] for c in cats}
            else:
                out[src] = [c[1] for c in cats]
        return out

    @property
    def num_samples(self) -> int:
        return self._num_samples

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def seed(self) -> int:
        return self._seed

    def __len__(self) -> int:
        return -(-self._num_samples // self._world_size)

    # -- the order -------------------------------------------------------------------------------
    def slots(self, epoch: int, start: int, count: int) -> tuple[NDArray[np.int64], NDArray]:
        """For this rank's positions ``start .. start + count`` of ``epoch``: each one's leaf
        (an index into :attr:`leaves`) and its running position inside that leaf (before the
        wrap at the leaf's size)."""
        leaf, pos, _ = self._slots(epoch, start, count)
        return leaf, pos

    def _slots(
        self, epoch: int, start: int, count: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """:meth:`slots` and, per position, how many times the root wrapped before it (CURE's
        epochs)."""
        steps = _int_arg(epoch, "epoch") * len(self) + np.arange(start, start + count)
        leaf = np.empty(count, dtype=np.int64)
        pos = np.empty(count, dtype=np.int64)
        wraps = np.empty(count, dtype=np.int64)
        index = {p: k for k, p in enumerate(self._leaves)}
        bounds = [s for s, _ in self._log] + [np.iinfo(np.int64).max]
        for k in range(len(self._log)):
            sel = np.flatnonzero((steps >= bounds[k]) & (steps < bounds[k + 1]))
            if not sel.size:
                continue
            plan = self._plan(k)
            g = steps[sel] * self._world_size + self._rank
            wraps[sel] = g // plan.length[()]
            self._descend(plan, (), g % plan.length[()], sel, leaf, pos, index)
        return leaf, pos, wraps

    def _descend(
        self,
        plan: _Plan,
        node: NodePath,
        i: NDArray[np.int64],
        where: NDArray[np.int64],
        leaf: NDArray[np.int64],
        pos: NDArray[np.int64],
        index: dict[NodePath, int],
    ) -> None:
        pattern, rank, slots = plan.pattern[node], plan.rank[node], plan.slots[node]
        period = len(pattern)
        slot = i % period
        child = pattern[slot]
        j = (i // period) * slots[child] + rank[slot]
        kids = plan.children[node]
        for c in np.unique(child).tolist():
            sel = child == c
            path = kids[c]
            if path in index:
                leaf[where[sel]] = index[path]
                pos[where[sel]] = j[sel]
            else:
                self._descend(plan, path, j[sel] % plan.length[path], where[sel], leaf, pos, index)

    def _perm(self, leaf: int, cycle: int) -> NDArray[np.int64]:
        cached = self._perms.get(leaf)
        if cached is not None and cached[0] == cycle:
            return cached[1]

        key = int.from_bytes(
            hashlib.sha256(f"{self._seed}/{'/'.join(self._leaves[leaf])}".encode()).digest()[:8],
            "little",
        )
        size = self._sizes[leaf]
        perm = _core.shard_subset(np.arange(size, dtype=np.int64), key, cycle, True, 0, 1, False)
        self._perms[leaf] = (cycle, perm)
        return perm

    def _draw(self, epoch: int, start: int, count: int) -> NDArray[np.int64]:
        leaf, pos, wraps = self._slots(epoch, start, count)
        out = np.empty(count, dtype=np.int64)
        for k in np.unique(leaf).tolist():
            sel = leaf == k
            size = self._sizes[k]
            p = pos[sel]
            if not self._shuffle:
                out[sel] = self._members[k][p % size]
                continue
            # a fresh permutation per pass through the leaf, counted across CURE's epochs
            cycles = wraps[sel] * (1 << 32) + p // size
            vals = np.empty(p.size, dtype=np.int64)
            for cycle in np.unique(cycles).tolist():
                c = cycles == cycle
                vals[c] = self._members[k][self._perm(k, cycle)[p[c] % size]]
            out[sel] = vals
        return out

    def epoch_indices(self, epoch: int | None = None) -> NDArray[np.int64]:
        """This rank's whole epoch (does not move the iteration state)."""
        e = self._epoch if epoch is None else _int_arg(epoch, "epoch")
        return self._draw(e, 0, len(self))

    def __iter__(self) -> Iterator[int]:
        epoch, pos = _next_pass(self)  # type: ignore[arg-type]
        n = len(self)
        track = self._pass
        token = _start(track, epoch, pos)
        track.load([], pos)
        while pos < n:
            count = min(self._chunk_size, n - pos)
            chunk = self._draw(epoch, pos, count).tolist()
            yield from track.load(chunk, pos)
            if track.token is not token:
                return
            pos = track.consumed()
        track.epoch = None
        self._epoch = epoch + 1

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass (keeps a restored position for the same epoch)."""
        _set_epoch(self, _int_arg(epoch, "epoch"))  # type: ignore[arg-type]

    @property
    def pass_origin(self) -> tuple[int, int] | None:
        return self._pass.origin

    # -- state -----------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "leaves": [list(p) for p in self._leaves],
            "sizes": list(self._sizes),
            "num_samples": self._num_samples,
            "shuffle": self._shuffle,
            "world_size": self._world_size,
            "members": _digest(self._table),
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: configuration, seed, epoch, position and the weight log."""
        if self._pass.epoch is not None:
            epoch, position = self._pass.epoch, self._pass.consumed()
        else:
            epoch, position = self._epoch, self._resume
        if position >= len(self):
            epoch, position = epoch + 1, 0
        log = [[s, [[list(n), v] for n, v in w.items()]] for s, w in self._log]
        return {
            "version": STATE_VERSION,
            "kind": "NestedInterleaveSampler",
            **self._config(),
            "rank": self._rank,
            "seed": self._seed,
            "epoch": int(epoch),
            "position": int(position),
            "weight_log": log,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the order saved by :meth:`state_dict` (the configuration must match)."""
        if not isinstance(state, dict) or state.get("kind") != "NestedInterleaveSampler":
            raise InvalidArgumentError("state: not a NestedInterleaveSampler state_dict")
        if state.get("version") != STATE_VERSION:
            raise InvalidArgumentError(f"state: unsupported version {state.get('version')!r}")
        for key, mine in self._config().items():
            if state.get(key) != mine:
                raise InvalidArgumentError(
                    f"state: {key} is {state.get(key)!r} in the state but {mine!r} here"
                )
        log = []
        for s, w in state["weight_log"]:
            weights = {tuple(n): float(v) for n, v in w}
            log.append((_int_arg(s, "state: weight_log step"), self._complete(weights, {})))
        if not log or log[0][0] != 0:
            raise InvalidArgumentError("state: the weight log must start at step 0")
        self._log, self._plans, self._perms = log, {}, {}
        self._seed = _seed(state["seed"])
        self._epoch = _int_arg(state["epoch"], "state: epoch")
        self._resume = _int_arg(state["position"], "state: position")
        self._pass = _PassTracker()

    def __repr__(self) -> str:
        return (
            f"NestedInterleaveSampler(leaves={len(self._leaves)}, sizes={sum(self._sizes)}, "
            f"rank={self._rank}, world_size={self._world_size})"
        )


def _digest(table: NDArray[np.int64]) -> str:
    return hashlib.sha256(np.ascontiguousarray(table, dtype="<i8").tobytes()).hexdigest()[:16]


def _column(dataset: Any, name: str) -> list[Any]:
    if callable(getattr(dataset, "column", None)):
        return list(dataset.column(name))
    raise InvalidArgumentError(
        f"dataset: expected a ManifestDataset (with column({name!r})), got {type(dataset).__name__}"
    )


class EpochSchedule(Protocol):
    """Anything that names the samples of epoch ``t`` (RRGCLScheduler, PacingScheduler)."""

    def epoch_indices(self, t: float) -> NDArray[np.int64]: ...


class CurriculumSampler(_SamplerBase):  # type: ignore[type-arg,misc]
    """Trains epoch ``e`` on ``schedule.epoch_indices(e + schedule.first_t)``: the subset is
    shuffled with a seed derived from ``(seed, e)`` (or kept in the schedule's order with
    ``shuffle=False``) and sharded like ``DistributedSampler``. Epochs are counted from 0 as torch
    counts them; a schedule whose paper counts ``t = 1 .. T`` (RRGCL and its pacing baselines:
    ``first_t = 1``; default 0) is asked for ``t = e + 1``, so the last epoch of a plain
    ``for epoch in range(T)`` loop trains on the full schedule. Epochs past the schedule's ``T``
    use its last subset (all data for RRGCL and the prefix baselines).

    ``set_epoch(t)`` picks the epoch; a pass that runs to its end moves on to the next one.
    ``len(self)`` is the length of the current epoch's shard, so it changes from epoch to epoch.
    """

    def __init__(
        self,
        schedule: EpochSchedule,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if not callable(getattr(schedule, "epoch_indices", None)):
            raise TypeError("schedule: expected an object with an epoch_indices(t) method")
        self._schedule = schedule
        self._seed = _seed(seed)
        self._shuffle = bool(shuffle)
        self._rank = _int_arg(rank, "rank")
        self._world_size = _int_arg(world_size, "world_size", 1)
        if self._rank >= self._world_size:
            raise InvalidArgumentError(
                f"rank: must be in [0, world_size = {self._world_size}), got {self._rank}"
            )
        self._drop_last = bool(drop_last)
        self._epoch = 0
        self._resume = 0
        self._pass = _PassTracker()
        self._cache: tuple[int, NDArray[np.int64]] | None = None

    @property
    def schedule(self) -> EpochSchedule:
        return self._schedule

    @property
    def epoch(self) -> int:
        return self._epoch

    def indices(self, epoch: int | None = None) -> NDArray[np.int64]:
        """This rank's indices of ``epoch`` (default: the current one), in training order."""
        e = self._epoch if epoch is None else _int_arg(epoch, "epoch")
        if self._cache is not None and self._cache[0] == e:
            return self._cache[1]
        t = e + int(getattr(self._schedule, "first_t", 0))
        subset = np.ascontiguousarray(self._schedule.epoch_indices(t), dtype=np.int64)
        out = _core.shard_subset(
            subset, self._seed, e, self._shuffle, self._rank, self._world_size, self._drop_last
        )
        self._cache = (e, out)
        return out

    def __len__(self) -> int:
        return int(self.indices().shape[0])

    def __iter__(self) -> Iterator[int]:
        epoch, pos = _next_pass(self)
        track = self._pass
        token = _start(track, epoch, pos)
        yield from track.load(self.indices(epoch)[pos:].tolist(), pos)
        if track.token is not token:
            return
        track.epoch = None
        self._epoch = epoch + 1

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass (keeps a restored position for the same epoch)."""
        _set_epoch(self, _int_arg(epoch, "epoch"))

    @property
    def pass_origin(self) -> tuple[int, int] | None:
        """``(epoch, position)`` where the current (or last unfinished) pass started."""
        return self._pass.origin

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (the schedule itself is rebuilt from its own inputs)."""
        if self._pass.epoch is not None:
            epoch, position = self._pass.epoch, self._pass.consumed()
            if position >= len(self.indices(epoch)):
                epoch, position = epoch + 1, 0
        else:
            epoch, position = self._epoch, self._resume
        return {
            "version": STATE_VERSION,
            "kind": "CurriculumSampler",
            "seed": self._seed,
            "shuffle": self._shuffle,
            "rank": self._rank,
            "world_size": self._world_size,
            "drop_last": self._drop_last,
            "epoch": int(epoch),
            "position": int(position),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the sequence saved by :meth:`state_dict`."""
        if not isinstance(state, dict) or state.get("kind") != "CurriculumSampler":
            raise InvalidArgumentError("state: not a CurriculumSampler state_dict")
        if state.get("version") != STATE_VERSION:
            raise InvalidArgumentError(f"state: unsupported version {state.get('version')!r}")
        for key, mine in (
            ("shuffle", self._shuffle),
            ("world_size", self._world_size),
            ("drop_last", self._drop_last),
        ):
            if state.get(key) != mine:
                raise InvalidArgumentError(
                    f"state: {key} is {state.get(key)!r} in the state but {mine!r} here"
                )
        self._seed = _seed(state["seed"])
        self._cache = None
        self._epoch = _int_arg(state["epoch"], "state: epoch")
        self._resume = _int_arg(state["position"], "state: position")
        self._pass = _PassTracker()
