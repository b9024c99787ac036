"""The random source that ``torch.utils.data.DataLoader`` draws from, made saveable.

torch draws, per iterator and in this order: the iterator's base seed (one ``int64`` from the
loader's ``generator``, or from the global CPU RNG when there is none), then whatever the sampler
draws when its first index is requested (``RandomSampler``: a permutation from the same
generator, or a seed taken from the global RNG). To resume an epoch exactly, the loader records
the state of that source at both moments, as JSON-able text, and puts it back when the resumed
iterator makes the same draws. A user's generator is left where the uninterrupted run would have
left it. The global RNG is only borrowed for a replay (restored afterwards); where the loader
draws from it, its state is recorded when the loader's state is saved and set again when that
state is loaded (``DataLoader.load_state_dict``), so the draws after the resume are the
uninterrupted run's.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

import torch

__all__ = ["RngSource", "encode_state", "decode_state"]


def encode_state(state: torch.Tensor) -> str:
    """A generator state (a ``uint8`` tensor) as base64 text."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_state(text: str) -> torch.Tensor:
    """The inverse of :func:`encode_state`."""
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


class RngSource:
    """The loader's ``generator``, or torch's global CPU RNG when the loader has none."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    @property
    def is_global(self) -> bool:
        return self.generator is None

    def get_state(self) -> torch.Tensor:
        return torch.get_rng_state() if self.generator is None else self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        if self.generator is None:
            torch.set_rng_state(state)
        else:
            self.generator.set_state(state)

    def draw_seed(self) -> int:
        """The base seed of a new iterator: torch's own expression, so the draw is identical."""
        return int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())

    @contextlib.contextmanager
    def replaying(self, state: torch.Tensor | None) -> Iterator[None]:
        """Run the block with the source at ``state`` (no-op for ``None``). A generator keeps
        the state the block leaves (as in the uninterrupted run); the global RNG gets the user's
        state back."""
        if state is None:
            yield
            return
        saved = self.get_state() if self.is_global else None
        self.set_state(state)
        try:
            yield
        finally:
            if saved is not None:
                self.set_state(saved)
