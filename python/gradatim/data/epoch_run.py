"""One pass of a :class:`gradatim.DataLoader` (one iterator = one epoch): which index-sampler items
were handed out and delivered, and what a resumed pass needs to continue exactly.

Both loader paths share it: the fast path numbers and delivers batches itself; torch's iterators
(the compatibility path) pull items through :meth:`EpochRun.items` and report each delivered
batch. The state it writes is plain JSON (see ``docs/loader.md``, "State").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from gradatim.data.rng_source import RngSource, decode_state, encode_state

__all__ = ["EpochRun", "Resume"]


@dataclass
class Resume:
    """Where a saved pass stopped (:meth:`EpochRun.state`), for the next iterator."""

    epoch: int
    batches_done: int  # delivered items, as a prefix of the pass
    ahead: list[int] = field(default_factory=list)  # delivered out of order beyond the prefix
    base_seed: int | None = None
    rng_start: torch.Tensor | None = None  # the random source before the base seed draw
    rng_sampler: torch.Tensor | None = None  # ... before the sampler's first draw

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Resume:
        rng = state.get("rng") or {}
        return cls(
            epoch=int(state["epoch"]),
            batches_done=int(state["batches_done"]),
            ahead=[int(n) for n in state.get("ahead", [])],
            base_seed=None if state.get("base_seed") is None else int(state["base_seed"]),
            rng_start=decode_state(rng["start"]) if rng.get("start") else None,
            rng_sampler=decode_state(rng["sampler"]) if rng.get("sampler") else None,
        )


def item_size(item: Any) -> int:
    """Samples in one index-sampler item: a batch of indices, or one index."""
    try:
        return len(item)
    except TypeError:
        return 1


class EpochRun:
    """Bookkeeping of one iterator. ``stateful``: the sampler was positioned from its own state
    (gradatim's samplers), so the pass is not fast-forwarded."""

    def __init__(
        self,
        epoch: int,
        source: RngSource,
        index_sampler: Iterable[Any],
        resume: Resume | None,
        stateful: bool,
    ) -> None:
        self.epoch = epoch
        self.source = source
        self.index_sampler = index_sampler
        self.resume = resume
        self.stateful = stateful
        self.skip = resume.batches_done if resume else 0
        self.base_seed = resume.base_seed if resume else None
        self.rng_start = resume.rng_start if resume else None
        self.rng_sampler = resume.rng_sampler if resume else None
        self.ahead = set(resume.ahead) if resume else set()
        self.prefix = self.skip  # delivered items, counted from the start of the pass
        # samples of the items handed out after the skip, cumulative (for a sampler positioned
        # by its own state, whose position counts samples)
        self._cum: list[int] | None = [0] if stateful else None
        self.finished = False

    # -- the pass -----------------------------------------------------------------------------
    def start(self) -> int:
        """The iterator's base seed, drawn as torch draws it (kept from the saved pass when
        resuming, so a resumed pass draws nothing)."""
        if self.base_seed is None:
            self.rng_start = self.source.get_state()
            self.base_seed = self.source.draw_seed()
        return self.base_seed

    def items(self) -> Iterator[Any]:
        """The index sampler's items from the resume point on. The random source is recorded
        just before the sampler's first draw, or replayed from that record when resuming, and the
        skipped items are drawn under it (fast-forward), so a sampler driven by torch's RNG (the
        loader's generator or the global one) continues with exactly the items it would have
        produced. The first item is drawn inside the replay, where the sampler draws."""
        end = object()
        if self.resume is None:
            self.rng_sampler = self.source.get_state()
            it = iter(self.index_sampler)
            first = next(it, end)
        else:
            with self.source.replaying(self.rng_sampler):
                it = iter(self.index_sampler)
                if not self.stateful:
                    for _ in itertools.islice(it, self.skip):
                        pass
                first = next(it, end)
        if first is end:
            return
        if self._cum is None:
            yield first
            yield from it
            return
        for item in itertools.chain((first,), it):
            self._cum.append(self._cum[-1] + item_size(item))
            yield item

    def redraw(self, number: int) -> Iterator[Any]:
        """The index sampler's items again from item ``number`` on (a gradatim sampler moved
        back to that item's first sample, :meth:`FastIter.redraw`): the items handed out from
        there are forgotten, and the new ones counted in their place. Such a sampler draws no
        random number from torch, so nothing is recorded or replayed."""
        cum = self._cum
        if cum is None or number < self.skip:
            raise ValueError(f"redraw: item {number} cannot be drawn again")
        del cum[number - self.skip + 1 :]

        def counted() -> Iterator[Any]:
            for item in self.index_sampler:
                cum.append(cum[-1] + item_size(item))
                yield item

        return counted()

    def delivered(self, number: int) -> None:
        """Item ``number`` (counted from the start of the pass) reached the consumer."""
        if number == self.prefix:
            self.prefix += 1
            while self.prefix in self.ahead:
                self.ahead.discard(self.prefix)
                self.prefix += 1
        elif number > self.prefix:
            self.ahead.add(number)

    @property
    def samples_since_start(self) -> int:
        """Samples in the items delivered (as a prefix) since this iterator started."""
        if self._cum is None:
            return 0
        return self._cum[min(self.prefix - self.skip, len(self._cum) - 1)]

    # -- state --------------------------------------------------------------------------------
    def _rng_sampler_state(self) -> torch.Tensor | None:
        if self.rng_sampler is not None or self.rng_start is None:
            return self.rng_sampler
        if self.source.is_global:
            # saved before the sampler's first draw: it is still to come, from the global RNG,
            # which the loader's state records when saved and load_state_dict puts back
            return None
        # the generator is the loader's to restore: its state after the base seed draw
        g = torch.Generator()
        g.set_state(self.rng_start)
        torch.empty((), dtype=torch.int64).random_(generator=g)
        return g.get_state()

    def state(self) -> dict[str, Any]:
        """JSON-able position of this pass (what :class:`Resume` reads back)."""
        sampler = self._rng_sampler_state()
        return {
            "epoch": self.epoch,
            "batches_done": self.prefix,
            "ahead": sorted(self.ahead),
            "base_seed": self.base_seed,
            "rng": {
                "start": None if self.rng_start is None else encode_state(self.rng_start),
                "sampler": None if sampler is None else encode_state(sampler),
            },
        }
