"""Anatomy names: Chest ImaGenome's 29 regions, the vocabulary of ``boxes[].anatomy``.

CURE's anatomy-grounded tasks (``Locate the {loc}.``, ``Describe the {loc}.``) name these regions
(docs/loader.md, "Box-aware text supervision"). Chest ImaGenome's scene graphs carry a few more
objects (left/right cardiac silhouette, cardiophrenic angles, descending aorta, ...); the
converter keeps only these 29 unless asked for all.

"right" and "left" are the patient's sides: on a PA radiograph the patient's right is on the
image's left.
"""

from __future__ import annotations

__all__ = ["ANATOMY_REGIONS", "is_anatomy_region"]

_BILATERAL = (
    "lung",
    "upper lung zone",
    "mid lung zone",
    "lower lung zone",
    "hilar structures",
    "apical zone",
    "costophrenic angle",
    "hemidiaphragm",
)

ANATOMY_REGIONS: tuple[str, ...] = (
    *(f"{side} {part}" for side in ("right", "left") for part in _BILATERAL),
    "trachea",
    "spine",
    "right clavicle",
    "left clavicle",
    "aortic arch",
    "mediastinum",
    "upper mediastinum",
    "svc",
    "cardiac silhouette",
    "cavoatrial junction",
    "right atrium",
    "carina",
    "abdomen",
)
"""The 29 region names, lower case as Chest ImaGenome's ``bbox_name`` spells them."""

_REGION_SET = frozenset(ANATOMY_REGIONS)


def is_anatomy_region(name: str | None) -> bool:
    """True when ``name`` is one of the 29 :data:`ANATOMY_REGIONS` (exact, lower case)."""
    return name in _REGION_SET
