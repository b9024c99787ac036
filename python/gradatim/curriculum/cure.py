"""CURE's error-aware inter-dataset curriculum (paper 000, as in CURE's public code).

Every ``K`` steps (3000 in CURE), per source (or per category inside a source: anatomy location,
label group, each being one source of the sampler):

- ``perf = alpha * IoU + (1 - alpha) * text_score`` (alpha = 0.8; the one metric alone where only
  one exists),
- ``err = 1 - perf``, replaced by 0.01 where ``err <= 0``,
- ``p = err / sum(err)`` (uniform where ``sum(err) < 1e-6``),
- then, as CURE's code does, only ``p <= 0`` becomes 0.01 and ``p > 1`` becomes 1, so a nearly
  solved source keeps its small weight; ``min_weight`` (opt-in) raises every smaller weight to it
  (gradatim's former default, which over-samples nearly solved sources by up to ~100x);
- no temperature, no renormalisation (samplers normalise).

Inputs follow CURE's evaluation conventions (``gradatim evaluate``): IoU is the union IoU over
the samples that have reference boxes (absent where none has), and the text score is computed on
every validation row, phrase grounding included, so most sources have both.

The weights feed a :class:`gradatim.sampling.MultiSourceSampler` (independent weighted draws,
``mode="random"``, and others) or a :class:`gradatim.sampling.NestedInterleaveSampler`: CURE's
own order, its trainer's ``SequentialSampler`` over its ``WeightedCompositeDataset``
(PabloMessina/CURE 9365333, ``scripts/train_medgemma.py``, ``vlm_research_kit/data/
dataset_helpers.py``). Baselines: natural (size-proportional) and uniform weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gradatim import _core
from gradatim.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_PERIOD",
    "cure_weights",
    "natural_weights",
    "uniform_weights",
    "ErrorAwareCurriculum",
]

DEFAULT_PERIOD = 3000
"""CURE's update period K, in training steps."""


def _metric(entry: Mapping[str, Any], key: str, source: str) -> float | None:
    v = entry.get(key)
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"metrics[{source!r}][{key!r}]: not a number ({v!r})") from None
    if not math.isfinite(x):
        raise InvalidArgumentError(f"metrics[{source!r}][{key!r}]: not finite ({x})")
    return x


def cure_weights(
    metrics: Mapping[str, Mapping[str, float | None]],
    alpha: float = 0.8,
    *,
    min_weight: float | None = None,
) -> dict[str, float]:
    """CURE's sampling weights from per-source validation metrics.

    Args:
        metrics: ``{source: {"iou": x, "text": y}}``; either key may be missing (or ``None``), not
            both (see the module docstring for the conventions).
        alpha: the weight of IoU in ``perf = alpha * IoU + (1 - alpha) * text``.
        min_weight: opt-in floor on the weights (CURE has none beyond ``p <= 0 -> 0.01``).

    Returns:
        ``{source: weight}`` in the order of ``metrics``, each weight in ``(0, 1]``.
    """
    if not isinstance(metrics, Mapping) or not metrics:
        raise InvalidArgumentError("metrics: expected a non-empty mapping source -> metrics")
    names = list(metrics)
    iou: list[float | None] = []
    text: list[float | None] = []
    for name in names:
        entry = metrics[name]
        if not isinstance(entry, Mapping):
            raise InvalidArgumentError(f"metrics[{name!r}]: expected a mapping with iou / text")
        unknown = set(entry) - {"iou", "text"}
        if unknown:
            raise InvalidArgumentError(
                f"metrics[{name!r}]: unknown keys {sorted(unknown)} (expected iou, text)"
            )
        i, t = _metric(entry, "iou", name), _metric(entry, "text", name)
        if i is None and t is None:
            raise InvalidArgumentError(f'metrics[{name!r}]: needs "iou" or "text"')
        iou.append(i)
        text.append(t)
    w = _core.cure_weights(iou, text, float(alpha), min_weight)
    return dict(zip(names, w, strict=True))


def natural_weights(sizes: Sequence[int]) -> list[float]:
    """The natural baseline: weights proportional to source sizes."""
    total = float(sum(sizes))
    if total <= 0:
        raise InvalidArgumentError("sizes: all sources are empty")
    return [s / total for s in sizes]


def uniform_weights(n: int) -> list[float]:
    """The uniform baseline: every source equally likely."""
    if n < 1:
        raise InvalidArgumentError("n: at least one source is required")
    return [1.0 / n] * n


class WeightedSampler(Protocol):
    """What :class:`ErrorAwareCurriculum` needs of a sampler."""

    def set_weights(self, weights: Sequence[float], *, step: int | None = None) -> int: ...


class ErrorAwareCurriculum:
    """Holds CURE's update period, the history of weights, and applies new weights to a sampler.

    Args:
        sampler: a :class:`gradatim.sampling.MultiSourceSampler` (anything with ``set_weights``).
        sources: the names of the sampler's sources, in its order (the keys of the metrics).
        period: ``K``, the number of training steps between updates.
        alpha: IoU weight of :func:`cure_weights`.
        samples_per_step: indices one rank consumes per training step (batch size times gradient
            accumulation). When given, an update at step ``s`` switches the sampler at sample
            ``s * samples_per_step`` (per rank, from the sampler's step 0), or, if that sample
            was already delivered, at the consumed position; otherwise at the consumed
            position. Read by a ``gradatim.DataLoader`` (fast path) the consumed position is
            what the loader delivered, and the batches it drew past the switch for prefetching
            are cancelled and drawn again, so the switch is exact for any ``num_workers`` and
            ``prefetch_factor``; read by torch's loader with worker processes, a switch inside
            their prefetch window lands at the next index the sampler hands out (see
            :meth:`gradatim.sampling.MultiSourceSampler.set_weights`).
        initial: ``None`` keeps the sampler's weights; ``"uniform"`` (CURE's start), ``"natural"``
            (needs ``sizes``) or a mapping ``{source: weight}`` sets them at the sampler's current
            position.
        sizes: source sizes, for ``initial="natural"`` (default: ``sampler.sizes``).
        min_weight: opt-in floor on the weights (see :func:`cure_weights`).
    """

    def __init__(
        self,
        sampler: WeightedSampler,
        sources: Sequence[str],
        *,
        period: int = DEFAULT_PERIOD,
        alpha: float = 0.8,
        samples_per_step: int | None = None,
        initial: str | Mapping[str, float] | None = None,
        sizes: Sequence[int] | None = None,
        min_weight: float | None = None,
    ) -> None:
        self.sampler = sampler
        self.sources = [str(s) for s in sources]
        if len(set(self.sources)) != len(self.sources) or not self.sources:
            raise InvalidArgumentError("sources: expected unique, non-empty source names")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise InvalidArgumentError(f"period: must be a positive int, got {period!r}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise InvalidArgumentError(f"alpha: must be in [0, 1], got {alpha}")
        if samples_per_step is not None and samples_per_step < 1:
            raise InvalidArgumentError("samples_per_step: must be >= 1")
        self.period = period
        self.alpha = float(alpha)
        self.min_weight = None if min_weight is None else float(min_weight)
        self.samples_per_step = samples_per_step
        self.history: list[tuple[int, dict[str, float]]] = []
        if initial is not None:
            if initial == "uniform":
                w = uniform_weights(len(self.sources))
            elif initial == "natural":
                sz = sizes if sizes is not None else getattr(sampler, "sizes", None)
                if sz is None:
                    raise InvalidArgumentError("initial='natural' needs sizes")
                w = natural_weights(list(sz))
            elif isinstance(initial, Mapping):
                w = self._ordered(initial, "initial")
            else:
                raise InvalidArgumentError(f"initial: unknown value {initial!r}")
            self.sampler.set_weights(w)
            self.history.append((0, dict(zip(self.sources, w, strict=True))))

    def _ordered(self, weights: Mapping[str, float], what: str) -> list[float]:
        missing = [s for s in self.sources if s not in weights]
        extra = [k for k in weights if k not in self.sources]
        if missing or extra:
            raise InvalidArgumentError(
                f"{what}: sources {self.sources} expected; missing {missing}, unknown {extra}"
            )
        return [float(weights[s]) for s in self.sources]

    def due(self, step: int) -> bool:
        """Whether step ``step`` (counted from 0) ends a period: ``step > 0 and step % K == 0``."""
        return step > 0 and step % self.period == 0

    def update(
        self, metrics: Mapping[str, Mapping[str, float | None]], step: int
    ) -> dict[str, float]:
        """Compute :func:`cure_weights` from validation ``metrics`` (one entry per source) and
        apply them to the sampler from training step ``step``. Returns the weights."""
        weights = cure_weights(metrics, self.alpha, min_weight=self.min_weight)
        vec = self._ordered(weights, "metrics")
        at = None if self.samples_per_step is None else int(step) * self.samples_per_step
        self.sampler.set_weights(vec, step=at)
        self.history.append((int(step), dict(zip(self.sources, vec, strict=True))))
        return dict(zip(self.sources, vec, strict=True))

    @property
    def weights(self) -> dict[str, float] | None:
        """The latest weights set by this curriculum (``None`` before the first)."""
        return dict(self.history[-1][1]) if self.history else None

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (the sampler keeps its own, with the weight log)."""
        return {
            "version": 1,
            "kind": "ErrorAwareCurriculum",
            "sources": list(self.sources),
            "period": self.period,
            "alpha": self.alpha,
            "samples_per_step": self.samples_per_step,
            "history": [[s, dict(w)] for s, w in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the history (sources must match)."""
        if state.get("kind") != "ErrorAwareCurriculum" or state.get("version") != 1:
            raise InvalidArgumentError("state: not an ErrorAwareCurriculum state_dict")
        if list(state["sources"]) != self.sources:
            raise InvalidArgumentError(
                f"state: sources {state['sources']} differ from {self.sources}"
            )
        self.period = int(state["period"])
        self.alpha = float(state["alpha"])
        self.samples_per_step = state.get("samples_per_step")
        self.history = [(int(s), {k: float(v) for k, v in w.items()}) for s, w in state["history"]]
