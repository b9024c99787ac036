"""Text metrics through maintained libraries: BLEU-4 (sacrebleu, sentence level with its default
exponential smoothing, on the 0-1 scale) and ROUGE-L F1 (Google's rouge-score, with stemming).

CURE's curriculum scores text with CXRFEScore, a learned clinical scorer; gradatim computes it only
when its weights are on the machine (``docs/training.md``). Otherwise the curriculum's
``text_score`` is ROUGE-L, named as such in every output."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["bleu4", "rouge_l", "TEXT_METRICS"]


@lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 in [0, 1]."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(prediction, [reference]).score) / 100


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure in [0, 1]."""
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


TEXT_METRICS = {"bleu4": bleu4, "rougeL": rouge_l}
