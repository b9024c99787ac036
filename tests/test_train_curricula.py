"""Curricula in the training loop beyond one level: CURE's phase 1 (the anatomy-grounded task
alone) before its multi-task phase, CURE's category weights inside each source, and RRGCL's
class-level subsets composed with CURE's source weights in one sampler. Tiny LLaVA on CPU, the
loader tests' manifest (source alpha: report / grounded_report; beta: phrase_grounding /
anatomy_grounded_report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_train_loop import adapter, write_run

from gradatim.difficulty.io import write_difficulty
from gradatim.train.config import ConfigError, load_config
from gradatim.train.data import build_loader, record_categories, source_records
from gradatim.train.loop import build_model, train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _curriculum(config: Path, **keys: Any) -> Path:
    text = "\n[curriculum]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    config.write_text(config.read_text() + text)
    return config


def test_cure_phase_one_trains_the_anatomy_task_alone_then_all_tasks(
    manifest: Path, tmp_path: Path
) -> None:
    keys = {"kind": "cure", "period": 2, "val_split": "train", "per_source": 2,
            "max_new_tokens": 4, "phase1_steps": 2}  # fmt: skip
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir()
    cut_dir.mkdir()
    config = _curriculum(write_run(full_dir, manifest, steps=6, checkpoint_every=1), **keys)
    full = train(load_config(config))
    log = _log(full_dir / "out")
    steps = [r for r in log if "tasks" in r]
    assert [set(r["tasks"]) for r in steps[:2]] == [{"anatomy_grounded_report"}] * 2
    later = set().union(*(r["tasks"] for r in steps[2:]))
    assert {"report", "phrase_grounding", "grounded_report"} <= later
    # the curriculum starts with the multi-task phase: validation at phase-2 steps 2 and 4
    assert [r["step"] for r in log if "curriculum_weights" in r] == [4, 6]
    # resume inside phase 1 and again inside phase 2: the uninterrupted run, bit for bit
    cut = _curriculum(write_run(cut_dir, manifest, steps=6, checkpoint_every=1), **keys)
    a = train(load_config(cut), max_steps=1)
    b = train(load_config(cut), resume="auto", max_steps=3)
    c = train(load_config(cut), resume="auto")
    assert a.losses + b.losses + c.losses == full.losses
    x, y = adapter(full_dir / "out", 6), adapter(cut_dir / "out", 6)
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_cure_category_weights_move_toward_the_category_whose_error_rises(
    manifest: Path, tmp_path: Path
) -> None:
    config = _curriculum(
        write_run(tmp_path, manifest, steps=2, checkpoint_every=2),
        kind="cure", period=2, val_split="train", per_source=4, max_new_tokens=4,
        categories="task",
    )  # fmt: skip

    def inject(rows: list[dict]) -> list[dict]:
        assert {r["category"] for r in rows} == {
            "report", "grounded_report", "phrase_grounding", "anatomy_grounded_report"
        }  # fmt: skip
        fail = ("beta", "phrase_grounding")
        return [
            {**r, "prediction": "" if (r["source"], r["category"]) == fail else r["reference"]}
            for r in rows
        ]

    train(load_config(config), validation_hook=inject)
    update = next(r for r in _log(tmp_path / "out") if "curriculum_weights" in r)
    w = update["curriculum_weights"]
    assert set(w) == {"alpha/report", "alpha/grounded_report", "beta/phrase_grounding",
                      "beta/anatomy_grounded_report"}  # fmt: skip
    assert w["beta/phrase_grounding"] > 0.9 * (
        w["beta/phrase_grounding"] + w["beta/anatomy_grounded_report"]
    )
    # beta's total rose above alpha's (its mean performance fell)
    assert w["beta/phrase_grounding"] + w["beta/anatomy_grounded_report"] > 0.5
    assert w["beta/phrase_grounding"] > max(w["alpha/report"], w["alpha/grounded_report"])
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "state.json").read_text())
    assert state["curriculum"]["kind"] == "TwoLevelCurriculum"


def test_record_categories() -> None:
    recs = [{"task": "vqa", "boxes": [{"phrase": "nodule", "anatomy": None}]}, {"task": "report"}]
    assert record_categories(recs, "task") == ["vqa", "report"]
    assert record_categories(recs, "phrase") == ["nodule", "none"]
    assert record_categories(recs, "anatomy") == ["none", "none"]


def _difficulty(manifest: Path, path: Path) -> None:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    n = len(rows)
    write_difficulty(path, [r["id"] for r in rows], [0.0] * n, [0.0] * n,
                     [float((7 * k) % 11) for k in range(n)],
                     [["Effusion"] if k % 3 else ["Nodule"] for k in range(n)])  # fmt: skip


def test_cure_with_rrgcl_is_one_sampler_rrgcl_inside_cure_across(
    manifest: Path, tmp_path: Path
) -> None:
    path = tmp_path / "dif.parquet"
    _difficulty(manifest, path)
    config = _curriculum(
        write_run(tmp_path, manifest, steps=4, checkpoint_every=2),
        kind="cure+rrgcl", difficulty=str(path), epochs=3, period=2, val_split="train",
        per_source=2, max_new_tokens=4,
    )  # fmt: skip
    cfg = load_config(config)
    records = source_records(cfg)
    _, sampler = build_loader(cfg, build_model(cfg, records), records)
    schedule = sampler._schedule  # noqa: SLF001 - the composed schedule, checked against itself
    subset = set(schedule.epoch_indices(1).tolist())
    assert len(subset) < len(records)
    assert set(sampler.epoch_indices(0).tolist()) <= subset  # RRGCL's epoch 1 inside ...
    drawn = np.asarray([r["source"] for r in records])[sampler.epoch_indices(0)]
    assert 0.5 < float(np.mean(drawn == "alpha")) < 0.9  # ... CURE's configured 0.7 / 0.3 across
    run = train(cfg, validation_hook=lambda rows: [
        {**r, "prediction": "" if r["source"] == "alpha" else r["reference"]} for r in rows
    ])  # fmt: skip
    assert run.step == 4
    updates = [r for r in _log(tmp_path / "out") if "curriculum_weights" in r]
    assert updates[0]["curriculum_weights"]["alpha"] > 0.9


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"kind": "rrgcl", "categories": "task"}, "category weights need kind cure"),
        ({"kind": "cure", "categories": "finding"}, "expected one of task, phrase, anatomy"),
        ({"kind": "none", "phase1_steps": 3}, "phase 1 needs kind cure"),
        ({"kind": "cure", "phase1_tasks": ["captioning"]}, "unknown task 'captioning'"),
        ({"kind": "cure", "attention_kl": 0.1}, "needs kind medclm"),
    ],
)
def test_curriculum_option_errors(
    manifest: Path, tmp_path: Path, keys: dict[str, Any], message: str
) -> None:
    if keys.get("kind") == "rrgcl":
        keys = {**keys, "difficulty": str(tmp_path / "d.parquet")}
        _difficulty(manifest, tmp_path / "d.parquet")
    config = _curriculum(write_run(tmp_path, manifest), **keys)
    with pytest.raises(ConfigError, match=rf"run.toml: \[curriculum\]\.\w+: .*{message}"):
        load_config(config)
