"""The demo's training part end to end (smaller than `make demo`): phantom data, difficulty, CURE
and RRGCL runs of a tiny model, evaluation, metrics and plots, all written where promised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradatim.demo_training import run_training


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_training_demo_writes_metrics_checkpoint_and_plots(tmp_path: Path) -> None:
    metrics = run_training(tmp_path / "demo", n=60, steps=10)
    out = tmp_path / "demo"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["evaluation"]["overall"]["n"] == metrics["evaluation"]["overall"]["n"] > 0
    assert set(saved["evaluation"]["sources"]) <= {"phantom-a", "phantom-b", "phantom-c"}
    assert [h["step"] for h in saved["curriculum_history"]] == [4, 7, 10]  # phase 1 = 1 step
    assert len(saved["cure_losses"]) == 10 and len(saved["rrgcl_losses"]) == 5
    assert (Path(saved["checkpoint"]) / "adapter" / "adapter_model.safetensors").is_file()
    for name in ("loss.png", "curriculum_weights.png", "iou_per_source.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "difficulty.parquet").is_file() and (out / "predictions.jsonl").is_file()
