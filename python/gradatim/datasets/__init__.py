"""Embedded data: :mod:`gradatim.datasets.phantom`, SYNTHETIC phantom chest X-ray studies
(images, reports, boxes, labels) for demos and tests. No real patient data ships with gradatim.
"""

from __future__ import annotations

from gradatim.datasets import phantom

__all__ = ["phantom"]
