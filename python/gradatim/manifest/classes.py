"""CheXpert labels and the classes RRGCL trains by (paper 002, Sec. 3.3).

A manifest's ``labels`` is a CheXpert-style dict ``label -> 1 | 0 | -1 | None`` (positive,
negative, uncertain, not mentioned). RRGCL groups samples by class: a sample belongs to every one
of the 13 CheXpert labels other than "Support Devices" that is positive (1); a sample with none
belongs to "No Finding" if that label is 1, and otherwise to the explicit class ``unlabeled`` so
that no sample is lost (docs/manifest.md, "RRGCL classes").

This module only names labels and classes; reading CheXpert-format label files is
:mod:`gradatim.manifest.label_csv` (which builds on :mod:`~gradatim.manifest.common`'s CSV
reader).
"""

from __future__ import annotations

from collections.abc import Mapping

from gradatim import _core

__all__ = [
    "CHEXPERT_LABELS",
    "CLASS_LABELS",
    "NO_FINDING",
    "SUPPORT_DEVICES",
    "UNLABELED",
    "LABEL_VALUES",
    "sample_classes",
]

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"
UNLABELED: str = _core.UNLABELED  # defined once, in the core

CHEXPERT_LABELS: tuple[str, ...] = tuple(_core.CHEXPERT_LABELS)  # defined once, in the core
"""The 14 CheXpert observations, in the order of the CheXpert / MIMIC-CXR-JPG label files (the
order a record's labels are written in first)."""

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
