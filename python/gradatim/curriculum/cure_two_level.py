"""CURE's two-level error-aware curriculum (paper 000, Sec. 3; CURE's public code): a weight per
*dataset* from its validation error, and inside each dataset a weight per *category* (prompt type,
anatomical location, finding) from that category's error. Each level follows
:func:`gradatim.curriculum.cure_weights` on its own, is normalised on its own and starts uniform;
a sample of category ``c`` of dataset ``s`` is drawn with probability ``P(s) x P(c | s)``.

So a dataset with many categories (Chest ImaGenome's ~87 locations) does not take the samples of
a dataset with one: with one flat level of 88 "sources" it would start with 87/88 of them.

The sampler is a :class:`gradatim.sampling.MultiSourceSampler` whose sources are the *leaves*
``(dataset, category)`` in :attr:`TwoLevelCurriculum.leaves` order (the dataset's records grouped
accordingly); the curriculum sets the leaf weights, so the sampler's weight log, state and resume
work as for one level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradatim.curriculum.cure import DEFAULT_PERIOD, WeightedSampler, cure_weights
from gradatim.errors import InvalidArgumentError

__all__ = ["TwoLevelCurriculum"]


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


class TwoLevelCurriculum:
    """Dataset x category weights for a leaf-level sampler.

    Args:
        sampler: the sampler over the leaves (anything with ``set_weights``).
        hierarchy: ``{dataset: [category, ...]}``; leaves are ``(dataset, category)`` in this order
            (default: the sampler's, for ``MultiSourceSampler.from_hierarchy``).
        period, alpha, samples_per_step, min_weight: as :class:`ErrorAwareCurriculum`.
    """

    def __init__(
        self,
        sampler: WeightedSampler,
        hierarchy: Mapping[str, Sequence[str]] | None = None,
        *,
        period: int = DEFAULT_PERIOD,
        alpha: float = 0.8,
        samples_per_step: int | None = None,
        min_weight: float | None = None,
    ) -> None:
        if hierarchy is None:  # a sampler made by MultiSourceSampler.from_hierarchy knows it
            hierarchy = getattr(sampler, "hierarchy", None)
        if not hierarchy:
            raise InvalidArgumentError("hierarchy: expected {dataset: [category, ...]}")
        self.hierarchy = {str(s): [str(c) for c in cs] for s, cs in hierarchy.items()}
        for s, cs in self.hierarchy.items():
            if not cs or len(set(cs)) != len(cs):
                raise InvalidArgumentError(f"hierarchy[{s!r}]: expected unique category names")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise InvalidArgumentError(f"period: must be a positive int, got {period!r}")
        self.sampler = sampler
        self.period = period
        self.alpha = float(alpha)
        self.samples_per_step = samples_per_step
        self.min_weight = min_weight
        self.source_weights = _normalised({s: 1.0 for s in self.hierarchy})
        self.category_weights = {
            s: _normalised({c: 1.0 for c in cs}) for s, cs in self.hierarchy.items()
        }
        self.history: list[tuple[int, dict[str, Any]]] = []
        self._apply(0, None)

    @property
    def leaves(self) -> list[tuple[str, str]]:
        """``(dataset, category)`` in the sampler's source order."""
        return [(s, c) for s, cs in self.hierarchy.items() for c in cs]

    def leaf_weights(self) -> list[float]:
        """``P(dataset) x P(category | dataset)`` per leaf (sums to 1)."""
        return [self.source_weights[s] * self.category_weights[s][c] for s, c in self.leaves]

    def due(self, step: int) -> bool:
        """Whether step ``step`` ends a period."""
        return step > 0 and step % self.period == 0

    def update(
        self,
        metrics: Mapping[str, Mapping[str, float | None]],
        step: int,
        categories: Mapping[str, Mapping[str, Mapping[str, float | None]]] | None = None,
    ) -> list[float]:
        """New dataset weights from ``metrics`` (``{dataset: {"iou", "text"}}``) and, for the
        datasets in ``categories`` (``{dataset: {category: {"iou", "text"}}}``), new category
        weights; others keep theirs. Applied to the sampler from training step ``step``; returns
        the leaf weights."""
        unknown = set(metrics) ^ set(self.hierarchy)
        if unknown:
            raise InvalidArgumentError(f"metrics: datasets {sorted(unknown)} do not match")
        w = cure_weights(metrics, self.alpha, min_weight=self.min_weight)
        self.source_weights = _normalised({s: w[s] for s in self.hierarchy})
        for s, per_category in (categories or {}).items():
            if s not in self.hierarchy or set(per_category) != set(self.hierarchy[s]):
                raise InvalidArgumentError(f"categories[{s!r}]: expected {self.hierarchy.get(s)}")
            cw = cure_weights(per_category, self.alpha, min_weight=self.min_weight)
            self.category_weights[s] = _normalised({c: cw[c] for c in self.hierarchy[s]})
        self._apply(int(step), self.samples_per_step)
        return self.leaf_weights()

    def _apply(self, step: int, samples_per_step: int | None) -> None:
        at = None if samples_per_step is None or step == 0 else step * samples_per_step
        self.sampler.set_weights(self.leaf_weights(), step=at)
        self.history.append(
            (
                step,
                {
                    "sources": dict(self.source_weights),
                    "categories": {s: dict(w) for s, w in self.category_weights.items()},
                },
            )
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (the sampler keeps its own, with the leaf weight log)."""
        return {
            "version": 1,
            "kind": "TwoLevelCurriculum",
            "hierarchy": self.hierarchy,
            "period": self.period,
            "alpha": self.alpha,
            "samples_per_step": self.samples_per_step,
            "history": [[s, h] for s, h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the weights and history (the hierarchy must match)."""
        if state.get("kind") != "TwoLevelCurriculum" or state.get("version") != 1:
            raise InvalidArgumentError("state: not a TwoLevelCurriculum state_dict")
        if dict(state["hierarchy"]) != self.hierarchy:
            raise InvalidArgumentError("state: the hierarchy differs")
        self.period = int(state["period"])
        self.alpha = float(state["alpha"])
        self.samples_per_step = state.get("samples_per_step")
        self.history = [(int(s), h) for s, h in state["history"]]
        last = self.history[-1][1]
        self.source_weights = {s: float(v) for s, v in last["sources"].items()}
        self.category_weights = {
            s: {c: float(v) for c, v in w.items()} for s, w in last["categories"].items()
        }
