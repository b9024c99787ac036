"""Training: a thin LoRA loop over transformers + peft (``loop``), its configuration
(``config``), checkpoints (``checkpoint``), models and tokenizers (``models``, ``tokenizer``),
text encoding (``text``), per-sample losses (``loss``) and multi-task gradient combination
(``gradients``, ``multitask``). Heavy imports (transformers, peft) happen inside the functions that
need them."""

from gradatim.train.gradients import METHODS, combine
from gradatim.train.multitask import CAME_Grad, MultiTaskOptimizer

__all__ = ["METHODS", "combine", "CAME_Grad", "MultiTaskOptimizer"]
