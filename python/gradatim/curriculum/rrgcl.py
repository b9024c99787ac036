"""RRGCL's class-level dynamic sample scheduler (paper 002, Section 3.3, Eq. 11-13, Algorithm 1).

The equations are computed in Rust (``rust/core/src/curriculum/rrgcl.rs``):

- class difficulty ``difC(n)``: mean of the per-sample ``dif`` over the class's samples (a
  multi-label sample counts in every class), min-max scaled over classes to ``[0, 1]``; a constant
  vector scales to 0.5;
- Eq. 12: ``gamma_n = 1 + (1 - difC(n)) * c``, ``c`` defaulting to the number of classes (the paper
  writes ``gamma_n in [1, c + 1]`` with ``c`` its number of classes);
- Eq. 13: ``lambda_n(0) = gamma_n / sum_k gamma_k``;
- Eq. 11:
  ``lambda_n(t) = min(1, (lambda_n(0)^gamma_n + (1 - lambda_n(0)^gamma_n) t / T)^(1/gamma_n))``;
- epoch ``t`` trains on the union over classes of the ``ceil(lambda_n(t) |D_n|)`` easiest samples of
  ``D_n`` (ascending ``dif``, ties by index). ``t = T`` (and later) is the whole training set.

Samples without a class go to the class ``"unlabeled"`` (the last class, or an existing class of
that name), so no sample is ever dropped; a class without samples is an error, never skipped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core
from gradatim.errors import InvalidArgumentError

__all__ = ["UNLABELED", "rrgcl_rates", "RRGCLScheduler"]

UNLABELED: str = _core.UNLABELED  # defined once, in the core
"""Name of the class that collects samples without any class."""


def rrgcl_rates(
    class_difficulty: ArrayLike, t: float, T: float, c: float | None = None
) -> NDArray[np.float64]:
    """``lambda_n(t)`` for every class: min-max scaling of ``class_difficulty``, then Eq. 12
    (``gamma_n``), Eq. 13 (``lambda_n(0)``) and Eq. 11 of the RRGCL paper.

    Args:
        class_difficulty: per-class mean difficulty (raw; scaled here, so already scaled values
            spanning ``[0, 1]`` pass through unchanged).
        t: epoch, ``>= 0`` (fractional values allowed, e.g. for plotting).
        T: total number of epochs (``> 0``); ``lambda_n(t) = 1`` for ``t >= T``.
        c: Eq. 12's constant; default: the number of classes.
    """
    d = np.asarray(class_difficulty, dtype=np.float64)
    if d.ndim != 1:
        raise InvalidArgumentError(f"class_difficulty: expected a 1-D array, got shape {d.shape}")
    return _core.rrgcl_rates([float(x) for x in d], float(t), float(T), _opt_float(c))


def _opt_float(x: float | None) -> float | None:
    return None if x is None else float(x)


def _difficulty(difficulty: ArrayLike) -> NDArray[np.float64]:
    d = np.ascontiguousarray(difficulty, dtype=np.float64)
    if d.ndim != 1:
        raise InvalidArgumentError(f"difficulty: expected a 1-D array, got shape {d.shape}")
    return d


def _labels_of(item: Any) -> list[Any]:
    if item is None:
        return []
    if isinstance(item, (str, bytes, int, np.integer)):
        return [item]
    if isinstance(item, Iterable):
        return list(item)
    raise InvalidArgumentError(
        f"classes: expected a class id, a name or a list of them per sample, got {item!r}"
    )


def _encode(
    classes: Any, n: int, class_names: Sequence[Hashable] | None
) -> tuple[NDArray[np.int64], NDArray[np.int64], list[Hashable]]:
    """Per-sample class lists -> CSR (offsets, ids) and the class names. Samples without a class
    get the id of an existing ``"unlabeled"`` class, or none (the core then adds that class)."""
    names: list[Hashable]
    if isinstance(classes, np.ndarray) and classes.ndim == 2:
        if classes.shape[0] != n:
            raise InvalidArgumentError(
                f"classes: {classes.shape[0]} rows for {n} difficulty values"
            )
        member = classes == 1  # multi-hot; CheXpert's 0 / -1 / NaN are not members
        names = list(class_names) if class_names is not None else list(range(classes.shape[1]))
        if len(names) != classes.shape[1]:
            raise InvalidArgumentError(
                f"class_names: {len(names)} names for {classes.shape[1]} columns"
            )
        if UNLABELED in names:
            u = names.index(UNLABELED)
            member = member.copy()
            member[~member.any(axis=1), u] = True
        rows, cols = np.nonzero(member)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        return offsets, cols.astype(np.int64), names

    if isinstance(classes, np.ndarray) and classes.ndim == 1 and classes.dtype.kind in "iu":
        lists: list[list[Any]] = [[int(x)] for x in classes]
    else:
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
            raise InvalidArgumentError("classes: expected one class list per sample")
        lists = [_labels_of(item) for item in classes]
    if len(lists) != n:
        raise InvalidArgumentError(f"classes: {len(lists)} class lists for {n} difficulty values")

    flat = [lab for labs in lists for lab in labs]
    is_int = [isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in flat]
    if class_names is not None:
        names = list(class_names)
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names):
            raise InvalidArgumentError("class_names: names must be unique")

        def lookup(x: Any, i: int) -> int:
            if x in index:
                return index[x]
            if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
                if 0 <= x < len(names):
                    return int(x)  # an id: a position in class_names
            raise InvalidArgumentError(f"classes: sample {i} has unknown class {x!r}")

    elif all(is_int):
        present = sorted({int(x) for x in flat})
        if present and present[0] < 0:
            raise InvalidArgumentError(f"classes: negative class id {present[0]}")
        names = list(present)
        index = {name: i for i, name in enumerate(names)}

        def lookup(x: Any, i: int) -> int:
            return index[int(x)]

    elif not any(is_int):
        names = sorted({x for x in flat}, key=str)
        index = {name: i for i, name in enumerate(names)}

        def lookup(x: Any, i: int) -> int:
            return index[x]

    else:
        raise InvalidArgumentError(
            "classes: mix of ids and names; pass class_names to say how ids map to names"
        )

    u = names.index(UNLABELED) if UNLABELED in names else None
    offsets = np.zeros(n + 1, dtype=np.int64)
    ids: list[int] = []
    for i, labs in enumerate(lists):
        if labs:
            ids.extend(lookup(x, i) for x in labs)
        elif u is not None:
            ids.append(u)
        offsets[i + 1] = len(ids)
    return offsets, np.asarray(ids, dtype=np.int64), names


FLAT_FRACTION = 0.1
"""Class means closer than this fraction of the samples' standard deviation trigger a warning."""


def _warn_if_flat(class_means: NDArray[np.float64], dif: NDArray[np.float64]) -> None:
    """Min-max scaling (implied by the paper) maps the easiest class to 0 and the hardest to 1
    whatever their gap: when the class means differ by less than ``FLAT_FRACTION`` of a standard
    deviation of ``dif``, that is noise stretched over the whole schedule range. Say so, once."""
    if class_means.size < 2:
        return
    spread = float(class_means.max() - class_means.min())
    sigma = float(dif.std())
    if sigma > 0 and 0 < spread < FLAT_FRACTION * sigma:
        warnings.warn(
            f"RRGCL: the class difficulties differ by only {spread:.3g} ({spread / sigma:.1%} of "
            f"the per-sample standard deviation {sigma:.3g}); min-max scaling stretches this "
            "into the whole schedule range, so the class order may be noise",
            RuntimeWarning,
            stacklevel=4,
        )


class RRGCLScheduler:
    """RRGCL's class-level scheduler over a training set (Algorithm 1).

    The paper counts epochs ``t = 1 .. T`` (Eq. 11), and ``t = T`` trains on every sample.
    ``first_t = 1`` tells :class:`gradatim.sampling.CurriculumSampler` so: its epoch ``e``
    (0-based, as torch and a plain ``for epoch in range(T)`` loop count) trains on ``t = e + 1``,
    so the last epoch of ``range(T)`` reaches ``lambda = 1``. ``epoch_indices(t)`` and
    ``rates(t)`` take the paper's ``t``.

    Args:
        classes: per sample, its classes: a list of class ids or names (multi-label; an empty list
            or ``None`` means no class), a single id or name; or a 2-D multi-hot array
            ``(n_samples, n_classes)`` where an entry ``== 1`` marks membership (CheXpert
            convention: 0, -1 and NaN are not members).
        difficulty: per-sample ``dif(i)`` (Eq. 10, from :mod:`gradatim.difficulty`).
        epochs: ``T``, the number of training epochs; epoch ``t = T`` trains on every sample.
        class_names: the classes in id order (required to map ids of a multi-hot matrix to names,
            optional otherwise: names are sorted, ids are the sorted ids present).
        c: Eq. 12's constant (default: the number of classes, unlabeled included).
    """

    first_t = 1
    """The paper's first epoch (Eq. 11 counts t = 1 .. T)."""

    def __init__(
        self,
        classes: Any,
        difficulty: ArrayLike,
        epochs: int,
        *,
        class_names: Sequence[Hashable] | None = None,
        c: float | None = None,
    ) -> None:
        dif = _difficulty(difficulty)
        offsets, ids, names = _encode(classes, dif.shape[0], class_names)
        self._init(offsets, ids, names, dif, epochs, c)

    def _init(
        self,
        offsets: NDArray[np.int64],
        ids: NDArray[np.int64],
        names: list[Hashable],
        dif: NDArray[np.float64],
        epochs: float,
        c: float | None,
    ) -> None:
        if isinstance(epochs, bool) or not float(epochs) > 0:
            raise InvalidArgumentError(f"epochs: must be a positive number, got {epochs!r}")
        counts = np.bincount(ids, minlength=len(names)) if ids.size else np.zeros(len(names))
        empty = [names[k] for k in np.flatnonzero(counts[: len(names)] == 0)]
        if empty:
            raise InvalidArgumentError(
                f"classes: class(es) {empty!r} have no samples; every class needs at least one "
                "(remove them from class_names or relabel)"
            )
        self._core = _core.RRGCL(
            np.ascontiguousarray(offsets, dtype=np.int64),
            np.ascontiguousarray(ids, dtype=np.int64),
            len(names),
            dif,
            float(epochs),
            _opt_float(c),
        )
        if self._core.unlabeled is not None:
            names = [*names, UNLABELED]
        self._names = names
        self._epochs = epochs
        _warn_if_flat(np.asarray(self._core.raw_class_difficulty), dif)

    @classmethod
    def from_csr(
        cls,
        offsets: ArrayLike,
        class_ids: ArrayLike,
        difficulty: ArrayLike,
        epochs: int,
        *,
        class_names: Sequence[Hashable] | None = None,
        c: float | None = None,
    ) -> RRGCLScheduler:
        """Build from compressed class lists: sample ``i``'s class ids are
        ``class_ids[offsets[i]:offsets[i + 1]]`` (ids ``< len(class_names)``, or ``<= max id``).
        The fast path for millions of samples: no per-sample Python work."""
        dif = _difficulty(difficulty)
        off = np.ascontiguousarray(offsets, dtype=np.int64)
        ids = np.ascontiguousarray(class_ids, dtype=np.int64)
        k = len(class_names) if class_names is not None else (int(ids.max()) + 1 if ids.size else 0)
        names = list(class_names) if class_names is not None else list(range(k))
        self = cls.__new__(cls)
        self._init(off, ids, names, dif, epochs, c)
        return self

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        epochs: int,
        *,
        classes_column: str = "classes",
        difficulty_column: str = "dif",
        class_names: Sequence[Hashable] | None = None,
        c: float | None = None,
    ) -> RRGCLScheduler:
        """Read per-sample classes (a list column) and difficulty from a Parquet or JSONL file,
        such as the output of ``gradatim difficulty`` (its column names are the defaults here)."""
        import pyarrow.parquet as pq

        p = os.fspath(path)
        if p.endswith((".jsonl", ".json")):
            import pyarrow.json as pj

            table = pj.read_json(p)
        else:
            table = pq.read_table(p, columns=[classes_column, difficulty_column])
        for col in (classes_column, difficulty_column):
            if col not in table.column_names:
                raise InvalidArgumentError(f"{p}: no column {col!r}")
        classes = table.column(classes_column).to_pylist()
        dif = table.column(difficulty_column).to_numpy(zero_copy_only=False)
        return cls(classes, dif, epochs, class_names=class_names, c=c)

    # -- the schedule ----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[Hashable]:
        """Class names (or ids) in class-id order, ``"unlabeled"`` last when it was added."""
        return list(self._names)

    @property
    def num_classes(self) -> int:
        return int(self._core.num_classes)

    @property
    def num_samples(self) -> int:
        return int(self._core.num_samples)

    @property
    def epochs(self) -> int:
        return self._epochs

    @property
    def c(self) -> float:
        """Eq. 12's constant in use."""
        return float(self._core.c)

    @property
    def raw_class_difficulty(self) -> NDArray[np.float64]:
        """Mean ``dif`` per class, before scaling."""
        return self._core.raw_class_difficulty

    @property
    def class_difficulty(self) -> NDArray[np.float64]:
        """``difC(n)``: the per-class mean difficulty, min-max scaled to ``[0, 1]``."""
        return self._core.class_difficulty

    @property
    def gamma(self) -> NDArray[np.float64]:
        """Eq. 12: ``gamma_n = 1 + (1 - difC(n)) * c``."""
        return self._core.gamma

    @property
    def lambda0(self) -> NDArray[np.float64]:
        """Eq. 13: ``lambda_n(0) = gamma_n / sum_k gamma_k``."""
        return self._core.lambda0

    @property
    def class_sizes(self) -> NDArray[np.int64]:
        """``|D_n|`` per class."""
        return self._core.class_sizes.astype(np.int64)

    def rates(self, t: float) -> NDArray[np.float64]:
        """Eq. 11: ``lambda_n(t)`` per class (``t >= 0``; 1 from ``t = T`` on)."""
        return self._core.rates(float(t))

    def counts(self, t: float) -> NDArray[np.int64]:
        """``ceil(lambda_n(t) * |D_n|)`` per class: how many of each class's easiest samples
        epoch ``t`` takes."""
        return self._core.counts(float(t)).astype(np.int64)

    def epoch_indices(self, t: float) -> NDArray[np.int64]:
        """Epoch ``t``'s training subset: sorted, distinct sample indices."""
        return self._core.epoch_indices(float(t))

    def class_indices(self, cls: Hashable) -> NDArray[np.int64]:
        """The samples of a class (by name or id), easiest first. A name is looked up first: with
        integer class names, an integer means the class of that name, not that id."""
        if cls in self._names:
            k = self._names.index(cls)
        elif isinstance(cls, (int, np.integer)) and 0 <= int(cls) < self.num_classes:
            k = int(cls)
        else:
            raise InvalidArgumentError(f"class: unknown class {cls!r}")
        return self._core.class_members(k).astype(np.int64)

    def schedule(self, ts: ArrayLike | None = None) -> NDArray[np.float64]:
        """``lambda_n(t)`` for every ``t`` in ``ts`` (default ``0..T``): shape ``(len(ts), C)``."""
        grid = np.arange(int(np.ceil(self._epochs)) + 1) if ts is None else np.asarray(ts)
        return np.stack([self.rates(float(t)) for t in grid.ravel()])

    def sampler(self, **kwargs: Any) -> Any:
        """A :class:`gradatim.sampling.CurriculumSampler` over this schedule (``seed``,
        ``shuffle``, ``rank``, ``world_size``, ``drop_last`` are passed through)."""
        from gradatim.sampling import CurriculumSampler

        return CurriculumSampler(self, **kwargs)

    def __repr__(self) -> str:
        return (
            f"RRGCLScheduler(num_samples={self.num_samples}, num_classes={self.num_classes}, "
            f"epochs={self._epochs}, c={self.c})"
        )
