"""Training: multi-task gradient combination (``gradients``, ``multitask``)."""

from gradatim.train.gradients import METHODS, combine
from gradatim.train.multitask import CAME_Grad, MultiTaskOptimizer

__all__ = ["METHODS", "combine", "CAME_Grad", "MultiTaskOptimizer"]
