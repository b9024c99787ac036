"""Baseline pacing functions of RRGCL's ablation (paper 002, Table 2) over difficulty-sorted data.

With ``c0`` the starting fraction (default 0.01) and ``T`` the number of epochs
(``rust/core/src/curriculum/pacing.rs``):

- ``"linear"``: ``min(1, t (1 - c0) / T + c0)`` (Bengio et al.);
- ``"root"``: ``min(1, (t (1 - c0^p) / T + c0^p)^(1/p))`` (Platanios et al.; p = 2 is the
  square root);
- ``"geometric"``: ``min(1, c0^(1 - t / T))`` (Penha & Hauff);
- ``"baby_step"``: ``k`` equal-count buckets of the sorted data; stage ``j`` trains on buckets
  ``1..j`` (Spitkovsky et al.);
- ``"one_pass"``: stage ``j`` trains on bucket ``j`` only.

Stage ``j(t) = min(k, floor(t k / T) + 1)``. With ``t = e + 1`` over a sampler's epochs
``e = 0 .. T-1`` the stages are not equally long: stage ``j < k`` gets
``ceil(j T / k) - max(1, ceil((j - 1) T / k))`` epochs, stage ``k`` gets
``T + 1 - max(1, ceil((k - 1) T / k))`` (``T = 10, k = 5``: 1, 2, 2, 2, 3; none for the first
stage when ``T <= k``). A continuous schedule trains on the ``ceil(fraction * N)`` easiest
samples (at least one).

Constants the paper leaves out are gradatim's: ``c0 = 0.01`` and ``k = 5`` buckets. Epochs
count ``t = 1 .. T`` as in RRGCL (``first_t = 1``): a ``CurriculumSampler``'s epoch ``e`` is
``t = e + 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core
from gradatim.errors import InvalidArgumentError

__all__ = ["PACING_NAMES", "pacing", "bucket_stage", "PacingScheduler"]

PACING_NAMES = ("linear", "root", "geometric", "baby_step", "one_pass")
DEFAULT_BUCKETS = 5


def pacing(
    name: str, t: float, T: float, c0: float = 0.01, p: float = 2, *, buckets: int = DEFAULT_BUCKETS
) -> float:
    """The fraction of the difficulty-sorted data in use at epoch ``t`` of ``T``.

    ``linear``, ``root`` and ``geometric`` follow the formulas of the module docstring; for the
    bucket schedules (``baby_step``, ``one_pass``) the value is ``j / k``, the upper end of the
    trained range (One Pass starts at ``(j - 1) / k``). Raises ``ValueError`` for an unknown name,
    ``c0`` outside ``(0, 1]``, ``p <= 0``, ``T <= 0`` or ``t < 0``.
    """
    return float(_core.pacing_fraction(str(name), float(t), float(T), float(c0), float(p), buckets))


def bucket_stage(t: float, T: float, buckets: int = DEFAULT_BUCKETS) -> int:
    """The 1-based bucket stage ``j(t) = min(k, floor(t k / T) + 1)``."""
    return int(_core.bucket_stage(float(t), float(T), int(buckets)))


class PacingScheduler:
    """A pacing baseline over a concrete training set: epoch ``t`` trains on a prefix (or, for
    ``one_pass``, a bucket) of the samples sorted by ascending difficulty (ties by index).

    Args:
        difficulty: per-sample difficulty.
        name: one of :data:`PACING_NAMES`.
        epochs: ``T``.
        c0, p, buckets: the schedule's constants.
    """

    first_t = 1
    """Epochs count t = 1 .. T as in RRGCL's ablation: epoch ``e`` of a sampler is ``t = e + 1``."""

    def __init__(
        self,
        difficulty: ArrayLike,
        name: str,
        epochs: int,
        *,
        c0: float = 0.01,
        p: float = 2.0,
        buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        d = np.ascontiguousarray(difficulty, dtype=np.float64)
        if d.ndim != 1 or d.size == 0:
            raise InvalidArgumentError(
                f"difficulty: expected a non-empty 1-D array, got shape {d.shape}"
            )
        self.name, self.epochs = str(name), epochs
        self.c0, self.p, self.buckets = float(c0), float(p), int(buckets)
        # validates the name and the constants (and that k <= N for the bucket schedules)
        _core.pacing_range(self.name, 0.0, float(epochs), self.c0, self.p, self.buckets, d.size)
        self._order = _core.difficulty_order(d)

    @property
    def num_samples(self) -> int:
        return int(self._order.shape[0])

    @property
    def order(self) -> NDArray[np.int64]:
        """Sample indices from easiest to hardest."""
        return self._order.copy()

    def fraction(self, t: float) -> float:
        """:func:`pacing` at epoch ``t``."""
        return pacing(self.name, t, self.epochs, self.c0, self.p, buckets=self.buckets)

    def range(self, t: float) -> tuple[int, int]:
        """``[lo, hi)``: the positions of the sorted data trained on at epoch ``t``."""
        lo, hi = _core.pacing_range(
            self.name, float(t), float(self.epochs), self.c0, self.p, self.buckets, self.num_samples
        )
        return int(lo), int(hi)

    def epoch_indices(self, t: float) -> NDArray[np.int64]:
        """Epoch ``t``'s training subset: sorted sample indices."""
        lo, hi = self.range(t)
        return np.sort(self._order[lo:hi])

    def sampler(self, **kwargs: Any) -> Any:
        """A :class:`gradatim.sampling.CurriculumSampler` over this schedule."""
        from gradatim.sampling import CurriculumSampler

        return CurriculumSampler(self, **kwargs)

    def __repr__(self) -> str:
        return (
            f"PacingScheduler({self.name!r}, num_samples={self.num_samples}, epochs={self.epochs}, "
            f"c0={self.c0}, p={self.p}, buckets={self.buckets})"
        )
