"""The demo's training part end to end (smaller than `make demo`): phantom data, difficulty and
its agreement with the true difficulty, a pre-trained tiny base, CURE and RRGCL LoRA runs,
predictions against the baselines, metrics and plots, all written where promised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gradatim.demo_training import run_training

LEARNING = ("grounding_iou", "prompt_only_iou", "blank_image_iou", "untrained_iou", "rouge_l",
            "prompt_only_rouge_l")  # fmt: skip


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_training_demo_writes_metrics_checkpoint_and_plots(tmp_path: Path) -> None:
    metrics = run_training(
        tmp_path / "demo", n=150, steps=10, grounding_steps=12, pretrain_steps=6, hidden=64,
        pretrain_n=60,
    )  # fmt: skip
    out = tmp_path / "demo"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["learning"] == metrics["learning"]
    for key in LEARNING:
        assert 0.0 <= saved["learning"][key] <= 1.0, key
    assert saved["learning"]["n"] == sum(
        1 for _ in (out / "predictions.jsonl").read_text().splitlines()
    )
    agreement = saved["difficulty_vs_truth"]
    assert agreement["n"] > 0 and all(
        -1 <= agreement[k] <= 1 or math.isnan(agreement[k]) for k in ("vns_gap", "itas", "combined")
    )
    assert set(saved["evaluation"]["sources"]) <= {"phantom-a", "phantom-b", "phantom-c"}
    assert [h["step"] for h in saved["curriculum_history"]] == [4, 7, 10]  # phase 1 = 1 step
    assert len(saved["cure_losses"]) == 10 and len(saved["rrgcl_losses"]) == 5
    assert len(saved["pretrain_losses"]) == 18
    assert (Path(saved["checkpoint"]) / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "base" / "model.safetensors").is_file()
    # the base was pre-trained on the separate corpus (other studies), not on the demo's data
    pretrained_on = json.loads((out / "base" / "pretrain.json").read_text())["manifests"]
    assert pretrained_on == [str((out / "pretrain_data" / "manifest.jsonl").resolve())]
    corpus_images = {p.read_bytes() for p in (out / "pretrain_data" / "images").rglob("*.jpg")}
    assert not corpus_images & {p.read_bytes() for p in (out / "data" / "images").rglob("*.jpg")}
    for name in ("loss.png", "curriculum_weights.png", "validation_iou.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("predictions.jsonl", "predictions_blank.jsonl", "predictions_untrained.jsonl"):
        assert (out / name).is_file()
    assert (out / "difficulty.parquet").is_file()
