"""Learned clinical scorers, computed only from weights already on this machine (never
downloaded; safetensors only, so no pickle is ever loaded). Each takes a local Hugging Face folder:

- ``chexbert``: a CheXpert labeller as a sequence classifier (``config.id2label`` names the
  observations; multi-label, sigmoid > 0.5 = positive mention), e.g. CheXbert converted to
  safetensors. Score: CheXbert F1 as the report-generation literature reports it, micro- and
  macro-averaged F1 of the positive labels of each generated report against its reference's.
- ``radgraph``: an entity tagger as a token classifier (BIO tags, e.g. RadGraph's ANAT-DP /
  OBS-DP / OBS-U / OBS-DA). Score: the entity part of RadGraph F1, per-sample F1 of the
  ``(entity text, type)`` sets, averaged; the relation part needs RadGraph's own relation model
  and is not computed.
- ``cxrfe``: a sentence encoder (CURE's CXR-Fact-Encoder; any encoder folder works and is named
  in the output). Score: CXRFEScore's soft fact matching, each sentence a fact, mean-pooled
  unit embeddings, precision = mean over generated facts of the best cosine to a reference fact,
  recall the other way, F1 per sample, averaged.

A scorer whose folder is missing or has no safetensors weights is not computed, and the summary
says why, naming the folder."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCORERS", "ClinicalUnavailable", "score_clinical", "chexbert_f1", "radgraph_f1",
           "fact_embedding_score"]  # fmt: skip

SCORERS = ("chexbert", "radgraph", "cxrfe")


class ClinicalUnavailable(RuntimeError):
    """A scorer's weights are not on this machine; the message says which folder and why."""


def _folder(name: str, path: str | Path) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ClinicalUnavailable(f"{name}: {p} is not a local model folder (no config.json)")
    if not any(p.glob("*.safetensors")):
        raise ClinicalUnavailable(f"{name}: {p} has no .safetensors weights (only those are read)")
    return p


def _load(name: str, path: str | Path, auto: Any) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    p = _folder(name, path)
    tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
    model = auto.from_pretrained(p, local_files_only=True, use_safetensors=True)
    return model.eval(), tokenizer


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 1.0


def chexbert_f1(predictions: Sequence[str], references: Sequence[str], path: str | Path) -> dict:
    """Micro / macro F1 of the labeller's positive labels, generated vs reference."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model, tok = _load("chexbert", path, AutoModelForSequenceClassification)

    def labels(texts: Sequence[str]) -> np.ndarray:
        enc = tok(list(texts), padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.inference_mode():
            return (torch.sigmoid(model(**enc).logits) > 0.5).numpy()

    pred, ref = labels(predictions), labels(references)
    tp = (pred & ref).sum(0).astype(float)
    fp = (pred & ~ref).sum(0).astype(float)
    fn = (~pred & ref).sum(0).astype(float)
    supported = (tp + fn) > 0
    per_label = [_f1(a, b, c) for a, b, c in zip(tp, fp, fn, strict=True)]
    names = [model.config.id2label[i] for i in range(pred.shape[1])]
    return {
        "chexbert_f1_micro": _f1(tp.sum(), fp.sum(), fn.sum()),
        "chexbert_f1_macro": float(
            np.mean([f for f, s in zip(per_label, supported, strict=True) if s])
        )
        if supported.any()
        else None,  # fmt: skip
        "chexbert_labels": names,
    }


def _entities(model: Any, tok: Any, text: str) -> set[tuple[str, str]]:
    import torch

    enc = tok(
        text, truncation=True, max_length=512, return_tensors="pt", return_offsets_mapping=True
    )
    offsets = enc.pop("offset_mapping")[0].tolist()
    with torch.inference_mode():
        tags = model(**enc).logits[0].argmax(-1).tolist()
    out: set[tuple[str, str]] = set()
    span: list[Any] | None = None
    for (start, end), tag in zip(offsets, tags, strict=True):
        label = model.config.id2label[tag]
        if start == end:  # special tokens
            continue
        kind = label[2:] if label[:2] in ("B-", "I-") else None
        if kind is not None and (label.startswith("I-") and span and span[2] == kind):
            span[1] = end
            continue
        if span is not None:
            out.add((text[span[0] : span[1]].lower(), span[2]))
        span = [start, end, kind] if kind is not None else None
    if span is not None:
        out.add((text[span[0] : span[1]].lower(), span[2]))
    return out


def radgraph_f1(predictions: Sequence[str], references: Sequence[str], path: str | Path) -> dict:
    """Entity F1 per sample (``(text, type)`` sets), averaged."""
    from transformers import AutoModelForTokenClassification

    model, tok = _load("radgraph", path, AutoModelForTokenClassification)
    scores = []
    for p, r in zip(predictions, references, strict=True):
        a, b = _entities(model, tok, p), _entities(model, tok, r)
        scores.append(_f1(len(a & b), len(a - b), len(b - a)))
    return {"radgraph_entity_f1": float(np.mean(scores)) if scores else None}


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _facts(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def fact_embedding_score(
    predictions: Sequence[str], references: Sequence[str], path: str | Path
) -> dict:
    """Soft fact-matching F1 (CXRFEScore's form) with the encoder at ``path``."""
    import torch
    from transformers import AutoModel

    model, tok = _load("cxrfe", path, AutoModel)

    def embed(texts: list[str]) -> np.ndarray:
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    scores = []
    for p, r in zip(predictions, references, strict=True):
        fp, fr = _facts(p), _facts(r)
        if not fp or not fr:
            scores.append(1.0 if not fp and not fr else 0.0)
            continue
        sim = embed(fp) @ embed(fr).T
        precision, recall = float(sim.max(1).mean()), float(sim.max(0).mean())
        total = precision + recall
        scores.append(2 * precision * recall / total if total > 0 else 0.0)
    return {"cxrfe_score": float(np.mean(scores)) if scores else None, "cxrfe_encoder": str(path)}


_FUNCTIONS = {"chexbert": chexbert_f1, "radgraph": radgraph_f1, "cxrfe": fact_embedding_score}


def score_clinical(
    rows: Sequence[Mapping[str, Any]], folders: Mapping[str, str | Path]
) -> dict[str, Any]:
    """Every requested scorer over the rows' ``prediction`` / ``reference``: its metrics, or
    ``{"not_computed": reason}``; the scorers not requested say so too."""
    unknown = set(folders) - set(SCORERS)
    if unknown:
        raise ValueError(f"unknown clinical scorer(s) {sorted(unknown)} (known: {SCORERS})")
    preds = [str(r.get("prediction", "")) for r in rows]
    refs = [str(r.get("reference", "")) for r in rows]
    out: dict[str, Any] = {}
    for name in SCORERS:
        if name not in folders:
            out[name] = {"not_computed": f"no local weights given (--clinical {name}=DIR)"}
            continue
        try:
            out[name] = _FUNCTIONS[name](preds, refs, folders[name])
        except ClinicalUnavailable as e:
            out[name] = {"not_computed": str(e)}
    return out
