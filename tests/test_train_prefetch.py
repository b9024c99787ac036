"""A curriculum run's data do not depend on how far the loader prefetches: ``gradatim train``
with CURE's error-aware weights (re-weighted at step 2, from the consumed sample on) and with
MedCLM's stage scheduler (updated at every epoch's end) delivers the same batches (indices and
stages), the same losses and the same adapters for ``num_workers`` 0, 1, 2 and
``prefetch_factor`` 1, 2, 4. Tiny LLaVA on CPU, the loader tests' manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_loop import adapter, write_run

import gradatim.curriculum
import gradatim.train.loop as loop
from gradatim.curriculum import StageScheduler
from gradatim.train.config import load_config
from gradatim.train.loop import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

#: (num_workers, prefetch_factor); the first is the reference: nothing drawn ahead
SETTINGS = [(0, None), (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4)]
_DELIVER = loop.with_source_ends  # what the loop calls on every batch it receives


class _FastStages(StageScheduler):
    """MedCLM's scheduler without its 4-epoch warm-up: epoch 0 is Easy, from epoch 1 on a
    sample's stage depends on the losses of the epochs before (the update this test is about)."""

    def __init__(self, domains: Any = ("default",), **kw: Any) -> None:
        fast = {"easy_warmup_epochs": 0, "hard_transition_epoch": 1, "ramp_kappa": 1.0,
                "hard_budget_init": 0.3}  # fmt: skip
        super().__init__(domains, **{**fast, **kw})


def _run(
    tmp: Path, manifest: Path, workers: int, prefetch: int | None, curriculum: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch, **keys: Any,
) -> tuple[list[Any], list[float], dict[str, torch.Tensor]]:  # fmt: skip
    """One run: per micro-batch the indices and stages delivered, the losses, the last adapter."""
    folder = tmp / f"w{workers}-p{prefetch}"
    folder.mkdir()
    options = {"num_workers": workers, **keys}
    if prefetch is not None:
        options["prefetch_factor"] = prefetch
    config = write_run(folder, manifest, **options)
    config.write_text(
        config.read_text()
        + "\n[curriculum]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in curriculum.items())
    )
    seen: list[Any] = []

    def record(batch: dict[str, Any], ends: dict[str, str]) -> dict[str, Any]:
        seen.append((batch["index"].tolist(), batch["stage"].tolist()))
        return _DELIVER(batch, ends)

    def inject(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # alpha solved, beta failing: CURE moves the weight to beta at every update
        return [{**r, "prediction": r["reference"] if r["source"] == "alpha" else ""} for r in rows]

    monkeypatch.setattr(loop, "with_source_ends", record)
    run = train(load_config(config), validation_hook=inject)
    return seen, run.losses, adapter(folder / "out", run.step)


def _same_everywhere(runs: dict[tuple[int, int | None], Any]) -> None:
    (batches, losses, weights) = runs[SETTINGS[0]]
    for setting, (b, ls, w) in runs.items():
        assert b == batches, setting
        assert ls == losses, setting
        assert w.keys() == weights.keys() and all(torch.equal(w[k], weights[k]) for k in w)


def test_cure_run_is_the_same_for_every_prefetch_window(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cure = {"kind": "cure", "period": 2, "val_split": "train", "per_source": 1,
            "max_new_tokens": 2}  # fmt: skip
    runs = {
        s: _run(tmp_path, manifest, *s, cure, monkeypatch, steps=4, checkpoint_every=4)
        for s in SETTINGS
    }
    _same_everywhere(runs)
    # the records are alpha's 12, then beta's 12; from step 3 on beta weighs 0.99 (uniform before)
    beta = [sum(i >= 12 for i in idx) for idx, _ in runs[SETTINGS[0]][0]]
    assert sum(beta[:2]) < 8 and sum(beta[2:]) >= 7, beta


def test_medclm_run_is_the_same_for_every_prefetch_window(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gradatim.curriculum, "StageScheduler", _FastStages)
    medclm = {"kind": "medclm"}
    keys = {"steps": 6, "batch_size": 8, "checkpoint_every": 6}
    runs = {s: _run(tmp_path, manifest, *s, medclm, monkeypatch, **keys) for s in SETTINGS}
    _same_everywhere(runs)
    stages = [codes for _, codes in runs[SETTINGS[0]][0]]
    assert all(c == 0 for codes in stages[:3] for c in codes)  # epoch 0: Easy
    # epoch 1 follows epoch 0's update from its first batch on: Medium and Hard
    assert 1 in stages[3] and any(2 in codes for codes in stages[3:]), stages
