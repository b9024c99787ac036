"""What the training loop logs for a trainer to watch: per step a UTC timestamp, the elapsed time,
the learning rate the optimizer used, the per-task mean losses, MedCLM's stage per source and
RRGCL's epoch and subset size; per validation the per-source metrics; and a resumed run that
neither duplicates nor loses rows (log.jsonl and TensorBoard). Tiny LLaVA on CPU, the loader
tests' manifest (source alpha: report / grounded_report; beta: phrase_grounding /
anatomy_grounded_report)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_loop import write_run

import gradatim.curriculum
from gradatim.curriculum import RRGCLScheduler, StageScheduler
from gradatim.train.config import load_config
from gradatim.train.data import aligned_difficulty, source_records
from gradatim.train.loop import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

ISO_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _steps(out: Path) -> list[dict[str, Any]]:
    return [r for r in _log(out) if "loss" in r]


def _curriculum(config: Path, **keys: Any) -> Path:
    text = "\n[curriculum]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    config.write_text(config.read_text() + text)
    return config


def _scalars(out: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


class _HalvingAdamW(torch.optim.AdamW):
    """AdamW whose learning rate halves after every step, as a scheduler would change it."""

    def step(self, closure: Any = None) -> Any:
        out = super().step(closure)
        for group in self.param_groups:
            group["lr"] *= 0.5
        return out


def test_step_rows_carry_time_lr_and_task_losses(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row: an ISO 8601 UTC time with milliseconds inside the run, a growing elapsed_s,
    the learning rate the step used (the optimizer's, not the config's: here it halves every
    step), and the mean loss of each task of the step's batches, whose count-weighted mean is the
    step's loss. TensorBoard holds the same values."""
    monkeypatch.setattr(torch.optim, "AdamW", _HalvingAdamW)
    config = write_run(tmp_path, manifest, steps=3, grad_accum=2, checkpoint_every=3)
    before = datetime.now(UTC)
    train(load_config(config))
    after = datetime.now(UTC)
    rows = _steps(tmp_path / "out")
    assert [r["step"] for r in rows] == [1, 2, 3]
    times = []
    for r in rows:
        assert ISO_MS_UTC.match(r["time"]), r["time"]
        t = datetime.fromisoformat(r["time"])
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= t <= after
        times.append(t)
    elapsed = [r["elapsed_s"] for r in rows]
    assert 0 <= elapsed[0] <= elapsed[1] <= elapsed[2]
    for k in (1, 2):  # the clock and elapsed_s advance together (ms rounding, clock jitter)
        wall = (times[k] - times[0]).total_seconds()
        assert wall == pytest.approx(elapsed[k] - elapsed[0], abs=0.05)
    assert [r["lr"] for r in rows] == [3e-3, 1.5e-3, 7.5e-4]  # the lr each step used
    spread = False
    for r in rows:
        assert set(r["task_loss"]) == set(r["tasks"]) and sum(r["tasks"].values()) == 8
        n = sum(r["tasks"].values())
        mean = sum(r["task_loss"][t] * c for t, c in r["tasks"].items()) / n
        assert mean == pytest.approx(r["loss"], abs=1e-5)
        values = list(r["task_loss"].values())
        spread |= len(values) > 1 and max(values) - min(values) > 1e-4
    assert spread  # the tasks' own means, not the step loss repeated
    tb = _scalars(tmp_path / "out")
    assert tb["loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows]
    assert tb["lr"] == [(r["step"], pytest.approx(r["lr"], rel=1e-6)) for r in rows]
    for task in set().union(*(r["task_loss"] for r in rows)):
        want = [(r["step"], pytest.approx(r["task_loss"][task], rel=1e-6))
                for r in rows if task in r["task_loss"]]  # fmt: skip
        assert tb[f"task_loss/{task}"] == want


class _FastStages(StageScheduler):
    """MedCLM's scheduler with a schedule short enough for a test: epoch 0 Easy, from epoch 1
    Medium (full ramp) and Hard (budget 0.3)."""

    def __init__(self, domains: Any = ("default",), **kw: Any) -> None:
        fast = {"easy_warmup_epochs": 0, "hard_transition_epoch": 1, "ramp_kappa": 1.0,
                "hard_budget_init": 0.3}  # fmt: skip
        super().__init__(domains, **{**fast, **kw})


def test_medclm_run_logs_each_sources_stage(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch 0 (steps 1-6: 24 samples, batches of 4) is Easy for every source; in epoch 1 the
    rows give, per source, the Hard budget and the Medium probability the scheduler holds after
    epoch 0's update (read back from the checkpoint at step 8), and TensorBoard the stage code."""
    monkeypatch.setattr(gradatim.curriculum, "StageScheduler", _FastStages)
    config = _curriculum(write_run(tmp_path, manifest, steps=8, checkpoint_every=8), kind="medclm")
    train(load_config(config))
    out = tmp_path / "out"
    rows = _steps(out)
    assert [r["step"] for r in rows] == list(range(1, 9))
    easy = {"stage": "easy", "p_medium": 0.0, "p_hard": 0.0}
    for r in rows[:6]:
        assert r["medclm"] == {"alpha": easy, "beta": easy}
    state = json.loads((out / "checkpoint-8" / "state.json").read_text())["loader"]["stages"]
    scheduler = StageScheduler()
    scheduler.load_state_dict(state)
    assert len(state["history"]) == 1  # epoch 0's update, none since
    p_hard = scheduler.hard_budget
    assert p_hard > 0
    for r in rows[6:]:
        for source in ("alpha", "beta"):
            got = r["medclm"][source]
            assert got["stage"] == "hard"
            assert got["p_hard"] == pytest.approx(p_hard, rel=1e-12)
            want = (1 - p_hard) * scheduler.medium_probability(source, 1)
            assert got["p_medium"] == pytest.approx(want, rel=1e-12) and want > 0
    tb = _scalars(out)
    assert [v for _, v in tb["medclm/stage/alpha"]] == [0.0] * 6 + [2.0] * 2
    assert [s for s, _ in tb["medclm/p_hard"]] == list(range(1, 9))


def test_rrgcl_run_logs_the_epoch_and_its_subset_size(manifest: Path, tmp_path: Path) -> None:
    """RRGCL's epoch t and subset size on every row equal what the scheduler says: the steps of
    epoch e (t = e + 1) are ceil(|subset(t)| / batch size) batches, and the subset grows."""
    from gradatim.difficulty.io import write_difficulty

    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    dif = [float((7 * k) % 11) for k in range(len(ids))]
    classes = [["Effusion"] if k % 3 else ["Nodule"] for k in range(len(ids))]
    path = tmp_path / "difficulty.parquet"
    write_difficulty(path, ids, [0.0] * len(ids), [0.0] * len(ids), dif, classes)
    config = _curriculum(
        write_run(tmp_path, manifest, steps=6, checkpoint_every=6),
        kind="rrgcl", difficulty=str(path), epochs=3,
    )  # fmt: skip
    cfg = load_config(config)
    train(cfg)
    schedule = RRGCLScheduler(*aligned_difficulty(str(path), source_records(cfg)), 3)
    expected = []
    t = 1
    while len(expected) < 6:
        n = len(schedule.epoch_indices(t))
        expected += [{"epoch": t, "subset_size": n}] * math.ceil(n / 4)
        t += 1
    logged = [r["rrgcl"] for r in _steps(tmp_path / "out")]
    assert logged == expected[:6]
    assert len({r["epoch"] for r in logged}) >= 2  # an epoch boundary is inside the run
    assert logged[0]["subset_size"] < len(ids)
    tb = _scalars(tmp_path / "out")
    assert [v for _, v in tb["rrgcl/subset_size"]] == [r["subset_size"] for r in logged]


def test_resumed_run_logs_each_step_and_validation_once(manifest: Path, tmp_path: Path) -> None:
    """A run stopped at step 6 after its checkpoint at step 4 left rows 5 and 6 (and the
    validation at 6) behind; resumed from step 4 it rewrites them, so log.jsonl holds steps 1..8
    once, validations at 2, 4, 6, 8 once (with per-source metrics and timestamps), and
    TensorBoard one loss per step, the resumed run's."""
    config = _curriculum(
        write_run(tmp_path, manifest, steps=8, checkpoint_every=4),
        kind="cure", period=2, val_split="train", per_source=2, max_new_tokens=4,
    )  # fmt: skip
    out = tmp_path / "out"
    first = train(load_config(config), max_steps=6)
    assert first.step == 6 and not (out / "checkpoint-6").exists()
    assert [r["step"] for r in _steps(out)] == [1, 2, 3, 4, 5, 6]
    rest = train(load_config(config), resume="auto")
    assert rest.step == 8
    log = _log(out)
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert [r["loss"] for r in steps[4:]] == rest.losses  # the resumed run's rows
    assert [r["loss"] for r in steps[:4]] == first.losses[:4]
    validations = [r for r in log if "validation" in r]
    assert [r["step"] for r in validations] == [2, 4, 6, 8]
    for r in validations:
        assert ISO_MS_UTC.match(r["time"]) and r["elapsed_s"] >= 0
        assert set(r["validation"]) == {"alpha", "beta"}
        assert all("text" in m and "iou" in m for m in r["validation"].values())
    tb = _scalars(out)
    assert [s for s, _ in tb["loss"]] == list(range(1, 9))
    assert [v for _, v in tb["loss"]] == [pytest.approx(r["loss"], rel=1e-6) for r in steps]
    for source in ("alpha", "beta"):
        for metric in ("text", "iou"):
            got = tb[f"validation/{source}/{metric}"]
            assert got == [(r["step"], pytest.approx(r["validation"][source][metric], rel=1e-6))
                           for r in validations]  # fmt: skip
