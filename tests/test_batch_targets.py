"""What a batch says about its targets, for evaluation: the boxes the target text renders
(``target_boxes``), the phrase or region the prompt asks about (``category``), the anatomy prompt
kind; and prompts pinned per record: the same record gets the same prompt at the same
``(seed, epoch)`` in any data set that holds it.

Oracles: the boxes parsed back from the target text (the box format's rounding apart), the
surviving ``boxes`` of the same batch, and the prompt text itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradatim as ga
from gradatim.data import parse_boxes
from gradatim.datasets import phantom


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom.generate(tmp_path_factory.mktemp("phantom"), n=30, size=(96, 96))


def test_target_boxes_are_the_boxes_the_target_renders(manifest: Path) -> None:
    ds = ga.ManifestDataset(manifest, image_size=(64, 64), augment=ga.Augment.cure_train())
    kinds, tasks_with_boxes = set(), set()
    for epoch in range(3):
        b = ds.load_batch(range(len(ds)), epoch=epoch)
        for k in range(len(ds)):
            n = int(b["target_box_count"][k])
            target = np.asarray(b["target_boxes"][k, :n], dtype=np.float64)
            parsed = parse_boxes(b["target"][k], "cure")
            task, category = b["task"][k], b["category"][k]
            assert target.shape == parsed.shape, (task, b["target"][k])
            assert np.allclose(target, parsed, atol=0.0101)  # centre and size at two decimals
            surviving = b["boxes"][k, : int(b["box_count"][k])].numpy() / 64.0
            for box in target:  # every target box is one of the sample's surviving boxes
                assert np.abs(surviving - box).max(axis=1).min() < 1e-5
            if n:
                tasks_with_boxes.add(task)
            if task in ("phrase_grounding", "anatomy_grounded_report"):
                assert category and category in b["prompt"][k]
            else:
                assert category == "" and b["prompt_kind"][k] == ""
            if task == "anatomy_grounded_report":
                kinds.add(b["prompt_kind"][k])
                if b["prompt_kind"][k] == "describe":
                    assert n == 0
    assert {"phrase_grounding", "grounded_report"} <= tasks_with_boxes
    assert kinds == {"locate", "describe", "locate_describe"}


def test_prompts_are_pinned_per_record_not_per_position(manifest: Path, tmp_path: Path) -> None:
    lines = manifest.read_text().splitlines()
    other = tmp_path / "subset.jsonl"
    subset = lines[::-1][::2]  # another order, half of the records
    other.write_text("\n".join(subset) + "\n")
    root = manifest.parent
    full = ga.ManifestDataset(manifest, image_size=(64, 64))
    part = ga.ManifestDataset(other, root=root, image_size=(64, 64))
    ids = [json.loads(line)["id"] for line in subset]
    where = {i: k for k, i in enumerate(full.column("id"))}
    keys = ("prompt", "target", "category", "prompt_kind")
    a = full.load_batch([where[i] for i in ids], epoch=0, seed=3)
    b = part.load_batch(range(len(ids)), epoch=0, seed=3)
    for key in keys:
        assert a[key] == b[key]
    assert np.array_equal(a["target_boxes"].numpy(), b["target_boxes"].numpy())
    # choices still change with the epoch (training sees every phrase / region / prompt)
    later = full.load_batch([where[i] for i in ids], epoch=1, seed=3)
    assert later["prompt"] != a["prompt"]
