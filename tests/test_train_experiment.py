"""`gradatim experiment`: the table's means and 95 % intervals by hand, and a tiny experiment end
to end (two arms, two seeds, the interleaved CURE draw among them) writing its table and plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gradatim.cli import main
from gradatim.train.experiment import summarize_runs


def _row(source: str, task: str, iou: float | None, rouge: float) -> dict:
    return {"source": source, "task": task, "iou": iou, "rougeL": rouge}


def test_means_and_intervals_by_hand() -> None:
    runs = [
        {"arm": "a", "seed": s, "rows": [_row("x", "phrase_grounding", iou, r)]}
        for s, (iou, r) in enumerate([(0.2, 0.5), (0.4, 0.7), (0.6, 0.9)])
    ]
    table = summarize_runs(runs)["a"]
    # mean 0.4, sd 0.2, t(0.975, 2) = 4.302652729911275
    assert table["grounding_iou"]["mean"] == pytest.approx(0.4)
    assert table["grounding_iou"]["ci95"] == pytest.approx(4.302652729911275 * 0.2 / math.sqrt(3))
    assert table["rouge_l"]["mean"] == pytest.approx(0.7)
    assert table["x/phrase_grounding/iou"]["n"] == 3
    one = summarize_runs(runs[:1])["a"]["grounding_iou"]
    assert one["mean"] == pytest.approx(0.2) and one["ci95"] is None


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_a_tiny_experiment_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text(
        f'[experiment]\nout = "{tmp_path / "out"}"\nseeds = [0, 1]\nsteps = 6\n'
        'arms = ["uniform", "cure-interleave"]\n'
        "[data]\nphantom = 150\nsize = 128\npretrain_phantom = 60\n"
        "[model]\ngrounding_steps = 3\npretrain_steps = 2\nimage_size = 32\npatch = 8\n"
        "hidden = 64\n"
    )
    assert main(["experiment", str(config)]) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert set(results["table"]) == {"uniform", "cure-interleave"}
    assert results["table"]["uniform"]["rouge_l"]["n"] == 2
    assert "interleave" in (out / "runs" / "cure-interleave-seed0.toml").read_text()
    assert set(results["final_cure_weights"]) == {"cure-interleave"}
    assert results["hardest_source"] == "phantom-c"
    assert -1 <= results["difficulty_vs_truth"]["vns_gap"] <= 1
    assert (out / "table.md").read_text().startswith("| arm |")
    assert (out / "experiment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    base = json.loads((out / "base" / "pretrain.json").read_text())  # its own corpus, 4 x 4 tokens
    assert base["manifests"] == [str((out / "pretrain_data" / "manifest.jsonl").resolve())]
    assert base["settings"]["patch"] == 8
    assert json.loads((out / "base" / "config.json").read_text())["image_seq_length"] == 16
