"""Evaluation of generated text: grounding IoU (union, as CURE), BLEU-4, ROUGE-L, hallucination
per anatomy, per source and category (``gradatim evaluate``)."""

from gradatim.evaluate.clinical import score_clinical
from gradatim.evaluate.hallucination import is_normal
from gradatim.evaluate.iou import union_area, union_iou
from gradatim.evaluate.report import curriculum_metrics, evaluate_rows, read_predictions, summarize
from gradatim.evaluate.text import bleu4, rouge_l

__all__ = [
    "bleu4",
    "curriculum_metrics",
    "evaluate_rows",
    "is_normal",
    "read_predictions",
    "rouge_l",
    "score_clinical",
    "summarize",
    "union_area",
    "union_iou",
]
