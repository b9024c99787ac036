"""Text metrics and the text they are computed on.

Two settings, each named wherever it is used (``gradatim evaluate --text-clean / --text-metrics``,
``[curriculum] text_clean / text_metrics``):

- **cleaning** (:data:`TEXT_CLEAN`): ``"none"`` scores the text as generated, box coordinates
  included; ``"cure"`` first does what CURE's training validation does (PabloMessina/CURE
  9365333, ``scripts/train_medgemma.py``, ``_compute_iou_and_clean_text``): every ``[a,b,c,d]``
  box is removed, whitespace is collapsed, the text after the first ``Description...:`` is kept
  when there is one, and ``": ."``, ``" ."`` and ``":"`` become ``"."``. Boxes of gradatim's other
  box formats (``<box>...</box>``, ``<locNNNN>``) are removed the same way.
- **metric settings** (:data:`TEXT_METRICS_SETTINGS`): ``"gradatim"``: BLEU-4 from sacrebleu
  (sentence level, its default exponential smoothing, effective order, averaged over samples) and
  ROUGE-L F1 from Google's rouge-score with stemming; ``"cure"``: CURE's own settings
  (``vlm_research_kit/metrics/metrics_factory.py``: torchmetrics' ``BLEUScore`` and
  ``ROUGEScore``): corpus BLEU-4 (clipped n-gram counts and lengths summed over the corpus,
  whitespace tokens, no smoothing, brevity penalty ``exp(1 - r / c)`` unless ``c > r``; a
  per-sample value is the same on one pair) and ROUGE-L F1 without stemming (averaged over
  samples). torchmetrics is not a dependency: :func:`bleu_stats` / :func:`corpus_bleu` compute
  its BLEU, and rouge-score without stemming tokenises and scores as its ROUGE-L does.

CURE's curriculum scores text with CXRFEScore, a learned clinical scorer; gradatim computes it only
when its weights are on the machine (``docs/training.md``). Otherwise the curriculum's
``text_score`` is ROUGE-L, named as such in every output."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "bleu4",
    "rouge_l",
    "bleu_stats",
    "corpus_bleu",
    "clean_text",
    "TEXT_METRICS",
    "TEXT_CLEAN",
    "TEXT_METRICS_SETTINGS",
]

#: Text cleaning conventions: as generated, or as CURE's training validation cleans it.
TEXT_CLEAN = ("none", "cure")
#: Metric settings: gradatim's (sacrebleu sentence BLEU, stemmed ROUGE-L) or CURE's.
TEXT_METRICS_SETTINGS = ("gradatim", "cure")

_NUMBER = r"-?\d+(?:\.\d*)?"  # the same numbers as \d+\.?\d*, in time linear in the digits
_CURE_BOX = re.compile(r"\[\s*" + r"\s*,\s*".join([f"({_NUMBER})"] * 4) + r"\s*\]")
_TOKEN_BOXES = re.compile(r"<box>.*?</box>|<loc\d+>", flags=re.S)


def clean_text(text: str, convention: str = "cure") -> str:
    """``text`` under a cleaning convention (:data:`TEXT_CLEAN`; see the module docstring)."""
    if convention == "none":
        return text
    if convention != "cure":
        raise ValueError(
            f"text cleaning: expected one of {', '.join(TEXT_CLEAN)}, not {convention!r}"
        )
    out = _TOKEN_BOXES.sub("", _CURE_BOX.sub("", text))
    out = " ".join(out.strip().split())
    # the text after the first ':' that follows the first "Description" (CURE's
    # re.search(r"Description.*?:(.*)"), on text without newlines), found in linear time
    start = out.find("Description")
    colon = out.find(":", start + len("Description")) if start >= 0 else -1
    if colon >= 0:
        out = out[colon + 1 :].strip()
    for old in (": .", " .", ":"):
        out = out.replace(old, ".")
    return out


@lru_cache(maxsize=2)
def _scorer(stem: bool) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem)


def bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 in [0, 1] (sacrebleu, exponential smoothing, effective order)."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(prediction, [reference]).score) / 100


def rouge_l(prediction: str, reference: str, *, stem: bool = True) -> float:
    """ROUGE-L F-measure in [0, 1]; ``stem=False`` is CURE's setting."""
    return float(_scorer(stem).score(reference, prediction)["rougeL"].fmeasure)


def _ngrams(tokens: Sequence[str], order: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[k : k + order]) for k in range(len(tokens) - order + 1))


def bleu_stats(prediction: str, reference: str, order: int = 4) -> list[int]:
    """The sufficient statistics of corpus BLEU for one pair: ``[matches_1 .. matches_N,
    ngrams_1 .. ngrams_N, prediction length, reference length]`` (whitespace tokens, matches
    clipped by the reference's counts). Summed over pairs they give :func:`corpus_bleu`."""
    pred, ref = prediction.split(), reference.split()
    matches, totals = [], []
    for n in range(1, order + 1):
        mine, theirs = _ngrams(pred, n), _ngrams(ref, n)
        matches.append(sum(min(c, theirs[g]) for g, c in mine.items()))
        totals.append(sum(mine.values()))
    return [*matches, *totals, len(pred), len(ref)]


def corpus_bleu(stats: Iterable[Sequence[int]], order: int = 4) -> float:
    """Corpus BLEU in [0, 1] from per-pair :func:`bleu_stats` (summed): uniform weights over the
    ``order`` n-gram precisions, 0 when any order has no match, no smoothing, brevity penalty
    ``exp(1 - r / c)`` unless the predictions are longer than the references (torchmetrics'
    ``BLEUScore`` as CURE uses it)."""
    total = [0] * (2 * order + 2)
    for row in stats:
        for k, v in enumerate(row):
            total[k] += int(v)
    matches, counts = total[:order], total[order : 2 * order]
    pred_len, ref_len = total[2 * order], total[2 * order + 1]
    if min(matches) == 0:
        return 0.0
    log_mean = sum(math.log(m / c) for m, c in zip(matches, counts, strict=True)) / order
    penalty = 1.0 if pred_len > ref_len else math.exp(1.0 - ref_len / pred_len)
    return penalty * math.exp(log_mean)


TEXT_METRICS = {"bleu4": bleu4, "rougeL": rouge_l}
