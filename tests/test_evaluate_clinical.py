"""Optional clinical scorers: computed from local safetensors folders only, each checked against
an independent computation (hand-made label / tag patterns, the difficulty tool's text encoder),
and a clear "not computed" naming the folder otherwise. Models are tiny random ones built from
configs (CheXbert- and RadGraph-shaped heads) plus the real MiniLM encoder shipped offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gradatim.cli import main
from gradatim.difficulty.embed import TextEncoder, default_text_model
from gradatim.evaluate.clinical import (
    chexbert_f1,
    fact_embedding_score,
    radgraph_f1,
    score_clinical,
)

CHEXPERT = ["No Finding", "Cardiomegaly", "Edema", "Pleural Effusion"]
TAGS = ["O", "B-OBS-DP", "I-OBS-DP"]
PREDS = ["Small left effusion. Heart size normal.", "No acute findings.", "Mild edema."]
REFS = ["Small left effusion. Heart size normal.", "Cardiomegaly. No effusion.", "Mild edema."]


def _tiny(tmp: Path, head: str, labels: list[str], bias: list[float] | None = None) -> Path:
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
    )

    tok = AutoTokenizer.from_pretrained(default_text_model(), local_files_only=True)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(labels)),
        label2id={k: i for i, k in enumerate(labels)},
        problem_type="multi_label_classification" if head == "seq" else None,
    )
    torch.manual_seed(0)
    cls = BertForSequenceClassification if head == "seq" else BertForTokenClassification
    model = cls(cfg)
    if bias is not None:  # a known output: weights 0, the bias decides
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    folder = tmp / f"{head}-{len(labels)}-{bias}"
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_chexbert_f1_against_the_labels_computed_by_hand(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = _tiny(tmp_path, "seq", CHEXPERT)
    got = chexbert_f1(PREDS, REFS, folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)

    def labels(text: str) -> set[str]:
        with torch.no_grad():
            p = torch.sigmoid(model(**tok(text, return_tensors="pt")).logits[0])
        return {CHEXPERT[i] for i in range(len(CHEXPERT)) if p[i] > 0.5}

    tp = fp = fn = 0
    per: dict[str, list[int]] = {c: [0, 0, 0] for c in CHEXPERT}
    for p, r in zip(PREDS, REFS, strict=True):
        a, b = labels(p), labels(r)
        tp, fp, fn = tp + len(a & b), fp + len(a - b), fn + len(b - a)
        for c in CHEXPERT:
            per[c][0] += c in a and c in b
            per[c][1] += c in a and c not in b
            per[c][2] += c in b and c not in a
    micro = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    macro = [2 * t / (2 * t + f + n) if t + f + n else 1.0 for t, f, n in per.values() if t + n]
    assert got["chexbert_f1_micro"] == pytest.approx(micro)
    assert got["chexbert_f1_macro"] == (pytest.approx(np.mean(macro)) if macro else None)
    assert got["chexbert_labels"] == CHEXPERT
    # a labeller that calls everything positive: every label agrees, F1 = 1
    always = _tiny(tmp_path, "seq", CHEXPERT, bias=[50.0] * 4)
    assert chexbert_f1(PREDS, REFS, always)["chexbert_f1_micro"] == 1.0


def test_radgraph_entity_f1_on_known_tag_patterns(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    # every token its own entity: F1 of the lowercased token sets
    each = _tiny(tmp_path, "tok", TAGS, bias=[0.0, 50.0, 0.0])
    tok = AutoTokenizer.from_pretrained(each, local_files_only=True)

    def pieces(text: str) -> set[tuple[str, str]]:
        enc = tok(text, return_offsets_mapping=True)
        return {(text[s:e].lower(), "OBS-DP") for s, e in enc["offset_mapping"] if s != e}

    want = []
    for p, r in zip(PREDS, REFS, strict=True):
        a, b = pieces(p), pieces(r)
        want.append(2 * len(a & b) / (2 * len(a & b) + len(a - b) + len(b - a)))
    assert radgraph_f1(PREDS, REFS, each)["radgraph_entity_f1"] == pytest.approx(np.mean(want))
    # one entity spanning the whole text (I- continues): equal texts 1, others 0
    whole = _tiny(tmp_path, "tok", TAGS, bias=[0.0, 0.0, 50.0])
    assert radgraph_f1(PREDS, REFS, whole)["radgraph_entity_f1"] == pytest.approx(2 / 3)
    # no entities on either side: full agreement
    none = _tiny(tmp_path, "tok", TAGS, bias=[50.0, 0.0, 0.0])
    assert radgraph_f1(PREDS, REFS, none)["radgraph_entity_f1"] == 1.0


def test_fact_embedding_score_with_the_local_minilm_encoder() -> None:
    folder = default_text_model()
    got = fact_embedding_score(PREDS, REFS, folder)
    enc = TextEncoder(folder, device="cpu")
    scores = []
    for p, r in zip(PREDS, REFS, strict=True):
        fp = [s for s in p.replace(". ", ".\n").splitlines() if s.strip()]
        fr = [s for s in r.replace(". ", ".\n").splitlines() if s.strip()]
        ep, er = enc.encode(fp), enc.encode(fr)
        ep /= np.linalg.norm(ep, axis=1, keepdims=True)
        er /= np.linalg.norm(er, axis=1, keepdims=True)
        sim = ep @ er.T
        prec, rec = sim.max(1).mean(), sim.max(0).mean()
        scores.append(2 * prec * rec / (prec + rec))
    assert got["cxrfe_score"] == pytest.approx(float(np.mean(scores)), rel=1e-5)
    assert fact_embedding_score(REFS, REFS, folder)["cxrfe_score"] == pytest.approx(1.0, abs=1e-5)


def test_missing_weights_are_named_and_nothing_is_unpickled(tmp_path: Path) -> None:
    pickled = tmp_path / "bin-only"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    rows = [{"prediction": p, "reference": r} for p, r in zip(PREDS, REFS, strict=True)]
    out = score_clinical(rows, {"chexbert": tmp_path / "absent", "radgraph": pickled})
    assert "absent is not a local model folder" in out["chexbert"]["not_computed"]
    assert "bin-only has no .safetensors weights" in out["radgraph"]["not_computed"]
    assert "--clinical cxrfe=DIR" in out["cxrfe"]["not_computed"]
    with pytest.raises(ValueError, match="unknown clinical scorer"):
        score_clinical(rows, {"bleurt": tmp_path})


def test_cli_clinical_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": str(i), "source": "iu", "task": "report", "prediction": p, "reference": r}
        for i, (p, r) in enumerate(zip(PREDS, REFS, strict=True))
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        str(preds),
        "--out",
        str(out),
        "--clinical",
        f"cxrfe={default_text_model()}",
        "--clinical",
        f"chexbert={tmp_path / 'nowhere'}",
    ]
    assert main(args) == 0
    summary = json.loads(out.read_text())["clinical_scorers"]
    assert 0 < summary["cxrfe"]["cxrfe_score"] <= 1
    assert "nowhere is not a local model folder" in summary["chexbert"]["not_computed"]
    assert "clinical scorer chexbert not computed" in capsys.readouterr().out
    assert main(["evaluate", str(preds), "--out", str(out), "--clinical", "bleurt"]) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err
