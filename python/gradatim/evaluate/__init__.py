"""Evaluation of generated text: grounding IoU (union, as CURE), BLEU-4, ROUGE-L, hallucination
per anatomy, per source and category (``gradatim evaluate``), beside baselines (the prompt-only
baseline from training data, other prediction files)."""

from gradatim.evaluate.baselines import grounding_iou, prompt_only_rows, training_stats
from gradatim.evaluate.clinical import score_clinical
from gradatim.evaluate.hallucination import is_normal
from gradatim.evaluate.iou import union_area, union_iou
from gradatim.evaluate.report import curriculum_metrics, evaluate_rows, read_predictions, summarize
from gradatim.evaluate.text import bleu4, rouge_l

__all__ = [
    "bleu4",
    "curriculum_metrics",
    "evaluate_rows",
    "grounding_iou",
    "is_normal",
    "prompt_only_rows",
    "read_predictions",
    "rouge_l",
    "score_clinical",
    "summarize",
    "training_stats",
    "union_area",
    "union_iou",
]
