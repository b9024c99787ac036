"""Curricula: which samples each epoch trains on, and how (computed in
``rust/core/src/curriculum``).

- :mod:`~gradatim.curriculum.rrgcl`: RRGCL's class-level scheduler (Eq. 11-13, Algorithm 1):
  :func:`rrgcl_rates`, :class:`RRGCLScheduler`;
- :mod:`~gradatim.curriculum.pacing`: the baselines of RRGCL's ablation (linear, root, geometric,
  baby step, one pass): :func:`pacing`, :class:`PacingScheduler`;
- :mod:`~gradatim.curriculum.cure`: CURE's error-aware weights: :func:`cure_weights`,
  :class:`ErrorAwareCurriculum`; :mod:`~gradatim.curriculum.cure_two_level`: dataset x category
  weights, :class:`TwoLevelCurriculum`;
- :mod:`~gradatim.curriculum.stages`: MedCLM's Easy / Medium / Hard :class:`StageScheduler`.

Epoch subsets become training order through :class:`gradatim.sampling.CurriculumSampler`
(re-exported here; importing it imports torch).
"""

from __future__ import annotations

from typing import Any

from gradatim.curriculum.cure import (
    ErrorAwareCurriculum,
    cure_weights,
    natural_weights,
    uniform_weights,
)
from gradatim.curriculum.cure_two_level import TwoLevelCurriculum
from gradatim.curriculum.pacing import PACING_NAMES, PacingScheduler, bucket_stage, pacing
from gradatim.curriculum.rrgcl import UNLABELED, RRGCLScheduler, rrgcl_rates
from gradatim.curriculum.stages import STAGES, StageScheduler, medclm_domain

__all__ = [
    "rrgcl_rates",
    "RRGCLScheduler",
    "UNLABELED",
    "pacing",
    "bucket_stage",
    "PACING_NAMES",
    "PacingScheduler",
    "cure_weights",
    "natural_weights",
    "uniform_weights",
    "ErrorAwareCurriculum",
    "TwoLevelCurriculum",
    "StageScheduler",
    "medclm_domain",
    "STAGES",
    "CurriculumSampler",
]


def __getattr__(name: str) -> Any:
    if name == "CurriculumSampler":  # lazy: the sampler module imports torch
        from gradatim.sampling import CurriculumSampler

        return CurriculumSampler
    raise AttributeError(f"module 'gradatim.curriculum' has no attribute {name!r}")
