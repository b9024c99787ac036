"""Class difficulty ``difC(n)`` of RRGCL (paper 002, Section 3.3; the input of Eq. 12).

Definition (docs/curriculum.md, "RRGCL"), computed by the RRGCL scheduler's own code in the
core (``rust/core/src/curriculum/rrgcl.rs``), so there is one rule: the mean of ``dif`` over the
class's samples, a multi-label sample counting once in each of its
classes (duplicates inside a sample ignored, a sample without classes counted in
``"unlabeled"``), then min-max scaled over the classes to ``[0, 1]``; a constant vector (or a
single class) scales to 0.5.

Which classes a sample has comes from :func:`gradatim.manifest.sample_classes` (CheXpert labels
equal to 1 other than "Support Devices"; else "No Finding" if so labelled; else ``"unlabeled"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from gradatim import _core
from gradatim.errors import InvalidArgumentError

__all__ = ["UNLABELED", "class_difficulty", "ClassDifficulty"]

UNLABELED: str = _core.UNLABELED


class ClassDifficulty(dict):  # type: ignore[type-arg]
    """``{class: difC}`` (min-max scaled, insertion order = sorted class names), with the raw
    per-class means and sizes beside it."""

    raw: dict[str, float]
    sizes: dict[str, int]

    def ordering(self) -> list[str]:
        """Classes from easiest to hardest (ties by name): the order RRGCL introduces them."""
        return sorted(self, key=lambda c: (self[c], str(c)))


def class_difficulty(dif: ArrayLike, classes: Sequence[Sequence[str]]) -> ClassDifficulty:
    """Per-class difficulty ``difC(n)`` of RRGCL (input of Eq. 12): mean ``dif`` over the class's
    samples, min-max scaled over classes to ``[0, 1]`` (constant -> 0.5).

    Args:
        dif: ``(N,)`` per-sample difficulty (Eq. 10, :func:`gradatim.difficulty.combine`).
        classes: per sample, its list of class names (empty lists are put in ``"unlabeled"``).

    Returns:
        :class:`ClassDifficulty`, a dict ``{class: difC}`` with ``.raw`` (means) and ``.sizes``.
    """
    d = np.asarray(dif, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise InvalidArgumentError(
            f"class_difficulty: dif must be a non-empty 1-D array, got {d.shape}"
        )
    if not np.isfinite(d).all():
        i = int(np.argmin(np.isfinite(d)))
        raise InvalidArgumentError(f"class_difficulty: dif[{i}] is not finite ({d[i]})")
    if isinstance(classes, (str, bytes)) or len(classes) != d.size:
        raise InvalidArgumentError(
            f"class_difficulty: expected one class list per sample ({d.size}), got "
            f"{len(classes) if not isinstance(classes, (str, bytes)) else 'a string'}"
        )
    from gradatim.curriculum.rrgcl import _encode

    lists = [[str(c) for c in cs] for cs in classes]
    offsets, ids, names = _encode(lists, d.size, None)
    core = _core.RRGCL(offsets, ids, len(names), d, 1.0, None)  # one home: the scheduler's rule
    if core.unlabeled is not None:
        names = [*names, UNLABELED]
    raw_all = np.asarray(core.raw_class_difficulty)
    scaled_all = np.asarray(core.class_difficulty)
    sizes_all = np.asarray(core.class_sizes)
    order = sorted(range(len(names)), key=lambda k: str(names[k]))
    names = [str(names[k]) for k in order]
    raw, scaled, counts = raw_all[order], scaled_all[order], sizes_all[order]
    out = ClassDifficulty(zip(names, (float(x) for x in scaled), strict=True))
    out.raw = {c: float(r) for c, r in zip(names, raw, strict=True)}
    out.sizes = {c: int(k) for c, k in zip(names, counts, strict=True)}
    return out
