"""Reading CheXpert-format label files (``mimic-cxr-2.0.0-chexpert.csv[.gz]``, the NegBio twin,
CheXbert's output, ...) into the ``labels`` dicts of manifest records.

Kept apart from :mod:`gradatim.manifest.classes` so that the imports run one way:
``classes`` (label names) <- ``common`` (records, CSV reader) <- this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from gradatim.manifest.classes import CHEXPERT_LABELS
from gradatim.manifest.common import iter_csv

__all__ = ["parse_label_value", "read_label_csv"]


def parse_label_value(cell: str | None) -> int | None:
    """A label cell of a CheXpert-format CSV: ``"1.0"`` or ``"1"`` -> 1, ``"0.0"`` -> 0,
    ``"-1.0"`` -> -1, empty -> None. Raises ``ValueError`` for anything else."""
    if cell is None or not cell.strip():
        return None
    value = float(cell)
    if value not in (1.0, 0.0, -1.0):
        raise ValueError(f"expected 1, 0, -1 or empty, got {cell!r}")
    return int(value)


def read_label_csv(
    path: str | os.PathLike[str], key: str | Sequence[str]
) -> dict[str | tuple[str, ...], dict[str, int | None]]:
    """Read a CheXpert-format label file (``mimic-cxr-2.0.0-chexpert.csv[.gz]``, the NegBio
    twin, CheXbert's output, ...) into ``{key: labels}``.

    ``key`` names the column (or columns, giving tuple keys) that identify a row, e.g.
    ``"study_id"``. Every one of the 14 :data:`CHEXPERT_LABELS` present as a column is read; at
    least one must be. Empty cells (not mentioned) are left out of the dict, which means the
    same as null. A repeated key is an error, as is a cell other than 1, 0, -1 or empty; the
    :class:`gradatim.errors.ManifestError` names the file, line and column.
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    out: dict[str | tuple[str, ...], dict[str, int | None]] = {}
    first: dict[str | tuple[str, ...], int] = {}
    columns: list[str] | None = None
    for where, row in iter_csv(path, required=keys):
        if columns is None:
            columns = [c for c in CHEXPERT_LABELS if c in row]
            if not columns:
                raise where.error(
                    None, f"no CheXpert label column (expected some of {CHEXPERT_LABELS})"
                )
        k: str | tuple[str, ...] = row[keys[0]] if len(keys) == 1 else tuple(row[c] for c in keys)
        if k in first:
            raise where.error(keys[0], f"repeated key (first at line {first[k]})")
        first[k] = where.row or 0
        labels: dict[str, int | None] = {}
        for c in columns:
            try:
                value = parse_label_value(row[c])
            except ValueError as exc:
                raise where.error(c, str(exc)) from None
            if value is not None:  # absent means null: keep manifests small
                labels[c] = value
        out[k] = labels
    return out
