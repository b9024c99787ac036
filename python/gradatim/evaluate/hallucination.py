"""Hallucination per anatomy (CURE, paper 000, Section 4: a region the reference calls normal that
the model describes as abnormal). A description is *normal* when, lower-cased and without
punctuation, it is one of the normal phrases (the templates' ``No acute findings.`` among them) or
starts with a negated finding word ("no acute ...", "no abnormality", "without ..."). This is a
rule, not a clinical classifier; it is what the anatomy-grounded templates produce for normal
regions, so it is exact on gradatim's own targets and a heuristic on free text."""

from __future__ import annotations

import re

__all__ = ["is_normal", "NORMAL_PHRASES"]

NORMAL_PHRASES = frozenset(
    {
        "no acute findings",
        "no findings",
        "normal",
        "unremarkable",
        "within normal limits",
        "no abnormality",
        "no abnormalities",
        "clear",
    }
)
_NEGATED = re.compile(
    r"^(no|without)\s+(acute\s+)?(findings?|abnormalit(y|ies)|disease|pathology)\b"
)


def is_normal(description: str) -> bool:
    """True when the description states a normal region."""
    text = re.sub(r"[^a-z0-9 ]+", " ", description.lower())
    text = " ".join(text.split())
    return text in NORMAL_PHRASES or bool(_NEGATED.match(text))
