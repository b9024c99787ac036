"""CURE's error-aware curriculum on more than one level (paper 000, Sec. 3; CURE's public code,
PabloMessina/CURE 9365333, ``scripts/train_medgemma.py``:
``_calculate_dataset_weights_from_metrics``, ``_calculate_category_weights_from_metrics``,
``apply_resampling_weights``): a weight per
*dataset* from its validation error, inside each dataset a weight per *category* (anatomical
location, label group, finding), and, where a dataset has them, a weight per *sub-category*
inside each category (CURE's Chest ImaGenome: dataset x prompt mode x location). Each level
follows :func:`gradatim.curriculum.cure_weights` on its own and starts uniform; a sample of
leaf ``(d, c[, s])`` is drawn with probability ``P(d) x P(c | d) [x P(s | d, c)]``.

So a dataset with many categories (Chest ImaGenome's ~87 locations) does not take the samples of
a dataset with one: with one flat level of 88 "sources" it would start with 87/88 of them.

The middle level of a dataset with sub-categories keeps its weights unless category metrics are
given for it: CURE computes none for Chest ImaGenome's prompt modes and sets them back to equal
weights at every update.

The sampler is either a :class:`gradatim.sampling.NestedInterleaveSampler` (CURE's own nested
order; it gets each level's weights as computed) or a :class:`gradatim.sampling.MultiSourceSampler`
whose sources are the *leaves* in :attr:`TwoLevelCurriculum.leaves` order (it gets the leaf
products); either way the sampler's weight log, state and resume work as for one level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradatim.curriculum.cure import DEFAULT_PERIOD, WeightedSampler, cure_weights
from gradatim.errors import InvalidArgumentError

__all__ = ["TwoLevelCurriculum"]

Metrics = Mapping[str, float | None]


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def _uniform(names: Sequence[str]) -> dict[str, float]:
    return {n: 1.0 for n in names}


class TwoLevelCurriculum:
    """Dataset x category (x sub-category) weights for a sampler over the leaves.

    Args:
        sampler: the sampler (anything with ``set_weights``; ``set_node_weights`` is used when
            present).
        hierarchy: ``{dataset: [category, ...]}``, or ``{dataset: {category: [sub, ...]}}`` for
            a dataset with sub-categories (the two forms may be mixed); leaves are
            ``(dataset, category[, sub])`` in this order (default: the sampler's ``hierarchy``).
        period, alpha, samples_per_step, min_weight: as :class:`ErrorAwareCurriculum`.
    """

    def __init__(
        self,
        sampler: WeightedSampler,
        hierarchy: Mapping[str, Any] | None = None,
        *,
        period: int = DEFAULT_PERIOD,
        alpha: float = 0.8,
        samples_per_step: int | None = None,
        min_weight: float | None = None,
    ) -> None:
        if hierarchy is None:  # a sampler made by from_hierarchy / from_dataset knows it
            hierarchy = getattr(sampler, "hierarchy", None)
        if not hierarchy:
            raise InvalidArgumentError("hierarchy: expected {dataset: [category, ...]}")
        self.hierarchy: dict[str, Any] = {}
        for s, cs in hierarchy.items():
            if isinstance(cs, Mapping):
                tree = {str(c): [str(x) for x in subs] for c, subs in cs.items()}
                bad = [c for c, subs in tree.items() if not subs or len(set(subs)) != len(subs)]
                if not tree or bad:
                    raise InvalidArgumentError(
                        f"hierarchy[{s!r}]: expected unique sub-category names per category"
                    )
                self.hierarchy[str(s)] = tree
            else:
                names = [str(c) for c in cs]
                if not names or len(set(names)) != len(names):
                    raise InvalidArgumentError(f"hierarchy[{s!r}]: expected unique category names")
                self.hierarchy[str(s)] = names
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise InvalidArgumentError(f"period: must be a positive int, got {period!r}")
        self.sampler = sampler
        self.period = period
        self.alpha = float(alpha)
        self.samples_per_step = samples_per_step
        self.min_weight = min_weight
        self._source = _uniform(list(self.hierarchy))
        self._category = {s: _uniform(list(cs)) for s, cs in self.hierarchy.items()}
        self._sub = {
            s: {c: _uniform(subs) for c, subs in cs.items()}
            for s, cs in self.hierarchy.items()
            if isinstance(cs, dict)
        }
        self.history: list[tuple[int, dict[str, Any]]] = []
        self._apply(0, None)

    @property
    def leaves(self) -> list[tuple[str, ...]]:
        """``(dataset, category[, sub-category])`` in the sampler's leaf order."""
        out: list[tuple[str, ...]] = []
        for s, cs in self.hierarchy.items():
            for c in cs:
                subs = cs[c] if isinstance(cs, dict) else None
                out += [(s, c)] if subs is None else [(s, c, x) for x in subs]
        return out

    @property
    def source_weights(self) -> dict[str, float]:
        """``P(dataset)``."""
        return _normalised(self._source)

    @property
    def category_weights(self) -> dict[str, dict[str, float]]:
        """``P(category | dataset)``."""
        return {s: _normalised(w) for s, w in self._category.items()}

    @property
    def subcategory_weights(self) -> dict[str, dict[str, dict[str, float]]]:
        """``P(sub-category | dataset, category)`` for the datasets that have sub-categories."""
        return {s: {c: _normalised(w) for c, w in cs.items()} for s, cs in self._sub.items()}

    def leaf_weights(self) -> list[float]:
        """``P(dataset) x P(category | dataset) [x P(sub | dataset, category)]`` per leaf (sums
        to 1)."""
        ps, pc, px = self.source_weights, self.category_weights, self.subcategory_weights
        out = []
        for leaf in self.leaves:
            w = ps[leaf[0]] * pc[leaf[0]][leaf[1]]
            out.append(w * px[leaf[0]][leaf[1]][leaf[2]] if len(leaf) == 3 else w)
        return out

    def node_weights(self) -> dict[tuple[str, ...], float]:
        """Each level's weights as computed (CURE's, not normalised again), by node path: what
        a nested sampler interleaves with."""
        out: dict[tuple[str, ...], float] = {(s,): w for s, w in self._source.items()}
        for s, cs in self._category.items():
            out.update({(s, c): w for c, w in cs.items()})
        for s, tree in self._sub.items():
            for c, subs in tree.items():
                out.update({(s, c, x): w for x, w in subs.items()})
        return out

    def due(self, step: int) -> bool:
        """Whether step ``step`` ends a period."""
        return step > 0 and step % self.period == 0

    def update(
        self,
        metrics: Mapping[str, Metrics],
        step: int,
        categories: Mapping[str, Mapping[str, Metrics]] | None = None,
        subcategories: Mapping[str, Mapping[str, Mapping[str, Metrics]]] | None = None,
    ) -> list[float]:
        """New dataset weights from ``metrics`` (``{dataset: {"iou", "text"}}``); new category
        weights for the datasets in ``categories`` (``{dataset: {category: metrics}}``); new
        sub-category weights for the categories in ``subcategories`` (``{dataset: {category:
        {sub: metrics}}}``); the others keep theirs. Applied to the sampler from training step
        ``step``; returns the leaf weights."""
        unknown = set(metrics) ^ set(self.hierarchy)
        if unknown:
            raise InvalidArgumentError(f"metrics: datasets {sorted(unknown)} do not match")
        self._source = cure_weights(metrics, self.alpha, min_weight=self.min_weight)
        for s, per_category in (categories or {}).items():
            if s not in self.hierarchy or set(per_category) != set(self.hierarchy[s]):
                raise InvalidArgumentError(
                    f"categories[{s!r}]: expected {list(self.hierarchy.get(s, []))}"
                )
            cw = cure_weights(per_category, self.alpha, min_weight=self.min_weight)
            self._category[s] = {c: cw[c] for c in self.hierarchy[s]}
        for s, per_tree in (subcategories or {}).items():
            tree = self.hierarchy.get(s)
            if not isinstance(tree, dict):
                raise InvalidArgumentError(f"subcategories[{s!r}]: {s} has no sub-categories")
            for c, per_sub in per_tree.items():
                if c not in tree or set(per_sub) != set(tree[c]):
                    raise InvalidArgumentError(
                        f"subcategories[{s!r}][{c!r}]: expected {tree.get(c)}"
                    )
                sw = cure_weights(per_sub, self.alpha, min_weight=self.min_weight)
                self._sub[s][c] = {x: sw[x] for x in tree[c]}
        self._apply(int(step), self.samples_per_step)
        return self.leaf_weights()

    def _apply(self, step: int, samples_per_step: int | None) -> None:
        at = None if samples_per_step is None or step == 0 else step * samples_per_step
        nested = getattr(self.sampler, "set_node_weights", None)
        if callable(nested):
            nested(self.node_weights(), step=at)
        else:
            self.sampler.set_weights(self.leaf_weights(), step=at)
        entry: dict[str, Any] = {
            "sources": dict(self._source),
            "categories": {s: dict(w) for s, w in self._category.items()},
        }
        if self._sub:
            entry["subcategories"] = {
                s: {c: dict(w) for c, w in cs.items()} for s, cs in self._sub.items()
            }
        self.history.append((step, entry))

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (the sampler keeps its own, with the weight log)."""
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
        self._source = {s: float(v) for s, v in last["sources"].items()}
        self._category = {
            s: {c: float(v) for c, v in w.items()} for s, w in last["categories"].items()
        }
        self._sub = {
            s: {c: {x: float(v) for x, v in w.items()} for c, w in cs.items()}
            for s, cs in last.get("subcategories", {}).items()
        }
