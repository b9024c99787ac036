"""CheXpert labels and the classes RRGCL trains by (paper 002, Sec. 3.3).

A manifest's ``labels`` is a CheXpert-style dict ``label -> 1 | 0 | -1 | None`` (positive,
negative, uncertain, not mentioned). RRGCL groups samples by class: a sample belongs to every one
of the 13 CheXpert labels other than "Support Devices" that is positive (1); a sample with none
belongs to "No Finding" if that label is 1, and otherwise to the explicit class ``unlabeled`` so
that no sample is lost (docs/manifest.md, "RRGCL classes").
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from gradatim import _core

__all__ = [
    "CHEXPERT_LABELS",
    "CLASS_LABELS",
    "NO_FINDING",
    "SUPPORT_DEVICES",
    "UNLABELED",
    "LABEL_VALUES",
    "sample_classes",
    "parse_label_value",
    "read_label_csv",
]

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"
UNLABELED: str = _core.UNLABELED  # defined once, in the core

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
"""The 14 CheXpert observations, in the order of the CheXpert / MIMIC-CXR-JPG label files."""

CLASS_LABELS: tuple[str, ...] = tuple(
    label for label in CHEXPERT_LABELS if label not in (NO_FINDING, SUPPORT_DEVICES)
)
"""The 12 findings that make a sample's classes when positive. Together with "No Finding" these
are the 13 labels other than "Support Devices" of RRGCL."""

LABEL_VALUES: tuple[int | None, ...] = (1, 0, -1, None)
"""Allowed label values: positive, negative, uncertain, not mentioned."""


def sample_classes(labels: Mapping[str, int | None] | None) -> list[str]:
    """The RRGCL classes of one sample, from its CheXpert-style ``labels``.

    The positive (``== 1``) findings among the 13 labels other than "Support Devices", in
    :data:`CHEXPERT_LABELS` order; if there are none, ``["No Finding"]`` when
    ``labels["No Finding"] == 1``, else ``["unlabeled"]``. Uncertain (-1) counts as not positive.
    A sample labelled both "No Finding" and a finding belongs to the finding only (the CheXpert
    labeller never does this; hand-made labels may).
    """
    labels = labels or {}
    positive = [label for label in CLASS_LABELS if labels.get(label) == 1]
    if positive:
        return positive
    return [NO_FINDING] if labels.get(NO_FINDING) == 1 else [UNLABELED]


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
    from gradatim.manifest.common import iter_csv  # common imports this module

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
